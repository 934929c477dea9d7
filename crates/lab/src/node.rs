//! The torrc of each kind of lab process.
//!
//! These are the options that make a private network work with tor
//! 0.4.9.11: `TestingTorNetwork`, 20-second voting with 4-second vote and
//! distribution delays (Onionbalance's `--is-testnet` assumes 20 s), flags
//! voted by fiat (`TestingDirAuthVoteGuard/Exit/HSDir`), `AssumeReachable`,
//! no IPv6, empty GeoIP files, and every listener on the node's own
//! loopback address.

use std::net::Ipv4Addr;

use rustbalance_tor::Torrc;

use crate::err::Result;
use crate::net::{CONTROL_PORT, DIR_PORT, OR_PORT};
use crate::state::{LabState, Layout, NodeSpec, Role};

/// Lines every tor of the lab gets: testing network, data directory, log,
/// control port (cookie authentication), GeoIP, the lab's authorities.
pub(crate) fn common(layout: &Layout, state: &LabState, name: &str, ip: Ipv4Addr) -> Result<Torrc> {
    let dir = layout.node(name);
    let mut t = Torrc::new();
    t.push("TestingTorNetwork", 1)?
        .push("Nickname", name)?
        .push("DataDirectory", dir.display())?
        .push("PidFile", layout.pid_file(name).display())?
        // Introductions and rendezvous at info (relays: INTRODUCE1 refused per intro point,
        // by auth key or by the DoS limit; the client: intro points it gave up on), the rest at notice: what a
        // lab test prints when a listed node serves nothing (issue 15).
        .push(
            "Log",
            format!(
                "[rend,protocol]info notice file {}",
                layout.log_file(name).display()
            ),
        )?
        .push("SafeLogging", 0)?
        .push("ShutdownWaitLength", 0)?
        .push("ControlPort", format!("{ip}:{CONTROL_PORT}"))?
        .push("CookieAuthentication", 1)?
        .push("GeoIPFile", layout.geoip().display())?
        .push("GeoIPv6File", layout.geoip().display())?
        .push("OutboundBindAddress", ip)?
        .push("ClientUseIPv6", 0)?;
    for a in &state.authorities {
        t.push(
            "DirAuthority",
            format!(
                "{} orport={OR_PORT} v3ident={} {}:{DIR_PORT} {}",
                a.nick, a.v3ident, a.ip, a.fingerprint
            ),
        )?;
    }
    Ok(t)
}

/// Lines of a relay (authorities included).
fn relay(t: &mut Torrc, node: &NodeSpec) -> Result<()> {
    t.push("SocksPort", 0)?
        .push("ORPort", format!("{}:{OR_PORT}", node.ip))?
        .push("Address", node.ip)?
        .push("AddressDisableIPv6", 1)?
        .push("AssumeReachable", 1)?
        .push(
            "ContactInfo",
            format!("rustbalance-lab-{} <nobody@example.invalid>", node.name),
        )?;
    Ok(())
}

/// The full torrc of a core node.
pub(crate) fn core_torrc(layout: &Layout, state: &LabState, node: &NodeSpec) -> Result<Torrc> {
    let mut t = common(layout, state, &node.name, node.ip)?;
    let ips = |role: Role| -> String {
        let v: Vec<String> = state
            .nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.ip.to_string())
            .collect();
        v.join(",")
    };
    match node.role {
        Role::Authority => {
            relay(&mut t, node)?;
            t.push("DirPort", format!("{}:{DIR_PORT}", node.ip))?
                .push("ExitRelay", 0)?
                .push("ExitPolicy", "reject *:*")?
                .push("AuthoritativeDirectory", 1)?
                .push("V3AuthoritativeDirectory", 1)?
                .push("V3AuthVotingInterval", "20 seconds")?
                .push("V3AuthVoteDelay", "4 seconds")?
                .push("V3AuthDistDelay", "4 seconds")?
                .push("TestingV3AuthInitialVotingInterval", "20 seconds")?
                .push("TestingV3AuthInitialVoteDelay", "4 seconds")?
                .push("TestingV3AuthInitialDistDelay", "4 seconds")?
                .push("TestingDirAuthVoteGuard", ips(Role::Guard))?
                .push("TestingDirAuthVoteExit", ips(Role::Exit))?
                .push("TestingDirAuthVoteHSDir", "*")?
                // Stable and Fast for every relay from the first consensus.
                // Otherwise only a few relays are Stable at first, and a
                // client's high-uptime internal (onion service) circuits
                // then pick the same node as guard and last hop over and
                // over ("Client asked me to extend back to the previous
                // hop"): bootstrap stalled for 30-80 s under load.
                .push("AuthDirVoteStableGuaranteeMinUptime", "0 seconds")?
                .push("AuthDirVoteStableGuaranteeMTBF", "0 seconds")?
                // Fast needs an advertised bandwidth at or above the
                // 12.5th percentile, so with differing bandwidths the
                // slowest relay never got it (CI: "r6 lacks Fast" for
                // 180 s). A guarantee of 0 disables the guarantee (tor's
                // voteflags.c tests it for non-zero); 1 byte puts the
                // threshold at 0 kB/s.
                .push("AuthDirFastGuarantee", "1 bytes")?
                // Equal weights for every relay (crate::bandwidth): self-observed
                // bandwidths on loopback gave half the relays weight 0, and intro
                // points crowded onto a few relays.
                .push("V3BandwidthsFile", layout.bandwidth_file().display())?;
        }
        Role::Guard => {
            relay(&mut t, node)?;
            t.push("ExitRelay", 0)?.push("ExitPolicy", "reject *:*")?;
        }
        Role::Exit => {
            relay(&mut t, node)?;
            // Exits reach loopback only (demo targets), nothing else.
            t.push("ExitRelay", 1)?
                .push("ExitPolicyRejectPrivate", 0)?
                .push("ExitPolicy", "accept 127.0.0.0/8:*")?
                .push("ExitPolicy", "reject *:*")?;
        }
        Role::Client => {
            let port = node.socks_port.unwrap_or(crate::net::SOCKS_PORT);
            t.push("SocksPort", format!("{}:{port} ExtendedErrors", node.ip))?;
        }
        Role::Tor | Role::Program => {}
    }
    Ok(t)
}
