//! The node configuration file (TOML). Every key is documented in
//! `docs/CONFIG.md`; unknown keys are errors, so a typo never silently
//! falls back to a default.

use crate::err::{Error, Result};
use rustbalance_hs::OnionAddress;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`.
    pub node: NodeSection,
    /// `[service]`.
    pub service: ServiceSection,
    /// `[target]`.
    pub target: TargetSection,
    /// `[proxy]`.
    #[serde(default)]
    pub proxy: ProxySection,
    /// `[pow]`.
    #[serde(default)]
    pub pow: PowSection,
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
    /// Failure-detector threshold (phi accrual): higher is slower to call a
    /// peer dead and less prone to false alarms on a loaded machine.
    #[serde(default = "default_phi")]
    pub phi_threshold: f64,
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
    /// Concurrent connections; more are closed at once.
    pub max_connections: usize,
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
            max_connections: 4096,
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

impl Default for TorSection {
    fn default() -> Self {
        TorSection {
            binary: PathBuf::from("tor"),
            extra_torrc: Vec::new(),
            bootstrap_timeout_secs: 300,
            testing_network: false,
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

/// Options tor must never receive from `extra_torrc`: RustBalance sets them.
const RESERVED_TORRC: &[&str] = &[
    "DataDirectory",
    "ControlPort",
    "ControlPortWriteToFile",
    "CookieAuthentication",
    "HiddenServiceDir",
    "HiddenServicePort",
    "RunAsDaemon",
    "__OwningControllerProcess",
];

fn invalid(key: &str, problem: impl Into<String>) -> Error {
    Error::Config {
        key: key.to_string(),
        problem: problem.into(),
    }
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

    /// Check every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let n = &self.node.name;
        if n.is_empty()
            || n.len() > 32
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "node.name",
                format!("{n:?}: use 1 to 32 letters, digits, '-' or '_'"),
            ));
        }
        if !self.node.data_dir.is_absolute() {
            return Err(invalid("node.data_dir", "must be an absolute path"));
        }
        match (&self.service.master_key, &self.service.master_address, &self.cluster) {
            (Some(k), _, _) if !k.exists() => {
                return Err(invalid(
                    "service.master_key",
                    format!(
                        "{} does not exist (create one with `rustbalance keygen --out DIR` or `rustbalance init`)",
                        k.display()
                    ),
                ))
            }
            (None, _, None) => {
                return Err(invalid(
                    "service.master_key",
                    "required for a single node (only cluster workers run without it)",
                ))
            }
            (None, None, Some(_)) => {
                return Err(invalid(
                    "service.master_address",
                    "a cluster worker without master_key must name the master address",
                ))
            }
            _ => {}
        }
        if let Some(a) = &self.service.master_address {
            OnionAddress::parse(a).map_err(|e| invalid("service.master_address", e.to_string()))?;
        }
        if let Some(m) = &self.mesh {
            if self.cluster.is_none() {
                return Err(invalid("mesh", "a [mesh] needs a [cluster] section"));
            }
            if !m.private_key_file.exists() {
                return Err(invalid(
                    "mesh.private_key_file",
                    format!("{} does not exist", m.private_key_file.display()),
                ));
            }
            if m.interface.is_empty() || m.interface.len() > 15 {
                return Err(invalid("mesh.interface", "1 to 15 characters"));
            }
            for p in &m.peers {
                if p.public_key.parse::<rustbalance_mesh::PublicKey>().is_err() {
                    return Err(invalid(
                        "mesh.peers",
                        format!("{:?} is not a WireGuard public key", p.public_key),
                    ));
                }
            }
        }
        if let Some(c) = &self.cluster {
            if !c.secret_file.exists() {
                return Err(invalid(
                    "cluster.secret_file",
                    format!("{} does not exist", c.secret_file.display()),
                ));
            }
            if c.listen.port() == 0 {
                return Err(invalid(
                    "cluster.listen",
                    "needs a fixed port (peers must find it)",
                ));
            }
            if !(4.0..=40.0).contains(&c.phi_threshold) {
                return Err(invalid(
                    "cluster.phi_threshold",
                    "must be between 4 and 40 (default 12)",
                ));
            }
            if c.republish_secs < 30 {
                return Err(invalid("cluster.republish_secs", "must be at least 30"));
            }
        }
        if self.service.virtual_port == 0 {
            return Err(invalid("service.virtual_port", "must be 1..65535"));
        }
        self.target_url()?;
        match self.target.mode.as_str() {
            "tcp" | "http" => {}
            other => {
                return Err(invalid(
                    "target.mode",
                    format!("{other:?}: allowed are \"tcp\" and \"http\""),
                ))
            }
        }
        if self.target.mode == "http" && !matches!(self.target_url()?, TargetUrl::Onion { .. }) {
            return Err(invalid(
                "target.mode",
                "\"http\" rewriting is for onion:// targets; use \"tcp\" for tcp:// targets",
            ));
        }
        if !self.proxy.listen.ip().is_loopback() {
            return Err(invalid(
                "proxy.listen",
                "must be a loopback address (only tor connects to it)",
            ));
        }
        if self.proxy.connect_timeout_secs == 0 || self.proxy.connect_timeout_secs > 300 {
            return Err(invalid("proxy.connect_timeout_secs", "must be 1..=300"));
        }
        if self.proxy.idle_timeout_secs == 0 {
            return Err(invalid("proxy.idle_timeout_secs", "must be at least 1"));
        }
        if self.proxy.max_connections == 0 {
            return Err(invalid("proxy.max_connections", "must be at least 1"));
        }
        match self.proxy.proxy_protocol.as_str() {
            "none" | "v1" | "v2" => {}
            other => {
                return Err(invalid(
                    "proxy.proxy_protocol",
                    format!("{other:?}: allowed are \"none\", \"v1\", \"v2\""),
                ))
            }
        }
        for line in &self.tor.extra_torrc {
            if line.contains('\n') || line.contains('\r') {
                return Err(invalid(
                    "tor.extra_torrc",
                    "one torrc line per entry, without newlines",
                ));
            }
            let opt = line.split_whitespace().next().unwrap_or("");
            if let Some(r) = RESERVED_TORRC.iter().find(|r| r.eq_ignore_ascii_case(opt)) {
                return Err(invalid(
                    "tor.extra_torrc",
                    format!("{r} is set by RustBalance itself; remove that line"),
                ));
            }
        }
        if self.tor.bootstrap_timeout_secs == 0 {
            return Err(invalid("tor.bootstrap_timeout_secs", "must be at least 1"));
        }
        let a = self.admin.listen.ip();
        let private = match a {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
            std::net::IpAddr::V6(v6) => v6.is_loopback(),
        };
        if !private {
            return Err(invalid(
                "admin.listen",
                format!("{a} is public: use a loopback or private address"),
            ));
        }
        Ok(())
    }

    /// The master address: from the key if this node holds it, else `service.master_address`.
    pub fn master_address(&self) -> Result<OnionAddress> {
        if let Some(k) = &self.service.master_key {
            if let Some(a) = rustbalance_hs::sealed::sealed_address(k)? {
                return Ok(a);
            }
            return Ok(rustbalance_hs::IdentityKey::load(k)?.address());
        }
        let a = self.service.master_address.as_deref().ok_or_else(|| {
            invalid(
                "service.master_address",
                "required when master_key is not set",
            )
        })?;
        OnionAddress::parse(a).map_err(|e| invalid("service.master_address", e.to_string()))
    }

    /// The parsed target.
    pub fn target_url(&self) -> Result<TargetUrl> {
        let url = &self.target.url;
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
mod test {
    use super::*;

    fn cfg(dir: &Path, extra: &str) -> std::result::Result<Config, String> {
        let key = dir.join("key");
        std::fs::write(&key, b"x").unwrap();
        let text = format!(
            "[node]\nname = \"n1\"\ndata_dir = \"{d}/data\"\n[service]\nmaster_key = \"{k}\"\n\
             [target]\nurl = \"tcp://127.0.0.1:8080\"\n{extra}",
            d = dir.display(),
            k = key.display()
        );
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), "").unwrap();
        assert!(c.pow.enabled);
        assert_eq!(c.service.virtual_port, 80);
        assert_eq!(
            c.target_url().unwrap(),
            TargetUrl::Tcp {
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        let e = cfg(d.path(), "[proxy]\nmax_conections = 5\n").unwrap_err();
        assert!(
            e.contains("max_conections") && e.contains("unknown field"),
            "{e}"
        );
        let e = cfg(d.path(), "[proxy]\nproxy_protocol = \"v3\"\n").unwrap_err();
        assert!(e.contains("proxy.proxy_protocol"), "{e}");
        let e = cfg(d.path(), "[tor]\nextra_torrc = [\"DataDirectory /x\"]\n").unwrap_err();
        assert!(e.contains("set by RustBalance"), "{e}");
        let e = cfg(d.path(), "[admin]\nlisten = \"8.8.8.8:80\"\n").unwrap_err();
        assert!(e.contains("admin.listen"), "{e}");
        let e = cfg(d.path(), "[proxy]\nlisten = \"127.0.0.1:99999\"\n").unwrap_err();
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn target_urls() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg(d.path(), "").unwrap();
        for (u, ok) in [
            ("tcp://localhost:80", true),
            ("tcp://[::1]:80", true),
            (
                "onion://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion:80",
                true,
            ),
            ("onion://abc.onion:80", false),
            ("http://x:80", false),
            ("tcp://x", false),
            ("tcp://x:0", false),
        ] {
            c.target.url = u.into();
            assert_eq!(c.target_url().is_ok(), ok, "{u}");
        }
    }
}

/// What `rustbalance init` and `rustbalance lab node-config` fill in.
#[derive(Debug, Clone)]
pub struct Template {
    /// `node.name`.
    pub name: String,
    /// `node.data_dir`.
    pub data_dir: PathBuf,
    /// `service.master_key` (publisher-eligible nodes).
    pub master_key: Option<PathBuf>,
    /// `service.master_key_passphrase_file` (a sealed master key).
    pub passphrase_file: Option<PathBuf>,
    /// `service.master_address` (needed when there is no master key).
    pub master_address: Option<String>,
    /// `service.virtual_port`.
    pub virtual_port: u16,
    /// `target.url`.
    pub target: String,
    /// `admin.listen`.
    pub admin: SocketAddr,
    /// `tor.extra_torrc`.
    pub extra_torrc: Vec<String>,
    /// `tor.testing_network`.
    pub testing_network: bool,
    /// `[cluster]`, for a cluster node.
    pub cluster: Option<ClusterTemplate>,
    /// `[mesh]`, for a cluster node on a WireGuard mesh.
    pub mesh: Option<MeshTemplate>,
}

/// The `[mesh]` part of a [`Template`].
#[derive(Debug, Clone)]
pub struct MeshTemplate {
    /// `mesh.interface`.
    pub interface: String,
    /// `mesh.private_key_file`.
    pub private_key_file: PathBuf,
    /// `mesh.listen_port`.
    pub listen_port: u16,
    /// `mesh.endpoint`.
    pub endpoint: Option<SocketAddr>,
    /// `mesh.peers`: (public key, endpoint).
    pub peers: Vec<(String, SocketAddr)>,
}

/// The `[cluster]` part of a [`Template`].
#[derive(Debug, Clone)]
pub struct ClusterTemplate {
    /// `cluster.secret_file`.
    pub secret_file: PathBuf,
    /// `cluster.listen`.
    pub listen: SocketAddr,
    /// `cluster.seeds`.
    pub seeds: Vec<SocketAddr>,
    /// `cluster.priority`.
    pub priority: u32,
    /// `cluster.cluster_id` (`None`: the default).
    pub cluster_id: Option<String>,
}

/// TOML quoting of a string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Template {
    fn service_lines(&self) -> String {
        let mut s = String::new();
        if let Some(k) = &self.master_key {
            s += "# Holding the master key makes this node publisher-eligible.\n";
            s += &format!("master_key = {}\n", q(&k.display().to_string()));
        }
        if let Some(p) = &self.passphrase_file {
            s += &format!(
                "master_key_passphrase_file = {}\n",
                q(&p.display().to_string())
            );
        }
        if let Some(a) = &self.master_address {
            s += &format!("master_address = {}\n", q(a));
        }
        s
    }

    /// A complete, commented config file.
    pub fn render(&self) -> String {
        let extra: Vec<String> = self
            .extra_torrc
            .iter()
            .map(|l| format!("  {},", q(l)))
            .collect();
        format!(
            "# RustBalance node configuration; every key is described in docs/CONFIG.md.\n\
             [node]\nname = {name}\ndata_dir = {data}\n\n\
             [service]\n{service}virtual_port = {vport}\n\n\
             [target]\n# tcp://HOST:PORT (local application) or onion://ADDRESS.onion:PORT\nurl = {target}\nmode = \"tcp\"\n\n\
             [proxy]\nlisten = \"127.0.0.1:0\"\nconnect_timeout_secs = 5\nidle_timeout_secs = 300\nmax_connections = 4096\nproxy_protocol = \"none\"\nexport_circuit_id = false\n\n\
             [pow]\nenabled = true\nqueue_rate = 250\nqueue_burst = 2500\n\n\
             [tor]\nbinary = \"tor\"\nbootstrap_timeout_secs = 300\ntesting_network = {testing}\nextra_torrc = [\n{extra}\n]\n\n\
             [admin]\nlisten = {admin}\n{cluster}",
            name = q(&self.name),
            data = q(&self.data_dir.display().to_string()),
            service = self.service_lines(),
            vport = self.virtual_port,
            target = q(&self.target),
            testing = self.testing_network,
            extra = extra.join("\n"),
            admin = q(&self.admin.to_string()),
            cluster = self.cluster.as_ref().map(|c| format!(
                "\n[cluster]\nsecret_file = {}\nlisten = {}\nseeds = [{}]\npriority = {}\n{}",
                q(&c.secret_file.display().to_string()),
                q(&c.listen.to_string()),
                c.seeds.iter().map(|s| q(&s.to_string())).collect::<Vec<_>>().join(", "),
                c.priority,
                c.cluster_id.as_ref().map(|i| format!("cluster_id = {}\n", q(i))).unwrap_or_default()
            )).unwrap_or_default() + &self.mesh.as_ref().map(|m| format!(
                "\n[mesh]\ninterface = {}\nprivate_key_file = {}\nlisten_port = {}\n{}{}",
                q(&m.interface),
                q(&m.private_key_file.display().to_string()),
                m.listen_port,
                m.endpoint.map(|e| format!("endpoint = {}\n", q(&e.to_string()))).unwrap_or_default(),
                m.peers.iter().map(|(k, e)| format!("\n[[mesh.peers]]\npublic_key = {}\nendpoint = {}\n", q(k), q(&e.to_string()))).collect::<String>()
            )).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod template_test {
    use super::*;

    #[test]
    fn rendered_template_is_valid() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(&key, b"x").unwrap();
        let t = Template {
            name: "n1".into(),
            data_dir: d.path().join("data"),
            master_key: Some(key),
            passphrase_file: None,
            master_address: None,
            virtual_port: 80,
            target: "tcp://127.0.0.1:8080".into(),
            admin: "127.0.0.1:9661".parse().unwrap(),
            extra_torrc: vec![
                "TestingTorNetwork 1".into(),
                "DirAuthority a \"quoted\"".into(),
            ],
            testing_network: true,
            cluster: None,
            mesh: None,
        };
        let p = d.path().join("c.toml");
        std::fs::write(&p, t.render()).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.tor.extra_torrc.len(), 2);
        assert!(c.tor.testing_network);
    }
}
