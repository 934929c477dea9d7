//! The watchdog task behind [`super::TorSupervisor`]: one loop of *launch → follow until
//! exit or stop → wait the backoff*, each step a function of its own.

use super::{TorPhase, TorSpec, TorStatus};
use crate::control::ControlClient;
use crate::process::{log_tail, spawn_tor_child};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::watch;

/// A run of tor that lasted this long resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// How long a stopped tor gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How one launched tor ended.
enum Ended {
    /// `stop()` was called; tor is gone.
    Stopped,
    /// tor exited by itself; restart after `delay`.
    Died { delay: Duration },
}

/// The watchdog loop: launch tor, follow it, restart it with backoff, until stopped.
pub(super) async fn run(
    spec: TorSpec,
    tx: watch::Sender<TorStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    loop {
        let delay = match launch(&spec) {
            Err(e) => {
                tx.send_modify(|s| {
                    s.phase = TorPhase::Restarting;
                    s.last_exit = Some(format!("cannot start {}: {e}", spec.binary.display()));
                });
                let delay = backoff(&spec, attempt);
                attempt += 1;
                delay
            }
            Ok(child) => match follow(&spec, &tx, &mut stop, child, &mut attempt).await {
                Ended::Stopped => return,
                Ended::Died { delay } => {
                    attempt = attempt.saturating_add(1);
                    delay
                }
            },
        };
        if wait_or_stop(delay, &mut stop).await {
            break;
        }
    }
    tx.send_modify(|s| s.phase = TorPhase::Stopped);
}

/// Start `tor -f TORRC` (output to `spec.output_file`, own process group, a clean
/// environment and none of the node's ambient capabilities: tor never gets the node's
/// CAP_NET_ADMIN or `CREDENTIALS_DIRECTORY` under systemd).
fn launch(spec: &TorSpec) -> std::io::Result<Child> {
    let _ = std::fs::remove_file(&spec.control_port_file);
    let out = std::fs::File::create(&spec.output_file)?;
    let err = out.try_clone()?;
    spawn_tor_child(
        tokio::process::Command::new(&spec.binary)
            .arg("-f")
            .arg(&spec.torrc)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true),
    )
}

/// Follow one launched tor (pid file, bootstrap) until it exits or a stop is requested.
async fn follow(
    spec: &TorSpec,
    tx: &watch::Sender<TorStatus>,
    stop: &mut watch::Receiver<bool>,
    mut child: Child,
    attempt: &mut u32,
) -> Ended {
    // Before anything else: the previous process (if any) is already dead.
    let launched_at = std::time::SystemTime::now();
    let pid = child.id();
    if let Some(p) = pid {
        let _ = std::fs::write(&spec.pid_file, format!("{p}\n"));
    }
    tx.send_modify(|s| {
        s.phase = TorPhase::Starting;
        s.pid = pid;
        s.bootstrap = 0;
        s.control = None;
        s.launched_at = Some(launched_at);
    });
    let started = Instant::now();
    let monitor = follow_bootstrap(spec, tx);
    tokio::pin!(monitor);
    let mut monitoring = true;
    let exit = loop {
        tokio::select! {
            st = child.wait() => break Some(st),
            _ = stop.changed() => break None,
            _ = &mut monitor, if monitoring => monitoring = false,
        }
    };
    let Some(status) = exit else {
        stop_child(spec, tx, child, pid).await;
        return Ended::Stopped;
    };
    let _ = std::fs::remove_file(&spec.pid_file);
    if started.elapsed() > STABLE_RUN {
        *attempt = 0;
    }
    let how = match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    let delay = backoff(spec, *attempt);
    let tail = exit_tail(spec);
    tracing::warn!(
        "tor (pid {pid:?}) died: {how}; restarting in {delay:?}; its last log lines say why: \
         {}; if it keeps dying, run `rustbalance doctor --config FILE`",
        tail.replace('\n', " | ")
    );
    tx.send_modify(|s| {
        s.phase = TorPhase::Restarting;
        s.pid = None;
        s.control = None;
        s.restarts += 1;
        s.last_exit = Some(format!("{how}; log tail: {}", tail.replace('\n', " | ")));
    });
    Ended::Died { delay }
}

/// Stop a running tor on request: SIGTERM, SIGKILL after [`STOP_GRACE`].
///
/// tor is signalled through its pid without asking `/proc` first: it is our own child,
/// not yet reaped, so the pid cannot belong to anyone else. `/proc` may well hide it:
/// tor makes itself non-dumpable (`DisableDebuggerAttachment`, on by default), and
/// under the unit's `ProtectProc=invisible` a non-dumpable process is invisible even to
/// its parent of the same user.
async fn stop_child(
    spec: &TorSpec,
    tx: &watch::Sender<TorStatus>,
    mut child: Child,
    pid: Option<u32>,
) {
    let raw = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(p) = raw {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        // SIGKILL, then reap.
        let _ = child.kill().await;
    }
    let _ = std::fs::remove_file(&spec.pid_file);
    tx.send_modify(|s| {
        s.phase = TorPhase::Stopped;
        s.pid = None;
        s.control = None;
    });
}

/// The last lines tor wrote: its notice log, or its stdout/stderr when the log is empty.
fn exit_tail(spec: &TorSpec) -> String {
    let log = log_tail(&spec.log_file, 5);
    if log.is_empty() {
        log_tail(&spec.output_file, 5)
    } else {
        log
    }
}

/// Restart delay after `attempt` failed starts: doubling from `backoff_min` up to `backoff_max`.
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
        if let Some(a) = read_control_port_file(spec).await {
            break a;
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

/// The `PORT=ADDR:PORT` line tor wrote to `ControlPortWriteToFile`.
async fn read_control_port_file(spec: &TorSpec) -> Option<SocketAddr> {
    let s = tokio::fs::read_to_string(&spec.control_port_file)
        .await
        .ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("PORT="))
        .and_then(|a| a.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let spec = TorSpec {
            binary: "tor".into(),
            torrc: "torrc".into(),
            control_port_file: "cp".into(),
            log_file: "log".into(),
            output_file: "out".into(),
            pid_file: "pid".into(),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        };
        let secs: Vec<u64> = (0..7).map(|a| backoff(&spec, a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
    }
}
