//! Names of the per-node gossip keys.
//!
//! Values are opaque strings to the membership layer; the crates that produce them own
//! their format (the election owns [`LEASE`], the hs/tor layers own [`intro_points`]).

/// `"publisher"` or `"worker"` (informational).
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
/// Prefix of the intro-point keys, one per tor instance.
pub const INTRO_POINTS_PREFIX: &str = "intro/";

/// The key holding the serialized intro points of tor instance `instance`.
pub fn intro_points(instance: &str) -> String {
    format!("{INTRO_POINTS_PREFIX}{instance}")
}
