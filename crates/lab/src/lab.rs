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
mod plan;
mod start;
mod status;
mod stop;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustbalance_tor::ControlClient;

pub use extra::{LabProcess, LabTor};
pub use status::{LabStatus, ProcessStatus, StopReport};
pub use stop::StopOnDrop;

pub(crate) use start::wait_bootstrapped_at;
pub(crate) use stop::PROGRAM_GRACE;

use crate::err::{file_err, Error, Result};
use crate::keys::generate_authority;
use crate::net::{AddrBlock, Placement, DIR_PORT, OR_PORT, SOCKS_PORT};
use crate::node::core_torrc;
use crate::state::{
    private_dir, read_json, write_json, LabState, Layout, NodeSpec, ProcessRecord, Role, FORMAT,
};
use plan::{check_options, plan_nodes};

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
}
