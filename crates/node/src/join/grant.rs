//! Admitting a node that proved the token: its name and WireGuard key must be new to the
//! cluster (or be the same node's again), its WireGuard peer is added here at once, it is
//! listed in our `mesh_admitted` gossip key for the others, the token it spent is gossiped,
//! and it gets the grant (the cluster's secrets and every member but itself).

use super::admission::{Admission, AdmitError, AdmitResult};
use super::error::JoinError;
use super::message::{JoinGrant, MemberInfo, VERSION};
use super::node::JoinNode;
use super::peers::{admitted_lines, admitted_text, mesh_key, parse_mesh, SavedPeer};
use super::removal::Removal;
use rustbalance_cluster::{keys, CertFields, CertRole, MemberCert, NodePublicKey, NodeView};
use rustbalance_mesh::{MeshPeer, PublicKey};

impl JoinNode {
    /// Admit a node that proved the token: certify it, WireGuard peer now, gossip for the
    /// others. Only an eligible node (it holds the authority) admits.
    pub(crate) async fn admit(&self, a: Admission) -> AdmitResult {
        let Some(authority) = self.authority() else {
            return Err(AdmitError::NotEligible);
        };
        let key: PublicKey = a
            .wg_public_key
            .parse()
            .map_err(|_| AdmitError::InvalidKey)?;
        let identity =
            NodePublicKey::decode(&a.identity).map_err(|_| AdmitError::InvalidIdentity)?;
        let removed = self
            .removal_of(&a.wg_public_key)
            .or_else(|| self.removal_of_identity(&a.identity));
        if let Some(r) = removed {
            return Err(AdmitError::Removed(Box::new(r)));
        }
        let members = self.membership.members().await;
        let own = Known {
            name: self.name.clone(),
            key: Some(self.own_key.to_string()),
            identity: self.identity.map(|i| i.to_string()),
            removed: false,
        };
        let joiner = Known {
            name: a.name.clone(),
            key: Some(a.wg_public_key.clone()),
            identity: Some(a.identity.clone()),
            removed: false,
        };
        check_collision(&members, own, &self.removals(), &joiner)?;
        let cert = authority
            .certify(CertFields {
                name: a.name.clone(),
                role: CertRole::Worker,
                identity,
                wireguard: Some(*key.as_bytes()),
                onion: None,
                issued: rustbalance_hs::time::unix_secs(std::time::SystemTime::now()),
                serial: rand::random(),
            })
            .map_err(AdmitError::Certify)?;
        if key == self.own_key {
            // A member joining again (its request reached itself): nothing to add.
            return Ok(self.grant(&a.name, &cert).await);
        }
        self.add_peer(MeshPeer {
            public_key: key,
            endpoint: a.endpoint,
        })
        .await?;
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
            let entry = (saved.clone(), a.nonce.clone(), cert.encode());
            adm.insert(saved.public_key.clone(), entry);
            admitted_text(&adm)
        };
        self.membership.set(keys::MESH_ADMITTED, &list).await;
        // The join service recorded the token as spent; every member learns it now.
        self.gossip_spent().await;
        self.note_name(&a.wg_public_key, &a.name);
        self.save_peers()?;
        Ok(self.grant(&a.name, &cert).await)
    }

    /// Add the new node's WireGuard peer here at once.
    async fn add_peer(&self, peer: MeshPeer) -> Result<(), AdmitError> {
        let poisoned = || {
            AdmitError::Node(JoinError::Poisoned {
                what: "WireGuard mesh",
            })
        };
        let mesh = self.mesh.clone();
        tokio::task::spawn_blocking(move || {
            mesh.lock()
                .map_err(|_| poisoned())?
                .add_peer(peer)
                .map_err(|source| AdmitError::Mesh { source })
        })
        .await
        .map_err(|_| poisoned())?
    }

    /// What an admitted node receives: the cluster's secrets, every member but itself, the
    /// authority's public key and its member certificate.
    async fn grant(&self, joiner: &str, cert: &MemberCert) -> JoinGrant {
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
            authority: self
                .authority()
                .map(|a| a.public().encode())
                .unwrap_or_default(),
            cert: cert.encode(),
        }
    }
}

/// A node as admission compares it: name, WireGuard key, identity (text), removed or not.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) name: String,
    pub(crate) key: Option<String>,
    pub(crate) identity: Option<String>,
    pub(crate) removed: bool,
}

/// Refuse a `joiner` whose name, WireGuard key or identity is already in the cluster under
/// another name (or whose name is held with another key or identity): among this node
/// (`own`), the gossip `members` (their certificate, their `mesh` key and the nodes they
/// admitted) and the `removals` (a removed node's name is not reused). The same name with
/// the same key and identity is the same node joining again.
pub(crate) fn check_collision(
    members: &[NodeView],
    own: Known,
    removals: &[Removal],
    joiner: &Known,
) -> Result<(), AdmitError> {
    let mut known = vec![own];
    for m in members {
        known.push(Known {
            name: m.node_id.clone(),
            key: mesh_key(m),
            identity: m.cert().map(|c| c.identity().to_string()),
            removed: false,
        });
        for l in admitted_lines(m) {
            known.push(Known {
                name: l.name.to_string(),
                key: Some(l.key.to_string()),
                identity: l.cert.as_ref().map(|c| c.identity().to_string()),
                removed: false,
            });
        }
    }
    for r in removals {
        known.push(Known {
            name: r.name.clone(),
            key: Some(r.public_key.clone()),
            identity: (r.identity != "-").then(|| r.identity.clone()),
            removed: true,
        });
    }
    let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
    for k in known {
        let other_name = k.name != joiner.name && k.name != "-";
        if same(&k.key, &joiner.key) && other_name {
            return Err(AdmitError::KeyOfAnotherNode {
                key: joiner.key.clone().unwrap_or_default(),
                holder: k.name,
            });
        }
        if same(&k.identity, &joiner.identity) && other_name {
            return Err(AdmitError::IdentityOfAnotherNode {
                identity: joiner.identity.clone().unwrap_or_default(),
                holder: k.name,
            });
        }
        let differs = |a: &Option<String>, b: &Option<String>| a.is_some() && b.is_some() && a != b;
        if k.name == joiner.name
            && (k.key.is_none()
                || differs(&k.key, &joiner.key)
                || differs(&k.identity, &joiner.identity))
        {
            return Err(AdmitError::NameTaken {
                name: joiner.name.clone(),
                removed: k.removed,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::peers::tests::{key, member};

    /// Issue 13 attack 6: two nodes with the default host name hid each other; a copied
    /// node directory brought a second machine under a member's WireGuard key.
    #[test]
    fn names_and_keys_already_in_the_cluster_are_refused() {
        let (k1, k2, k5, k9, fresh) = (key(), key(), key(), key(), key());
        let nonce = "ab".repeat(16);
        let members = vec![
            member("node2", &[(keys::MESH, format!("{k2} 10.0.0.2:51820"))]),
            member(
                "node3",
                &[(
                    keys::MESH_ADMITTED,
                    format!("node5 {k5} 10.0.0.5:51820 {nonce}"),
                )],
            ),
            member("starting", &[]),
        ];
        let removed = vec![Removal {
            name: "node9".into(),
            public_key: k9.clone(),
            identity: "-".into(),
            serial: 0,
            at: 1,
            by: "node1".into(),
            signature: String::new(),
        }];
        let entry = |name: &str, key: &str, identity: Option<&str>| Known {
            name: name.into(),
            key: Some(key.into()),
            identity: identity.map(str::to_string),
            removed: false,
        };
        let own = || entry("node1", &k1, Some("id1"));
        let check = |name: &str, key: &str| {
            check_collision(&members, own(), &removed, &entry(name, key, None))
        };
        check("node4", &fresh).expect("a new name and key");
        check("node2", &k2).expect("the same node again");
        check("node1", &k1).expect("this node again");
        let taken = |r: Result<(), AdmitError>| r.unwrap_err().to_string();
        for name in ["node1", "node2", "node5", "starting"] {
            let e = taken(check(name, &fresh));
            assert!(e.contains(&format!("name {name} is already taken")), "{e}");
            assert!(e.contains("--name"), "{e}");
        }
        let e = taken(check("node9", &fresh));
        assert!(e.contains("a member that was removed"), "{e}");
        for (k, holder) in [(&k1, "node1"), (&k2, "node2"), (&k5, "node5")] {
            let e = taken(check("node4", k));
            assert!(e.contains(&format!("belongs to member {holder}")), "{e}");
        }
        // A copied data directory: this node's identity under another name and key.
        let e = taken(check_collision(
            &members,
            own(),
            &removed,
            &entry("node4", &fresh, Some("id1")),
        ));
        assert!(
            e.contains("identity id1 already belongs to member node1"),
            "{e}"
        );
        check_collision(&members, own(), &removed, &entry("node1", &k1, Some("id1")))
            .expect("this node again");
    }
}
