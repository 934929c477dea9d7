//! Every gossip key a node writes, and its value format: the one place that says what a
//! node tells the others. (The membership layer treats values as opaque strings; the key
//! names are `rustbalance_cluster::keys`, re-exported here.)
//!
//! | key | written by | value |
//! |---|---|---|
//! | `role` | publish task | [`Role`]: `publisher` or `follower` |
//! | `priority` | start | election priority, decimal `u32`, lower wins |
//! | `eligible` | start, elector | `true` when the node holds the master key |
//! | `lease` | elector | JSON `LeaseAdvert` (format owned by the election) |
//! | `target_health` | intro task | [`target_health`]: `up`, `down` or `unknown` |
//! | `last_publish` | publish task | [`last_publish`]: `<revision time, unix secs> ok\|failed` |
//! | `intro/<node>` | intro task | [`encode_intros`]: the node's established intro points |
//! | `mesh` | join | `<base64 WireGuard key> <ip:port>` (`mesh_key`) |
//! | `mesh_admitted` | join | one `<name> <base64 key> <ip:port> <nonce> <member certificate>` per line |
//! | `mesh_removed` | join | one authority-signed revocation per line ([`Removal`]: `rbrevoke1 <name> <key> <identity> <serial> <unix secs> <by> <signature>`) |
//! | `join_gen` | join | the join generation, `N` or `N SALTHEX` |
//! | `join_spent` | join | one `<token id hex> <expires unix secs>` per line (spent join tokens) |
//! | `instance` | canary task | `<instance address>.onion:<virtual port>`, what peers probe ([`super::canary::INSTANCE_KEY`]) |
//! | `fleet_pow` | fleet task | [`super::fleet::FleetEntry::encode`]: `v1 <period> <seed hex> <effort> <seed expiry, unix secs>`, a newline, the encoded intro points of this node's tor's master service |
//! | `canary` | canary task | `peer=pass\|fail ...`, this node's verdicts ([`super::canary::CANARY_KEY`]) |
//!
//! The mesh and join values are parsed and written by the join code (`join_node.rs`);
//! their parsers are re-exported here.

use rustbalance_cluster::NodeView;
use rustbalance_hs::descriptor::{decode_intro_points, encode_intro_points, IntroPointDesc};

pub(crate) use crate::join_node::mesh_key;
pub use crate::join_node::Removal;
pub use rustbalance_cluster::keys::{
    intro_points, ELIGIBLE, FLEET_POW, INTRO_POINTS_PREFIX, JOIN_GENERATION, LAST_PUBLISH, LEASE,
    MESH, MESH_ADMITTED, MESH_REMOVED, PRIORITY, ROLE, TARGET_HEALTH,
};

/// The value of [`ROLE`] (and `/status`'s `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the lease and publishes the master descriptor.
    Publisher,
    /// Does not publish.
    Follower,
}

impl Role {
    /// The gossip value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Follower => "follower",
        }
    }
}

/// A node's gossip state when it joins: priority, eligibility, role follower.
pub fn initial_state(priority: u32, eligible: bool) -> Vec<(String, String)> {
    vec![
        (PRIORITY.to_string(), priority.to_string()),
        (ELIGIBLE.to_string(), eligible.to_string()),
        (ROLE.to_string(), Role::Follower.as_str().to_string()),
    ]
}

/// The value of [`TARGET_HEALTH`] for the proxy's view of the target.
pub fn target_health(up: Option<bool>) -> &'static str {
    match up {
        Some(true) => "up",
        Some(false) => "down",
        None => "unknown",
    }
}

/// A node's [`TARGET_HEALTH`] as gossiped, `unknown` when it gossips none.
pub fn target_of(v: &NodeView) -> &str {
    v.get(TARGET_HEALTH).unwrap_or("unknown")
}

/// A node whose target is down contributes no intro points.
pub fn target_down(v: &NodeView) -> bool {
    v.get(TARGET_HEALTH) == Some(target_health(Some(false)))
}

/// The value of [`LAST_PUBLISH`]: when, and whether every slot reached at least one HSDir.
pub fn last_publish(unix_secs: u64, reached: bool) -> String {
    format!("{unix_secs} {}", if reached { "ok" } else { "failed" })
}

/// The time a node's [`LAST_PUBLISH`] gives: the revision time (Unix seconds) it built its
/// last descriptors at (election rule 8).
pub fn last_publish_time(v: &NodeView) -> Option<u64> {
    v.get(LAST_PUBLISH)?.split(' ').next()?.parse().ok()
}

/// The value of `intro/<node>`.
pub fn encode_intros(ips: &[IntroPointDesc]) -> String {
    encode_intro_points(ips)
}

/// The number of intro points a node advertises (unreadable adverts count 0).
pub fn intro_count(v: &NodeView) -> usize {
    v.intro_points()
        .map(|(_, e)| decode_intro_points(e).map(|v| v.len()).unwrap_or(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_the_code_has_always_written_them() {
        assert_eq!(Role::Follower.as_str(), "follower");
        assert_eq!(Role::Publisher.as_str(), "publisher");
        assert_eq!(
            initial_state(7, true),
            [
                ("priority".to_string(), "7".to_string()),
                ("eligible".to_string(), "true".to_string()),
                ("role".to_string(), "follower".to_string()),
            ]
        );
        assert_eq!(last_publish(1_795_000_000, true), "1795000000 ok");
        assert_eq!(last_publish(5, false), "5 failed");
        let h: Vec<_> = [Some(true), Some(false), None]
            .into_iter()
            .map(target_health)
            .collect();
        assert_eq!(h, ["up", "down", "unknown"]);
    }
}
