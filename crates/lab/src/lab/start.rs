//! The start sequence of a lab: launching the core tors, then the bounded
//! waits for a complete consensus, bootstrapped relays and a bootstrapped
//! client (see the parent module for the stages).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustbalance_tor::process::TorLaunch;
use rustbalance_tor::{ControlClient, TorProcess};

use super::{Lab, Phase, Progress, StartReport};
use crate::err::{Error, Result};
use crate::net::probe_free;
use crate::state::{write_json, NodeSpec, ProcessRecord, Role};

impl Lab {
    fn launch(&self, node: &NodeSpec) -> TorLaunch {
        let mut l = TorLaunch::new(
            &format!("{} {}", node.role, node.name),
            self.layout.torrc(&node.name),
            self.layout.pid_file(&node.name),
            self.layout.log_file(&node.name),
        );
        l.tor_binary = self.state.tor_binary.clone();
        l.command_prefix = self.state.placement.command_prefix();
        l
    }

    fn record(&self, node: &NodeSpec, p: &TorProcess) -> Result<()> {
        write_json(
            &self.layout.record(&node.name),
            &ProcessRecord {
                name: node.name.clone(),
                role: node.role,
                id: p.id(),
                ip: Some(node.ip),
                listens: node.listens(),
                control: Some(node.control()),
                socks: node
                    .socks_port
                    .map(|port| SocketAddr::from((node.ip, port))),
                log_file: self.layout.log_file(&node.name),
                netns: None,
            },
        )
    }

    /// Launches the given core nodes concurrently and records them.
    async fn launch_nodes(&self, nodes: &[&NodeSpec]) -> Result<Vec<TorProcess>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, n) in nodes.iter().enumerate() {
            let l = self.launch(n);
            set.spawn(async move { (i, TorProcess::start(&l).await) });
        }
        let mut started = Vec::new();
        let mut first_err = None;
        while let Some(res) = set.join_next().await {
            match res {
                Ok((i, Ok(p))) => {
                    self.record(nodes[i], &p)?;
                    started.push(p);
                }
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(Error::from(e));
                }
                Err(e) => {
                    first_err.get_or_insert(Error::Options(format!("launch task failed: {e}")));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    /// Starts the whole lab and waits until it is usable, reporting each
    /// milestone to `progress`. Refuses a lab that already runs. On failure,
    /// every process started so far is stopped again.
    pub async fn start(&self, mut progress: impl FnMut(&Progress)) -> Result<StartReport> {
        if self.is_running()? {
            return Err(Error::AlreadyRunning {
                dir: self.layout.dir.clone(),
            });
        }
        let result = match self.state.placement.netns() {
            None => {
                let addrs: Vec<SocketAddr> =
                    self.state.nodes.iter().flat_map(|n| n.listens()).collect();
                probe_free(&addrs, self.state.block)?;
                self.start_inner(&mut progress).await
            }
            Some(ns) => {
                // Leftovers of a crashed run go first; the portal's binds
                // then double as the probe for address collisions.
                self.teardown_netns()?;
                let hosts: Vec<u8> = self.state.nodes.iter().map(|n| n.ip.octets()[3]).collect();
                crate::netns::create_lab_net(ns, self.state.block, &hosts)?;
                match self.ensure_portal() {
                    Ok(()) => self.start_inner(&mut progress).await,
                    Err(e) => Err(e),
                }
            }
        };
        if result.is_err() {
            // Leave nothing behind; the start error is what matters.
            let _ = self.stop();
        }
        result
    }

    async fn start_inner(&self, progress: &mut dyn FnMut(&Progress)) -> Result<StartReport> {
        let t0 = Instant::now();
        let mut phases = Vec::new();
        let mut mark = |phase: Phase, detail: String| {
            let p = Progress {
                phase,
                elapsed: t0.elapsed(),
                detail,
            };
            progress(&p);
            phases.push(p);
        };
        let network: Vec<&NodeSpec> = self
            .state
            .nodes
            .iter()
            .filter(|n| n.role != Role::Client)
            .collect();
        let authorities: Vec<String> = self
            .state
            .authorities
            .iter()
            .map(|a| a.fingerprint.clone())
            .collect();
        crate::bandwidth::write(&self.layout.bandwidth_file(), &authorities)?;
        self.launch_nodes(&network).await?;
        self.equal_relay_weights(&authorities).await?;
        mark(
            Phase::NetworkLaunched,
            format!("{} tor processes", network.len()),
        );
        let detail = self.wait_consensus().await?;
        mark(Phase::ConsensusComplete, detail);
        let detail = self.wait_relays_bootstrapped().await?;
        mark(Phase::RelaysBootstrapped, detail);
        self.launch_nodes(&[self.client()]).await?;
        mark(Phase::ClientLaunched, self.socks_addr().to_string());
        self.ensure_portal()?;
        self.wait_bootstrapped(self.client()).await?;
        mark(Phase::Usable, format!("SOCKS {}", self.socks_addr()));
        Ok(StartReport {
            phases,
            total: t0.elapsed(),
        })
    }

    /// Lists every relay in the authorities' bandwidth file, once the relays have
    /// written their fingerprints ([`crate::bandwidth`]).
    async fn equal_relay_weights(&self, authorities: &[String]) -> Result<()> {
        let dirs: Vec<std::path::PathBuf> = self
            .state
            .nodes
            .iter()
            .filter(|n| matches!(n.role, Role::Guard | Role::Exit))
            .map(|n| self.layout.node(&n.name))
            .collect();
        let relays = crate::bandwidth::fingerprints(&dirs, self.timeout).await?;
        let mut all = authorities.to_vec();
        all.extend(relays);
        crate::bandwidth::write(&self.layout.bandwidth_file(), &all)
    }

    /// Restarts the core relay or authority `name`, as a relay operator's restart would:
    /// SIGTERM by its recorded pid, wait until it is gone, then start it again with the same
    /// torrc and data directory. Its keys and state stay, so it keeps its fingerprint (and
    /// the authorities its flags); what it held in memory, such as the onion-service
    /// descriptors of an HSDir, is gone. Waits until it has bootstrapped again; returns
    /// its new pid.
    pub async fn restart_node(&self, name: &str) -> Result<u32> {
        let node = self
            .state
            .nodes
            .iter()
            .find(|n| n.name == name && n.role != Role::Client)
            .ok_or_else(|| Error::Name {
                name: name.to_string(),
                detail: "no such lab relay or authority".into(),
            })?;
        let rec: ProcessRecord = crate::state::read_json(&self.layout.record(name))?;
        let id = rec.id;
        tokio::task::spawn_blocking(move || {
            rustbalance_tor::process::stop_all(&[id], Duration::from_secs(10))
        })
        .await
        .map_err(|e| Error::Options(format!("stop task failed: {e}")))??;
        let started = self.launch_nodes(&[node]).await?;
        let pid = started.first().map(|p| p.id().pid).unwrap_or_default();
        self.wait_bootstrapped(node).await?;
        Ok(pid)
    }

    /// Waits until a (re)attached lab is usable: every core process alive,
    /// the consensus complete and the client bootstrapped.
    pub async fn wait_usable(&self, mut progress: impl FnMut(&Progress)) -> Result<()> {
        let t0 = Instant::now();
        if !self.is_running()? {
            return Err(Error::NotRunning {
                dir: self.layout.dir.clone(),
            });
        }
        self.ensure_portal()?;
        let detail = self.wait_consensus().await?;
        progress(&Progress {
            phase: Phase::ConsensusComplete,
            elapsed: t0.elapsed(),
            detail,
        });
        self.wait_bootstrapped(self.client()).await?;
        progress(&Progress {
            phase: Phase::Usable,
            elapsed: t0.elapsed(),
            detail: format!("SOCKS {}", self.socks_addr()),
        });
        Ok(())
    }

    /// `Err(Died)` when a started core process no longer runs.
    fn check_core_alive(&self) -> Result<()> {
        for r in self.layout.records()?.iter().filter(|r| r.role.is_core()) {
            TorProcess::attach(&format!("{} {}", r.role, r.name), r.id, r.log_file.clone())
                .check_alive()?;
        }
        Ok(())
    }

    /// Polls `check` every 500 ms until it returns `Ok`, failing on timeout
    /// (with the last state) or when a core process dies.
    async fn poll<T>(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> std::result::Result<T, String>,
    ) -> Result<T> {
        let t0 = Instant::now();
        let mut last;
        loop {
            self.check_core_alive()?;
            match check().await {
                Ok(v) => return Ok(v),
                Err(state) => last = state,
            }
            if t0.elapsed() >= self.timeout {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    waited: self.timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until the first authority's consensus lists every relay and
    /// authority as Running + HSDir, guards with Guard, exits with Exit.
    async fn wait_consensus(&self) -> Result<String> {
        let auth = self
            .state
            .nodes
            .iter()
            .find(|n| n.role == Role::Authority)
            .ok_or_else(|| Error::Options("the lab has no authority".into()))?;
        let addr = self.reach(auth.control());
        let expected: Vec<&NodeSpec> = self
            .state
            .nodes
            .iter()
            .filter(|n| n.role != Role::Client)
            .collect();
        self.poll(
            "a consensus listing every relay with its flags",
            async || {
                let c = ControlClient::connect_authenticated(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                let ns = c.getinfo("ns/all").await.map_err(|e| e.to_string())?;
                consensus_complete(&ns, &expected).map_err(|gap| gap.to_string())
            },
        )
        .await
    }

    /// Waits until every relay (not authority) reports bootstrap 100%.
    async fn wait_relays_bootstrapped(&self) -> Result<String> {
        let relays: Vec<&NodeSpec> = self
            .state
            .nodes
            .iter()
            .filter(|n| matches!(n.role, Role::Guard | Role::Exit))
            .collect();
        // Relays still behind when the consensus is complete are usually
        // waiting out a download backoff: nudge them at once, then every few s.
        let mut last_nudge: Option<Instant> = None;
        self.poll("every relay to report bootstrap 100%", async || {
            let nudge = last_nudge.is_none_or(|t| t.elapsed() >= NUDGE_EVERY);
            if nudge {
                last_nudge = Some(Instant::now());
            }
            let mut behind = Vec::new();
            for n in &relays {
                let p = match ControlClient::connect_authenticated(self.reach(n.control())).await {
                    Ok(c) => {
                        let p = c.bootstrap_progress().await.unwrap_or(0);
                        if p < 100 && nudge {
                            nudge_downloads(&c).await;
                        }
                        p
                    }
                    Err(_) => 0,
                };
                if p < 100 {
                    behind.push(format!("{} at {p}%", n.name));
                }
            }
            if behind.is_empty() {
                Ok(format!("{} relays at 100%", relays.len()))
            } else {
                Err(behind.join(", "))
            }
        })
        .await
    }

    async fn wait_bootstrapped(&self, node: &NodeSpec) -> Result<()> {
        wait_bootstrapped_at(self.reach(node.control()), &node.name, self.timeout, || {
            self.check_core_alive()
        })
        .await
    }
}

/// Waits until the tor at `addr` reports bootstrap 100%.
pub(crate) async fn wait_bootstrapped_at(
    addr: SocketAddr,
    name: &str,
    timeout: Duration,
    alive: impl Fn() -> Result<()>,
) -> Result<()> {
    let t0 = Instant::now();
    let mut last_nudge = Instant::now();
    let mut last;
    loop {
        alive()?;
        match ControlClient::connect_authenticated(addr).await {
            Ok(c) => match c.bootstrap_progress().await {
                Ok(100) => return Ok(()),
                Ok(p) => {
                    last = format!("{p}%");
                    if last_nudge.elapsed() >= NUDGE_EVERY {
                        last_nudge = Instant::now();
                        nudge_downloads(&c).await;
                    }
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        if t0.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: format!("{name} to bootstrap 100%"),
                waited: timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How often a tor that is still bootstrapping gets nudged.
const NUDGE_EVERY: Duration = Duration::from_secs(4);

/// Makes a bootstrapping tor retry its directory downloads now.
///
/// In a fresh network the first consensus fetches all fail (there is none
/// yet), and tor's exponential download backoff can then leave a relay idle
/// for 30 s or more after the consensus exists. `SIGNAL RELOAD` (SIGHUP)
/// resets tor's download failure counters and retries at once; the torrc
/// it re-reads is unchanged.
async fn nudge_downloads(c: &ControlClient) {
    if let Err(e) = c.signal("RELOAD").await {
        tracing::debug!(addr = %c.addr(), error = %e, "nudging a bootstrapping tor failed");
    }
}

/// Why a consensus does not yet list every expected router with its flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ConsensusGap {
    /// The tor has no consensus at all.
    #[error("no consensus yet")]
    NoConsensus,
    /// Some routers are not listed or lack flags.
    #[error("{listed} routers listed; {}", .missing.join(", "))]
    Incomplete {
        /// How many routers the consensus lists.
        listed: usize,
        /// What is missing ("r2 not listed", "r3 lacks Exit", ...).
        missing: Vec<String>,
    },
}

/// Checks a `GETINFO ns/all` text: `Ok(summary)` when complete, else
/// `Err(what is missing)`.
fn consensus_complete(
    ns: &str,
    expected: &[&NodeSpec],
) -> std::result::Result<String, ConsensusGap> {
    let mut flags: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    let mut current: Option<&str> = None;
    for line in ns.lines() {
        if let Some(r) = line.strip_prefix("r ") {
            current = r.split(' ').next();
        } else if let (Some(s), Some(nick)) = (line.strip_prefix("s "), current) {
            flags.insert(nick, s.split(' ').collect());
        }
    }
    if flags.is_empty() {
        return Err(ConsensusGap::NoConsensus);
    }
    let mut missing = Vec::new();
    for n in expected {
        let Some(f) = flags.get(n.name.as_str()) else {
            missing.push(format!("{} not listed", n.name));
            continue;
        };
        let mut need = vec!["Running", "Valid", "HSDir", "Stable", "Fast"];
        match n.role {
            Role::Guard => need.push("Guard"),
            Role::Exit => need.push("Exit"),
            _ => {}
        }
        for flag in need {
            if !f.contains(&flag) {
                missing.push(format!("{} lacks {flag}", n.name));
            }
        }
    }
    if missing.is_empty() {
        Ok(format!(
            "{} routers listed, all with their flags",
            flags.len()
        ))
    } else {
        Err(ConsensusGap::Incomplete {
            listed: flags.len(),
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::plan::plan_nodes;
    use crate::lab::LabOptions;
    use crate::net::{AddrBlock, Placement};

    #[test]
    fn consensus_check_reports_missing_flags() {
        let nodes = plan_nodes(
            AddrBlock { b: 100, c: 7 },
            &Placement::HostLoopback,
            &LabOptions {
                relays: 2,
                authorities: 1,
                ..Default::default()
            },
        );
        let expected: Vec<&NodeSpec> = nodes.iter().filter(|n| n.role != Role::Client).collect();
        let ns = "r a1 x\ns Authority Fast HSDir Running Stable V2Dir Valid\nr r1 y\ns Fast Guard HSDir Running Stable Valid\nr r2 z\ns Fast HSDir Running Stable Valid\n";
        let err = consensus_complete(ns, &expected).unwrap_err().to_string();
        assert!(err.contains("r2 lacks Exit"), "{err}");
        assert_eq!(err, "3 routers listed; r2 lacks Exit");
        let ns = ns.replace("s Fast HSDir", "s Exit Fast HSDir");
        assert_eq!(
            consensus_complete(&ns, &expected).unwrap(),
            "3 routers listed, all with their flags"
        );
        let gap = consensus_complete("", &expected).unwrap_err();
        assert_eq!(gap, ConsensusGap::NoConsensus);
        assert_eq!(gap.to_string(), "no consensus yet");
    }
}
