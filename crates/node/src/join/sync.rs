//! Following gossip: every `sync_interval` a member learns removals, adopts the highest
//! join generation, rotates when a removal asked for it, and brings its WireGuard peers in
//! line (every member's and every admitted node's added, removed nodes' dropped after the
//! grace). [`JoinNode::sync_forever`] is the thin driver; what to do is decided by the pure
//! functions here from the members' gossip and `now`.

use super::node::JoinNode;
use super::peers::{admitted_lines, parse_mesh};
use super::removal::Removal;
use super::rotation::adopts;
use super::spent::SPENT_KEY;
use super::token::JoinGeneration;
use rustbalance_cluster::{keys, AuthorityKey, NodeView};
use rustbalance_mesh::{MeshPeer, PublicKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The removals other members gossip that the `authority` signed (none without one: a
/// node that cannot check signatures takes no removal from gossip); a removed member's word
/// counts for nothing (it may not have stopped).
pub(crate) fn removals_seen(
    members: &[NodeView],
    own_name: &str,
    is_removed: impl Fn(&NodeView) -> bool,
    authority: Option<&AuthorityKey>,
) -> Vec<Removal> {
    let Some(authority) = authority else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|m| m.node_id != own_name && !is_removed(m))
        .flat_map(|m| {
            m.get(keys::MESH_REMOVED)
                .unwrap_or("")
                .lines()
                .filter_map(Removal::parse_line)
                .filter(|r| r.verify(authority))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the other (not removed) members' gossip asks of this member.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerView {
    /// The highest join generation, ours included.
    pub(crate) top: JoinGeneration,
    /// WireGuard peers that should be there: members and the nodes they admitted.
    pub(crate) wanted: Vec<(PublicKey, SocketAddr)>,
    /// Node names by WireGuard key.
    pub(crate) names: Vec<(String, String)>,
    /// Nonces of requests other members admitted.
    pub(crate) nonces: Vec<String>,
    /// The other members' spent-token gossip values.
    pub(crate) spent: Vec<String>,
}

/// Read the members' `join_gen`, `mesh` and `mesh_admitted` keys. With an `authority`, a
/// member's `mesh` key counts only if its certificate binds that WireGuard key, and an
/// admitted node only if the authority certified it (its line carries the certificate).
pub(crate) fn read_peers(
    members: &[NodeView],
    own_name: &str,
    cur: JoinGeneration,
    is_removed: impl Fn(&NodeView) -> bool,
    authority: Option<&AuthorityKey>,
) -> PeerView {
    let mut v = PeerView {
        top: cur.clone(),
        ..PeerView::default()
    };
    for m in members
        .iter()
        .filter(|m| m.node_id != own_name && !is_removed(m))
    {
        if let Some(g) = m.get(keys::JOIN_GENERATION).and_then(JoinGeneration::parse) {
            // Bounded from ours, not from the highest seen so far (no chain of steps).
            if g > v.top && adopts(&cur, &g, false) {
                v.top = g;
            }
        }
        if let Some(t) = m.get(SPENT_KEY) {
            v.spent.push(t.to_string());
        }
        if let Some((k, e)) = m.get(keys::MESH).and_then(parse_mesh) {
            if let Ok(key) = k.parse::<PublicKey>() {
                // A certified member's claim must be the key its certificate binds.
                let bound = m.cert().map(|c| c.fields().wireguard);
                if bound.is_none_or(|b| b == Some(*key.as_bytes())) {
                    v.names.push((k, m.node_id.clone()));
                    v.wanted.push((key, e));
                }
            }
        }
        for line in admitted_lines(m) {
            if authority.is_some_and(|a| !line.certified(a)) {
                continue;
            }
            if let (Ok(k), Some(e)) = (line.key.parse::<PublicKey>(), line.endpoint) {
                if super::message::valid_name(line.name) {
                    v.names.push((k.to_string(), line.name.to_string()));
                }
                v.wanted.push((k, e));
            }
            if let Some(nonce) = line.nonce {
                v.nonces.push(nonce.to_string());
            }
        }
    }
    v
}

/// The peers to add to a mesh that has `present`: `wanted` except this node's own key,
/// removed keys (`banned`) and peers already there with that endpoint.
pub(crate) fn peers_to_add(
    wanted: Vec<(PublicKey, SocketAddr)>,
    banned: &[String],
    own: &PublicKey,
    present: &[MeshPeer],
) -> Vec<MeshPeer> {
    wanted
        .into_iter()
        .filter(|(k, _)| k != own && !banned.contains(&k.to_string()))
        .filter(|(k, e)| {
            !present
                .iter()
                .any(|p| p.public_key == *k && p.endpoint == *e)
        })
        .map(|(public_key, endpoint)| MeshPeer {
            public_key,
            endpoint,
        })
        .collect()
}

/// Whether the driver goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// This node was removed.
    Stop,
}

impl JoinNode {
    /// Follow gossip: add every member's (and every admitted node's) WireGuard peer, adopt
    /// the highest join generation, act on removals.
    pub async fn sync_forever(self: Arc<Self>) {
        while self.sync_once(Instant::now()).await == Flow::Continue {
            tokio::time::sleep(self.timers.sync_interval).await;
        }
    }

    /// One round of [`sync_forever`](Self::sync_forever) at `now`.
    async fn sync_once(&self, now: Instant) -> Flow {
        let members = self.membership.members().await;
        let authority = self.authority_key;
        let seen = removals_seen(
            &members,
            &self.name,
            |m| self.is_removed(m),
            authority.as_ref(),
        );
        let new = self.learn_removals(seen, now);
        if !new.is_empty() {
            for r in &new {
                tracing::warn!("{}", r.describe());
            }
            self.trust_removals();
            self.gossip_removals().await;
            self.forget_admitted().await;
        }
        if let Some(r) = self.own_removal() {
            self.stop_removed(r);
            return Flow::Stop;
        }
        let view = read_peers(
            &members,
            &self.name,
            self.join_generation(),
            |m| self.is_removed(m),
            authority.as_ref(),
        );
        for (k, n) in &view.names {
            self.note_name(k, n);
        }
        for nonce in &view.nonces {
            self.service.note_nonce(nonce);
        }
        let new_spent: usize = view.spent.iter().map(|t| self.service.learn_spent(t)).sum();
        if new_spent > 0 {
            self.gossip_spent().await;
        }
        self.adopt(view.top, false).await;
        self.rotate_if_due(now).await;
        self.apply_peers(view.wanted, now).await;
        Flow::Continue
    }

    /// Removed nodes: never added again; dropped once the grace period is over. Everyone
    /// else wanted: added.
    async fn apply_peers(&self, wanted: Vec<(PublicKey, SocketAddr)>, now: Instant) {
        let (banned, due) = self.removed_keys(now);
        let mesh = self.mesh.clone();
        let own = self.own_key;
        let (added, dropped) = tokio::task::spawn_blocking(move || {
            let Ok(mut m) = mesh.lock() else {
                return (0, 0);
            };
            let mut dropped = 0;
            for k in due {
                match m.remove_peer(&k) {
                    Ok(true) => dropped += 1,
                    Ok(false) => {}
                    Err(err) => tracing::warn!(
                        "cannot drop removed mesh peer {k}: {err}; retried at the next sync; \
                         `rustbalance doctor --config FILE` checks the mesh"
                    ),
                }
            }
            let present: Vec<MeshPeer> = m.peers().cloned().collect();
            let mut added = 0;
            for p in peers_to_add(wanted, &banned, &own, &present) {
                let e = p.endpoint;
                match m.add_peer(p) {
                    Ok(()) => added += 1,
                    Err(err) => tracing::warn!(
                        "cannot add mesh peer {e}: {err}; retried at the next sync; \
                         `rustbalance doctor --config FILE` checks the mesh"
                    ),
                }
            }
            (added, dropped)
        })
        .await
        .unwrap_or((0, 0));
        if dropped > 0 {
            tracing::info!("{dropped} removed node(s) dropped from the mesh");
        }
        if added > 0 {
            tracing::info!("{added} mesh peer(s) learned from gossip");
        }
        if added > 0 || dropped > 0 {
            if let Err(e) = self.save_peers() {
                tracing::warn!("cannot save the mesh peers: {e}; kept in memory and written again at the next change: check the data directory's free space and permissions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::peers::tests::{key, member};

    fn authority(seed: u8) -> rustbalance_cluster::Authority {
        rustbalance_cluster::Authority::from_seed(&zeroize::Zeroizing::new([seed; 32]))
    }

    fn signed_by(a: &rustbalance_cluster::Authority, of: &str, by: &str) -> Removal {
        let k: PublicKey = key().parse().unwrap();
        let id = rustbalance_cluster::NodeIdentity::generate().public();
        Removal::signed(a, of, &k, Some(id), 3, 1_790_000_000, by)
    }

    fn removal(of: &str, by: &str) -> Removal {
        signed_by(&authority(1), of, by)
    }

    #[test]
    fn removals_count_only_from_members_not_removed() {
        let r = removal("node4", "node2");
        let bad = removal("node1", "node4");
        let members = vec![
            member(
                "node1",
                &[(keys::MESH_REMOVED, removal("x", "node1").line())],
            ),
            member(
                "node2",
                &[(keys::MESH_REMOVED, format!("{}\ngarbage", r.line()))],
            ),
            member("node4", &[(keys::MESH_REMOVED, bad.line())]),
        ];
        let auth = authority(1).public();
        let seen = removals_seen(&members, "node1", |m| m.node_id == "node4", Some(&auth));
        assert_eq!(
            seen,
            vec![r],
            "ours, malformed lines and a removed node's are left out"
        );
    }

    /// Issue 13 attack 1: a member gossiping removals of every member made each write its
    /// `removed` marker and exit 77. Unsigned (old-format) lines, lines signed by anyone but
    /// the authority, and anything at all on a node that cannot check signatures are
    /// ignored.
    #[test]
    fn forged_removals_of_every_member_are_ignored() {
        let names = ["node1", "node2", "node3"];
        let forger = authority(9);
        let mut forged: Vec<String> = names
            .iter()
            .map(|n| signed_by(&forger, n, "node3").line())
            .collect();
        // Today's format: name, key, time, remover, nothing signed.
        forged.extend(
            names
                .iter()
                .map(|n| format!("{n} {} 1790000000 node3", key())),
        );
        let members = vec![
            member("node2", &[]),
            member("node3", &[(keys::MESH_REMOVED, forged.join("\n"))]),
        ];
        let auth = authority(1).public();
        assert!(removals_seen(&members, "node1", |_| false, Some(&auth)).is_empty());
        let genuine = removal("node4", "node2");
        let members = vec![member("node2", &[(keys::MESH_REMOVED, genuine.line())])];
        assert!(
            removals_seen(&members, "node1", |_| false, None).is_empty(),
            "without the authority key nothing is taken"
        );
        assert_eq!(
            removals_seen(&members, "node1", |_| false, Some(&auth)),
            vec![genuine]
        );
    }

    /// Issue 13 attack 5: any member could plant WireGuard peers through `mesh_admitted`
    /// lines, and a member's claimed `mesh` key was taken whatever its certificate said.
    #[test]
    fn only_certified_keys_become_peers() {
        use rustbalance_cluster::{CertFields, CertRole, NodeIdentity};
        let a = authority(1);
        let cert = |name: &str, wg: &str| {
            let wg: PublicKey = wg.parse().unwrap();
            a.certify(CertFields {
                name: name.into(),
                role: CertRole::Worker,
                identity: NodeIdentity::generate().public(),
                wireguard: Some(*wg.as_bytes()),
                onion: None,
                issued: 1,
                serial: 2,
            })
            .unwrap()
            .encode()
        };
        let (k2, k2_new, k5, k6, k7) = (key(), key(), key(), key(), key());
        let nonce = "ab".repeat(16);
        let admitted = [
            format!("node5 {k5} 10.0.0.5:51820 {nonce} {}", cert("node5", &k5)),
            format!("node6 {k6} 10.0.0.6:51820 {nonce}"),
            format!("node7 {k7} 10.0.0.7:51820 {nonce} {}", cert("node7", &k5)),
        ];
        let members = vec![member(
            "node2",
            &[
                (keys::CERT, cert("node2", &k2)),
                (keys::MESH, format!("{k2_new} 10.0.0.2:51820")),
                (keys::MESH_ADMITTED, admitted.join("\n")),
            ],
        )];
        let auth = a.public();
        let v = read_peers(
            &members,
            "node1",
            JoinGeneration::first(0),
            |_| false,
            Some(&auth),
        );
        let wanted: Vec<String> = v.wanted.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            wanted,
            vec![k5.clone()],
            "node2's changed claim, an uncertified line and a certificate of another key \
             add nothing"
        );
        let members = vec![member(
            "node2",
            &[
                (keys::CERT, cert("node2", &k2)),
                (keys::MESH, format!("{k2} 10.0.0.2:51820")),
            ],
        )];
        let v = read_peers(
            &members,
            "node1",
            JoinGeneration::first(0),
            |_| false,
            Some(&auth),
        );
        assert_eq!(v.wanted.len(), 1, "the certified claim counts");
    }

    #[test]
    fn peers_and_the_highest_generation_come_from_members_not_removed() {
        let (k2, k3, k4, k5) = (key(), key(), key(), key());
        let salted = JoinGeneration {
            n: 3,
            salt: vec![1; 16],
        };
        let nonce = "ab".repeat(16);
        let members = vec![
            member("node1", &[(keys::JOIN_GENERATION, "9".into())]),
            member(
                "node2",
                &[
                    (keys::MESH, format!("{k2} 10.0.0.2:51820")),
                    (keys::JOIN_GENERATION, salted.to_string()),
                    (
                        keys::MESH_ADMITTED,
                        format!("node5 {k5} 10.0.0.5:51820 {nonce}\nbad/name {k3} 10.0.0.3:1"),
                    ),
                ],
            ),
            member(
                "node4",
                &[
                    (keys::MESH, format!("{k4} 10.0.0.4:51820")),
                    (keys::JOIN_GENERATION, "8".into()),
                ],
            ),
            member(
                "node3",
                &[
                    (
                        keys::JOIN_GENERATION,
                        format!("{} {}", u64::MAX, "ff".repeat(16)),
                    ),
                    (SPENT_KEY, "spent".into()),
                ],
            ),
        ];
        let v = read_peers(
            &members,
            "node1",
            JoinGeneration::first(2),
            |m| m.node_id == "node4",
            None,
        );
        assert_eq!(
            v.top, salted,
            "ours (9), node4's (8) and node3's pin (u64::MAX) do not count"
        );
        assert_eq!(v.spent, vec!["spent".to_string()]);
        let wanted: Vec<String> = v.wanted.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(wanted, vec![k2.clone(), k5.clone(), k3.clone()]);
        assert_eq!(
            v.names,
            vec![(k2, "node2".to_string()), (k5, "node5".to_string())],
            "names only when valid"
        );
        assert_eq!(v.nonces, vec![nonce]);
    }

    #[test]
    fn removed_own_and_present_peers_are_not_added() {
        let own = key().parse::<PublicKey>().unwrap();
        let (a, b, c) = (key(), key(), key());
        let e: SocketAddr = "10.0.0.2:51820".parse().unwrap();
        let moved: SocketAddr = "10.0.0.9:51820".parse().unwrap();
        let pk = |s: &str| s.parse::<PublicKey>().unwrap();
        let present = vec![MeshPeer {
            public_key: pk(&b),
            endpoint: e,
        }];
        let wanted = vec![
            (own, e),
            (pk(&a), e),
            (pk(&b), e),
            (pk(&b), moved),
            (pk(&c), e),
        ];
        let add = peers_to_add(wanted, std::slice::from_ref(&c), &own, &present);
        let got: Vec<(String, SocketAddr)> = add
            .iter()
            .map(|p| (p.public_key.to_string(), p.endpoint))
            .collect();
        assert_eq!(got, vec![(a, e), (b, moved)], "a new endpoint is taken");
    }
}
