//! What a lab keeps on disk: `lab.json` (the network) and one
//! `nodes/NAME/process.json` per started process, so that another program
//! (the CLI's `lab status` / `lab down`) can reattach.
//!
//! ```text
//! DIR/lab.json                the network: block, authorities, core nodes
//! DIR/empty.geoip             shared empty GeoIP file
//! DIR/v3bw                    the authorities' bandwidth file (equal relay weights)
//! DIR/hosts/N                 claimed host numbers of extra processes
//! DIR/nodes/NAME/             DataDirectory of tor NAME (0700)
//!               torrc, notice.log, tor.pid, process.json
//! DIR/netns/NAME.json         a node host (namespaced labs)
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use rustbalance_tor::ProcessId;
use serde::{Deserialize, Serialize};

use crate::err::{file_err, Error, Result};
use crate::net::{AddrBlock, Placement};

/// Version of the on-disk format.
pub(crate) const FORMAT: u32 = 1;

/// The role of a lab process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A directory authority.
    Authority,
    /// A guard/middle relay (HSDir).
    Guard,
    /// An exit relay (HSDir), exiting to loopback only.
    Exit,
    /// The lab's SOCKS client.
    Client,
    /// An extra tor started with [`crate::Lab::spawn_tor`].
    Tor,
    /// Another program started with [`crate::Lab::spawn_program`].
    Program,
}

impl Role {
    /// True for the processes [`crate::Lab::start`] starts itself.
    pub fn is_core(self) -> bool {
        !matches!(self, Role::Tor | Role::Program)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Authority => "authority",
            Role::Guard => "guard",
            Role::Exit => "exit",
            Role::Client => "client",
            Role::Tor => "tor",
            Role::Program => "program",
        })
    }
}

/// A directory authority's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    /// Nickname.
    pub nick: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// v3 identity (authority certificate fingerprint).
    pub v3ident: String,
    /// Relay identity fingerprint.
    pub fingerprint: String,
}

/// One of the processes `Lab::start` starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Nickname and directory name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its own address.
    pub ip: Ipv4Addr,
    /// Control port on `ip`.
    pub control_port: u16,
    /// OR port on `ip` (relays and authorities).
    pub or_port: Option<u16>,
    /// Directory port on `ip` (authorities).
    pub dir_port: Option<u16>,
    /// SOCKS port on `ip` (the client).
    pub socks_port: Option<u16>,
}

impl NodeSpec {
    /// Every address this node listens on.
    pub fn listens(&self) -> Vec<SocketAddr> {
        [
            Some(self.control_port),
            self.or_port,
            self.dir_port,
            self.socks_port,
        ]
        .into_iter()
        .flatten()
        .map(|p| SocketAddr::from((self.ip, p)))
        .collect()
    }

    /// The control address.
    pub fn control(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.control_port))
    }
}

/// `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// On-disk format version.
    pub format: u32,
    /// The lab's address block.
    pub block: AddrBlock,
    /// Where processes run.
    pub placement: Placement,
    /// The tor binary.
    pub tor_binary: PathBuf,
    /// The authorities.
    pub authorities: Vec<Authority>,
    /// Authorities, relays and the client, in start order.
    pub nodes: Vec<NodeSpec>,
}

/// `nodes/NAME/process.json`: one started process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Pid and start time.
    pub id: ProcessId,
    /// Its own address, if it has one.
    pub ip: Option<Ipv4Addr>,
    /// Every address it listens on.
    pub listens: Vec<SocketAddr>,
    /// Its control port.
    pub control: Option<SocketAddr>,
    /// Its SOCKS port.
    pub socks: Option<SocketAddr>,
    /// Its log file.
    pub log_file: PathBuf,
    /// The node namespace it runs in ([`crate::Lab::spawn_program_in`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// Paths inside a lab directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn lab_json(&self) -> PathBuf {
        self.dir.join("lab.json")
    }
    pub fn geoip(&self) -> PathBuf {
        self.dir.join("empty.geoip")
    }
    /// The authorities' `V3BandwidthsFile` ([`crate::bandwidth`]).
    pub fn bandwidth_file(&self) -> PathBuf {
        self.dir.join("v3bw")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn nodes(&self) -> PathBuf {
        self.dir.join("nodes")
    }
    pub fn node(&self, name: &str) -> PathBuf {
        self.nodes().join(name)
    }
    pub fn torrc(&self, name: &str) -> PathBuf {
        self.node(name).join("torrc")
    }
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.node(name).join("tor.pid")
    }
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.node(name).join("notice.log")
    }
    pub fn record(&self, name: &str) -> PathBuf {
        self.node(name).join("process.json")
    }
    /// Node hosts of a namespaced lab: `DIR/netns/NAME.json`.
    pub fn netns_dir(&self) -> PathBuf {
        self.dir.join("netns")
    }
    pub fn node_host(&self, name: &str) -> PathBuf {
        self.netns_dir().join(format!("{name}.json"))
    }

    /// Every process record in the lab, sorted by name.
    pub fn records(&self) -> Result<Vec<ProcessRecord>> {
        let nodes = self.nodes();
        let entries = match std::fs::read_dir(&nodes) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(file_err("list", &nodes, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| file_err("list", &nodes, e))?;
            let path = entry.path().join("process.json");
            if path.exists() {
                out.push(read_json::<ProcessRecord>(&path)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Reads a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| file_err("parse", path, e))
}

/// Writes a JSON file atomically (temporary file + rename).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| file_err("encode", path, e))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| file_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err("rename into", path, e))
}

/// Creates a directory with mode 0700 (tor insists on it for DataDirectory
/// and HiddenServiceDir).
pub(crate) fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(|e| file_err("create directory", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| file_err("chmod 0700", path, e))
}

/// Checks a process name: a tor nickname (1–19 letters/digits).
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 19 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Name {
            name: name.to_string(),
            detail: "use 1 to 19 ASCII letters and digits (it is also the tor nickname)"
                .to_string(),
        });
    }
    Ok(())
}
