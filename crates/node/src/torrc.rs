//! The torrc a node renders for its tor.

use crate::config::Config;
use crate::err::Result;
use crate::layout::Layout;
use rustbalance_tor::Torrc;
use std::net::SocketAddr;

/// The torrc of a single-node service: tor holds the master key and
/// publishes natively, with tor's own PoW defences.
pub fn single_node(
    cfg: &Config,
    layout: &Layout,
    proxy: SocketAddr,
    owner_pid: u32,
    socks: bool,
) -> Result<Torrc> {
    let mut t = Torrc::new();
    common(
        &mut t,
        layout,
        owner_pid,
        socks,
        cfg.tor.debug_log.as_deref(),
    )?;
    t.push("HiddenServiceDir", layout.master_hs_dir().display())?;
    t.push(
        "HiddenServicePort",
        format!("{} {proxy}", cfg.service.virtual_port),
    )?;
    service_tail(&mut t, cfg, !cfg.pow.enabled, true)?;
    Ok(t)
}

/// The torrc of a cluster node: an Onionbalance-style instance with its
/// own key that accepts introductions for the master address (`ob_config`).
/// It publishes its own descriptors (clients never ask for them, but the node
/// fetches the current period's one back: tor's control port shows only the
/// previous period's descriptor after a period starts, see
/// `publisher::instance_descriptor_from_hsdirs`); the cluster's publisher
/// uploads the merged master descriptor.
pub fn instance(cfg: &Config, layout: &Layout, proxy: SocketAddr, owner_pid: u32) -> Result<Torrc> {
    // A SOCKS port for the canary (cluster/canary.rs: peers reached through Tor).
    instance_service(cfg, layout, proxy, owner_pid, true)
}

/// Turbo mode (`tor.instances`): the torrc of an extra tor of a cluster node, from its
/// own [`Layout::extra_instance`]: an instance like the first one's, behind the same proxy,
/// without a SOCKS port and the backends' client keys (the canary, the backend probes and
/// the publisher use the first tor), and without the `*Port` lines of `tor.extra_torrc`
/// (a fixed port can be bound once: they go to the first tor only).
pub fn extra_instance(
    cfg: &Config,
    layout: &Layout,
    proxy: SocketAddr,
    owner_pid: u32,
) -> Result<Torrc> {
    instance_service(cfg, layout, proxy, owner_pid, false)
}

/// An instance service behind `proxy`: the node's first tor, or an extra one.
fn instance_service(
    cfg: &Config,
    layout: &Layout,
    proxy: SocketAddr,
    owner_pid: u32,
    first_tor: bool,
) -> Result<Torrc> {
    let mut t = fetching_client(cfg, layout, owner_pid, first_tor)?;
    t.push("HiddenServiceDir", layout.instance_hs_dir().display())?;
    t.push(
        "HiddenServicePort",
        format!("{} {proxy}", cfg.service.virtual_port),
    )?;
    t.push("HiddenServiceOnionbalanceInstance", 1)?;
    // PoW on the instance: its descriptor carries the instance's pow-params, which never go
    // into the master descriptor (this tor verifies solutions over its own blinded key and
    // seed, clients solve over the master's: `cluster::pow`). Clients that send no solution
    // are still served, at the lowest priority, as with any PoW service; tor's queue still
    // orders introductions. The intro points' own rate limit is on by default: the master
    // descriptor of a cluster carries no PoW parameters, so it is the defence clients meet.
    service_tail(&mut t, cfg, true, first_tor)?;
    Ok(t)
}

/// What a cluster node's tors and a publisher-only node's tor share: the common part (the
/// node's first tor: with a SOCKS port and the backends' client keys), each new consensus as directory caches take it, and the backends' client
/// keys. Directory caches take a consensus 1-3 min after it is made on the real network,
/// clients 45-110 min after. A node learns from its consensus that a new time period has
/// started, and only then can it fetch its instance's (or a backend's) descriptor for that
/// period and have the publisher list those intro points (the ones that outlive the next
/// SRV). Clients compute the new period only once they hold that consensus, so the nodes
/// are ahead of them by at least 40 minutes, not behind.
fn fetching_client(
    cfg: &Config,
    layout: &Layout,
    owner_pid: u32,
    first_tor: bool,
) -> Result<Torrc> {
    let mut t = Torrc::new();
    common(
        &mut t,
        layout,
        owner_pid,
        first_tor,
        cfg.tor.debug_log.as_deref(),
    )?;
    t.push("FetchDirInfoEarly", 1)?;
    t.push("FetchDirInfoExtraEarly", 1)?;
    if first_tor {
        backend_client_auth(&mut t, cfg)?;
    }
    Ok(t)
}

/// A publisher-only node's tor: a client with the control and SOCKS ports (fetching and
/// probing the backends, uploading the master descriptor) and no onion service, then
/// `tor.extra_torrc`.
pub fn publisher_only(cfg: &Config, layout: &Layout, owner_pid: u32) -> Result<Torrc> {
    // Each new consensus as soon as directory caches take it: the backends' descriptors of
    // a new time period are fetched without delay.
    let mut t = fetching_client(cfg, layout, owner_pid, true)?;
    extra(&mut t, &cfg.tor.extra_torrc)?;
    Ok(t)
}

/// `ClientOnionAuthDir` for restricted fetch-mode backends
/// (`cluster.backends_client_auth_dir`): the node's tor reaches them when it probes.
fn backend_client_auth(t: &mut Torrc, cfg: &Config) -> Result<()> {
    let dir = cfg
        .cluster
        .as_ref()
        .and_then(|c| c.backends_client_auth_dir.as_ref());
    if let (Some(dir), false) = (dir, cfg.backends.is_empty()) {
        t.push("ClientOnionAuthDir", dir.display())?;
    }
    Ok(())
}

/// The lines after `HiddenServicePort` both kinds of service get: `[pow]`, the stream
/// limits per circuit, the intro points' rate limit (`intro_dos_default`: whether it is on
/// when `intro_dos.enabled` is unset), the circuit-id export, then `tor.extra_torrc`.
fn service_tail(
    t: &mut Torrc,
    cfg: &Config,
    intro_dos_default: bool,
    first_tor: bool,
) -> Result<()> {
    t.push("HiddenServicePoWDefensesEnabled", u8::from(cfg.pow.enabled))?;
    if cfg.pow.enabled {
        t.push("HiddenServicePoWQueueRate", cfg.pow.queue_rate)?;
        t.push("HiddenServicePoWQueueBurst", cfg.pow.queue_burst)?;
    }
    t.push("HiddenServiceMaxStreams", cfg.proxy.max_streams_per_circuit)?;
    t.push(
        "HiddenServiceMaxStreamsCloseCircuit",
        u8::from(cfg.proxy.close_circuit_over_max_streams),
    )?;
    let dos = &cfg.intro_dos;
    let dos_on = dos.enabled.unwrap_or(intro_dos_default);
    t.push("HiddenServiceEnableIntroDoSDefense", u8::from(dos_on))?;
    if dos_on {
        t.push("HiddenServiceEnableIntroDoSRatePerSec", dos.rate_per_sec)?;
        t.push("HiddenServiceEnableIntroDoSBurstPerSec", dos.burst_per_sec)?;
    }
    if cfg.proxy.export_circuit_id {
        t.push("HiddenServiceExportCircuitID", "haproxy")?;
    }
    if first_tor {
        extra(t, &cfg.tor.extra_torrc)
    } else {
        let unported: Vec<String> = cfg
            .tor
            .extra_torrc
            .iter()
            .filter(|l| !binds_a_port(l))
            .cloned()
            .collect();
        extra(t, &unported)
    }
}

/// An `extra_torrc` line that binds a port (`SocksPort`, `ORPort`, `MetricsPort`, ...):
/// two tors cannot both bind a fixed one.
fn binds_a_port(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|o| o.to_ascii_lowercase().ends_with("port"))
}

/// Append `tor.extra_torrc`-style lines (`Option value`).
fn extra(t: &mut Torrc, lines: &[String]) -> Result<()> {
    for line in lines {
        let (k, v) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((line.trim(), ""));
        t.push(k, v.trim())?;
    }
    Ok(())
}

/// The torrc of the short-lived client tor `rustbalance join` uses to reach the cluster
/// (SOCKS on a free loopback port, no onion service). Its DataDirectory is the node's own,
/// so the consensus it fetches is reused when the node starts.
pub fn join_client(layout: &Layout, owner_pid: u32, extra_torrc: &[String]) -> Result<Torrc> {
    let mut t = Torrc::new();
    common(&mut t, layout, owner_pid, true, None)?;
    extra(&mut t, extra_torrc)?;
    Ok(t)
}

/// Lines every node's tor gets (`debug_log`: `tor.debug_log`, a second log when set).
fn common(
    t: &mut Torrc,
    layout: &Layout,
    owner_pid: u32,
    socks: bool,
    debug_log: Option<&str>,
) -> Result<()> {
    t.push("DataDirectory", layout.tor_dir().display())?;
    t.push("RunAsDaemon", 0)?;
    t.push("__OwningControllerProcess", owner_pid)?;
    t.push("ControlPort", "127.0.0.1:auto")?;
    t.push(
        "ControlPortWriteToFile",
        layout.control_port_file().display(),
    )?;
    t.push("CookieAuthentication", 1)?;
    t.push("SocksPort", if socks { "127.0.0.1:auto" } else { "0" })?;
    t.push("Log", format!("notice file {}", layout.tor_log().display()))?;
    if let Some(d) = debug_log {
        t.push(
            "Log",
            format!("{d} file {}", layout.tor_debug_log().display()),
        )?;
    }
    t.push("AvoidDiskWrites", 1)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!(
            "[node]\nname = \"n\"\ndata_dir = \"/x\"\n[service]\n[target]\nurl = \"tcp://127.0.0.1:1\"\n{extra}"
        ))
        .unwrap()
    }

    fn value<'a>(t: &'a Torrc, o: &'a str) -> Vec<&'a str> {
        t.values(o).collect()
    }

    /// Turbo mode: an extra tor is an instance like the first, in its own directory, behind
    /// the same proxy port, with the lab's lines, and with no SOCKS port.
    #[test]
    fn an_extra_tor_is_an_instance_of_its_own() {
        let l = Layout::new(Path::new("/x"));
        let p = SocketAddr::from(([127, 0, 0, 1], 9));
        let c = config(
            "[tor]\nextra_torrc = [\"TestingTorNetwork 1\", \"MetricsPort 127.0.0.1:9035\"]\n",
        );
        let first = instance(&c, &l, p, 1).unwrap();
        let t = extra_instance(&c, &l.extra_instance(2), p, 1).unwrap();
        assert_eq!(value(&t, "DataDirectory"), ["/x/instance-2/tor"]);
        assert_eq!(value(&t, "HiddenServiceDir"), ["/x/instance-2/hs-instance"]);
        assert_eq!(
            value(&t, "HiddenServicePort"),
            value(&first, "HiddenServicePort")
        );
        assert_eq!(value(&t, "HiddenServiceOnionbalanceInstance"), ["1"]);
        assert_eq!(value(&t, "TestingTorNetwork"), ["1"]);
        assert_eq!(value(&t, "SocksPort"), ["0"]);
        assert_eq!(value(&first, "SocksPort"), ["127.0.0.1:auto"]);
        // A fixed port from extra_torrc goes to the first tor only (two cannot bind it).
        assert_eq!(value(&first, "MetricsPort"), ["127.0.0.1:9035"]);
        assert!(!t.contains("MetricsPort"));
    }

    /// A publisher-only node's tor runs no onion service but gets `tor.extra_torrc`: the
    /// first lab run of the publisher-only scenario gave it none, so it missed the lab's
    /// `TestingTorNetwork` and `DirAuthority` lines and tried the real network's
    /// authorities instead of bootstrapping in the lab.
    #[test]
    fn a_publisher_only_tor_gets_the_extra_lines_and_no_onion_service() {
        let l = Layout::new(Path::new("/x"));
        let c = config(
            "[tor]\nextra_torrc = [\"TestingTorNetwork 1\", \"DirAuthority a 127.0.0.1:1 00\"]\n",
        );
        let t = publisher_only(&c, &l, 1).unwrap();
        assert_eq!(value(&t, "TestingTorNetwork"), ["1"]);
        assert_eq!(value(&t, "DirAuthority"), ["a 127.0.0.1:1 00"]);
        assert!(!t.contains("HiddenServiceDir") && !t.contains("HiddenServicePort"));
        assert!(t.contains("SocksPort"), "the backend probe needs SOCKS");
    }

    /// Restricted backends: both kinds of publisher-eligible tor get the key directory as
    /// `ClientOnionAuthDir` (the backend probe goes through them); without backends, no.
    #[test]
    fn backend_client_keys_reach_the_tor_that_probes_them() {
        let l = Layout::new(Path::new("/x"));
        let p = SocketAddr::from(([127, 0, 0, 1], 1));
        let cluster = "[cluster]\nsecret_file = \"/s\"\nlisten = \"127.0.0.1:1\"\n\
                       backends_client_auth_dir = \"/keys\"\n";
        let backend = "[[backends]]\naddress = \"x\"\n";
        let c = config(&format!("{cluster}{backend}"));
        assert_eq!(
            value(&instance(&c, &l, p, 1).unwrap(), "ClientOnionAuthDir"),
            ["/keys"]
        );
        assert_eq!(
            value(&publisher_only(&c, &l, 1).unwrap(), "ClientOnionAuthDir"),
            ["/keys"]
        );
        // Turbo mode's extra tors probe nothing: no keys.
        assert!(!extra_instance(&c, &l.extra_instance(1), p, 1)
            .unwrap()
            .contains("ClientOnionAuthDir"));
        let c = config(cluster);
        assert!(!instance(&c, &l, p, 1)
            .unwrap()
            .contains("ClientOnionAuthDir"));
    }

    #[test]
    fn stream_and_intro_limits_have_defaults_and_follow_the_config() {
        let l = Layout::new(Path::new("/x"));
        let p = SocketAddr::from(([127, 0, 0, 1], 1));
        let t = instance(&config(""), &l, p, 1).unwrap();
        assert_eq!(value(&t, "HiddenServiceMaxStreams"), ["128"]);
        assert_eq!(value(&t, "HiddenServiceMaxStreamsCloseCircuit"), ["1"]);
        assert_eq!(value(&t, "HiddenServiceEnableIntroDoSDefense"), ["1"]);
        assert_eq!(value(&t, "HiddenServiceEnableIntroDoSRatePerSec"), ["25"]);
        assert_eq!(value(&t, "HiddenServiceEnableIntroDoSBurstPerSec"), ["200"]);
        // Single node with PoW: the intro points' fixed rate stays off by default.
        let t = single_node(&config(""), &l, p, 1, false).unwrap();
        assert_eq!(value(&t, "HiddenServiceEnableIntroDoSDefense"), ["0"]);
        assert!(!t.contains("HiddenServiceEnableIntroDoSRatePerSec"));
        let c = config(
            "[proxy]\nmax_streams_per_circuit = 7\nclose_circuit_over_max_streams = false\n\
             [intro_dos]\nenabled = true\nrate_per_sec = 5\nburst_per_sec = 9\n",
        );
        let t = single_node(&c, &l, p, 1, false).unwrap();
        assert_eq!(value(&t, "HiddenServiceMaxStreams"), ["7"]);
        assert_eq!(value(&t, "HiddenServiceMaxStreamsCloseCircuit"), ["0"]);
        assert_eq!(value(&t, "HiddenServiceEnableIntroDoSRatePerSec"), ["5"]);
        assert_eq!(value(&t, "HiddenServiceEnableIntroDoSBurstPerSec"), ["9"]);
    }

    /// tor itself (0.4.9 here) accepts the instance torrc with these options next to
    /// `HiddenServiceOnionbalanceInstance`, and refuses a burst below the rate (which
    /// the config validation therefore refuses first).
    #[test]
    fn tor_accepts_the_instance_torrc() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let hs = l.instance_hs_dir();
        std::fs::create_dir(&hs).unwrap();
        std::fs::set_permissions(&hs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let master = rustbalance_hs::OnionAddress::from_public_key([7u8; 32]);
        std::fs::write(
            hs.join("ob_config"),
            format!("MasterOnionAddress {master}\n"),
        )
        .unwrap();
        let p = SocketAddr::from(([127, 0, 0, 1], 1));
        let verify = |c: &Config| {
            let f = d.path().join("torrc");
            instance(c, &l, p, std::process::id())
                .unwrap()
                .write_to(&f)
                .unwrap();
            let o = std::process::Command::new("tor")
                .arg("--verify-config")
                .arg("-f")
                .arg(&f)
                .output()
                .expect("tor must be installed for this test (Debian package `tor`)");
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).to_string(),
            )
        };
        let (ok, out) = verify(&config("[proxy]\nexport_circuit_id = true\n"));
        assert!(ok, "tor refused the instance torrc:\n{out}");
        let (ok, _) = verify(&config("[intro_dos]\nrate_per_sec = 300\n"));
        assert!(!ok, "tor took a burst below the rate");
    }
}
