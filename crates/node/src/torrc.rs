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
    common(&mut t, layout, owner_pid, socks)?;
    t.push("HiddenServiceDir", layout.master_hs_dir().display())?;
    t.push(
        "HiddenServicePort",
        format!("{} {proxy}", cfg.service.virtual_port),
    )?;
    service_tail(&mut t, cfg)?;
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
    let mut t = Torrc::new();
    common(&mut t, layout, owner_pid, false)?;
    // Take each new consensus as directory caches do (1-3 min after it is made on the real
    // network), not as clients do (45-110 min after). A node learns from its consensus that
    // a new time period has started, and only then can it fetch its instance's descriptor
    // for that period and have the publisher list those intro points (the ones that outlive
    // the next SRV). Clients compute the new period only once they hold that consensus,
    // so the nodes are ahead of them by at least 40 minutes, not behind.
    t.push("FetchDirInfoEarly", 1)?;
    t.push("FetchDirInfoExtraEarly", 1)?;
    t.push("HiddenServiceDir", layout.instance_hs_dir().display())?;
    t.push(
        "HiddenServicePort",
        format!("{} {proxy}", cfg.service.virtual_port),
    )?;
    t.push("HiddenServiceOnionbalanceInstance", 1)?;
    // PoW on the instance: its descriptor then carries the instance's pow-params, which the
    // publisher copies into the master descriptor while this node is the only one left
    // (one seed; a merged descriptor of several nodes cannot carry theirs). Clients that
    // send no solution are still served, at the lowest priority, as with any PoW service.
    service_tail(&mut t, cfg)?;
    Ok(t)
}

/// The lines after `HiddenServicePort` both kinds of service get: `[pow]`, the circuit-id
/// export, then `tor.extra_torrc`.
fn service_tail(t: &mut Torrc, cfg: &Config) -> Result<()> {
    t.push("HiddenServicePoWDefensesEnabled", u8::from(cfg.pow.enabled))?;
    if cfg.pow.enabled {
        t.push("HiddenServicePoWQueueRate", cfg.pow.queue_rate)?;
        t.push("HiddenServicePoWQueueBurst", cfg.pow.queue_burst)?;
    }
    if cfg.proxy.export_circuit_id {
        t.push("HiddenServiceExportCircuitID", "haproxy")?;
    }
    extra(t, cfg)
}

fn extra(t: &mut Torrc, cfg: &Config) -> Result<()> {
    for line in &cfg.tor.extra_torrc {
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
    common(&mut t, layout, owner_pid, true)?;
    for line in extra_torrc {
        let (k, v) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((line.trim(), ""));
        t.push(k, v.trim())?;
    }
    Ok(t)
}

/// Lines every node's tor gets.
fn common(t: &mut Torrc, layout: &Layout, owner_pid: u32, socks: bool) -> Result<()> {
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
    t.push("AvoidDiskWrites", 1)?;
    Ok(())
}
