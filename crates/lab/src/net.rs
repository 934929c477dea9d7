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
//! [`Placement`] says where processes run: on the host's loopback, or in
//! the lab's own network namespace (see [`crate::netns`]). There every tor
//! listens on `10.B.C.H` (same `B`, `C`, `H`) on the namespace's bridge, and
//! the lab forwards `127.B.C.H:PORT` on the host to it, so the addresses the
//! host uses (control ports, the client's SOCKS port) are the same in both
//! placements ([`Placement::host_view`]).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

    /// The address of host `host` on the bridge of a namespaced lab,
    /// `10.B.C.H`: it exists only inside the lab's own namespaces.
    pub fn net_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.b, self.c, host)
    }

    /// True for `10.B.C.1..=254`, the bridge subnet of a namespaced lab.
    pub fn is_net_ip(&self, ip: Ipv4Addr) -> bool {
        let [a, b, c, h] = ip.octets();
        (a, b, c) == (10, self.b, self.c) && h != 0 && h != 255
    }
}

impl std::fmt::Display for AddrBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "127.{}.{}.0/24", self.b, self.c)
    }
}

/// Host number of the bridge's own address (`10.B.C.1`), the default
/// gateway of every node namespace.
pub const GATEWAY_HOST: u8 = 1;

/// Where the lab's processes run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// On the host, listening on loopback addresses only.
    #[default]
    HostLoopback,
    /// Inside a network namespace the lab creates at start and deletes at
    /// stop, with a bridge to which node namespaces attach (needs root).
    Namespace {
        /// The namespace name (`ip netns` name). Empty: `rbl-` and six hex
        /// digits of a hash of the lab directory (see [`Placement::namespace`]).
        name: String,
    },
}

impl Placement {
    /// The namespaced placement with a name derived from the lab directory.
    pub fn namespace() -> Self {
        Placement::Namespace {
            name: String::new(),
        }
    }

    /// Fills in the derived namespace name and checks a given one: `rbl-`
    /// then at most 11 lowercase letters and digits. No further `-`: node
    /// namespaces are `NAME-NODE`, so no lab's name may look like another
    /// lab's node namespace (stop deletes those).
    pub(crate) fn resolve(self, dir: &Path) -> Result<Self> {
        match self {
            Placement::HostLoopback => Ok(self),
            Placement::Namespace { name } if name.is_empty() => {
                let h = Sha256::digest(dir.as_os_str().as_encoded_bytes());
                Ok(Placement::Namespace {
                    name: format!("rbl-{}", hex::encode(&h[..3])),
                })
            }
            Placement::Namespace { name } => {
                let ok = name.len() <= 15
                    && name.len() > 4
                    && name.starts_with("rbl-")
                    && name[4..]
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                if ok {
                    Ok(Placement::Namespace { name })
                } else {
                    Err(Error::Options(format!(
                        "namespace name {name:?}: use `rbl-` then 1 to 11 lowercase letters and digits, or leave it empty (Placement::namespace()) to derive one"
                    )))
                }
            }
        }
    }

    /// The lab's namespace, if it has one.
    pub fn netns(&self) -> Option<&str> {
        match self {
            Placement::HostLoopback => None,
            Placement::Namespace { name } => Some(name),
        }
    }

    /// The address a lab process with host number `host` listens on:
    /// `127.B.C.H` on the host, `10.B.C.H` in the lab's namespace.
    pub fn listen_ip(&self, block: AddrBlock, host: u8) -> Ipv4Addr {
        match self {
            Placement::HostLoopback => block.ip(host),
            Placement::Namespace { .. } => block.net_ip(host),
        }
    }

    /// Where the host (this process, the CLI) reaches `addr`, an address a
    /// lab process listens on: itself on the host, the lab's forwarder
    /// `127.B.C.H:PORT` for `10.B.C.H:PORT` in the namespace.
    pub fn host_view(&self, block: AddrBlock, addr: SocketAddr) -> SocketAddr {
        match (self, addr.ip()) {
            (Placement::Namespace { .. }, IpAddr::V4(v4)) if block.is_net_ip(v4) => {
                SocketAddr::from((block.ip(v4.octets()[3]), addr.port()))
            }
            _ => addr,
        }
    }

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

    /// Refuses any address a lab process may not use here: loopback, and in
    /// a namespaced lab also the bridge subnet `10.B.C.0/24`.
    pub fn check_addr(&self, block: AddrBlock, ip: Ipv4Addr) -> Result<()> {
        let ok = match self {
            Placement::HostLoopback => ip.is_loopback(),
            Placement::Namespace { .. } => ip.is_loopback() || block.is_net_ip(ip),
        };
        if ok {
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
        let block = AddrBlock::new(3, 4).unwrap();
        let p = Placement::HostLoopback;
        assert!(p.check_addr(block, Ipv4Addr::new(127, 3, 4, 5)).is_ok());
        assert!(p.check_addr(block, Ipv4Addr::new(10, 3, 4, 5)).is_err());
        assert!(p.check_addr(block, Ipv4Addr::new(0, 0, 0, 0)).is_err());
        assert!(p.command_prefix().is_empty());
        assert_eq!(p.listen_ip(block, 7), Ipv4Addr::new(127, 3, 4, 7));
        let ns = Placement::namespace()
            .resolve(Path::new("/tmp/lab-a"))
            .unwrap();
        assert_eq!(ns.command_prefix().len(), 4);
        assert!(ns.check_addr(block, Ipv4Addr::new(10, 3, 4, 5)).is_ok());
        assert!(ns.check_addr(block, Ipv4Addr::new(10, 3, 5, 5)).is_err());
        assert!(ns.check_addr(block, Ipv4Addr::new(10, 3, 4, 255)).is_err());
        assert!(ns.check_addr(block, Ipv4Addr::new(192, 0, 2, 1)).is_err());
        assert_eq!(ns.listen_ip(block, 7), Ipv4Addr::new(10, 3, 4, 7));
    }

    #[test]
    fn namespace_names_and_host_view() {
        let a = Placement::namespace()
            .resolve(Path::new("/tmp/lab-a"))
            .unwrap();
        let name = a.netns().unwrap().to_string();
        assert!(name.starts_with("rbl-") && name.len() == 10, "{name}");
        assert_eq!(
            Placement::namespace()
                .resolve(Path::new("/tmp/lab-a"))
                .unwrap(),
            a
        );
        assert_ne!(
            Placement::namespace()
                .resolve(Path::new("/tmp/lab-b"))
                .unwrap(),
            a
        );
        for bad in ["rbl-thisistoolong", "rbl-a-b", "rbl-", "lab1", "rbl-A"] {
            let p = Placement::Namespace { name: bad.into() };
            assert!(p.resolve(Path::new("/x")).is_err(), "{bad}");
        }
        let good = Placement::Namespace {
            name: "rbl-ci7".into(),
        };
        assert_eq!(good.clone().resolve(Path::new("/x")).unwrap(), good);
        let block = AddrBlock::new(3, 4).unwrap();
        let inside: SocketAddr = "10.3.4.21:9051".parse().unwrap();
        assert_eq!(
            a.host_view(block, inside),
            "127.3.4.21:9051".parse().unwrap()
        );
        let other: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(a.host_view(block, other), other);
        assert_eq!(Placement::HostLoopback.host_view(block, inside), inside);
    }
}
