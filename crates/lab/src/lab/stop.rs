//! Stopping a lab: [`Lab::stop`], [`Lab::stop_and_verify`] and the
//! [`StopOnDrop`] guard.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustbalance_tor::process::stop_all;

use super::{Lab, StopReport};
use crate::err::{Error, Result};
use crate::state::{ProcessRecord, Role};

/// How long a program (not a tor) gets between SIGTERM and SIGKILL.
pub(crate) const PROGRAM_GRACE: Duration = Duration::from_secs(3);

impl Lab {
    /// Stops every process of the lab (core and extra) by its recorded pid:
    /// SIGTERM to all, up to 10 s grace, then SIGKILL. In a namespaced lab,
    /// then stops whatever still runs in its namespaces (e.g. tors a node
    /// started itself), closes the portal and deletes every namespace (and
    /// with them the bridge and veths). Blocks the calling thread. Stopping
    /// a stopped lab does nothing.
    pub fn stop(&self) -> Result<StopReport> {
        let records = self.layout.records()?;
        let alive: Vec<&ProcessRecord> = records.iter().filter(|r| r.id.is_alive()).collect();
        // SIGTERM everything at once; programs (Onionbalance hangs after
        // SIGTERM) get a short grace, tors (ShutdownWaitLength 0) a long one.
        for r in &alive {
            r.id.terminate()?;
        }
        let (programs, tors): (Vec<_>, Vec<_>) =
            alive.iter().partition(|r| r.role == Role::Program);
        let ids = |v: &[&&ProcessRecord]| v.iter().map(|r| r.id).collect::<Vec<_>>();
        stop_all(&ids(&programs), PROGRAM_GRACE)?;
        stop_all(&ids(&tors), Duration::from_secs(10))?;
        self.teardown_netns()?;
        Ok(StopReport {
            stopped: alive.iter().map(|r| r.name.clone()).collect(),
        })
    }

    /// [`Self::stop`], then checks that nothing accepts connections on any
    /// address the lab's processes listened on, and that none of the lab's
    /// network namespaces is left.
    pub async fn stop_and_verify(&self) -> Result<StopReport> {
        let lab = self.clone();
        let report = tokio::task::spawn_blocking(move || lab.stop())
            .await
            .map_err(|e| Error::Options(format!("stop task failed: {e}")))??;
        if let Some(ns) = self.state.placement.netns() {
            let names = crate::netns::list(ns);
            if !names.is_empty() {
                return Err(Error::NetnsLeft { names });
            }
        }
        let addrs = self.listen_addrs()?;
        // A socket can outlive its process by a moment (the kernel closes it on exit): look
        // again for a few seconds before calling it a survivor.
        let t0 = Instant::now();
        let mut left = crate::net::still_listening(&addrs).await;
        while !left.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            left = crate::net::still_listening(&left).await;
        }
        if !left.is_empty() {
            // Who listened there, and whether that process still runs.
            let owners = self
                .layout
                .records()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.listens.iter().any(|a| left.contains(&self.reach(*a))))
                .map(|r| {
                    format!(
                        "{} (pid {}, {})",
                        r.name,
                        r.id.pid,
                        if r.id.is_alive() {
                            "still running"
                        } else {
                            "exited"
                        }
                    )
                })
                .collect();
            return Err(Error::StillListening {
                dir: self.layout.dir.clone(),
                addrs: left,
                owners,
            });
        }
        Ok(report)
    }

    /// Every address any process of the lab listens (or listened) on, as
    /// seen from the host (the portal's addresses in a namespaced lab).
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>> {
        let mut addrs: Vec<SocketAddr> =
            self.state.nodes.iter().flat_map(|n| n.listens()).collect();
        for r in self.layout.records()? {
            addrs.extend(r.listens);
        }
        for a in &mut addrs {
            *a = self.reach(*a);
        }
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }
}

/// Stops a lab when dropped, so that no tor survives a failed test.
#[derive(Debug)]
pub struct StopOnDrop(Lab);

impl Lab {
    /// A guard that stops this lab when dropped (blocking, up to ~15 s).
    pub fn stop_on_drop(&self) -> StopOnDrop {
        StopOnDrop(self.clone())
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            tracing::warn!(dir = %self.0.dir().display(), error = %e, "stopping the lab failed; run `rustbalance lab down --dir DIR` and check `rustbalance lab status`");
        }
    }
}
