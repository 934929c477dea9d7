//! The listener task, the handle the daemon holds, and graceful shutdown.
//!
//! ```text
//!            start                 shutdown(drain)               drain elapsed
//! (bound) ─────────▶ Running ───────────────────▶ Draining ─────────────────▶ Closing
//!                    accept,                      listener closed,             remaining connections
//!                    serve                        in-flight ones finish        dropped (both sides closed)
//! ```

use crate::config::ProxyConfig;
use crate::conn;
use crate::err::{Error, Result};
use crate::health::{Health, HealthHandle};
use crate::http::Rewriter;
use crate::stats::ProxyStats;
use crate::target;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Pause after an accept error (e.g. out of file descriptors) so that the
/// loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long closed connections get to finish their drop after the drain.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Draining,
    Closing,
}

/// One open connection, as [`ProxyHandle::connections`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    /// Our sequence number for it (also in debug logs).
    pub id: u64,
    /// tor's global circuit id, when `expect_proxy_header` is set.
    pub circuit_id: Option<u32>,
    /// How long it has been open.
    pub age: Duration,
}

/// State shared by the listener and every connection.
pub(crate) struct Shared {
    pub cfg: ProxyConfig,
    pub target_addr: Option<SocketAddr>,
    pub rewriter: Rewriter,
    pub stats: Arc<ProxyStats>,
    pub health: HealthHandle,
    conns: Mutex<Conns>,
}

/// The open connections, and how many of them each tor circuit holds.
#[derive(Default)]
struct Conns {
    open: HashMap<u64, (Option<u32>, Instant)>,
    per_circuit: HashMap<u32, usize>,
}

impl Conns {
    fn remove(&mut self, id: u64) {
        if let Some((Some(c), _)) = self.open.remove(&id) {
            if let Some(n) = self.per_circuit.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    self.per_circuit.remove(&c);
                }
            }
        }
    }
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        // Poisoning only means a panic elsewhere between two plain map
        // operations; the maps are still consistent.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record connection `id`'s circuit. `false`: that circuit already holds
    /// `max_streams_per_circuit` connections, and this one must be closed.
    pub(crate) fn set_circuit(&self, id: u64, circuit: Option<u32>) -> bool {
        let Some(c) = circuit else {
            return true;
        };
        let cap = self.cfg.max_streams_per_circuit;
        let mut guard = self.conns();
        let conns = &mut *guard;
        let n = conns.per_circuit.get(&c).copied().unwrap_or(0);
        if cap > 0 && n >= cap {
            return false;
        }
        if let Some(e) = conns.open.get_mut(&id) {
            e.0 = Some(c);
            conns.per_circuit.insert(c, n + 1);
        }
        true
    }

    /// Connect to the target, recording the result in stats and health.
    pub(crate) async fn connect(&self, id: u64) -> Option<TcpStream> {
        match target::connect(&self.cfg, self.target_addr).await {
            Ok(s) => {
                self.health.record("traffic", Ok(()));
                Some(s)
            }
            Err(e) => {
                ProxyStats::inc(&self.stats.connect_errors);
                if matches!(e, Error::ConnectTimeout { .. }) {
                    ProxyStats::inc(&self.stats.timeouts);
                }
                tracing::debug!(conn = id, "{e}");
                self.health.record("traffic", Err(&e));
                None
            }
        }
    }
}

/// Decrements `active`, forgets the connection and releases the drain
/// tracker when a connection task ends, however it ends.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
    _done: mpsc::Sender<()>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.stats.active.fetch_sub(1, Relaxed);
        self.shared.conns().remove(self.id);
    }
}

/// What [`ProxyHandle::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// Connections open when the listener closed.
    pub in_flight: u64,
    /// Of those, connections that ended on their own within the drain time.
    pub drained: u64,
    /// Of those, connections closed by us when the drain time ran out.
    pub closed: u64,
}

/// The reverse proxy. See the crate documentation.
pub struct Proxy;

impl Proxy {
    /// Validate `cfg`, bind the listener and start serving on the current
    /// tokio runtime.
    pub async fn start(cfg: ProxyConfig) -> Result<ProxyHandle> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: cfg.listen,
            source,
        })?;
        let rewriter = Rewriter {
            target_authority: cfg.target.authority(),
            target_host: cfg.target.host(),
            public_host: cfg.public_host.clone(),
        };
        let shared = Arc::new(Shared {
            target_addr: cfg.target_addr(),
            rewriter,
            stats: Arc::new(ProxyStats::default()),
            health: HealthHandle::default(),
            conns: Mutex::new(Conns::default()),
            cfg,
        });
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let (done_tx, done_rx) = mpsc::channel(1);
        let accept = tokio::spawn(accept_loop(
            listener,
            local_addr,
            shared.clone(),
            phase_rx,
            done_tx,
        ));
        let probe = shared
            .cfg
            .health_check_interval
            .map(|every| tokio::spawn(probe_loop(shared.clone(), every)));
        tracing::info!(
            "proxy listening on {local_addr}, target {}",
            shared.cfg.target.redacted()
        );
        Ok(ProxyHandle {
            local_addr,
            shared,
            phase,
            accept: Some(accept),
            probe,
            done_rx,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    sh: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    done: mpsc::Sender<()>,
) {
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = phase.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(
                    "accept failed: {e}; if it says too many open files, raise the unit's \
                     LimitNOFILE= or lower proxy.max_connections"
                );
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        ProxyStats::inc(&sh.stats.accepted);
        if sh.stats.active.load(Relaxed) >= sh.cfg.max_connections as u64 {
            ProxyStats::inc(&sh.stats.rejected);
            drop(stream);
            continue;
        }
        sh.stats.active.fetch_add(1, Relaxed);
        next_id += 1;
        let id = next_id;
        sh.conns().open.insert(id, (None, Instant::now()));
        let guard = ConnGuard {
            shared: sh.clone(),
            id,
            _done: done.clone(),
        };
        let mut closing = phase.clone();
        tokio::spawn(async move {
            let serve = conn::serve(guard.shared.clone(), stream, peer, local, id);
            tokio::select! {
                _ = serve => {}
                _ = closing.wait_for(|p| *p == Phase::Closing) => {}
            }
            drop(guard);
        });
    }
}

async fn probe_loop(sh: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = target::connect(&sh.cfg, sh.target_addr).await.map(drop);
        sh.health.record("probe", r.as_ref().map(|_| ()));
    }
}

/// A running proxy. Dropping it closes the listener and every connection at
/// once; [`ProxyHandle::shutdown`] drains first.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    accept: Option<JoinHandle<()>>,
    probe: Option<JoinHandle<()>>,
    done_rx: mpsc::Receiver<()>,
}

impl ProxyHandle {
    /// The listener's address (the port chosen when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.shared.stats.clone()
    }

    /// The target's health now.
    pub fn health(&self) -> Health {
        self.shared.health.get()
    }

    /// A cloneable view of the target's health, for status pages.
    pub fn health_handle(&self) -> HealthHandle {
        self.shared.health.clone()
    }

    /// Open connections with tor's circuit id (nothing else about clients).
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut v: Vec<_> = self
            .shared
            .conns()
            .open
            .iter()
            .map(|(&id, &(circuit_id, since))| ConnectionInfo {
                id,
                circuit_id,
                age: since.elapsed(),
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Stop accepting, let open connections finish for up to `drain`, then
    /// close the rest.
    pub async fn shutdown(mut self, drain: Duration) -> ShutdownReport {
        self.phase.send_replace(Phase::Draining);
        if let Some(a) = self.accept.take() {
            let _ = a.await;
        }
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        let in_flight = self.shared.stats.active.load(Relaxed);
        // `recv` yields `None` once every connection's sender is dropped.
        let all_done = tokio::time::timeout(drain, self.done_rx.recv())
            .await
            .is_ok();
        let closed = if all_done {
            0
        } else {
            self.shared.stats.active.load(Relaxed)
        };
        if !all_done {
            self.phase.send_replace(Phase::Closing);
            let _ = tokio::time::timeout(CLOSE_GRACE, self.done_rx.recv()).await;
        }
        let report = ShutdownReport {
            in_flight,
            drained: in_flight.saturating_sub(closed),
            closed,
        };
        tracing::info!(?report, "proxy stopped");
        report
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.phase.send_replace(Phase::Closing);
        if let Some(p) = self.probe.take() {
            p.abort();
        }
    }
}
