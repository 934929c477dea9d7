//! Network namespaces of a namespaced lab ([`crate::Placement::Namespace`]).
//!
//! ```text
//!  host (127.0.0.0/8 only)          lab namespace rbl-XXXXXX (no uplink)
//!  ───────────────────────          ─────────────────────────────────────
//!  test / CLI                       br0 10.B.C.1/24 + one 10.B.C.H per tor
//!   │ 127.B.C.H:PORT  ── portal ──▶   authorities, relays, client, extra tors
//!                                    │ vhH (one veth per node, bridge side)
//!                                    ├──────────────┬─────────────── ...
//!                          rbl-XXXXXX-n1        rbl-XXXXXX-n2
//!                          eth0 10.B.C.H1/24    eth0 10.B.C.H2/24
//!                          lo, default via 10.B.C.1
//! ```
//!
//! Nothing here has a route out of the machine: the lab namespace has no
//! interface but `lo`, `br0` and the node veths, and the host gets no
//! interface or address at all. The host reaches the lab's listeners through
//! the [`portal`] (sockets opened inside the namespace by a thread of this
//! process), and node namespaces from a test with [`NodeHost`]'s socket
//! helpers, which do the same.
//!
//! Every change goes through the `ip` command (iproute2); the only system
//! call made here is `setns(2)` (via `rustix`), in a thread of its own.

pub(crate) mod portal;

use std::ffi::OsString;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustbalance_tor::process::stop_all;
use rustbalance_tor::ProcessId;
use serde::{Deserialize, Serialize};

use crate::err::{Error, Result};
use crate::net::{AddrBlock, GATEWAY_HOST};

/// Name of the bridge inside the lab namespace.
pub const BRIDGE: &str = "br0";
/// Name of a node's interface inside its namespace.
pub const NODE_IFACE: &str = "eth0";
/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// A node namespace attached to the lab's bridge: one RustBalance node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHost {
    /// The node's name (as given to [`crate::Lab::add_node_host`]).
    pub name: String,
    /// The namespace (`rbl-XXXXXX-NAME`).
    pub netns: String,
    /// The node's address `10.B.C.H` on the lab bridge; the other nodes and
    /// the lab's relays reach it there.
    pub ip: IpAddr,
    /// Words to put before a command to run it in the namespace
    /// (`ip netns exec NS`).
    pub exec_prefix: Vec<OsString>,
    /// Its host number `H`.
    pub host: u8,
    /// The bridge-side end of its veth pair, inside the lab namespace
    /// ([`crate::Lab::cut`] sets it down).
    pub bridge_port: String,
}

impl NodeHost {
    /// A TCP listener inside the node's namespace (e.g. `127.0.0.1:0` for a
    /// target, or the node's own address), usable from this process.
    pub async fn bind_tcp(&self, addr: SocketAddr) -> Result<tokio::net::TcpListener> {
        let l = in_netns(&self.netns, format!("bind TCP {addr}"), move || {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .await?;
        tokio::net::TcpListener::from_std(l).map_err(|e| self.err(format!("register {addr}"), e))
    }

    /// A TCP connection made from inside the node's namespace (e.g. to the
    /// node's admin port on its `127.0.0.1`), bounded by `timeout`.
    pub async fn connect_tcp(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream> {
        let s = in_netns(&self.netns, format!("connect to {addr}"), move || {
            let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .await?;
        tokio::net::TcpStream::from_std(s)
            .map_err(|e| self.err(format!("register connection to {addr}"), e))
    }

    /// A UDP socket bound inside the node's namespace.
    pub async fn bind_udp(&self, addr: SocketAddr) -> Result<tokio::net::UdpSocket> {
        let s = in_netns(&self.netns, format!("bind UDP {addr}"), move || {
            let s = std::net::UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .await?;
        tokio::net::UdpSocket::from_std(s).map_err(|e| self.err(format!("register UDP {addr}"), e))
    }

    fn err(&self, action: String, e: std::io::Error) -> Error {
        Error::Netns {
            action: format!("{action} in {}", self.netns),
            detail: e.to_string(),
        }
    }
}

/// `Err(NeedsRoot)` unless this process runs as root.
pub(crate) fn require_root(action: &str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NeedsRoot {
            action: action.to_string(),
        })
    }
}

/// True when the namespace `ns` exists (has an `ip netns` handle).
pub(crate) fn exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// The names of existing namespaces that are `prefix` or start with `prefix-`.
pub(crate) fn list(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n == prefix || n.starts_with(&format!("{prefix}-")))
        .collect();
    names.sort();
    names
}

/// Runs `ip ARGS` (with `batch` on stdin for `-batch -`).
fn run_ip(args: &[&str], batch: Option<&str>) -> Result<String> {
    let action = format!("run `ip {}`", args.join(" "));
    let fail = |detail: String| Error::Netns {
        action: action.clone(),
        detail,
    };
    let mut child = Command::new("ip")
        .args(args)
        .stdin(if batch.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start `ip` ({e}); install iproute2")))?;
    if let (Some(text), Some(mut stdin)) = (batch, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| fail(format!("writing its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            batch
                .map(|b| format!(" (input: {b:?})"))
                .unwrap_or_default()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the `ip` commands `lines` (one per line, without `ip`) inside `ns`
/// in a single `ip -n NS -batch -`.
fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    run_ip(&["-n", ns, "-batch", "-"], Some(&(lines.join("\n") + "\n"))).map(drop)
}

/// Creates the lab namespace: `lo` up, the bridge with `10.B.C.1/24` and
/// one `10.B.C.H/24` per host in `hosts` (the core tors' addresses).
pub(crate) fn create_lab_net(ns: &str, block: AddrBlock, hosts: &[u8]) -> Result<()> {
    require_root(&format!("creating the lab's network namespace {ns}"))?;
    run_ip(&["netns", "add", ns], None)?;
    let mut lines = vec![
        "link set lo up".to_string(),
        // No STP, no forwarding delay: a healed port forwards at once.
        format!("link add {BRIDGE} type bridge forward_delay 0 stp_state 0"),
        format!("addr add {}/24 dev {BRIDGE}", block.net_ip(GATEWAY_HOST)),
    ];
    lines.extend(hosts.iter().map(|h| addr_line(block, *h)));
    lines.push(format!("link set {BRIDGE} up"));
    let res = ip_batch(ns, &lines);
    if res.is_err() {
        let _ = run_ip(&["netns", "del", ns], None);
    }
    res
}

fn addr_line(block: AddrBlock, host: u8) -> String {
    format!("addr add {}/24 dev {BRIDGE}", block.net_ip(host))
}

/// Adds the address of host `host` to the lab bridge (an extra tor).
pub(crate) fn add_lab_addr(ns: &str, block: AddrBlock, host: u8) -> Result<()> {
    let shown = run_ip(&["-n", ns, "-o", "-4", "addr", "show", "dev", BRIDGE], None)?;
    if shown.contains(&format!(" {}/", block.net_ip(host))) {
        return Ok(());
    }
    ip_batch(ns, &[addr_line(block, host)])
}

/// Creates the namespace of a node and attaches it to the lab bridge.
pub(crate) fn create_node(
    lab_ns: &str,
    name: &str,
    block: AddrBlock,
    host: u8,
) -> Result<NodeHost> {
    require_root(&format!("creating the network namespace of node {name}"))?;
    let netns = format!("{lab_ns}-{name}");
    let bridge_port = format!("vh{host}");
    let ip = block.net_ip(host);
    run_ip(&["netns", "add", &netns], None)?;
    let res = (|| {
        // Both ends are created directly in their namespaces: the host never
        // sees either of them.
        run_ip(
            &[
                "link",
                "add",
                "name",
                NODE_IFACE,
                "netns",
                &netns,
                "type",
                "veth",
                "peer",
                "name",
                &bridge_port,
                "netns",
                lab_ns,
            ],
            None,
        )?;
        ip_batch(
            lab_ns,
            &[format!("link set {bridge_port} master {BRIDGE} up")],
        )?;
        ip_batch(
            &netns,
            &[
                "link set lo up".to_string(),
                format!("addr add {ip}/24 dev {NODE_IFACE}"),
                format!("link set {NODE_IFACE} up"),
                format!("route add default via {}", block.net_ip(GATEWAY_HOST)),
            ],
        )
    })();
    if let Err(e) = res {
        let _ = run_ip(&["-n", lab_ns, "link", "del", &bridge_port], None);
        let _ = run_ip(&["netns", "del", &netns], None);
        return Err(e);
    }
    Ok(NodeHost {
        name: name.to_string(),
        exec_prefix: ["ip", "netns", "exec", netns.as_str()]
            .iter()
            .map(OsString::from)
            .collect(),
        netns,
        ip: IpAddr::V4(ip),
        host,
        bridge_port,
    })
}

/// Sets the bridge-side end of a node's veth down (cut) or up (heal).
pub(crate) fn set_port(lab_ns: &str, node: &NodeHost, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    ip_batch(lab_ns, &[format!("link set {} {state}", node.bridge_port)])
}

/// The processes whose network namespace is `ns` (never this process).
pub(crate) fn pids(ns: &str) -> Result<Vec<ProcessId>> {
    if !exists(ns) {
        return Ok(Vec::new());
    }
    let out = run_ip(&["netns", "pids", ns], None)?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| *p != std::process::id())
        .filter_map(ProcessId::of_pid)
        .collect())
}

/// SIGKILLs every process in `ns`; returns how many there were.
pub(crate) fn kill_all(ns: &str) -> Result<usize> {
    let ids = pids(ns)?;
    for id in &ids {
        id.kill()?;
    }
    Ok(ids.len())
}

/// Stops every process left in `ns` (SIGTERM, `grace`, SIGKILL), then
/// deletes the namespace (its veths go with it). Absent: nothing to do.
pub(crate) fn remove(ns: &str, grace: Duration) -> Result<()> {
    if !exists(ns) {
        return Ok(());
    }
    let ids = pids(ns)?;
    for id in &ids {
        id.terminate()?;
    }
    stop_all(&ids, grace)?;
    run_ip(&["netns", "del", ns], None).map(drop)
}

/// Moves the calling thread into the namespace `ns`.
fn enter(ns: &str) -> std::io::Result<()> {
    let handle = std::fs::File::open(Path::new(NETNS_DIR).join(ns))?;
    rustix::thread::move_into_link_name_space(
        handle.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    Ok(())
}

/// Runs `f` in a new thread that first enters `ns`. Sockets `f` creates
/// belong to `ns` for their whole life, whichever thread uses them later;
/// the thread ends with `f`, so no other code ever runs inside `ns`.
pub(crate) async fn in_netns<T: Send + 'static>(
    ns: &str,
    action: String,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ns_owned = ns.to_string();
    std::thread::Builder::new()
        .name(format!("netns {ns}"))
        .spawn(move || {
            let _ = tx.send(enter(&ns_owned).and_then(|()| f()));
        })
        .map_err(|e| Error::Netns {
            action: format!("start a thread for {ns}"),
            detail: e.to_string(),
        })?;
    let fail = |detail: String| Error::Netns {
        action: format!("{action} in {ns}"),
        detail,
    };
    rx.await
        .map_err(|_| fail("the thread ended without an answer".into()))?
        .map_err(|e| fail(e.to_string()))
}
