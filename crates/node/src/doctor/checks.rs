//! The checks of `rustbalance doctor`, over an [`Env`] (the machine, or a fake in
//! the tests). Each returns findings that say what is wrong and how to fix it.

use super::{Env, Finding};
use crate::config::TargetUrl;
use crate::layout::Layout;
use crate::Config;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Below this, doctor fails the disk check (tor's cache and logs grow).
pub const MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;
/// A WireGuard peer with no handshake for longer is unreachable.
const HANDSHAKE_STALE: Duration = Duration::from_secs(180);
/// Clock tolerance around the consensus' validity.
const CLOCK_SLACK: Duration = Duration::from_secs(60);
/// Clients ask 6 of the 8 HSDirs of a descriptor.
const HSDIRS_CLIENTS_ASK: usize = 6;

/// What the running node says, if it runs.
pub struct Running {
    pub status: Value,
}

/// tor's version and its PoW module.
pub fn tor(cfg: &Config, env: &dyn Env) -> Vec<Finding> {
    let bin = &cfg.tor.binary;
    let version = match env.run(bin, &["--version"]) {
        Ok(out) => out,
        Err(e) => {
            return vec![Finding::fail(
                "tor",
                format!("cannot run {} --version: {e}", bin.display()),
                "install tor (apt install tor) or set tor.binary to its path",
            )]
        }
    };
    let v = version
        .lines()
        .find_map(|l| l.strip_prefix("Tor version "))
        .map(|v| v.trim_end_matches('.').to_string())
        .unwrap_or_else(|| "unknown".into());
    let nums: Vec<u32> = v
        .split(['.', '-', ' '])
        .take(4)
        .map_while(|p| p.parse().ok())
        .collect();
    let mut out = Vec::new();
    if nums.len() < 3 || nums.as_slice() < [0, 4, 8].as_slice() {
        out.push(Finding::fail(
            "tor",
            format!("tor {v}: RustBalance needs tor 0.4.8 or newer (onion-service PoW, metrics)"),
            "install a newer tor (Debian 12 ships 0.4.8; the Tor Project's repository has the latest)",
        ));
        return out;
    }
    let modules = env.run(bin, &["--list-modules"]).unwrap_or_default();
    let pow = modules.lines().any(|l| l.replace(' ', "") == "pow:yes");
    if pow {
        out.push(Finding::ok("tor", format!("tor {v}, PoW module: yes")));
    } else if cfg.pow.enabled {
        out.push(Finding::fail(
            "tor",
            format!("tor {v} was built without the PoW module, and pow.enabled is true"),
            "install a tor built with PoW (Debian's is), or set pow.enabled = false",
        ));
    } else {
        out.push(Finding::ok(
            "tor",
            format!("tor {v}, PoW module: no (pow.enabled is false)"),
        ));
    }
    out
}

/// The clock against the consensus tor holds (only while the node runs: a stopped
/// node's cached consensus is old by nature).
pub fn clock(cfg: &Config, env: &dyn Env, running: Option<&Running>) -> Finding {
    if running.is_none() {
        return Finding::skip(
            "clock",
            "the node is not running: start it, then run doctor again",
        );
    }
    let dir = Layout::new(&cfg.node.data_dir).tor_dir();
    let Some(text) = ["cached-microdesc-consensus", "cached-consensus"]
        .iter()
        .find_map(|f| env.read(&dir.join(f)))
    else {
        return Finding::skip(
            "clock",
            format!("tor has no consensus in {} yet (still bootstrapping?): run doctor again in a minute", dir.display()),
        );
    };
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|t| humantime::parse_rfc3339_weak(t.trim()).ok())
    };
    let (Some(after), Some(until)) = (field("valid-after "), field("valid-until ")) else {
        return Finding::fail(
            "clock",
            "tor's cached consensus has no valid-after/valid-until line",
            format!(
                "stop the node, delete {}/cached-*consensus and start it again",
                dir.display()
            ),
        );
    };
    let now = env.now();
    let fix =
        "set the clock right (timedatectl set-ntp true, or install chrony) and restart the node";
    if now + CLOCK_SLACK < after {
        let by = after.duration_since(now).unwrap_or_default();
        Finding::fail(
            "clock",
            format!(
                "the clock is {}s behind the consensus (valid-after {})",
                by.as_secs(),
                humantime::format_rfc3339_seconds(after)
            ),
            fix,
        )
    } else if now > until + CLOCK_SLACK {
        let by = now.duration_since(until).unwrap_or_default();
        let what = format!(
            "the consensus expired {}s ago (valid-until {}): the clock is ahead, or tor \
             cannot reach the network",
            by.as_secs(),
            humantime::format_rfc3339_seconds(until)
        );
        Finding::fail("clock", what, fix)
    } else {
        Finding::ok("clock", "within the consensus' validity")
    }
}

/// The secret files the config names, with the data directory.
fn secret_files(cfg: &Config) -> Vec<(&'static str, PathBuf)> {
    let mut v = Vec::new();
    if let Some(k) = &cfg.service.master_key {
        v.push(("service.master_key", k.clone()));
    }
    if let Some(k) = &cfg.service.master_key_passphrase_file {
        v.push(("service.master_key_passphrase_file", k.clone()));
    }
    if let Some(c) = &cfg.cluster {
        v.push(("cluster.secret_file", c.secret_file.clone()));
    }
    if let Some(m) = &cfg.mesh {
        v.push(("mesh.private_key_file", m.private_key_file.clone()));
    }
    v
}

/// Modes and owners: the data directory 0700, secrets 0600, all owned by the
/// data directory's owner (the node's user).
pub fn files(cfg: &Config, env: &dyn Env) -> Vec<Finding> {
    let dir = &cfg.node.data_dir;
    let Some(d) = env.file(dir) else {
        return vec![Finding::fail(
            "files",
            format!("node.data_dir {} does not exist", dir.display()),
            "create it with `rustbalance init`, or fix node.data_dir",
        )];
    };
    let mut out = Vec::new();
    if d.mode & 0o077 != 0 {
        out.push(Finding::fail(
            "files",
            format!(
                "{} is mode {:o}: other users can enter it",
                dir.display(),
                d.mode & 0o7777
            ),
            format!("chmod 700 {}", dir.display()),
        ));
    }
    for (key, p) in secret_files(cfg) {
        out.extend(secret_file(key, &p, d.uid, env));
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "files",
            format!(
                "{} 0700 and every secret 0600, one owner (uid {})",
                dir.display(),
                d.uid
            ),
        ));
    }
    out
}

fn secret_file(key: &str, p: &Path, owner: u32, env: &dyn Env) -> Option<Finding> {
    let Some(f) = env.file(p) else {
        return Some(Finding::fail(
            "files",
            format!("{key} {} does not exist", p.display()),
            "restore it from your backup, or fix the path in the config",
        ));
    };
    if f.mode & 0o077 != 0 {
        return Some(Finding::fail(
            "files",
            format!(
                "{key} {} is mode {:o}: other users can read a secret",
                p.display(),
                f.mode & 0o7777
            ),
            format!("chmod 600 {}", p.display()),
        ));
    }
    (f.uid != owner).then(|| {
        Finding::fail(
            "files",
            format!("{key} {} belongs to uid {}, the data directory to uid {owner}: the node cannot read it", p.display(), f.uid),
            format!("chown {owner} {}", p.display()),
        )
    })
}

/// A port the node listens on: answering while it runs, free while it does not.
/// Port 0 (the OS picks one at start) is checked on the port the running node
/// reports in `/status` (`status_key`, e.g. `proxy.listen`).
fn port(
    (check, key): (&'static str, &str),
    addr: SocketAddr,
    running: Option<&Running>,
    env: &dyn Env,
) -> Finding {
    let actual = match running {
        Some(r) if addr.port() == 0 => r.status[check]["listen"]
            .as_str()
            .and_then(|a| a.parse::<SocketAddr>().ok()),
        _ => Some(addr),
    };
    match (running, actual) {
        (Some(_), None) => Finding::fail(
            check,
            format!("{key} is {addr} and the running node does not report its port"),
            "restart the node; set a fixed port in the config",
        ),
        (Some(_), Some(a)) if env.can_connect(&a.ip().to_string(), a.port()) => {
            Finding::ok(check, format!("{key} {a} answers"))
        }
        (Some(_), Some(a)) => Finding::fail(
            check,
            format!("the node runs but nothing answers on {key} {a}"),
            "read the node's log (journalctl -u rustbalance) for why the listener is down; restart the node",
        ),
        (None, _) if addr.port() == 0 => {
            Finding::ok(check, format!("{key} {addr}: the system picks a port at start"))
        }
        (None, _) if env.can_bind(addr) => {
            Finding::ok(check, format!("{key} {addr} is free for the node"))
        }
        (None, _) => Finding::fail(
            check,
            format!("{key} {addr} is taken by another program (the node is not running)"),
            format!("stop that program (ss -ltnp | grep {}) or change {key}", addr.port()),
        ),
    }
}

/// The admin and proxy ports.
pub fn ports(cfg: &Config, env: &dyn Env, running: Option<&Running>) -> Vec<Finding> {
    vec![
        port(("admin", "admin.listen"), cfg.admin.listen, running, env),
        port(("proxy", "proxy.listen"), cfg.proxy.listen, running, env),
    ]
}

/// The target answers.
pub fn target(cfg: &Config, env: &dyn Env) -> Finding {
    let Some(t) = &cfg.target else {
        return Finding::skip("target", "none: a publisher-only node".to_string());
    };
    match cfg.target_url() {
        Ok(TargetUrl::Tcp { host, port }) if env.can_connect(&host, port) => {
            Finding::ok("target", format!("{} answers", t.url))
        }
        Ok(TargetUrl::Tcp { .. }) => Finding::fail(
            "target",
            format!("nothing answers at {}", t.url),
            "start the application, or fix target.url (clients get errors while it is down)",
        ),
        Ok(TargetUrl::Onion { .. }) => {
            Finding::skip("target", format!("{} is reached through tor only", t.url))
        }
        Err(e) => Finding::fail("target", e.to_string(), "fix target.url"),
    }
}

/// Every WireGuard peer handshaked recently (from the running node's `/status`).
pub fn mesh(cfg: &Config, env: &dyn Env, running: Option<&Running>) -> Vec<Finding> {
    if cfg.mesh.is_none() {
        return vec![Finding::skip(
            "mesh",
            "no [mesh]: a single node or a cluster without WireGuard",
        )];
    }
    let Some(r) = running else {
        return vec![Finding::skip(
            "mesh",
            "the node is not running: start it, then run doctor again to see its peers",
        )];
    };
    let peers = r.status["mesh"]["peers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let now = env.now();
    let mut out = Vec::new();
    for p in &peers {
        let endpoint = p["endpoint"].as_str().unwrap_or("(no endpoint)");
        let age = p["last_handshake"]["secs_since_epoch"].as_u64().map(|s| {
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_sub(Duration::from_secs(s))
        });
        match age {
            Some(a) if a < HANDSHAKE_STALE => {}
            _ => out.push(Finding::fail(
                "mesh",
                match age {
                    Some(a) => format!("WireGuard peer {endpoint}: last handshake {}s ago", a.as_secs()),
                    None => format!("WireGuard peer {endpoint}: never handshaked"),
                },
                "check that the peer runs and that its UDP port is open between the two machines (firewall, NAT)",
            )),
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "mesh",
            format!(
                "{} WireGuard peer(s), all handshaked in the last {}s",
                peers.len(),
                HANDSHAKE_STALE.as_secs()
            ),
        ));
    }
    out
}

/// How many HSDirs confirmed this node's last publication, per slot.
pub fn hsdirs(running: Option<&Running>) -> Vec<Finding> {
    let Some(r) = running else {
        return vec![Finding::skip(
            "hsdirs",
            "the node is not running: start it, then run doctor again",
        )];
    };
    let c = &r.status["cluster"];
    if c.is_null() {
        return vec![Finding::skip(
            "hsdirs",
            "a single node: tor uploads its own descriptor (see `uploads` in `rustbalance status`)",
        )];
    }
    let Some(slots) = c["last_publish"]["slots"].as_array() else {
        let who = c["lease_holders"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        return vec![Finding::skip(
            "hsdirs",
            format!(
                "this node has not published (publisher: {}): run doctor on the publisher",
                if who.is_empty() { "none yet" } else { &who }
            ),
        )];
    };
    let mut out = Vec::new();
    for s in slots {
        let answers = s["hsdirs"].as_object().cloned().unwrap_or_default();
        let up = answers.values().filter(|v| *v == "UPLOADED").count();
        let want = answers.len().min(HSDIRS_CLIENTS_ASK);
        let period = &s["period_num"];
        if up >= want && up > 0 {
            out.push(Finding::ok(
                "hsdirs",
                format!("period {period}: {up}/{} HSDirs confirmed", answers.len()),
            ));
        } else {
            out.push(Finding::fail(
                "hsdirs",
                format!(
                    "period {period}: only {up}/{} HSDirs confirmed the descriptor",
                    answers.len()
                ),
                "`rustbalance status --json` shows each HSDir's answer \
                 (cluster.last_publish.slots); check the clock and tor's bootstrap",
            ));
        }
    }
    out
}

/// Free space under the data directory.
pub fn disk(cfg: &Config, env: &dyn Env) -> Finding {
    let dir = &cfg.node.data_dir;
    match env.free_bytes(dir) {
        Some(b) if b >= MIN_FREE_BYTES => Finding::ok(
            "disk",
            format!("{} MiB free under {}", b >> 20, dir.display()),
        ),
        Some(b) => Finding::fail(
            "disk",
            format!("only {} MiB free under {}", b >> 20, dir.display()),
            "free space there: tor's cache and the logs need at least 100 MiB",
        ),
        None => Finding::fail(
            "disk",
            format!("cannot read free space under {}", dir.display()),
            "check that node.data_dir exists",
        ),
    }
}
