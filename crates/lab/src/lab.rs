//! The lab itself: create, start (staged), reattach, stop, status.
//!
//! Start sequence (each step bounded by [`LabOptions::timeout`]):
//!
//! ```text
//! authorities + relays launched ─▶ consensus lists every relay with its flags
//!   ─▶ every relay bootstrapped 100% ─▶ client launched ─▶ client bootstrapped
//! ```
//!
//! Clients started before the consensus is complete only refetch it near its
//! valid-until time, which costs 20–40 s; hence the staging. Readiness is
//! read from control ports, never from logs. A tor that dies during any wait
//! fails the start with the tail of its log, and a failed start stops every
//! process it had started.

mod extra;
mod hosts;
mod status;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustbalance_tor::process::{stop_all, TorLaunch};
use rustbalance_tor::{ControlClient, TorProcess};

pub use extra::{LabProcess, LabTor};
pub use status::{LabStatus, ProcessStatus, StopReport};

use crate::err::{file_err, Error, Result};
use crate::keys::generate_authority;
use crate::net::{
    probe_free, AddrBlock, Placement, CLIENT_HOST, CONTROL_PORT, DIR_PORT, FIRST_AUTHORITY_HOST,
    FIRST_RELAY_HOST, MAX_AUTHORITIES, MAX_RELAYS, OR_PORT, SOCKS_PORT,
};
use crate::node::core_torrc;
use crate::state::{
    private_dir, read_json, write_json, LabState, Layout, NodeSpec, ProcessRecord, Role, FORMAT,
};

/// How a lab is built.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Number of relays (all HSDir): the first half guard/middle, the rest
    /// exits. Default 6.
    pub relays: usize,
    /// Number of directory authorities. Default 3.
    pub authorities: usize,
    /// The `127.B.C.0/24` block; default derived from the lab directory.
    pub block: Option<AddrBlock>,
    /// Where processes run. Default: host loopback;
    /// [`Placement::namespace()`] for node hosts ([`Lab::add_node_host`]).
    pub placement: Placement,
    /// The tor binary. Default `tor` from `$PATH`.
    pub tor_binary: PathBuf,
    /// Bound of each wait during start. Default 180 s.
    pub timeout: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            relays: 6,
            authorities: 3,
            block: None,
            placement: Placement::HostLoopback,
            tor_binary: PathBuf::from("tor"),
            timeout: Duration::from_secs(180),
        }
    }
}

/// A milestone of [`Lab::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Authorities and relays are running.
    NetworkLaunched,
    /// The consensus lists every relay with its flags.
    ConsensusComplete,
    /// Every relay reports bootstrap 100%.
    RelaysBootstrapped,
    /// The client is running.
    ClientLaunched,
    /// The client reports bootstrap 100%: the lab is usable.
    Usable,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::NetworkLaunched => "authorities and relays launched",
            Phase::ConsensusComplete => "consensus lists every relay with its flags",
            Phase::RelaysBootstrapped => "relays bootstrapped",
            Phase::ClientLaunched => "client launched",
            Phase::Usable => "client bootstrapped: lab usable",
        })
    }
}

/// A progress report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Progress {
    /// The milestone reached.
    pub phase: Phase,
    /// Time since the start began.
    pub elapsed: Duration,
    /// Details (e.g. consensus counts).
    pub detail: String,
}

/// Timings of a start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartReport {
    /// Every milestone in order.
    pub phases: Vec<Progress>,
    /// From the first launch to usable.
    pub total: Duration,
}

/// A private Tor network in one directory.
#[derive(Debug, Clone)]
pub struct Lab {
    layout: Layout,
    state: LabState,
    timeout: Duration,
}

impl Lab {
    /// Creates a lab in `dir` (created if missing): authority keys, torrcs,
    /// `lab.json`. Nothing is started. An existing stopped lab in `dir` is
    /// replaced; a running one is refused ([`Error::AlreadyRunning`]).
    pub async fn create(dir: impl AsRef<Path>, opts: LabOptions) -> Result<Lab> {
        check_options(&opts)?;
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| file_err("create directory", dir, e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| file_err("resolve", dir, e))?;
        let layout = Layout { dir: dir.clone() };
        let placement = opts.placement.clone().resolve(&dir)?;
        if placement.netns().is_some() {
            crate::netns::require_root("a lab in its own network namespace")?;
        }
        if layout.lab_json().exists() {
            let old = Lab::open(&dir)?;
            if old.is_running()? {
                return Err(Error::AlreadyRunning { dir });
            }
            old.teardown_netns()?;
            for p in [layout.nodes(), layout.hosts(), layout.netns_dir()] {
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(|e| file_err("remove", &p, e))?;
                }
            }
        } else if std::fs::read_dir(&dir)
            .map_err(|e| file_err("list", &dir, e))?
            .next()
            .is_some()
        {
            return Err(Error::NotEmpty { dir });
        }
        let block = opts.block.unwrap_or_else(|| AddrBlock::for_dir(&dir));
        std::fs::write(layout.geoip(), "").map_err(|e| file_err("write", &layout.geoip(), e))?;
        private_dir(&layout.nodes())?;
        private_dir(&layout.hosts())?;

        let nodes = plan_nodes(block, &placement, &opts);
        let empty_torrc = layout.dir.join("empty.torrc");
        std::fs::write(&empty_torrc, "").map_err(|e| file_err("write", &empty_torrc, e))?;
        let mut gen = tokio::task::JoinSet::new();
        for n in nodes.iter().filter(|n| n.role == Role::Authority) {
            let (tor, nick, ip) = (opts.tor_binary.clone(), n.name.clone(), n.ip);
            let (data, empty) = (layout.node(&n.name), empty_torrc.clone());
            gen.spawn(async move { generate_authority(&tor, &nick, ip, &data, &empty).await });
        }
        let mut authorities = Vec::new();
        while let Some(res) = gen.join_next().await {
            let auth = res.map_err(|e| Error::Helper {
                program: "tor-gencert".into(),
                status: format!("task failed: {e}"),
                output: String::new(),
            })??;
            authorities.push(auth);
        }
        authorities.sort_by(|a, b| a.nick.cmp(&b.nick));
        let state = LabState {
            format: FORMAT,
            block,
            placement,
            tor_binary: opts.tor_binary.clone(),
            authorities,
            nodes,
        };
        for n in &state.nodes {
            private_dir(&layout.node(&n.name))?;
            core_torrc(&layout, &state, n)?.write_to(&layout.torrc(&n.name))?;
        }
        write_json(&layout.lab_json(), &state)?;
        Ok(Lab {
            layout,
            state,
            timeout: opts.timeout,
        })
    }

    /// Reattaches to the lab in `dir` (running or not).
    pub fn open(dir: impl AsRef<Path>) -> Result<Lab> {
        let dir = dir.as_ref();
        let dir = dir.canonicalize().map_err(|_| Error::NoLab {
            dir: dir.to_path_buf(),
        })?;
        let layout = Layout { dir: dir.clone() };
        if !layout.lab_json().exists() {
            return Err(Error::NoLab { dir });
        }
        let state: LabState = read_json(&layout.lab_json())?;
        if state.format != FORMAT {
            return Err(file_err(
                "use",
                &layout.lab_json(),
                format!(
                    "format {} is not {FORMAT}; stop it with an older rustbalance and recreate it",
                    state.format
                ),
            ));
        }
        Ok(Lab {
            layout,
            state,
            timeout: LabOptions::default().timeout,
        })
    }

    /// Changes the bound of each wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// The lab's address block.
    pub fn block(&self) -> AddrBlock {
        self.state.block
    }

    /// Where the lab's processes run.
    pub fn placement(&self) -> &Placement {
        &self.state.placement
    }

    /// Authorities, relays and client.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.state.nodes
    }

    /// The directory authorities.
    pub fn authorities(&self) -> &[crate::state::Authority] {
        &self.state.authorities
    }

    /// `DirAuthority` lines for a tor outside the lab that should join it.
    pub fn dir_authority_lines(&self) -> Vec<String> {
        self.state
            .authorities
            .iter()
            .map(|a| {
                format!(
                    "{} orport={OR_PORT} v3ident={} {}:{DIR_PORT} {}",
                    a.nick, a.v3ident, a.ip, a.fingerprint
                )
            })
            .collect()
    }

    fn client(&self) -> &NodeSpec {
        // Invariant: plan_nodes always adds exactly one client.
        self.state
            .nodes
            .iter()
            .find(|n| n.role == Role::Client)
            .expect("every lab has a client")
    }

    /// The client's SOCKS address, as reachable from the host (in a
    /// namespaced lab: the portal's `127.B.C.10:9050`).
    pub fn socks_addr(&self) -> SocketAddr {
        let c = self.client();
        self.reach(SocketAddr::from((c.ip, c.socks_port.unwrap_or(SOCKS_PORT))))
    }

    /// The client's control address, as reachable from the host.
    pub fn client_control_addr(&self) -> SocketAddr {
        self.reach(self.client().control())
    }

    /// An authenticated control connection to the lab process `name`
    /// (through the portal in a namespaced lab).
    pub async fn control(&self, name: &str) -> Result<ControlClient> {
        let addr = self
            .state
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(NodeSpec::control)
            .or_else(|| {
                read_json::<ProcessRecord>(&self.layout.record(name))
                    .ok()
                    .and_then(|r| r.control)
            })
            .ok_or_else(|| Error::Name {
                name: name.to_string(),
                detail: "no such lab process with a control port".into(),
            })?;
        self.ensure_portal()?;
        Ok(ControlClient::connect_authenticated(self.reach(addr)).await?)
    }

    /// True while any process of the lab runs.
    pub fn is_running(&self) -> Result<bool> {
        Ok(self.layout.records()?.iter().any(|r| r.id.is_alive()))
    }

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
        self.launch_nodes(&network).await?;
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
                consensus_complete(&ns, &expected)
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

/// How long a program (not a tor) gets between SIGTERM and SIGKILL.
pub(crate) const PROGRAM_GRACE: Duration = Duration::from_secs(3);

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

/// Checks a `GETINFO ns/all` text: `Ok(summary)` when complete, else
/// `Err(what is missing)`.
fn consensus_complete(ns: &str, expected: &[&NodeSpec]) -> std::result::Result<String, String> {
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
        return Err("no consensus yet".into());
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
        Err(format!(
            "{} routers listed; {}",
            flags.len(),
            missing.join(", ")
        ))
    }
}

fn check_options(opts: &LabOptions) -> Result<()> {
    if !(1..=MAX_AUTHORITIES).contains(&opts.authorities) {
        return Err(Error::Options(format!(
            "authorities must be 1..={MAX_AUTHORITIES}, not {}",
            opts.authorities
        )));
    }
    if !(2..=MAX_RELAYS).contains(&opts.relays) {
        return Err(Error::Options(format!(
            "relays must be 2..={MAX_RELAYS} (at least one guard and one exit), not {}",
            opts.relays
        )));
    }
    Ok(())
}

/// The core nodes of a lab: authorities `a1..`, guards `r1..`, exits, client `c1`.
fn plan_nodes(block: AddrBlock, placement: &Placement, opts: &LabOptions) -> Vec<NodeSpec> {
    let node = |name: String, role: Role, ip: Ipv4Addr| NodeSpec {
        name,
        role,
        ip,
        control_port: CONTROL_PORT,
        or_port: (role != Role::Client).then_some(OR_PORT),
        dir_port: (role == Role::Authority).then_some(DIR_PORT),
        socks_port: (role == Role::Client).then_some(SOCKS_PORT),
    };
    let mut nodes = Vec::new();
    for i in 0..opts.authorities {
        let ip = placement.listen_ip(block, FIRST_AUTHORITY_HOST + i as u8);
        nodes.push(node(format!("a{}", i + 1), Role::Authority, ip));
    }
    let guards = opts.relays.div_ceil(2);
    for i in 0..opts.relays {
        let role = if i < guards { Role::Guard } else { Role::Exit };
        let ip = placement.listen_ip(block, FIRST_RELAY_HOST + i as u8);
        nodes.push(node(format!("r{}", i + 1), role, ip));
    }
    nodes.push(node(
        "c1".into(),
        Role::Client,
        placement.listen_ip(block, CLIENT_HOST),
    ));
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_roles_and_own_addresses() {
        let block = AddrBlock { b: 100, c: 7 };
        let nodes = plan_nodes(block, &Placement::HostLoopback, &LabOptions::default());
        assert_eq!(nodes.len(), 10);
        assert_eq!(nodes.iter().filter(|n| n.role == Role::Guard).count(), 3);
        assert_eq!(nodes.iter().filter(|n| n.role == Role::Exit).count(), 3);
        let mut ips: Vec<_> = nodes.iter().map(|n| n.ip).collect();
        ips.dedup();
        assert_eq!(ips.len(), 10);
        assert!(nodes.iter().all(|n| n.ip.is_loopback()));
        let ns = Placement::namespace().resolve(Path::new("/x")).unwrap();
        let nodes = plan_nodes(block, &ns, &LabOptions::default());
        assert!(nodes.iter().all(|n| block.is_net_ip(n.ip)));
    }

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
        let err = consensus_complete(ns, &expected).unwrap_err();
        assert!(err.contains("r2 lacks Exit"), "{err}");
        let ns = ns.replace("s Fast HSDir", "s Exit Fast HSDir");
        assert!(consensus_complete(&ns, &expected).is_ok());
        assert!(consensus_complete("", &expected).is_err());
    }

    #[test]
    fn options_are_checked() {
        let bad = LabOptions {
            relays: 1,
            ..Default::default()
        };
        assert!(check_options(&bad).is_err());
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
            tracing::warn!(dir = %self.0.dir().display(), error = %e, "stopping the lab failed");
        }
    }
}
