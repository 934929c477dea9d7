//! The node configuration file (TOML). Every key is documented in
//! `docs/CONFIG.md`; unknown keys are errors, so a typo never silently
//! falls back to a default.

mod backends;
mod template;
mod validate;

pub use backends::{named as named_backends, render as render_backends, BackendSection};

pub use template::{ClusterTemplate, MeshTemplate, Template};

use crate::err::{Error, Result};
pub use rustbalance_cluster::{QuorumMode, SignatureMode};
use rustbalance_hs::OnionAddress;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use validate::invalid;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`.
    pub node: NodeSection,
    /// `[service]`.
    pub service: ServiceSection,
    /// `[target]`; absent: a publisher-only node (no proxy, no onion service of its
    /// own; it publishes for the `[[backends]]`).
    #[serde(default)]
    pub target: Option<TargetSection>,
    /// `[proxy]`.
    #[serde(default)]
    pub proxy: ProxySection,
    /// `[pow]`.
    #[serde(default)]
    pub pow: PowSection,
    /// `[intro_dos]`.
    #[serde(default)]
    pub intro_dos: IntroDosSection,
    /// `[tor]`.
    #[serde(default)]
    pub tor: TorSection,
    /// `[admin]`.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[cluster]`: present → multi-node mode.
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
    /// `[mesh]`: present → the cluster gossips over a WireGuard mesh.
    #[serde(default)]
    pub mesh: Option<MeshSection>,
    /// `[[backends]]`: fetch-mode backends (Onionbalance instances); see `config/backends.rs`.
    #[serde(default)]
    pub backends: Vec<BackendSection>,
}

/// `[mesh]`: WireGuard between the cluster's nodes. Gossip then listens on
/// this node's overlay address (derived from its public key) at the port of
/// `cluster.listen`, and the seeds are the peers' overlay addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSection {
    /// Interface name (unique on the machine).
    #[serde(default = "default_mesh_if")]
    pub interface: String,
    /// This node's WireGuard private key file (0600, `wg genkey` format).
    pub private_key_file: PathBuf,
    /// UDP port WireGuard listens on.
    #[serde(default = "default_mesh_port")]
    pub listen_port: u16,
    /// Where the other nodes reach this node's WireGuard (`IP:PORT`, usually
    /// the machine's address and `listen_port`). Set → this node serves the
    /// join endpoint and advertises itself to new nodes.
    #[serde(default)]
    pub endpoint: Option<SocketAddr>,
    /// The other nodes.
    #[serde(default)]
    pub peers: Vec<MeshPeerSection>,
}

/// One `[[mesh.peers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshPeerSection {
    /// Its WireGuard public key (base64).
    pub public_key: String,
    /// Where its WireGuard listens.
    pub endpoint: SocketAddr,
}

fn default_mesh_if() -> String {
    "rb0".into()
}
fn default_mesh_port() -> u16 {
    51820
}

/// `[cluster]`: several nodes serve one master address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// File with the cluster secret (at least 32 bytes; 0600). Every
    /// gossip datagram is authenticated with a key derived from it.
    pub secret_file: PathBuf,
    /// UDP address to gossip on.
    pub listen: SocketAddr,
    /// Address peers send to, if it differs from `listen`.
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Gossip addresses of other nodes to contact first.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// Election priority: the lowest live publisher-eligible node publishes.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Nodes with another cluster id ignore each other.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: String,
    /// Republish at least this often even when nothing changed (seconds).
    #[serde(default = "default_republish")]
    pub republish_secs: u64,
    /// While publishing, ask the responsible HSDirs this often (seconds) whether they hold
    /// our latest descriptor, and upload it again to those that lost it (anti-entropy).
    /// Unset: [`DEFAULT_HSDIR_CHECK_SECS`], or [`TESTING_HSDIR_CHECK_SECS`] with
    /// `tor.testing_network` (the lab).
    #[serde(default)]
    pub hsdir_check_secs: Option<u64>,
    /// Single-node fallback (issue 16): a lone publisher-eligible node — it holds the
    /// lease and no other node has advertised intro points for `solo_after_secs` — makes
    /// its own tor host the master key (`ADD_ONION`) and publish itself, with tor's PoW
    /// (`[pow]`); when other nodes come back it publishes merged descriptors again and
    /// removes the master service `solo_drain_secs` after the HSDirs confirmed one.
    /// Needs `[pow] enabled` and is off with `service.authorized_clients_dir` or
    /// `proxy.export_circuit_id` (tor's `ADD_ONION` takes neither). `false`: a lone node
    /// publishes merged descriptors (no PoW for clients: `docs/SECURITY.md`).
    #[serde(default = "default_solo")]
    pub solo: bool,
    /// Alone this long (seconds, ≥ 5) before going single-node: a peer restarting or
    /// flapping must not flip modes. Unset: [`DEFAULT_SOLO_AFTER_SECS`], or
    /// [`TESTING_SOLO_SECS`] with `tor.testing_network` (the lab).
    #[serde(default)]
    pub solo_after_secs: Option<u64>,
    /// After others came back and a merged descriptor is confirmed, keep the master
    /// service this long (seconds, ≥ 5) for clients holding its descriptor. Unset:
    /// [`DEFAULT_SOLO_DRAIN_SECS`], or [`TESTING_SOLO_SECS`] in the lab.
    #[serde(default)]
    pub solo_drain_secs: Option<u64>,
    /// Restricted discovery on fetch-mode backends: a directory of tor
    /// `ClientOnionAuthDir` files (`NAME.auth_private`, each
    /// `ADDRESS:descriptor:x25519:KEY`, one per restricted backend; directory 0700,
    /// files 0600). The node decrypts those backends' descriptors with them, and its tor
    /// gets the directory as `ClientOnionAuthDir` (probes reach the backends). Read at
    /// start; each key must name a `[[backends]]` address.
    #[serde(default)]
    pub backends_client_auth_dir: Option<PathBuf>,
    /// Failure-detector threshold (phi accrual): higher is slower to call a
    /// peer dead and less prone to false alarms on a loaded machine.
    #[serde(default = "default_phi")]
    pub phi_threshold: f64,
    /// How many nodes the cluster has (workers included). A node publishes only while
    /// it sees a strict majority of the larger of this and every member it has seen;
    /// set it so that a node restarted while cut off does not count itself a majority
    /// of one (`docs/ELECTION.md`). 0 or 1: as many as seen.
    #[serde(default)]
    pub size: usize,
    /// `"live"` (default): no quorum, a lone survivor keeps the address up and a dead
    /// publisher is replaced in seconds, but a node cut off from the others publishes
    /// too. `"majority"`: a strict majority of `size` (partition-safe; a lone survivor
    /// goes dark; failover ~20 s). `docs/ELECTION.md` says why.
    #[serde(default)]
    pub quorum: QuorumMode,
    /// `require`: every node must show a member certificate and sign every gossip
    /// value; `accept-unsigned`: also accept nodes that never showed one; `off`: neither
    /// sign nor check. The last two only while an existing cluster is upgraded
    /// (docs/OPERATIONS.md). Unset: `require` on a node made with an identity (by
    /// `init`/`join`); a node made before identities existed must set it.
    #[serde(default)]
    pub gossip_signatures: Option<rustbalance_cluster::SignatureMode>,
    /// Above 20 intro points (the most a client takes in one descriptor), give each HSDir
    /// that clients fetch from a descriptor of its own, each listing a window of at most 20
    /// of the cluster's points: up to 20 × 6 = 120 per time period (docs/ARCHITECTURE.md,
    /// "Per-HSDir descriptors").
    /// `false`: one merged descriptor everywhere, at most 20 points. At 20 or fewer points
    /// both are the same.
    #[serde(default = "default_true")]
    pub per_hsdir_descriptors: bool,
    /// Fleet PoW (opt-in): every publisher-eligible node's tor also hosts the master key
    /// (`ADD_ONION`, with `[pow]`), and each descriptor for an HSDir clients fetch from
    /// lists one such tor's intro points with its `pow-params`, so that tor's PoW
    /// verifies for the clients that solve (docs/OPERATIONS.md, "Fleet PoW"). Costs: every
    /// eligible node's tor holds the master key in memory; a descriptor lists one tor's
    /// points instead of every node's; from a time-period start to the next SRV (half of
    /// each day) descriptors carry no PoW (tor does not show that descriptor). Needs
    /// `[pow] enabled`; off with `service.authorized_clients_dir` or
    /// `proxy.export_circuit_id`; replaces the single-node switch (`solo`).
    #[serde(default)]
    pub fleet_pow: bool,
    /// With fleet PoW, the least effort the descriptors suggest (tor's own suggestion when
    /// higher; at most 10,000). 0 (default): tor's suggestion; above 0, every client
    /// solves before it is served, even without a flood.
    #[serde(default)]
    pub fleet_pow_min_effort: u32,
}

fn default_true() -> bool {
    true
}

fn default_phi() -> f64 {
    12.0
}

fn default_priority() -> u32 {
    100
}
fn default_cluster_id() -> String {
    "rustbalance".into()
}
/// Default of `cluster.republish_secs`.
pub const DEFAULT_REPUBLISH_SECS: u64 = 600;

fn default_republish() -> u64 {
    DEFAULT_REPUBLISH_SECS
}

/// Default of `cluster.hsdir_check_secs`.
pub const DEFAULT_HSDIR_CHECK_SECS: u64 = 600;

/// Default of `cluster.hsdir_check_secs` in a TestingTorNetwork (the lab).
pub const TESTING_HSDIR_CHECK_SECS: u64 = 20;

fn default_solo() -> bool {
    true
}

/// Default of `cluster.solo_after_secs`.
pub const DEFAULT_SOLO_AFTER_SECS: u64 = 30;

/// Default of `cluster.solo_drain_secs`.
pub const DEFAULT_SOLO_DRAIN_SECS: u64 = 30;

/// Default of `cluster.solo_after_secs` and `cluster.solo_drain_secs` in a
/// TestingTorNetwork (the lab).
pub const TESTING_SOLO_SECS: u64 = 10;

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// A name for this node (letters, digits, `-`, `_`; used in logs and the cluster).
    pub name: String,
    /// Where RustBalance keeps tor's data, the rendered torrc and its state.
    pub data_dir: PathBuf,
}

/// `[service]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Master key (tor's `hs_ed25519_secret_key` or Onionbalance PEM). A node
    /// holding it is publisher-eligible; in single-node mode its tor serves it.
    /// Worker nodes of a cluster leave it out and set `master_address`.
    #[serde(default)]
    pub master_key: Option<PathBuf>,
    /// Passphrase file of a sealed (encrypted) master key. Unset: the systemd
    /// credential `master-passphrase` (`$CREDENTIALS_DIRECTORY`) is used.
    #[serde(default)]
    pub master_key_passphrase_file: Option<PathBuf>,
    /// The master onion address (required on cluster workers without the key).
    #[serde(default)]
    pub master_address: Option<String>,
    /// The port clients connect to on the onion address.
    #[serde(default = "default_virtual_port")]
    pub virtual_port: u16,
    /// Restricted discovery: a directory of tor `NAME.auth` files; only those clients can
    /// read the master descriptor (`rustbalance client-auth`, `client_auth.rs`).
    #[serde(default)]
    pub authorized_clients_dir: Option<PathBuf>,
}

/// `[target]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// `tcp://HOST:PORT` or `onion://ADDRESS.onion:PORT`.
    pub url: String,
    /// `tcp` (splice bytes, any protocol) or `http` (rewrite Host/Location/cookies;
    /// for onion targets).
    #[serde(default = "default_target_mode")]
    pub mode: String,
    /// Seconds between two TCP connects that check the target (issue 15): a node whose
    /// target went down leaves the descriptor, and one whose target is back is listed
    /// again without waiting for traffic it cannot get. Unset: 5 in cluster mode, off
    /// for a single node; 0: off.
    #[serde(default)]
    pub health_check_secs: Option<u64>,
}

/// `[proxy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Address of the listener tor forwards to (port 0: chosen at start).
    pub listen: SocketAddr,
    /// Seconds to connect to the target.
    pub connect_timeout_secs: u64,
    /// Seconds without traffic before a connection is closed.
    pub idle_timeout_secs: u64,
    /// Seconds for tor's PROXY line, the request head (http mode) and the join endpoint's
    /// look at the first bytes (tcp mode).
    pub head_timeout_secs: u64,
    /// Concurrent connections; more are closed at once.
    pub max_connections: usize,
    /// Concurrent streams one client circuit may open: tor's `HiddenServiceMaxStreams`,
    /// and the proxy's own cap when `export_circuit_id` is set. 0: no limit.
    pub max_streams_per_circuit: u32,
    /// `HiddenServiceMaxStreamsCloseCircuit`: a circuit going over
    /// `max_streams_per_circuit` is closed (not only the extra stream refused).
    pub close_circuit_over_max_streams: bool,
    /// Send a PROXY protocol header to the target: `none`, `v1` or `v2`.
    pub proxy_protocol: String,
    /// Ask tor for each client circuit's id (`HiddenServiceExportCircuitID haproxy`).
    pub export_circuit_id: bool,
}

/// `[pow]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowSection {
    /// `HiddenServicePoWDefensesEnabled`.
    pub enabled: bool,
    /// `HiddenServicePoWQueueRate` (requests/s dispatched from the queue).
    pub queue_rate: u32,
    /// `HiddenServicePoWQueueBurst`.
    pub queue_burst: u32,
}

/// `[intro_dos]`: tor's rate limit at the introduction points
/// (`HiddenServiceEnableIntroDoSDefense`), enforced by the relays that hold them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntroDosSection {
    /// `HiddenServiceEnableIntroDoSDefense`. Unset: on for cluster instances (their
    /// merged descriptor carries no PoW parameters), off in single-node mode while `[pow]`
    /// is on (a fixed rate at the intro points would drop clients that solved a puzzle).
    pub enabled: Option<bool>,
    /// `HiddenServiceEnableIntroDoSRatePerSec`: introductions per second per intro point.
    pub rate_per_sec: u32,
    /// `HiddenServiceEnableIntroDoSBurstPerSec` (at least `rate_per_sec`).
    pub burst_per_sec: u32,
}

/// `[tor]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TorSection {
    /// The tor binary.
    pub binary: PathBuf,
    /// Extra torrc lines, appended verbatim (e.g. how to join the lab network).
    pub extra_torrc: Vec<String>,
    /// Seconds to wait for tor's bootstrap before reporting a problem.
    pub bootstrap_timeout_secs: u64,
    /// Whether the network is a TestingTorNetwork (short time periods).
    pub testing_network: bool,
    /// A second tor log for diagnosis, in tor's `Log` severity syntax (e.g. `[rend]info`:
    /// introductions and descriptor builds), written to `DATA/tor-debug.log`. Off when unset.
    pub debug_log: Option<String>,
    /// Turbo mode: how many tor processes serve clients on this cluster node, each an
    /// instance of its own (key, data directory, intro points), all behind the one proxy
    /// ([`TorSection::instance_count`]). Unset: from the core count.
    pub instances: Option<usize>,
}

/// Most tor processes one node runs (`tor.instances`).
pub const MAX_TOR_INSTANCES: usize = 8;

impl TorSection {
    /// How many tors serve clients on this node: `tor.instances`, or when unset one per
    /// two cores (tor does its onion-service crypto on one core; the other half is left to
    /// the proxy, the target and RustBalance), at most 4. Always 1 where more cannot work
    /// (`multi`: a cluster node with a target; `circuit_ids`: `proxy.export_circuit_id`,
    /// whose circuit numbers are per tor and would be mixed up).
    pub fn instance_count(&self, multi: bool, circuit_ids: bool) -> usize {
        if !multi || circuit_ids {
            return 1;
        }
        self.instances.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / 2).clamp(1, 4)
        })
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Status and `/metrics` HTTP listener; loopback or a private address.
    pub listen: SocketAddr,
}

fn default_virtual_port() -> u16 {
    80
}
fn default_target_mode() -> String {
    "tcp".into()
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            connect_timeout_secs: 5,
            idle_timeout_secs: 300,
            head_timeout_secs: DEFAULT_HEAD_TIMEOUT_SECS,
            max_connections: 4096,
            max_streams_per_circuit: DEFAULT_MAX_STREAMS_PER_CIRCUIT,
            close_circuit_over_max_streams: true,
            proxy_protocol: "none".into(),
            export_circuit_id: false,
        }
    }
}

impl Default for PowSection {
    fn default() -> Self {
        PowSection {
            enabled: true,
            queue_rate: 250,
            queue_burst: 2500,
        }
    }
}

/// Default of `proxy.head_timeout_secs`.
pub const DEFAULT_HEAD_TIMEOUT_SECS: u64 = 20;
/// Default of `proxy.max_streams_per_circuit`: far above what one browser opens to one
/// site (Tor Browser: 6 per host), far below what pins a node.
pub const DEFAULT_MAX_STREAMS_PER_CIRCUIT: u32 = 128;

impl Default for IntroDosSection {
    fn default() -> Self {
        // tor's own values for the defence (hs_dos.c).
        IntroDosSection {
            enabled: None,
            rate_per_sec: 25,
            burst_per_sec: 200,
        }
    }
}

impl Default for TorSection {
    fn default() -> Self {
        TorSection {
            binary: PathBuf::from("tor"),
            extra_torrc: Vec::new(),
            bootstrap_timeout_secs: 300,
            debug_log: None,
            testing_network: false,
            instances: None,
        }
    }
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 9661)),
        }
    }
}

/// Where the proxy sends connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUrl {
    /// A local application.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Another onion service, through tor's SOCKS port.
    Onion {
        /// Its address.
        address: OnionAddress,
        /// Port.
        port: u16,
    },
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|sp| {
                    let before = &text[..sp.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let start = before.rfind('\n').map_or(0, |i| i + 1);
                    let src = text[start..].lines().next().unwrap_or("").trim();
                    format!("line {line} `{src}`: ")
                })
                .unwrap_or_default();
            Error::ParseConfig {
                path: path.to_path_buf(),
                message: format!("{at}{}", e.message().trim()),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The master address: from the key if this node holds it, else `service.master_address`.
    pub fn master_address(&self) -> Result<OnionAddress> {
        if let Some(k) = &self.service.master_key {
            return crate::keystore::key_address(k);
        }
        let a = self.service.master_address.as_deref().ok_or_else(|| {
            invalid(
                "service.master_address",
                "required when master_key is not set",
            )
        })?;
        OnionAddress::parse(a).map_err(|e| invalid("service.master_address", e.to_string()))
    }

    /// A publisher-only node: no `[target]` (see [`Config::target`]).
    pub fn publisher_only(&self) -> bool {
        self.target.is_none()
    }

    /// `[target]`, or the error of a publisher-only node asked for it.
    pub fn target_section(&self) -> Result<&TargetSection> {
        self.target.as_ref().ok_or_else(|| {
            invalid(
                "target",
                "this node has no [target] (a publisher-only node serves no clients itself)",
            )
        })
    }

    /// The parsed target.
    pub fn target_url(&self) -> Result<TargetUrl> {
        let url = &self.target_section()?.url;
        let bad = |p: &str| invalid("target.url", format!("{url:?}: {p}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected tcp://HOST:PORT or onion://ADDRESS.onion:PORT"))?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("port must be 1..65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        match scheme {
            "tcp" => Ok(TargetUrl::Tcp {
                host: host.to_string(),
                port,
            }),
            "onion" => Ok(TargetUrl::Onion {
                address: OnionAddress::parse(host).map_err(|e| bad(&e.to_string()))?,
                port,
            }),
            other => Err(bad(&format!(
                "unknown scheme {other:?} (allowed: tcp, onion)"
            ))),
        }
    }
}

#[cfg(test)]
mod test;
