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

use crate::control::ControlClient;
use crate::err::{Error, Result};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod watchdog;

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
    /// When the running (or last) tor process was launched. Anything a tor published
    /// before this moment was published by an earlier process.
    pub launched_at: Option<std::time::SystemTime>,
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
            launched_at: None,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(watchdog::run(spec, tx, stop_rx));
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
                Ok(Err(_)) => return Err(Error::SupervisorEnded),
                Err(_) => {
                    return Err(Error::BootstrapTimeout {
                        timeout,
                        percent: st.bootstrap,
                        phase: format!("{:?}", st.phase),
                        last_exit: st
                            .last_exit
                            .map(|e| format!("; last exit: {e}"))
                            .unwrap_or_default(),
                    })
                }
            }
        }
    }

    /// A new authenticated control connection to the running tor.
    pub async fn control(&self) -> Result<ControlClient> {
        let addr = self.status().control.ok_or(Error::ControlPortDown)?;
        ControlClient::connect_authenticated(addr).await
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
