//! [`Mesh`]: one WireGuard interface joining this node to the other nodes of the cluster.
//!
//! ```text
//!   MeshConfig ──up()──▶ Mesh (interface exists, address bindable, peers configured)
//!                          │  add_peer / remove_peer / set_peers / peers_status
//!                          ▼
//!                        down() ──▶ interface removed   (Drop does the same, best effort)
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::addr::OverlayPrefix;
use crate::backend::{self, Backend, BackendKind, InterfaceSetup, PeerStatus, WgPeer};
use crate::config::{validate_peer, validate_peers, MeshConfig, MeshPeer};
use crate::err::{Error, Result};
use crate::key::PublicKey;

/// How long `up` waits for the overlay address to become bindable.
const ADDRESS_WAIT: Duration = Duration::from_secs(3);

/// How long [`Mesh::up`] waits for an interface name in use to become free.
const NAME_FREE_WAIT: Duration = Duration::from_secs(3);

/// Wait up to [`NAME_FREE_WAIT`] until no interface and no live userspace control socket
/// has the name `ifname`; whether it is free.
fn wait_name_free(ifname: &str) -> bool {
    let in_use = || backend::interface_exists(ifname) || backend::control_socket_in_use(ifname);
    let deadline = Instant::now() + NAME_FREE_WAIT;
    while in_use() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    !in_use()
}

/// A running mesh interface. All methods block briefly (netlink or control-socket round
/// trips): from async code call them through `spawn_blocking`.
pub struct Mesh {
    ifname: String,
    public_key: PublicKey,
    prefix: OverlayPrefix,
    overlay: Ipv6Addr,
    listen_port: u16,
    keepalive: Option<u16>,
    peers: BTreeMap<PublicKey, MeshPeer>,
    /// `None` once taken down.
    backend: Option<Box<dyn Backend>>,
}

impl Mesh {
    /// How often [`Mesh::up`] creates a device that comes up broken before it gives up.
    pub const CREATE_ATTEMPTS: u32 = 3;

    /// Create and configure the interface (kernel module if present, else userspace, unless
    /// `cfg.backend` says otherwise). When this returns, the overlay address can be bound.
    pub fn up(cfg: MeshConfig) -> Result<Self> {
        cfg.validate()?;
        // The device process of a node killed a moment ago removes its interface once it
        // sees its stdin close: give it that moment before calling the name taken.
        if !wait_name_free(&cfg.interface) {
            return Err(Error::InterfaceExists {
                ifname: cfg.interface.clone(),
            });
        }
        let mesh = Self::create(cfg)?;
        if let Err(e) = mesh.wait_address_usable() {
            let _ = mesh.down();
            return Err(e);
        }
        info!(
            ifname = %mesh.ifname,
            backend = %mesh.backend_kind(),
            overlay = %mesh.overlay,
            peers = mesh.peers.len(),
            "mesh up"
        );
        Ok(mesh)
    }

    /// Create and configure the interface; a device that comes up broken (see
    /// [`Error::DeviceBroken`]) is removed and created again, up to
    /// [`Self::CREATE_ATTEMPTS`] times.
    fn create(cfg: MeshConfig) -> Result<Self> {
        let mut attempt = 1;
        loop {
            let backend = backend::open(&cfg.interface, cfg.backend)?;
            match Self::with_backend(&cfg, backend) {
                Err(e @ Error::DeviceBroken { .. }) if attempt < Self::CREATE_ATTEMPTS => {
                    warn!(ifname = %cfg.interface, attempt, error = %e, "WireGuard device came up broken; creating it again");
                    attempt += 1;
                    // `with_backend` removed it; the next `open` fails if the name is
                    // still taken.
                    wait_name_free(&cfg.interface);
                }
                other => return other,
            }
        }
    }

    /// Configure an already created interface (tests pass a
    /// [`FakeBackend`](crate::FakeBackend)). The backend is removed again if this fails.
    pub fn with_backend(cfg: &MeshConfig, mut backend: Box<dyn Backend>) -> Result<Self> {
        let fail = |mut backend: Box<dyn Backend>, e| {
            let _ = backend.remove();
            Err(e)
        };
        if let Err(e) = cfg.validate() {
            return fail(backend, e);
        }
        let public_key = cfg.private_key.public_key();
        let prefix = OverlayPrefix::for_cluster(cfg.cluster_id.as_bytes());
        let overlay = prefix.addr_of(&public_key);
        let mut mesh = Self {
            ifname: cfg.interface.clone(),
            public_key,
            prefix,
            overlay,
            listen_port: cfg.listen_port,
            keepalive: cfg.keepalive,
            peers: cfg
                .peers
                .iter()
                .map(|p| (p.public_key, p.clone()))
                .collect(),
            backend: None,
        };
        let wg_peers: Vec<WgPeer> = mesh.peers.values().map(|p| mesh.wg_peer(p)).collect();
        let setup = InterfaceSetup {
            private_key: &cfg.private_key,
            listen_port: cfg.listen_port,
            addr: overlay,
            prefix_len: OverlayPrefix::LEN,
            mtu: cfg.mtu,
            peers: &wg_peers,
        };
        if let Err(e) = backend.configure(&setup) {
            return fail(backend, e);
        }
        mesh.backend = Some(backend);
        Ok(mesh)
    }

    /// This node's overlay address.
    pub fn overlay_addr(&self) -> Ipv6Addr {
        self.overlay
    }

    /// The overlay address of the node holding `key` (in this cluster).
    pub fn overlay_addr_of(&self, key: &PublicKey) -> Ipv6Addr {
        self.prefix.addr_of(key)
    }

    /// The cluster's overlay /64.
    pub fn prefix(&self) -> OverlayPrefix {
        self.prefix
    }

    /// This node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.ifname
    }

    /// The UDP port WireGuard listens on.
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// Which WireGuard implementation runs this interface.
    pub fn backend_kind(&self) -> BackendKind {
        self.backend
            .as_ref()
            .map_or(BackendKind::Fake, |b| b.kind())
    }

    /// The configured peers, ordered by key.
    pub fn peers(&self) -> impl Iterator<Item = &MeshPeer> {
        self.peers.values()
    }

    /// Add a peer, or update its endpoint if it is already known.
    pub fn add_peer(&mut self, peer: MeshPeer) -> Result<()> {
        validate_peer(&self.public_key, &peer)?;
        if self.peers.get(&peer.public_key) == Some(&peer) {
            return Ok(());
        }
        let wg = self.wg_peer(&peer);
        self.backend_mut()?.set_peer(&wg)?;
        self.peers.insert(peer.public_key, peer);
        Ok(())
    }

    /// Remove a peer; `false` if it was not configured.
    pub fn remove_peer(&mut self, key: &PublicKey) -> Result<bool> {
        if !self.peers.contains_key(key) {
            return Ok(false);
        }
        self.backend_mut()?.remove_peer(key)?;
        self.peers.remove(key);
        Ok(true)
    }

    /// Make the peer set exactly `peers`, touching only what changed (so sessions with
    /// unchanged peers keep running).
    pub fn set_peers(&mut self, peers: Vec<MeshPeer>) -> Result<()> {
        validate_peers(&self.public_key, &peers)?;
        let wanted: BTreeMap<PublicKey, MeshPeer> =
            peers.into_iter().map(|p| (p.public_key, p)).collect();
        let gone: Vec<PublicKey> = self
            .peers
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for k in gone {
            self.remove_peer(&k)?;
        }
        for p in wanted.into_values() {
            self.add_peer(p)?;
        }
        Ok(())
    }

    /// Handshake time and traffic counters of every peer, as WireGuard reports them.
    pub fn peers_status(&self) -> Result<Vec<PeerStatus>> {
        self.backend.as_ref().ok_or_else(|| self.gone())?.peers()
    }

    /// Remove the interface.
    pub fn down(mut self) -> Result<()> {
        self.take_down()
    }

    /// Remove the interface of a mesh that others still hold (shared behind a lock); every
    /// later call on it reports the interface gone.
    pub fn close(&mut self) -> Result<()> {
        self.take_down()
    }

    fn take_down(&mut self) -> Result<()> {
        match self.backend.take() {
            Some(mut b) => {
                let r = b.remove();
                if r.is_ok() {
                    info!(ifname = %self.ifname, "mesh down");
                }
                r
            }
            None => Ok(()),
        }
    }

    fn wg_peer(&self, p: &MeshPeer) -> WgPeer {
        WgPeer {
            public_key: p.public_key,
            endpoint: p.endpoint,
            overlay_addr: self.prefix.addr_of(&p.public_key),
            keepalive: self.keepalive,
        }
    }

    fn backend_mut(&mut self) -> Result<&mut Box<dyn Backend>> {
        let gone = self.gone();
        self.backend.as_mut().ok_or(gone)
    }

    fn gone(&self) -> Error {
        Error::InterfaceStillPresent {
            ifname: self.ifname.clone(),
        }
    }

    /// A fresh IPv6 address may be briefly unusable (e.g. duplicate address detection).
    fn wait_address_usable(&self) -> Result<()> {
        let deadline = Instant::now() + ADDRESS_WAIT;
        loop {
            match UdpSocket::bind(SocketAddrV6::new(self.overlay, 0, 0, 0)) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::AddressUnusable {
                        ifname: self.ifname.clone(),
                        addr: self.overlay,
                        source: e,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Err(e) = self.take_down() {
            warn!(ifname = %self.ifname, error = %e, "mesh interface not removed on drop; remove it with `ip link del {}`", self.ifname);
        }
    }
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("ifname", &self.ifname)
            .field("public_key", &self.public_key)
            .field("overlay", &self.overlay)
            .field("listen_port", &self.listen_port)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::backend::FakeBackend;
    use crate::key::PrivateKey;
    use crate::MeshConfig;

    fn peer(port: u16) -> MeshPeer {
        MeshPeer {
            public_key: PrivateKey::generate().public_key(),
            endpoint: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn mesh(peers: Vec<MeshPeer>) -> (Mesh, FakeBackend) {
        let fake = FakeBackend::new();
        let cfg = MeshConfig::new("rbmesh0", "c.onion", PrivateKey::generate(), 51820, peers);
        let m = Mesh::with_backend(&cfg, Box::new(fake.clone())).unwrap();
        (m, fake)
    }

    #[test]
    fn up_configures_peers_with_derived_allowed_ips() {
        let (a, b) = (peer(1), peer(2));
        let (m, fake) = mesh(vec![a.clone(), b.clone()]);
        let s = fake.state();
        assert!(s.configured);
        assert_eq!(s.listen_port, 51820);
        assert_eq!(
            s.peers[&a.public_key].overlay_addr,
            m.overlay_addr_of(&a.public_key)
        );
        assert_eq!(s.peers[&b.public_key].endpoint, b.endpoint);
        assert!(m.prefix().contains(&m.overlay_addr()));
        assert_ne!(m.overlay_addr(), m.overlay_addr_of(&a.public_key));
    }

    #[test]
    fn set_peers_touches_only_changes() {
        let (a, b, c) = (peer(1), peer(2), peer(3));
        let (mut m, fake) = mesh(vec![a.clone(), b.clone()]);
        let mut b2 = b.clone();
        b2.endpoint.set_port(22);
        m.set_peers(vec![a.clone(), b2.clone(), c.clone()]).unwrap();
        {
            let s = fake.state();
            // b updated, c added; a untouched.
            assert_eq!(s.peer_ops, 2);
            assert_eq!(s.peers.len(), 3);
            assert_eq!(s.peers[&b.public_key].endpoint.port(), 22);
        }
        m.set_peers(vec![c.clone()]).unwrap();
        assert_eq!(fake.state().peers.len(), 1);
        assert_eq!(m.peers().count(), 1);
        assert!(!m.remove_peer(&a.public_key).unwrap());
        assert!(m.remove_peer(&c.public_key).unwrap());
        assert!(fake.state().peers.is_empty());
    }

    #[test]
    fn bad_peers_are_refused_without_changing_anything() {
        let (mut m, fake) = mesh(vec![peer(1)]);
        let own = MeshPeer {
            public_key: m.public_key(),
            endpoint: "127.0.0.1:5".parse().unwrap(),
        };
        assert!(matches!(
            m.add_peer(own.clone()),
            Err(Error::SelfPeer { .. })
        ));
        let p = peer(9);
        assert!(matches!(
            m.set_peers(vec![p.clone(), p]),
            Err(Error::DuplicatePeer { .. })
        ));
        assert_eq!(fake.state().peers.len(), 1);
        assert_eq!(fake.state().peer_ops, 0);
    }

    #[test]
    fn down_and_drop_remove_the_interface() {
        let (m, fake) = mesh(vec![]);
        m.down().unwrap();
        assert!(fake.state().removed);
        let (m, fake) = mesh(vec![]);
        drop(m);
        assert!(fake.state().removed);
    }

    #[test]
    fn mesh_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Mesh>();
    }

    #[test]
    fn invalid_config_removes_the_created_interface() {
        let fake = FakeBackend::new();
        let cfg = MeshConfig::new("rbmesh0", "c.onion", PrivateKey::generate(), 0, vec![]);
        assert!(Mesh::with_backend(&cfg, Box::new(fake.clone())).is_err());
        assert!(fake.state().removed);
        assert!(!fake.state().configured);
    }
}
