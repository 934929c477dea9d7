//! Admitting a node that proved the token: its WireGuard peer is added here at once, it is
//! listed in our `mesh_admitted` gossip key for the others, and it gets the grant (the
//! cluster's secrets and every member but itself).

use super::admission::{Admission, AdmitError, AdmitResult};
use super::error::JoinError;
use super::message::{JoinGrant, MemberInfo, VERSION};
use super::node::JoinNode;
use super::peers::{admitted_text, parse_mesh, SavedPeer};
use rustbalance_cluster::keys;
use rustbalance_mesh::{MeshPeer, PublicKey};

impl JoinNode {
    /// Admit a node that proved the token: WireGuard peer now, gossip for the others.
    pub(crate) async fn admit(&self, a: Admission) -> AdmitResult {
        let key: PublicKey = a
            .wg_public_key
            .parse()
            .map_err(|_| AdmitError::InvalidKey)?;
        if let Some(r) = self.removal_of(&a.wg_public_key) {
            return Err(AdmitError::Removed(r));
        }
        if key == self.own_key {
            // A member joining again (its request reached itself): nothing to add.
            if a.name != self.name {
                return Err(AdmitError::KeyOfAnotherNode);
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
                .map_err(|_| {
                    AdmitError::Node(JoinError::Poisoned {
                        what: "WireGuard mesh",
                    })
                })?
                .add_peer(peer)
                .map_err(|source| AdmitError::Mesh { source })
        })
        .await
        .map_err(|_| {
            AdmitError::Node(JoinError::Poisoned {
                what: "WireGuard mesh",
            })
        })??;
        let saved = SavedPeer {
            name: a.name.clone(),
            public_key: a.wg_public_key.clone(),
            endpoint: a.endpoint,
        };
        let list = {
            let mut adm = self.admitted.lock().map_err(|_| {
                AdmitError::Node(JoinError::Poisoned {
                    what: "list of admitted nodes",
                })
            })?;
            adm.insert(saved.public_key.clone(), (saved.clone(), a.nonce.clone()));
            admitted_text(&adm)
        };
        self.membership.set(keys::MESH_ADMITTED, &list).await;
        self.note_name(&a.wg_public_key, &a.name);
        self.save_peers()?;
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
        // One read: counter and salt of the same generation.
        let generation = self.join_generation();
        JoinGrant {
            v: VERSION,
            cluster_id: self.cluster_id.clone(),
            cluster_secret: hex::encode(&self.secret[..]),
            gossip_port: self.gossip_port,
            join_generation: generation.n,
            join_salt: hex::encode(&generation.salt),
            members,
            admitted_by: self.name.clone(),
        }
    }
}
