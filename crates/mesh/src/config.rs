//! What the daemon hands to [`Mesh::up`](crate::Mesh::up).

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::err::{Error, Result};
use crate::key::{PrivateKey, PublicKey};

/// Default MTU of the mesh interface: 1500 minus the WireGuard-over-IPv6 overhead (80 bytes),
/// the value `wg-quick` uses.
pub const DEFAULT_MTU: u32 = 1420;

/// Default persistent keepalive, seconds: keeps NAT mappings open and handshakes fresh, so
/// [`PeerStatus::last_handshake`](crate::PeerStatus::last_handshake) doubles as a liveness hint.
pub const DEFAULT_KEEPALIVE: u16 = 25;

/// Which WireGuard implementation to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The kernel module when it is there, else the in-process userspace implementation.
    #[default]
    Auto,
    /// Only the kernel module (netlink).
    Kernel,
    /// Only the in-process userspace implementation (boringtun over /dev/net/tun).
    Userspace,
}

impl FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "kernel" => Ok(Self::Kernel),
            "userspace" => Ok(Self::Userspace),
            _ => Err(Error::Config(format!(
                "unknown backend {s:?}; use \"auto\", \"kernel\" or \"userspace\""
            ))),
        }
    }
}

/// Another node of the mesh.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeshPeer {
    /// Its WireGuard public key (its overlay address is derived from it).
    pub public_key: PublicKey,
    /// Where its WireGuard listens (UDP).
    pub endpoint: SocketAddr,
}

/// Everything needed to bring the mesh up.
pub struct MeshConfig {
    /// Network interface name, 1..=15 characters of `[A-Za-z0-9_-]`.
    pub interface: String,
    /// Names the cluster; the overlay prefix is derived from it (the master onion address is a
    /// good choice). Every node of a cluster must use the same value.
    pub cluster_id: String,
    /// This node's WireGuard private key (see [`PrivateKey::load`]).
    pub private_key: PrivateKey,
    /// UDP port WireGuard listens on (not 0: peers must know it).
    pub listen_port: u16,
    /// The other nodes.
    pub peers: Vec<MeshPeer>,
    /// Backend selection.
    pub backend: BackendChoice,
    /// Interface MTU.
    pub mtu: u32,
    /// Persistent keepalive in seconds, `None` to disable.
    pub keepalive: Option<u16>,
}

impl MeshConfig {
    /// A configuration with the defaults for MTU, keepalive and backend.
    pub fn new(
        interface: impl Into<String>,
        cluster_id: impl Into<String>,
        private_key: PrivateKey,
        listen_port: u16,
        peers: Vec<MeshPeer>,
    ) -> Self {
        Self {
            interface: interface.into(),
            cluster_id: cluster_id.into(),
            private_key,
            listen_port,
            peers,
            backend: BackendChoice::Auto,
            mtu: DEFAULT_MTU,
            keepalive: Some(DEFAULT_KEEPALIVE),
        }
    }

    /// Check everything that can be checked without touching the system.
    pub fn validate(&self) -> Result<()> {
        validate_ifname(&self.interface)?;
        if self.cluster_id.is_empty() {
            return Err(Error::Config(
                "cluster_id is empty; set it to the same value on every node (e.g. the master \
                 onion address)"
                    .into(),
            ));
        }
        if self.listen_port == 0 {
            return Err(Error::Config(
                "listen_port is 0; choose a fixed UDP port (e.g. 51820) so peers can reach this \
                 node"
                    .into(),
            ));
        }
        if !(1280..=9000).contains(&self.mtu) {
            return Err(Error::Config(format!(
                "mtu {} is out of range; use 1280..=9000 (default {DEFAULT_MTU})",
                self.mtu
            )));
        }
        validate_peers(&self.private_key.public_key(), &self.peers)
    }
}

impl fmt::Debug for MeshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshConfig")
            .field("interface", &self.interface)
            .field("cluster_id", &self.cluster_id)
            .field("public_key", &self.private_key.public_key())
            .field("listen_port", &self.listen_port)
            .field("peers", &self.peers)
            .field("backend", &self.backend)
            .field("mtu", &self.mtu)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

/// Interface names end up in `/sys/class/net` and in the userspace backend's control socket
/// path (`/var/run/wireguard/<name>.sock`), so keep them plain.
pub(crate) fn validate_ifname(name: &str) -> Result<()> {
    let err = |reason| {
        Err(Error::InterfaceName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return err("it is empty");
    }
    if name.len() > 15 {
        return err("it is longer than 15 characters (the Linux limit)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return err("it contains characters other than letters, digits, '_' and '-'");
    }
    Ok(())
}

pub(crate) fn validate_peer(own: &PublicKey, peer: &MeshPeer) -> Result<()> {
    if &peer.public_key == own {
        return Err(Error::SelfPeer { public_key: *own });
    }
    if peer.endpoint.port() == 0 || peer.endpoint.ip().is_unspecified() {
        return Err(Error::Config(format!(
            "peer {} has endpoint {}, which cannot be reached; give the peer's real address and \
             WireGuard port",
            peer.public_key, peer.endpoint
        )));
    }
    Ok(())
}

pub(crate) fn validate_peers(own: &PublicKey, peers: &[MeshPeer]) -> Result<()> {
    let mut seen = HashSet::new();
    for p in peers {
        validate_peer(own, p)?;
        if !seen.insert(p.public_key) {
            return Err(Error::DuplicatePeer {
                public_key: p.public_key,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> MeshPeer {
        MeshPeer {
            public_key: PrivateKey::generate().public_key(),
            endpoint: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn cfg() -> MeshConfig {
        MeshConfig::new(
            "rbmesh0",
            "abc.onion",
            PrivateKey::generate(),
            51820,
            vec![peer(1), peer(2)],
        )
    }

    #[test]
    fn valid_config_passes() {
        cfg().validate().unwrap();
    }

    #[test]
    fn bad_interface_names_are_refused() {
        for name in ["", "0123456789abcdef", "wg/0", "wg 0", "wg0.sock/../x"] {
            let mut c = cfg();
            c.interface = name.into();
            assert!(
                matches!(c.validate(), Err(Error::InterfaceName { .. })),
                "{name:?}"
            );
        }
        let mut c = cfg();
        c.interface = "rbmesh-a_123456".into();
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_are_refused_with_advice() {
        let mut c = cfg();
        c.listen_port = 0;
        assert!(c.validate().unwrap_err().to_string().contains("51820"));
        let mut c = cfg();
        c.cluster_id.clear();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.mtu = 100;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.peers[0].endpoint = "0.0.0.0:51820".parse().unwrap();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.peers[1].endpoint.set_port(0);
        assert!(c.validate().is_err());
    }

    #[test]
    fn duplicate_and_self_peers_are_refused() {
        let mut c = cfg();
        let dup = c.peers[0].clone();
        c.peers.push(dup);
        assert!(matches!(c.validate(), Err(Error::DuplicatePeer { .. })));
        let mut c = cfg();
        let own = c.private_key.public_key();
        c.peers[1].public_key = own;
        assert!(matches!(c.validate(), Err(Error::SelfPeer { .. })));
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = cfg();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(c.private_key.to_base64().as_str()));
        assert!(dbg.contains(&c.private_key.public_key().to_string()));
    }

    #[test]
    fn backend_choice_parses() {
        assert_eq!(
            "auto".parse::<BackendChoice>().unwrap(),
            BackendChoice::Auto
        );
        assert_eq!(
            "userspace".parse::<BackendChoice>().unwrap(),
            BackendChoice::Userspace
        );
        assert!("boringtun".parse::<BackendChoice>().is_err());
    }
}
