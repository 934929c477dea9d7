//! Following gossip: every `sync_interval` a member learns removals, adopts the highest
//! join generation, rotates when a removal asked for it, and brings its WireGuard peers in
//! line (every member's and every admitted node's added, removed nodes' dropped after the
//! grace). [`JoinNode::sync_forever`] is the thin driver; what to do is decided by the pure
//! functions here from the members' gossip and `now`.

use super::node::JoinNode;
use super::peers::{admitted_lines, parse_mesh};
use super::removal::Removal;
use super::token::JoinGeneration;
use rustbalance_cluster::{keys, NodeView};
use rustbalance_mesh::{MeshPeer, PublicKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The removals other members gossip; a removed member's word counts for nothing (it may
/// not have stopped).
pub(crate) fn removals_seen(
    members: &[NodeView],
    own_name: &str,
    is_removed: impl Fn(&NodeView) -> bool,
) -> Vec<Removal> {
    members
        .iter()
        .filter(|m| m.node_id != own_name && !is_removed(m))
        .flat_map(|m| {
            m.get(keys::MESH_REMOVED)
                .unwrap_or("")
                .lines()
                .filter_map(Removal::parse_line)
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
}

/// Read the members' `join_gen`, `mesh` and `mesh_admitted` keys.
pub(crate) fn read_peers(
    members: &[NodeView],
    own_name: &str,
    cur: JoinGeneration,
    is_removed: impl Fn(&NodeView) -> bool,
) -> PeerView {
    let mut v = PeerView {
        top: cur,
        ..PeerView::default()
    };
    for m in members
        .iter()
        .filter(|m| m.node_id != own_name && !is_removed(m))
    {
        if let Some(g) = m.get(keys::JOIN_GENERATION).and_then(JoinGeneration::parse) {
            v.top = v.top.clone().max(g);
        }
        if let Some((k, e)) = m.get(keys::MESH).and_then(parse_mesh) {
            if let Ok(key) = k.parse() {
                v.names.push((k, m.node_id.clone()));
                v.wanted.push((key, e));
            }
        }
        for line in admitted_lines(m) {
            if let (Ok(k), Some(e)) = (line.key.parse::<PublicKey>(), line.endpoint) {
                if super::message::valid_name(line.name) {
                    v.names.push((line.key.to_string(), line.name.to_string()));
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
        let new = self.learn_removals(
            removals_seen(&members, &self.name, |m| self.is_removed(m)),
            now,
        );
        if !new.is_empty() {
            for r in &new {
                tracing::warn!("{}", r.describe());
            }
            self.gossip_removals().await;
            self.forget_admitted().await;
        }
        if let Some(r) = self.removal_of(&self.own_key.to_string()) {
            self.stop_removed(r);
            return Flow::Stop;
        }
        let view = read_peers(&members, &self.name, self.join_generation(), |m| {
            self.is_removed(m)
        });
        for (k, n) in &view.names {
            self.note_name(k, n);
        }
        for nonce in &view.nonces {
            self.service.note_nonce(nonce);
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
                    Err(err) => tracing::warn!("cannot drop removed mesh peer {k}: {err}"),
                }
            }
            let present: Vec<MeshPeer> = m.peers().cloned().collect();
            let mut added = 0;
            for p in peers_to_add(wanted, &banned, &own, &present) {
                let e = p.endpoint;
                match m.add_peer(p) {
                    Ok(()) => added += 1,
                    Err(err) => tracing::warn!("cannot add mesh peer {e}: {err}"),
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
                tracing::warn!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::peers::tests::key;

    fn member(name: &str, kv: &[(&str, String)]) -> NodeView {
        NodeView {
            node_id: name.into(),
            generation: 1,
            addr: "10.0.0.1:9663".parse().unwrap(),
            live: true,
            state: kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    fn removal(of: &str, by: &str) -> Removal {
        Removal {
            name: of.into(),
            public_key: key(),
            at: 1_790_000_000,
            by: by.into(),
        }
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
        let seen = removals_seen(&members, "node1", |m| m.node_id == "node4");
        assert_eq!(
            seen,
            vec![r],
            "ours, malformed lines and a removed node's are left out"
        );
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
        ];
        let v = read_peers(&members, "node1", JoinGeneration::first(2), |m| {
            m.node_id == "node4"
        });
        assert_eq!(v.top, salted, "ours (9) and node4's (8) do not count");
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
