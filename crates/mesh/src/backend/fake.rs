//! An in-process stand-in for WireGuard: records what the mesh asked for, so the mesh's own
//! logic (peer diffing, validation, teardown) is tested without root or a kernel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Backend, BackendKind, InterfaceSetup, PeerStatus, WgPeer};
use crate::err::Result;
use crate::key::PublicKey;

/// What the fake interface currently holds.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Whether `configure` ran.
    pub configured: bool,
    /// Whether `remove` ran.
    pub removed: bool,
    /// The configured listen port.
    pub listen_port: u16,
    /// The peers, by key.
    pub peers: BTreeMap<PublicKey, WgPeer>,
    /// Number of individual peer changes (set or remove) after `configure`.
    pub peer_ops: usize,
}

/// A fake backend whose state the test keeps a handle on.
#[derive(Clone, Debug, Default)]
pub struct FakeBackend(Arc<Mutex<FakeState>>);

impl FakeBackend {
    /// A fresh fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Look at the state.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Fake
    }

    fn configure(&mut self, setup: &InterfaceSetup<'_>) -> Result<()> {
        let mut s = self.state();
        s.configured = true;
        s.listen_port = setup.listen_port;
        s.peers = setup
            .peers
            .iter()
            .map(|p| (p.public_key, p.clone()))
            .collect();
        Ok(())
    }

    fn set_peer(&mut self, peer: &WgPeer) -> Result<()> {
        let mut s = self.state();
        s.peer_ops += 1;
        s.peers.insert(peer.public_key, peer.clone());
        Ok(())
    }

    fn remove_peer(&mut self, key: &PublicKey) -> Result<()> {
        let mut s = self.state();
        s.peer_ops += 1;
        s.peers.remove(key);
        Ok(())
    }

    fn peers(&self) -> Result<Vec<PeerStatus>> {
        Ok(self
            .state()
            .peers
            .values()
            .map(|p| PeerStatus {
                public_key: p.public_key,
                overlay_addr: Some(p.overlay_addr),
                endpoint: Some(p.endpoint),
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            })
            .collect())
    }

    fn remove(&mut self) -> Result<()> {
        self.state().removed = true;
        Ok(())
    }
}
