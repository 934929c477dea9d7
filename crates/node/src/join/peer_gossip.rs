//! What a member makes of the other members' join gossip, in one call: the removals they
//! list (`mesh_removed`), the highest join generation (`join_gen`), the WireGuard peers to
//! add from their `mesh` and `mesh_admitted` values, and how `rustbalance node remove`
//! resolves a name among them. The same pure functions a sync round and the remove
//! command use; public so that the fuzz target `mesh_peers` (crates/fuzzing) reaches the
//! crate-private readers of those lines.

use super::peers::mesh_key;
use super::sync::{peers_to_add, read_peers, removals_seen};
use super::target::resolve_member;
use super::token::JoinGeneration;
use rustbalance_cluster::{AuthorityKey, NodeView};
pub use rustbalance_mesh::PublicKey;
use std::net::SocketAddr;

/// The outcome of [`peer_gossip`].
#[derive(Debug, Default)]
pub struct PeerGossip {
    /// Removals listed by members that are not removed themselves.
    pub removed_keys: Vec<String>,
    /// The highest join generation gossiped (or the starting one).
    pub top_generation: JoinGeneration,
    /// WireGuard peers to add to an empty mesh.
    pub to_add: Vec<(PublicKey, SocketAddr)>,
    /// Node names by WireGuard key.
    pub names: Vec<(String, String)>,
    /// Nonces of requests other members admitted.
    pub nonces: Vec<String>,
    /// Every member's name and every admitted name, resolved as `node remove` would.
    pub resolved: Vec<(String, PublicKey)>,
}

/// Reads `members`' gossip as the member `own_name` with WireGuard key `own_key`, taking
/// removals and admissions that `authority` signed (none without one).
pub fn peer_gossip(
    members: &[NodeView],
    own_name: &str,
    own_key: &PublicKey,
    authority: Option<&AuthorityKey>,
) -> PeerGossip {
    let removed: Vec<String> = removals_seen(members, own_name, |_| false, authority)
        .into_iter()
        .map(|r| r.public_key)
        .collect();
    let is_removed = |m: &NodeView| mesh_key(m).is_some_and(|k| removed.contains(&k));
    let view = read_peers(
        members,
        own_name,
        JoinGeneration::default(),
        is_removed,
        authority,
    );
    let to_add = peers_to_add(view.wanted, &removed, own_key, &[])
        .into_iter()
        .map(|p| (p.public_key, p.endpoint))
        .collect();
    let mut who: Vec<&str> = members.iter().map(|m| m.node_id.as_str()).collect();
    who.extend(view.names.iter().map(|(_, name)| name.as_str()));
    let resolved = who
        .into_iter()
        .filter_map(|w| resolve_member(members, w).ok())
        .map(|t| (t.name, t.key))
        .collect();
    PeerGossip {
        removed_keys: removed,
        top_generation: view.top,
        to_add,
        names: view.names,
        nonces: view.nonces,
        resolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustbalance_cluster::keys;

    use crate::join::peers::tests::member;

    fn key() -> PublicKey {
        rustbalance_mesh::PrivateKey::generate().public_key()
    }

    /// Keys are compared as text: a removed member that wrote its `mesh` key with a
    /// trailing tab (which the key parser trims) was not recognised as removed, so the
    /// nodes it admitted were still added to the mesh. Found by the `mesh_peers` target
    /// (seed `seed-found-01-mesh-key-with-a-tab`).
    #[test]
    fn a_removed_member_is_recognised_whatever_the_spelling_of_its_key() {
        let (own, removed, other, admitted) = (key(), key(), key(), key());
        let members = [
            member(
                "n1",
                &[
                    (keys::MESH, format!("{removed}\t 10.0.0.2:51820")),
                    (
                        keys::MESH_ADMITTED,
                        format!("node9 {admitted} 192.0.2.9:51820 ab"),
                    ),
                ],
            ),
            member(
                "n2",
                &[
                    (keys::MESH, format!("{other} 10.0.0.3:51820")),
                    (
                        keys::MESH_REMOVED,
                        crate::join::removal::tests::line("n1", &removed.to_string()),
                    ),
                ],
            ),
        ];
        let authority = crate::join::removal::tests::authority().public();
        let read = peer_gossip(&members, "n0", &own, Some(&authority));
        let added: Vec<String> = read.to_add.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(added, vec![other.to_string()], "{read:?}");
    }
}
