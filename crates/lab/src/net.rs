//! Where lab processes run and which addresses they use.
//!
//! Every lab owns one `/24` inside `127.0.0.0/8`, `127.B.C.0/24`, chosen from
//! a hash of its directory (or set in [`crate::LabOptions::block`]). Inside
//! it, host numbers are fixed per role, and so are ports, because each
//! process has an address of its own:
//!
//! | hosts          | who                         | ports                          |
//! |----------------|-----------------------------|--------------------------------|
//! | `.10`          | the client                  | SOCKS 9050, control 9051       |
//! | `.11 – .19`    | directory authorities       | OR 5000, Dir 7000, control 9051 |
//! | `.21 – .120`   | relays                      | OR 5000, control 9051          |
//! | `.128 – .254`  | extra tors and programs     | control 9051 (+ SOCKS 9050)    |
//!
//! Two labs therefore never share an address unless their blocks collide
//! (1 in ~48,000 for two directories); [`crate::Lab::start`] probes every
//! address first and reports a collision as [`crate::Error::AddressInUse`].
//!
//! [`Placement`] says where processes run. Today everything runs on the
//! host's loopback. Cluster tests will later put each RustBalance node in a
//! network namespace: the lab will then create its own namespace with a
//! private bridge, and every command is prefixed with `ip netns exec NS`.
//! Only this module knows about that.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::err::{Error, Result};

/// Port of every OR listener.
pub const OR_PORT: u16 = 5000;
/// Port of every authority's directory listener.
pub const DIR_PORT: u16 = 7000;
/// Port of every control listener.
pub const CONTROL_PORT: u16 = 9051;
/// Port of every SOCKS listener.
pub const SOCKS_PORT: u16 = 9050;

/// Host number of the lab client.
pub const CLIENT_HOST: u8 = 10;
/// First host number of the authorities.
pub const FIRST_AUTHORITY_HOST: u8 = 11;
/// Most authorities a lab can have.
pub const MAX_AUTHORITIES: usize = 9;
/// First host number of the relays.
pub const FIRST_RELAY_HOST: u8 = 21;
/// Most relays a lab can have.
pub const MAX_RELAYS: usize = 100;
/// Host numbers of extra processes.
pub const EXTRA_HOSTS: std::ops::RangeInclusive<u8> = 128..=254;

/// The lab's `127.B.C.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrBlock {
    /// Second octet.
    pub b: u8,
    /// Third octet.
    pub c: u8,
}

impl AddrBlock {
    /// A block derived from the (canonical) lab directory. The second octet
    /// stays in 64..=253, away from the well-known `127.0.0.x`.
    pub fn for_dir(dir: &Path) -> Self {
        let h = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        AddrBlock {
            b: 64 + h[0] % 190,
            c: h[1],
        }
    }

    /// A block given explicitly; refuses `127.0.x` and `127.255.x`.
    pub fn new(b: u8, c: u8) -> Result<Self> {
        if b == 0 || b == 255 {
            return Err(Error::Options(format!(
                "address block 127.{b}.{c}.0/24: the second octet must be 1..=254"
            )));
        }
        Ok(AddrBlock { b, c })
    }

    /// The address of host `host` in this block.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.b, self.c, host)
    }
}

impl std::fmt::Display for AddrBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "127.{}.{}.0/24", self.b, self.c)
    }
}

/// Where the lab's processes run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// On the host, listening on loopback addresses only.
    #[default]
    HostLoopback,
    /// Inside a network namespace the lab created (not implemented yet:
    /// [`crate::Lab::create`] refuses it).
    Namespace {
        /// The namespace name (`ip netns` name).
        name: String,
    },
}

impl Placement {
    /// Words to put before every command (`ip netns exec NS`).
    pub fn command_prefix(&self) -> Vec<OsString> {
        match self {
            Placement::HostLoopback => Vec::new(),
            Placement::Namespace { name } => ["ip", "netns", "exec", name.as_str()]
                .iter()
                .map(OsString::from)
                .collect(),
        }
    }

    /// Refuses any address a lab process may not use here.
    pub fn check_addr(&self, ip: Ipv4Addr) -> Result<()> {
        if ip.is_loopback() {
            Ok(())
        } else {
            Err(Error::AddressNotAllowed {
                addr: ip.to_string(),
            })
        }
    }

    /// True when this process (the test or CLI) can reach the lab's
    /// addresses directly.
    pub fn reachable_from_host(&self) -> bool {
        matches!(self, Placement::HostLoopback)
    }
}

/// Tries to bind each address, to find collisions before tor does.
pub(crate) fn probe_free(addrs: &[SocketAddr], block: AddrBlock) -> Result<()> {
    for addr in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            return Err(Error::AddressInUse {
                addr: *addr,
                detail: e.to_string(),
                block: block.to_string(),
            });
        }
    }
    Ok(())
}

/// The addresses among `addrs` that still accept TCP connections.
pub(crate) async fn still_listening(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for addr in addrs {
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        if matches!(conn, Ok(Ok(_))) {
            out.push(*addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_stable_and_in_range() {
        let a = AddrBlock::for_dir(Path::new("/tmp/lab-a"));
        assert_eq!(a, AddrBlock::for_dir(Path::new("/tmp/lab-a")));
        assert_ne!(a, AddrBlock::for_dir(Path::new("/tmp/lab-b")));
        assert!((64..=253).contains(&a.b));
        assert!(a.ip(10).is_loopback());
        assert!(AddrBlock::new(0, 1).is_err());
        assert_eq!(AddrBlock::new(9, 8).unwrap().to_string(), "127.9.8.0/24");
    }

    #[test]
    fn collisions_are_detected_before_start() {
        let block = AddrBlock::new(250, 251).unwrap();
        let taken = std::net::TcpListener::bind((block.ip(200), 0)).unwrap();
        let addr = taken.local_addr().unwrap();
        let free = SocketAddr::from((block.ip(201), addr.port()));
        assert!(probe_free(&[free], block).is_ok());
        match probe_free(&[free, addr], block) {
            Err(Error::AddressInUse {
                addr: a, block: b, ..
            }) => {
                assert_eq!(a, addr);
                assert_eq!(b, "127.250.251.0/24");
            }
            other => panic!("expected AddressInUse, got {other:?}"),
        }
    }

    #[test]
    fn only_loopback_is_allowed() {
        let p = Placement::HostLoopback;
        assert!(p.check_addr(Ipv4Addr::new(127, 3, 4, 5)).is_ok());
        assert!(p.check_addr(Ipv4Addr::new(10, 0, 0, 1)).is_err());
        assert!(p.check_addr(Ipv4Addr::new(0, 0, 0, 0)).is_err());
        assert!(p.command_prefix().is_empty());
        let ns = Placement::Namespace {
            name: "rb-lab".into(),
        };
        assert_eq!(ns.command_prefix().len(), 4);
    }
}
