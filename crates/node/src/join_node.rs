//! The node side of joining: the join generation (token rotation) and the mesh peers a
//! cluster learns at run time.
//!
//! ```text
//!  join endpoint ──admit──▶ MeshPeers::admit: WireGuard peer added here at once,
//!                           listed in our gossip key `mesh_admitted`, saved to mesh-peers.json
//!  every 2 s:   members' `mesh` + `mesh_admitted` ──▶ missing WireGuard peers added, saved
//!               members' `join_gen` (highest wins) ──▶ JoinService takes that token only
//!  token rotate (admin) ──▶ generation + 1, saved, gossiped
//! ```
//!
//! Peers are never removed automatically: a dead node may come back, and WireGuard costs
//! nothing for a silent peer. The files are written atomically.

use crate::err::{Error, Result};
use crate::join::{Admission, Admitter, JoinGrant, JoinService, JoinToken, MemberInfo};
use rustbalance_cluster::{keys, Membership};
use rustbalance_hs::atomic::write_atomic;
use rustbalance_hs::OnionAddress;
use rustbalance_mesh::{Mesh, MeshPeer, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

/// A peer as saved in `mesh-peers.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPeer {
    /// Node name, when known.
    pub name: String,
    /// WireGuard public key (base64).
    pub public_key: String,
    /// WireGuard endpoint.
    pub endpoint: SocketAddr,
}

/// Read the saved peers (a missing file is an empty list; a corrupt one is an error that
/// names the file).
pub fn load_saved_peers(path: &std::path::Path) -> Result<Vec<SavedPeer>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::Other(format!(
                "{} is corrupt ({e}); remove it (peers come back through gossip and the config)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io {
            action: "read saved mesh peers",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Everything the join endpoint and the peer sync need from the running node.
pub struct JoinNode {
    /// This node's name.
    pub name: String,
    /// The master address and virtual port (what tokens carry).
    pub master: OnionAddress,
    /// See `master`.
    pub port: u16,
    /// Raw cluster secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// `cluster.cluster_id`.
    pub cluster_id: String,
    /// Gossip port on the overlay.
    pub gossip_port: u16,
    /// This node's WireGuard key and endpoint.
    pub own_key: PublicKey,
    /// See `own_key`.
    pub own_endpoint: SocketAddr,
    /// The mesh.
    pub mesh: Arc<Mutex<Mesh>>,
    /// `mesh-peers.json`.
    pub peers_file: PathBuf,
    /// `join-generation`.
    pub generation_file: PathBuf,
    /// The endpoint on the proxy.
    pub service: Arc<JoinService>,
    /// Gossip.
    pub membership: Arc<Membership>,
    generation: Mutex<u64>,
    /// Nodes admitted here, by WireGuard key, with their request's nonce.
    admitted: Mutex<BTreeMap<String, (SavedPeer, String)>>,
}

impl JoinNode {
    /// Set up: read the saved join generation, advertise ourselves, accept the current token.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        name: String,
        master: OnionAddress,
        port: u16,
        secret: Zeroizing<Vec<u8>>,
        cluster_id: String,
        gossip_port: u16,
        own_key: PublicKey,
        own_endpoint: SocketAddr,
        mesh: Arc<Mutex<Mesh>>,
        data_dir: &std::path::Path,
        service: Arc<JoinService>,
        membership: Arc<Membership>,
    ) -> Result<Arc<JoinNode>> {
        let generation_file = data_dir.join("join-generation");
        let generation = match std::fs::read_to_string(&generation_file) {
            Ok(t) => t.trim().parse::<u64>().map_err(|_| {
                Error::Other(format!(
                    "{} does not hold a number; put the cluster's join generation in it (0 if unsure, gossip raises it)",
                    generation_file.display()
                ))
            })?,
            Err(_) => 0,
        };
        let node = Arc::new(JoinNode {
            name,
            master,
            port,
            secret,
            cluster_id,
            gossip_port,
            own_key,
            own_endpoint,
            mesh,
            peers_file: data_dir.join("mesh-peers.json"),
            generation_file,
            service,
            membership,
            generation: Mutex::new(generation),
            admitted: Mutex::new(BTreeMap::new()),
        });
        node.membership
            .set(keys::MESH, &format!("{} {}", own_key, own_endpoint))
            .await;
        node.adopt(generation, true).await;
        let n2 = node.clone();
        node.service.set_admitter(Arc::new(move |a: Admission| {
            let n = n2.clone();
            let fut: std::pin::Pin<
                Box<
                    dyn std::future::Future<Output = std::result::Result<JoinGrant, String>> + Send,
                >,
            > = Box::pin(async move { n.admit(a).await });
            fut
        }) as Admitter);
        Ok(node)
    }

    /// The token of the current generation.
    pub fn token(&self) -> JoinToken {
        JoinToken::derive(self.master, self.port, &self.secret, self.generation())
    }

    /// The current join generation.
    pub fn generation(&self) -> u64 {
        self.generation.lock().map(|g| *g).unwrap_or(0)
    }

    async fn adopt(&self, g: u64, force: bool) {
        let changed = match self.generation.lock() {
            Ok(mut cur) if g > *cur || force => {
                *cur = g;
                true
            }
            _ => false,
        };
        if !changed {
            return;
        }
        self.service
            .set_token(JoinToken::derive(self.master, self.port, &self.secret, g));
        if let Err(e) = write_atomic(&self.generation_file, format!("{g}\n").as_bytes(), 0o600) {
            tracing::warn!("cannot save the join generation: {e}");
        }
        self.membership
            .set(keys::JOIN_GENERATION, &g.to_string())
            .await;
        if !force {
            tracing::info!("join token rotated (generation {g}); the old token is refused");
        }
    }

    /// `token rotate`: invalidate the current token everywhere; returns the new one.
    pub async fn rotate(&self) -> Zeroizing<String> {
        let g = self.generation() + 1;
        self.adopt(g, false).await;
        self.token().encode()
    }

    /// Admit a node that proved the token: WireGuard peer now, gossip for the others.
    async fn admit(&self, a: Admission) -> std::result::Result<JoinGrant, String> {
        let key: PublicKey = a
            .wg_public_key
            .parse()
            .map_err(|_| "the WireGuard public key is not valid".to_string())?;
        if key == self.own_key {
            // A member joining again (its request reached itself): nothing to add.
            if a.name != self.name {
                return Err("that WireGuard key belongs to another node".into());
            }
            return Ok(self.grant(&a.name).await);
        }
        let peer = MeshPeer {
            public_key: key,
            endpoint: a.endpoint,
        };
        let mesh = self.mesh.clone();
        tokio::task::spawn_blocking(move || {
            mesh.lock()
                .map_err(|_| "mesh lock".to_string())?
                .add_peer(peer)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let saved = SavedPeer {
            name: a.name.clone(),
            public_key: a.wg_public_key.clone(),
            endpoint: a.endpoint,
        };
        let list = {
            let mut adm = self.admitted.lock().map_err(|_| "lock".to_string())?;
            adm.insert(saved.public_key.clone(), (saved.clone(), a.nonce.clone()));
            adm.values()
                .map(|(p, n)| format!("{} {} {} {n}", p.name, p.public_key, p.endpoint))
                .collect::<Vec<_>>()
                .join("\n")
        };
        self.membership.set(keys::MESH_ADMITTED, &list).await;
        self.save_peers().map_err(|e| e.to_string())?;
        Ok(self.grant(&a.name).await)
    }

    /// What an admitted node receives: the cluster's secrets and every member but itself.
    async fn grant(&self, joiner: &str) -> JoinGrant {
        let mut members = Vec::new();
        if joiner != self.name {
            members.push(MemberInfo {
                name: self.name.clone(),
                wg_public_key: self.own_key.to_string(),
                endpoint: self.own_endpoint,
            });
        }
        for m in self.membership.live_nodes().await {
            if m.node_id == self.name || m.node_id == joiner {
                continue;
            }
            if let Some((k, e)) = m.get(keys::MESH).and_then(parse_mesh) {
                members.push(MemberInfo {
                    name: m.node_id.clone(),
                    wg_public_key: k,
                    endpoint: e,
                });
            }
        }
        JoinGrant {
            v: 1,
            cluster_id: self.cluster_id.clone(),
            cluster_secret: hex::encode(&self.secret[..]),
            gossip_port: self.gossip_port,
            join_generation: self.generation(),
            members,
            admitted_by: self.name.clone(),
        }
    }

    fn save_peers(&self) -> Result<()> {
        let peers: Vec<SavedPeer> = {
            let m = self
                .mesh
                .lock()
                .map_err(|_| Error::Other("mesh lock poisoned".into()))?;
            m.peers()
                .map(|p| SavedPeer {
                    name: String::new(),
                    public_key: p.public_key.to_string(),
                    endpoint: p.endpoint,
                })
                .collect()
        };
        let text = serde_json::to_vec_pretty(&peers).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&self.peers_file, &text, 0o600)?;
        Ok(())
    }

    /// Follow gossip: add every member's (and every admitted node's) WireGuard peer, adopt
    /// the highest join generation.
    pub async fn sync_forever(self: Arc<Self>) {
        loop {
            let members = self.membership.members().await;
            let mut wanted: Vec<(PublicKey, SocketAddr)> = Vec::new();
            let mut top = self.generation();
            for m in &members {
                if m.node_id == self.name {
                    continue;
                }
                if let Some(g) = m.get(keys::JOIN_GENERATION).and_then(|g| g.parse().ok()) {
                    top = top.max(g);
                }
                if let Some((k, e)) = m.get(keys::MESH).and_then(parse_mesh) {
                    if let Ok(k) = k.parse() {
                        wanted.push((k, e));
                    }
                }
                for line in m.get(keys::MESH_ADMITTED).unwrap_or("").lines() {
                    let f: Vec<&str> = line.split(' ').collect();
                    if f.len() < 3 {
                        continue;
                    }
                    if let (Ok(k), Ok(e)) = (f[1].parse(), f[2].parse()) {
                        wanted.push((k, e));
                    }
                    if let Some(nonce) = f.get(3) {
                        self.service.note_nonce(nonce);
                    }
                }
            }
            self.adopt(top, false).await;
            let mesh = self.mesh.clone();
            let own = self.own_key;
            let added = tokio::task::spawn_blocking(move || {
                let Ok(mut m) = mesh.lock() else { return 0 };
                let mut added = 0;
                for (k, e) in wanted {
                    if k == own || m.peers().any(|p| p.public_key == k && p.endpoint == e) {
                        continue;
                    }
                    match m.add_peer(MeshPeer {
                        public_key: k,
                        endpoint: e,
                    }) {
                        Ok(()) => added += 1,
                        Err(err) => tracing::warn!("cannot add mesh peer {e}: {err}"),
                    }
                }
                added
            })
            .await
            .unwrap_or(0);
            if added > 0 {
                tracing::info!("{added} mesh peer(s) learned from gossip");
                if let Err(e) = self.save_peers() {
                    tracing::warn!("{e}");
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// `"<key> <ip:port>"`.
fn parse_mesh(v: &str) -> Option<(String, SocketAddr)> {
    let (k, e) = v.split_once(' ')?;
    Some((k.to_string(), e.parse().ok()?))
}
