//! Names of the per-node gossip keys.
//!
//! Values are opaque strings to the membership layer; the crates that produce them own
//! their format (the election owns [`LEASE`]; the node writes the others, and
//! `rustbalance_node::cluster::gossip` documents every value it writes).

/// The node's member certificate ([`crate::cert`]), signed by the authority. Like every
/// value of a signing node it is wrapped in a [`crate::signed`] envelope.
pub const CERT: &str = "cert";
/// `"publisher"` or `"follower"` (informational).
pub const ROLE: &str = "role";
/// Election priority, decimal `u32`, lower wins.
pub const PRIORITY: &str = "priority";
/// `"true"` when the node holds the master key and may publish.
pub const ELIGIBLE: &str = "eligible";
/// The node's lease, a JSON [`crate::election::LeaseAdvert`]; absent when it holds none.
pub const LEASE: &str = "lease";
/// Health of the node's target (opaque, produced by the proxy).
pub const TARGET_HEALTH: &str = "target_health";
/// Result of the node's last publish attempt (opaque, produced by the publisher).
pub const LAST_PUBLISH: &str = "last_publish";
/// The node's WireGuard public key and endpoint: `"<base64 key> <ip:port>"`.
pub const MESH: &str = "mesh";
/// Nodes this node admitted through the join endpoint, one `"<name> <base64 key> <ip:port>
/// <nonce>"` per line, so that every member adds them to its mesh and refuses a replay of
/// the same request.
pub const MESH_ADMITTED: &str = "mesh_admitted";
/// Nodes removed from the cluster (`rustbalance node remove`), as known to this node (the
/// union of every member's list): one `"<name> <base64 key> <unix secs> <removed by>"` per
/// line. Members drop these WireGuard peers and refuse their joins; the removed node stops.
pub const MESH_REMOVED: &str = "mesh_removed";
/// The join generation this node accepts tokens of (decimal; the highest in the cluster wins).
pub const JOIN_GENERATION: &str = "join_gen";
/// Fleet PoW: the intro points and PoW parameters of the node's tor's master service
/// (opaque, produced by the node).
pub const FLEET_POW: &str = "fleet_pow";
/// Prefix of the intro-point keys, one per tor instance.
pub const INTRO_POINTS_PREFIX: &str = "intro/";

/// The key holding the serialized intro points of tor instance `instance`.
pub fn intro_points(instance: &str) -> String {
    format!("{INTRO_POINTS_PREFIX}{instance}")
}
