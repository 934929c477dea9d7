//! The other members' join gossip (`mesh`, `mesh_admitted`, `mesh_removed`, `join_gen`) as
//! a sync round and `rustbalance node remove` read it
//! ([`rustbalance_node::join::peer_gossip`]).

use rustbalance_node::join::peer_gossip::peer_gossip;
use rustbalance_node::join::valid_name;

use crate::values::members;

/// This node's WireGuard key in the `mesh_peers` target (the base64 of 32 bytes `0xEE`).
pub const MESH_OWN_KEY: &str = "7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u4=";

/// Members as in `gossip_values` ([`crate::values_input`]); this node is `n0`.
/// Properties: no panic; this node's own key is never a peer to add, nor a removed key;
/// every WireGuard key kept as text is in its one canonical form (what the key parses to,
/// written back), since keys are compared as text (a removed member is recognised by its
/// `mesh` key); every name kept is a valid node name.
pub fn mesh_peers(data: &[u8]) {
    let views = members(data);
    let own = MESH_OWN_KEY.parse().expect("a valid key");
    // A fixed authority: fuzzed bytes cannot sign, so this exercises parsing and the
    // signature check, never a valid removal.
    let authority =
        rustbalance_cluster::Authority::from_seed(&zeroize::Zeroizing::new([7u8; 32])).public();
    let read = peer_gossip(&views, "n0", &own, Some(&authority));
    for (k, _) in &read.to_add {
        assert_ne!(k, &own, "our own key is a peer to add");
        assert!(
            !read.removed_keys.contains(&k.to_string()),
            "a removed key is a peer to add: {k}"
        );
    }
    let kept = read
        .removed_keys
        .iter()
        .chain(read.names.iter().map(|(k, _)| k));
    for k in kept {
        let canonical = k
            .parse::<rustbalance_node::join::peer_gossip::PublicKey>()
            .ok()
            .map(|p| p.to_string());
        assert_eq!(
            canonical.as_deref(),
            Some(k.as_str()),
            "a key kept as {k:?}"
        );
    }
    for (_, name) in &read.names {
        assert!(valid_name(name), "a node name kept: {name:?}");
    }
}
