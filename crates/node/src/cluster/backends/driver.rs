//! The backend task: fetches the backends' descriptors through this node's tor and
//! probes the backends through Tor, feeding [`Backends`] (the pure decisions).
//!
//! ```text
//!  every 250 ms: tor's control port (own connection: its HS_DESC events are ours)
//!    consensus/valid-after changed ─▶ new_consensus (all due)
//!    take_due ─▶ HSFETCH <addr> (tor picks a responsible HSDir)
//!    HS_DESC_CONTENT <addr> text ─▶ parse_descriptor (signature, made for <addr>,
//!        time period, lifetime, intro points tor would accept) ─▶ fetched | failed
//!    HS_DESC FAILED (no HSDir asked) / empty content / no answer in fetch_wait ─▶ failed
//!    probes_due ─▶ canary::probe(<addr>:<virtual port>) ─▶ probed
//!  ─▶ /status `cluster.backends`; a backend listed or unlisted is logged
//! ```
//!
//! A plain `HSFETCH` (no `SERVER=`) lets tor pick one responsible HSDir it has not asked
//! about this address lately (15 min on the real network, 5 s in a testing network);
//! every successful connection to the backend (the probe's) clears that history.

use super::Backends;
use crate::cluster::canary::{probe, socks_addr};
use crate::cluster::node::ClusterStatus;
use crate::cluster::publisher::ViewCache;
use rustbalance_hs::descriptor::{parse_descriptor, parse_descriptor_as_client};
use rustbalance_hs::OnionAddress;
use rustbalance_tor::control::{ControlClient, Event};
use rustbalance_tor::{TorPhase, TorSupervisor};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

/// What the backend task needs.
pub struct BackendCtx {
    /// This node's tor.
    pub tor: Arc<TorSupervisor>,
    /// The shared state (the publisher reads the listed backends from it).
    pub state: Arc<Mutex<Backends>>,
    /// The node's shared network view cache.
    pub views: ViewCache,
    /// A TestingTorNetwork (the lab).
    pub testing: bool,
    /// The port the backends serve (the master's virtual port).
    pub port: u16,
    /// `/status` (`cluster.backends`).
    pub status: Arc<Mutex<ClusterStatus>>,
    /// Client keys of restricted backends: their descriptors are decrypted as that client.
    pub keys: crate::backend_auth::BackendKeys,
}

/// A fetch waiting for tor's answer.
struct Pending {
    address: OnionAddress,
    deadline: Instant,
    reason: Option<String>,
}

/// One control connection and its events, for one tor process.
struct Conn {
    pid: u32,
    ctl: ControlClient,
    events: UnboundedReceiver<Event>,
}

async fn connect(tor: &TorSupervisor, old: &mut Option<Conn>) -> Option<()> {
    let st = tor.status();
    let (Some(pid), TorPhase::Running) = (st.pid, st.phase) else {
        *old = None;
        return None;
    };
    if old.as_ref().map(|c| c.pid) == Some(pid) {
        return Some(());
    }
    let ctl = tor.control().await.ok()?;
    let events = ctl.take_events()?;
    if let Err(e) = ctl.setevents(&["HS_DESC", "HS_DESC_CONTENT"]).await {
        tracing::warn!("backends: cannot follow HS_DESC events: {e}; trying again");
        return None;
    }
    *old = Some(Conn { pid, ctl, events });
    Some(())
}

fn lock(state: &Mutex<Backends>) -> std::sync::MutexGuard<'_, Backends> {
    // A panic while holding it would have stopped the node (supervised task).
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs until aborted.
pub async fn backend_task(c: BackendCtx) {
    let mut conn: Option<Conn> = None;
    let mut valid_after = String::new();
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    let mut probes: JoinSet<(OnionAddress, bool)> = JoinSet::new();
    let mut probing: Vec<OnionAddress> = Vec::new();
    let mut listed_before: Vec<String> = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(250));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                if connect(&c.tor, &mut conn).await.is_some() {
                    if let Some(cn) = conn.as_mut() {
                        c.fetch_round(cn, &mut valid_after, &mut pending).await;
                    }
                    c.start_probes(&mut probes, &mut probing).await;
                }
                c.show(&mut listed_before);
            }
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                let Ok((a, ok)) = done else { continue };
                probing.retain(|p| *p != a);
                if let Some(v) = lock(&c.state).probed(&a, ok, Instant::now()) {
                    tracing::info!(backend = %a, verdict = v.as_str(), "backend probe through Tor");
                }
            }
        }
    }
}

impl BackendCtx {
    /// Notice a new consensus, start the due fetches, read tor's answers.
    async fn fetch_round(
        &self,
        cn: &mut Conn,
        valid_after: &mut String,
        pending: &mut BTreeMap<String, Pending>,
    ) {
        let Ok(view) = self.views.get(&cn.ctl, self.testing).await else {
            return;
        };
        let va = cn
            .ctl
            .getinfo("consensus/valid-after")
            .await
            .unwrap_or_default();
        if !va.is_empty() && va != *valid_after {
            *valid_after = va;
            lock(&self.state).new_consensus();
        }
        let now = Instant::now();
        let (due, wait) = {
            let mut s = lock(&self.state);
            (s.take_due(now), s.timers().fetch_wait)
        };
        for a in due {
            let key = a.without_suffix();
            if let Err(e) = cn.ctl.hsfetch(&key, &[] as &[&str]).await {
                lock(&self.state).failed(&a, format!("HSFETCH refused: {e}"), now);
                continue;
            }
            pending.insert(
                key,
                Pending {
                    address: a,
                    deadline: now + wait,
                    reason: None,
                },
            );
        }
        while let Ok(ev) = cn.events.try_recv() {
            self.answer(&ev, &view.time, pending);
        }
        let now = Instant::now();
        let late: Vec<String> = pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in late {
            if let Some(p) = pending.remove(&k) {
                let why = p.reason.map_or("no answer from tor".into(), |r| {
                    format!("HS_DESC FAILED {r}")
                });
                lock(&self.state).failed(&p.address, why, now);
            }
        }
    }

    /// One event: a descriptor (or an empty answer) for a pending fetch.
    fn answer(
        &self,
        ev: &Event,
        time: &rustbalance_hs::TimeParams,
        pending: &mut BTreeMap<String, Pending>,
    ) {
        let now = Instant::now();
        if let Some(h) = ev.hs_desc() {
            if h.action != "FAILED" {
                return;
            }
            let reason = h.reason.unwrap_or_else(|| "UNKNOWN".into());
            // QUERY_NO_HSDIR / QUERY_RATE_LIMITED: no HSDir was asked, no content follows.
            if reason.starts_with("QUERY_NO") || reason == "QUERY_RATE_LIMITED" {
                if let Some(p) = pending.remove(&h.address) {
                    lock(&self.state).failed(&p.address, format!("HS_DESC FAILED {reason}"), now);
                }
            } else if let Some(p) = pending.get_mut(&h.address) {
                p.reason = Some(reason);
            }
            return;
        }
        let Some(content) = ev.hs_desc_content() else {
            return;
        };
        let Some(p) = pending.remove(&content.address) else {
            return;
        };
        let mut s = lock(&self.state);
        // A fetch that found nothing (404) comes as an empty block, or one of white space.
        if content.descriptor.trim().is_empty() {
            let r = p.reason.unwrap_or_else(|| "NOT_FOUND".into());
            s.failed(
                &p.address,
                format!("the HSDir had no descriptor ({r})"),
                now,
            );
            return;
        }
        let now_wall = SystemTime::now();
        let parsed = match self.keys.get(&p.address) {
            Some(k) => {
                parse_descriptor_as_client(&content.descriptor, &p.address, time, now_wall, k)
            }
            None => parse_descriptor(&content.descriptor, &p.address, time, now_wall),
        };
        match parsed {
            Ok(d) => s.fetched(&p.address, &d, now, SystemTime::now()),
            Err(e) => {
                // A restricted backend (its tor has authorized_clients) without our key.
                let hint = match (
                    self.keys.contains_key(&p.address),
                    e.to_string().to_lowercase(),
                ) {
                    (false, t) if t.contains("decrypt") || t.contains("auth") => {
                        " (restricted discovery? give this node the backend's client key: \
                         cluster.backends_client_auth_dir)"
                    }
                    _ => "",
                };
                // What tor handed over (a public descriptor, or whatever came instead).
                let start: String = content.descriptor.chars().take(40).collect();
                tracing::warn!(
                    backend = %p.address,
                    starts = %start.escape_debug(),
                    size = content.descriptor.len(),
                    "backend descriptor refused: {e}{hint}"
                );
                s.failed(&p.address, format!("bad descriptor: {e}{hint}"), now);
            }
        }
    }

    /// Probe the backends due, through this node's tor's SOCKS port.
    async fn start_probes(
        &self,
        probes: &mut JoinSet<(OnionAddress, bool)>,
        probing: &mut Vec<OnionAddress>,
    ) {
        let (due, timeout) = {
            let s = lock(&self.state);
            (s.probes_due(Instant::now()), s.timers().probe.timeout)
        };
        let due: Vec<_> = due.into_iter().filter(|a| !probing.contains(a)).collect();
        if due.is_empty() {
            return;
        }
        let Some(socks) = socks_addr(&self.tor).await else {
            return;
        };
        for a in due {
            probing.push(a);
            let port = self.port;
            probes.spawn(async move {
                let r = probe(socks, &a.to_string(), port, timeout).await;
                if let Err(e) = &r {
                    tracing::debug!(backend = %a, error = %e, "backend probe failed");
                }
                (a, r.is_ok())
            });
        }
    }

    /// `/status` and the log lines of backends entering or leaving the candidates.
    fn show(&self, listed_before: &mut Vec<String>) {
        let rows = lock(&self.state).status(Instant::now(), SystemTime::now());
        for r in &rows {
            let was = listed_before.contains(&r.name);
            if r.listed && !was {
                tracing::info!(backend = %r.name, intro_points = r.intro_points, "backend listed");
            } else if !r.listed && was {
                tracing::warn!(
                    backend = %r.name,
                    "backend leaves the descriptor: {}; check that backend's tor \
                     (`rustbalance status` shows the last fetch error)",
                    r.not_listed_because.as_deref().unwrap_or("?")
                );
            }
        }
        *listed_before = rows
            .iter()
            .filter(|r| r.listed)
            .map(|r| r.name.clone())
            .collect();
        if let Ok(mut s) = self.status.lock() {
            s.backends = rows;
        }
    }
}
