//! The tor watchdog: starts tor as our child, follows its bootstrap over
//! the control port, and restarts it with exponential backoff whenever it
//! dies. tor is told to exit if we die (`__OwningControllerProcess`).
//!
//! ```text
//!   Starting ──control port up──▶ Bootstrapping ──100 %──▶ Running
//!      ▲                                                     │ exit
//!      └──────────── backoff (1 s, 2 s, … 30 s) ◀── Restarting
//!   any state ──stop()──▶ Stopped (SIGTERM, then SIGKILL after the grace)
//! ```

use crate::err::{Error, Result};
use rustbalance_tor::control::ControlClient;
use rustbalance_tor::process::{log_tail, ProcessId};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to run tor.
#[derive(Debug, Clone)]
pub struct TorSpec {
    /// The tor binary.
    pub binary: PathBuf,
    /// The rendered torrc (must set `ControlPortWriteToFile` to `control_port_file`).
    pub torrc: PathBuf,
    /// Where tor writes `PORT=ADDR:PORT` for its control port.
    pub control_port_file: PathBuf,
    /// tor's notice log (its tail goes into status when tor dies).
    pub log_file: PathBuf,
    /// stdout/stderr of the tor process.
    pub output_file: PathBuf,
    /// Pid file we maintain for the tor child.
    pub pid_file: PathBuf,
    /// First restart delay.
    pub backoff_min: Duration,
    /// Largest restart delay.
    pub backoff_max: Duration,
}

/// Where tor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TorPhase {
    /// Launched, control port not up yet.
    Starting,
    /// Control port up, bootstrapping.
    Bootstrapping,
    /// Bootstrapped 100 %.
    Running,
    /// Died; waiting before the next start.
    Restarting,
    /// Stopped on request.
    Stopped,
}

/// What the watchdog knows.
#[derive(Debug, Clone, Serialize)]
pub struct TorStatus {
    /// Phase.
    pub phase: TorPhase,
    /// Pid of the running tor.
    pub pid: Option<u32>,
    /// Bootstrap percentage.
    pub bootstrap: u8,
    /// Restarts so far.
    pub restarts: u64,
    /// Control port of the running tor.
    pub control: Option<SocketAddr>,
    /// How the last tor exited, with the tail of its log.
    pub last_exit: Option<String>,
}

/// A supervised tor.
pub struct TorSupervisor {
    status: watch::Receiver<TorStatus>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl TorSupervisor {
    /// Start supervising (launches tor immediately).
    pub fn start(spec: TorSpec) -> TorSupervisor {
        let (tx, rx) = watch::channel(TorStatus {
            phase: TorPhase::Starting,
            pid: None,
            bootstrap: 0,
            restarts: 0,
            control: None,
            last_exit: None,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(spec, tx, stop_rx));
        TorSupervisor {
            status: rx,
            stop: stop_tx,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Current status.
    pub fn status(&self) -> TorStatus {
        self.status.borrow().clone()
    }

    /// Status updates.
    pub fn subscribe(&self) -> watch::Receiver<TorStatus> {
        self.status.clone()
    }

    /// Wait until tor runs bootstrapped (or `timeout`), calling `progress`
    /// on each change.
    pub async fn wait_running(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(&TorStatus),
    ) -> Result<TorStatus> {
        let mut rx = self.status.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = rx.borrow_and_update().clone();
            progress(&st);
            if st.phase == TorPhase::Running {
                return Ok(st);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Other("tor supervisor ended".into())),
                Err(_) => {
                    return Err(Error::Other(format!(
                        "tor did not bootstrap within {timeout:?} (at {} %, phase {:?}){}",
                        st.bootstrap,
                        st.phase,
                        st.last_exit
                            .map(|e| format!("; last exit: {e}"))
                            .unwrap_or_default()
                    )))
                }
            }
        }
    }

    /// A new authenticated control connection to the running tor.
    pub async fn control(&self) -> Result<ControlClient> {
        let addr = self
            .status()
            .control
            .ok_or_else(|| Error::Other("tor's control port is not up".into()))?;
        Ok(ControlClient::connect_authenticated(addr).await?)
    }

    /// Stop tor (SIGTERM, SIGKILL after 10 s) and the watchdog; returns
    /// once tor is gone. Later calls return at once.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

async fn run(spec: TorSpec, tx: watch::Sender<TorStatus>, mut stop: watch::Receiver<bool>) {
    let mut attempt: u32 = 0;
    loop {
        let _ = std::fs::remove_file(&spec.control_port_file);
        let child = std::fs::File::create(&spec.output_file)
            .and_then(|out| Ok((out.try_clone()?, out)))
            .and_then(|(out, err)| {
                // tor never gets the node's CAP_NET_ADMIN (ambient under systemd).
                rustbalance_tor::process::spawn_without_ambient_caps(
                    tokio::process::Command::new(&spec.binary)
                        .arg("-f")
                        .arg(&spec.torrc)
                        .stdin(Stdio::null())
                        .stdout(out)
                        .stderr(err)
                        .process_group(0)
                        .kill_on_drop(true),
                )
            });
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tx.send_modify(|s| {
                    s.phase = TorPhase::Restarting;
                    s.last_exit = Some(format!("cannot start {}: {e}", spec.binary.display()));
                });
                if wait_or_stop(backoff(&spec, attempt), &mut stop).await {
                    break;
                }
                attempt += 1;
                continue;
            }
        };
        let pid = child.id();
        if let Some(p) = pid {
            let _ = std::fs::write(&spec.pid_file, format!("{p}\n"));
        }
        tx.send_modify(|s| {
            s.phase = TorPhase::Starting;
            s.pid = pid;
            s.bootstrap = 0;
            s.control = None;
        });
        let started = Instant::now();
        let monitor = follow_bootstrap(&spec, &tx);
        tokio::pin!(monitor);
        let mut monitoring = true;
        let exit = loop {
            tokio::select! {
                st = child.wait() => break Some(st),
                _ = stop.changed() => break None,
                _ = &mut monitor, if monitoring => monitoring = false,
            }
        };
        match exit {
            None => {
                if let Some(id) = pid.and_then(ProcessId::of_pid) {
                    let _ =
                        tokio::task::spawn_blocking(move || id.stop(Duration::from_secs(10))).await;
                }
                let _ = child.wait().await;
                let _ = std::fs::remove_file(&spec.pid_file);
                tx.send_modify(|s| {
                    s.phase = TorPhase::Stopped;
                    s.pid = None;
                    s.control = None;
                });
                return;
            }
            Some(status) => {
                let _ = std::fs::remove_file(&spec.pid_file);
                if started.elapsed() > Duration::from_secs(60) {
                    attempt = 0;
                }
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                let mut tail = log_tail(&spec.output_file, 5);
                let log = log_tail(&spec.log_file, 5);
                if !log.is_empty() {
                    tail = log;
                }
                let delay = backoff(&spec, attempt);
                tracing::warn!("tor (pid {pid:?}) died: {how}; restarting in {delay:?}");
                tx.send_modify(|s| {
                    s.phase = TorPhase::Restarting;
                    s.pid = None;
                    s.control = None;
                    s.restarts += 1;
                    s.last_exit = Some(format!("{how}; log tail: {}", tail.replace('\n', " | ")));
                });
                if wait_or_stop(delay, &mut stop).await {
                    break;
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
    tx.send_modify(|s| s.phase = TorPhase::Stopped);
}

fn backoff(spec: &TorSpec, attempt: u32) -> Duration {
    spec.backoff_min
        .saturating_mul(1u32 << attempt.min(16))
        .min(spec.backoff_max)
}

/// Sleep `d`; true if a stop was requested meanwhile.
async fn wait_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Wait for the control port, then follow bootstrap to 100 %.
async fn follow_bootstrap(spec: &TorSpec, tx: &watch::Sender<TorStatus>) {
    let addr = loop {
        if let Ok(s) = tokio::fs::read_to_string(&spec.control_port_file).await {
            if let Some(a) = s.lines().find_map(|l| l.strip_prefix("PORT=")) {
                if let Ok(a) = a.trim().parse::<SocketAddr>() {
                    break a;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ctl = loop {
        match ControlClient::connect_authenticated(addr).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    tx.send_modify(|s| {
        s.phase = TorPhase::Bootstrapping;
        s.control = Some(addr);
    });
    loop {
        if let Ok(p) = ctl.bootstrap_progress().await {
            tx.send_modify(|s| s.bootstrap = p);
            if p >= 100 {
                tx.send_modify(|s| s.phase = TorPhase::Running);
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
