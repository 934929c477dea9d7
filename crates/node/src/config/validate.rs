//! [`Config::validate`]: every value checked, one function per section; each error names
//! the key and what is allowed.

use super::{
    AdminSection, ClusterSection, Config, IntroDosSection, MeshSection, NodeSection, ProxySection,
    TargetUrl, TorSection,
};
use crate::err::{Error, Result};
use rustbalance_hs::OnionAddress;

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

/// Options tor must not receive from `extra_torrc` because a config key sets them.
const CONFIGURED_TORRC: &[(&str, &str)] = &[
    ("HiddenServiceMaxStreams", "proxy.max_streams_per_circuit"),
    (
        "HiddenServiceMaxStreamsCloseCircuit",
        "proxy.close_circuit_over_max_streams",
    ),
    ("HiddenServiceEnableIntroDoSDefense", "intro_dos.enabled"),
    (
        "HiddenServiceEnableIntroDoSRatePerSec",
        "intro_dos.rate_per_sec",
    ),
    (
        "HiddenServiceEnableIntroDoSBurstPerSec",
        "intro_dos.burst_per_sec",
    ),
];

/// A [`Error::Config`] for `key`.
pub(super) fn invalid(key: &str, problem: impl Into<String>) -> Error {
    Error::Config {
        key: key.to_string(),
        problem: problem.into(),
    }
}

impl Config {
    /// Check every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        node(&self.node)?;
        self.service()?;
        if let Some(m) = &self.mesh {
            if self.cluster.is_none() {
                return Err(invalid("mesh", "a [mesh] needs a [cluster] section"));
            }
            mesh(m)?;
        }
        if let Some(c) = &self.cluster {
            cluster(c)?;
            self.fleet_pow(c)?;
        }
        if self.service.virtual_port == 0 {
            return Err(invalid("service.virtual_port", "must be 1..65535"));
        }
        match &self.target {
            Some(t) => self.target(t)?,
            None => self.publisher_only_fits()?,
        }
        proxy(&self.proxy)?;
        intro_dos(&self.intro_dos)?;
        tor(&self.tor)?;
        self.instances()?;
        let master = self.master_address().ok();
        super::backends::check(&self.backends, master.as_ref())?;
        if !self.backends.is_empty() && self.cluster.is_none() {
            return Err(invalid(
                "backends",
                "[[backends]] need a [cluster] section: the master descriptor listing them is \
                 published by the cluster's elected publisher (a cluster of one node is fine)",
            ));
        }
        if let Some(d) = &self.service.authorized_clients_dir {
            crate::client_auth::read_clients(d)?;
        }
        admin(&self.admin)
    }

    /// `[service]`: a master key, or (cluster workers) the master address.
    fn service(&self) -> Result<()> {
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
        Ok(())
    }

    /// `tor.instances`: 1 to [`super::MAX_TOR_INSTANCES`]; more than one only on a cluster
    /// node with a target, and not with `proxy.export_circuit_id`.
    fn instances(&self) -> Result<()> {
        let Some(k) = self.tor.instances else {
            return Ok(());
        };
        let max = super::MAX_TOR_INSTANCES;
        if k == 0 || k > max {
            return Err(invalid("tor.instances", format!("must be 1..{max}")));
        }
        if k == 1 {
            return Ok(());
        }
        let why = if self.cluster.is_none() {
            "several tors serve one master address only in a cluster (their intro points are \
             merged by the publisher): add a [cluster] section, or set 1"
        } else if self.target.is_none() {
            "a publisher-only node runs no onion service of its own: set 1 or remove the key"
        } else if self.proxy.export_circuit_id {
            "proxy.export_circuit_id numbers circuits per tor, so with several tors two \
             clients could share one number (and one per-circuit stream budget): set 1, or \
             turn export_circuit_id off"
        } else {
            return Ok(());
        };
        Err(invalid("tor.instances", why))
    }

    /// A node without `[target]` is a publisher-only node: it needs the master key, a
    /// `[cluster]` (the publisher is elected; a cluster of one is fine) and backends to
    /// publish for.
    fn publisher_only_fits(&self) -> Result<()> {
        let why = if self.cluster.is_none() {
            "a node without [target] is a publisher-only node and needs a [cluster] section \
             (a cluster of one node is fine); add [target] url = \"tcp://HOST:PORT\" to serve \
             clients from this node"
        } else if self.backends.is_empty() {
            "a node without [target] is a publisher-only node and needs [[backends]] to \
             publish for; add [target] url = \"tcp://HOST:PORT\" to serve clients from this node"
        } else if self.service.master_key.is_none() {
            "a publisher-only node publishes and needs service.master_key; a worker without \
             the key needs a [target]"
        } else if self.mesh.as_ref().is_some_and(|m| m.endpoint.is_some()) {
            "a publisher-only node runs no onion service, so it cannot serve the join \
             endpoint: remove mesh.endpoint"
        } else {
            return Ok(());
        };
        Err(invalid("target", why))
    }

    /// `[target]`: a valid URL, and a mode that fits it.
    fn target(&self, t: &super::TargetSection) -> Result<()> {
        self.target_url()?;
        match t.mode.as_str() {
            "tcp" | "http" => {}
            other => {
                return Err(invalid(
                    "target.mode",
                    format!("{other:?}: allowed are \"tcp\" and \"http\""),
                ))
            }
        }
        if t.mode == "http" && !matches!(self.target_url()?, TargetUrl::Onion { .. }) {
            return Err(invalid(
                "target.mode",
                "\"http\" rewriting is for onion:// targets; use \"tcp\" for tcp:// targets",
            ));
        }
        Ok(())
    }
}

/// `[node]`.
fn node(n: &NodeSection) -> Result<()> {
    let name = &n.name;
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            "node.name",
            format!("{name:?}: use 1 to 32 letters, digits, '-' or '_'"),
        ));
    }
    if !n.data_dir.is_absolute() {
        return Err(invalid("node.data_dir", "must be an absolute path"));
    }
    Ok(())
}

/// `[mesh]`.
fn mesh(m: &MeshSection) -> Result<()> {
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
    Ok(())
}

impl Config {
    /// `cluster.fleet_pow` needs what `ADD_ONION` of the master key with PoW needs.
    fn fleet_pow(&self, c: &ClusterSection) -> Result<()> {
        if !c.fleet_pow {
            return Ok(());
        }
        let why = if !self.pow.enabled {
            "needs [pow] enabled = true (tor's PoW is what fleet PoW publishes)"
        } else if self.service.authorized_clients_dir.is_some() {
            "cannot be used with service.authorized_clients_dir (tor's ADD_ONION does not \
             take restricted discovery)"
        } else if self.proxy.export_circuit_id {
            "cannot be used with proxy.export_circuit_id (tor's ADD_ONION cannot export \
             circuit ids)"
        } else if c.fleet_pow_min_effort > crate::cluster::fleet::MAX_EFFORT {
            "cluster.fleet_pow_min_effort is over 10000, the most tor's client solves"
        } else {
            return Ok(());
        };
        Err(invalid("cluster.fleet_pow", why))
    }
}

/// `[cluster]`.
fn cluster(c: &ClusterSection) -> Result<()> {
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
    for (key, v) in [
        ("cluster.solo_after_secs", c.solo_after_secs),
        ("cluster.solo_drain_secs", c.solo_drain_secs),
    ] {
        if v.is_some_and(|s| s < 5) {
            return Err(invalid(
                key,
                "must be at least 5 (default 30): shorter lets a flapping peer flip modes",
            ));
        }
    }
    if c.hsdir_check_secs.is_some_and(|s| s < 10) {
        return Err(invalid(
            "cluster.hsdir_check_secs",
            "must be at least 10 (default 600; each check fetches from 6-8 HSDirs)",
        ));
    }
    Ok(())
}

/// `[proxy]`.
fn proxy(p: &ProxySection) -> Result<()> {
    if !p.listen.ip().is_loopback() {
        return Err(invalid(
            "proxy.listen",
            "must be a loopback address (only tor connects to it)",
        ));
    }
    if p.connect_timeout_secs == 0 || p.connect_timeout_secs > 300 {
        return Err(invalid("proxy.connect_timeout_secs", "must be 1..=300"));
    }
    if p.idle_timeout_secs == 0 {
        return Err(invalid("proxy.idle_timeout_secs", "must be at least 1"));
    }
    if p.head_timeout_secs == 0 || p.head_timeout_secs > 300 {
        return Err(invalid("proxy.head_timeout_secs", "must be 1..=300"));
    }
    if p.max_connections == 0 {
        return Err(invalid("proxy.max_connections", "must be at least 1"));
    }
    if p.max_streams_per_circuit > 65535 {
        return Err(invalid(
            "proxy.max_streams_per_circuit",
            "must be 0..=65535 (tor's HiddenServiceMaxStreams; 0: no limit)",
        ));
    }
    match p.proxy_protocol.as_str() {
        "none" | "v1" | "v2" => Ok(()),
        other => Err(invalid(
            "proxy.proxy_protocol",
            format!("{other:?}: allowed are \"none\", \"v1\", \"v2\""),
        )),
    }
}

/// `[intro_dos]`: tor refuses a burst below the rate.
fn intro_dos(d: &IntroDosSection) -> Result<()> {
    if d.rate_per_sec == 0 {
        return Err(invalid("intro_dos.rate_per_sec", "must be at least 1"));
    }
    if d.burst_per_sec < d.rate_per_sec {
        return Err(invalid(
            "intro_dos.burst_per_sec",
            format!(
                "must be at least rate_per_sec ({}); tor refuses a smaller burst",
                d.rate_per_sec
            ),
        ));
    }
    Ok(())
}

/// `[tor]`.
fn tor(t: &TorSection) -> Result<()> {
    for line in &t.extra_torrc {
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
        if let Some((o, key)) = CONFIGURED_TORRC
            .iter()
            .find(|(o, _)| o.eq_ignore_ascii_case(opt))
        {
            return Err(invalid(
                "tor.extra_torrc",
                format!("{o} comes from `{key}` in this file; set it there and remove that line"),
            ));
        }
    }
    if let Some(d) = &t.debug_log {
        debug_log(d)?;
    }
    if t.bootstrap_timeout_secs == 0 {
        return Err(invalid("tor.bootstrap_timeout_secs", "must be at least 1"));
    }
    Ok(())
}

/// `tor.debug_log`: severities only (`info`, `[rend]info`, `[rend,circ]debug notice`, `info-err`):
/// the destination is RustBalance's, so no `file`, `stdout` or `syslog` word may slip in.
fn debug_log(spec: &str) -> Result<()> {
    const SEVERITIES: &[&str] = &["debug", "info", "notice", "warn", "err"];
    let bad = || {
        invalid(
            "tor.debug_log",
            format!(
                "`{spec}` is not a tor log severity: write one or more of `[DOMAIN,...]SEVERITY` or \
                 `SEVERITY-SEVERITY` (severities {}, e.g. `[rend]info`); the file is always \
                 DATA/tor-debug.log",
                SEVERITIES.join(", ")
            ),
        )
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    if words.is_empty() {
        return Err(bad());
    }
    for w in words {
        let sev = match w.strip_prefix('[') {
            Some(rest) => {
                let (domains, sev) = rest.split_once(']').ok_or_else(bad)?;
                let ok = domains.split(',').all(|d| {
                    !d.is_empty()
                        && d.trim_start_matches('~')
                            .bytes()
                            .all(|b| b.is_ascii_lowercase())
                });
                if !ok {
                    return Err(bad());
                }
                sev
            }
            None => w,
        };
        if !sev.split('-').all(|s| SEVERITIES.contains(&s)) || sev.split('-').count() > 2 {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[admin]`.
fn admin(a: &AdminSection) -> Result<()> {
    let ip = a.listen.ip();
    let private = match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        std::net::IpAddr::V6(v6) => v6.is_loopback(),
    };
    if !private {
        return Err(invalid(
            "admin.listen",
            format!("{ip} is public: use a loopback or private address"),
        ));
    }
    Ok(())
}
