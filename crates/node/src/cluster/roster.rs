//! Who is in the master descriptor: the live members, minus those whose target is down
//! and those removed from the cluster, each with the intro points it advertises.
//!
//! ```text
//!  members ─live─▶ not removed (any live member lists its WireGuard key in mesh_removed,
//!          in a revocation the authority signed)
//!          ─▶ target not down ─▶ not failing its canary from most peers
//!          ─▶ decodable, non-empty intro/<node> ─▶ HealthyIntros
//! ```

use super::gossip;
use rustbalance_cluster::{AuthorityKey, Membership, NodeView};
use rustbalance_hs::descriptor::{decode_intro_points, InstanceIntros};
use std::collections::BTreeSet;

/// The intro points of every healthy node, with a fingerprint of the set (to notice changes).
#[derive(Debug, Clone, Default)]
pub struct HealthyIntros {
    /// Per node, sorted by node name.
    pub nodes: Vec<InstanceIntros>,
    /// Names and encodings of all of them: changes when any advert changes.
    pub fingerprint: String,
}

/// [`intros_checked`] the membership's current view, removals checked with its trust's
/// authority key.
pub async fn healthy_intros(m: &Membership) -> HealthyIntros {
    let authority = m.trust().map(|t| *t.authority());
    intros_checked(m.members().await, authority.as_ref())
}

/// The members that the failure detector calls alive.
pub fn live(nodes: Vec<NodeView>) -> Vec<NodeView> {
    nodes.into_iter().filter(|n| n.live).collect()
}

/// WireGuard keys that any of `nodes` lists as removed (`rustbalance node remove`), in a
/// revocation `authority` signed (none without it: a forged removal must not empty the
/// descriptor).
pub fn removed_keys(nodes: &[NodeView], authority: Option<&AuthorityKey>) -> BTreeSet<String> {
    let Some(authority) = authority else {
        return BTreeSet::new();
    };
    nodes
        .iter()
        .filter_map(|v| v.get(gossip::MESH_REMOVED))
        .flat_map(|list| list.lines().filter_map(gossip::Removal::parse_line))
        .filter(|r| r.verify(authority))
        .map(|r| r.public_key)
        .collect()
}

/// The members whose intro points may be listed: live, target not down, not failing its
/// canary from most peers (issue 15 item 4), WireGuard key not listed as removed by a live
/// member; sorted by name.
pub fn healthy_members(members: Vec<NodeView>, authority: Option<&AuthorityKey>) -> Vec<NodeView> {
    let mut nodes = live(members);
    let removed = removed_keys(&nodes, authority);
    let silent = super::canary::ejected_members(&nodes);
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    nodes.retain(|v| {
        !gossip::target_down(v)
            && !silent.contains(&v.node_id)
            && !gossip::mesh_key(v).is_some_and(|k| removed.contains(&k))
    });
    nodes
}

/// The fleet PoW adverts of the healthy eligible members, with a fingerprint of the set.
#[derive(Debug, Clone, Default)]
pub struct HealthyFleet {
    /// Per node, sorted by node name.
    pub adverts: Vec<(String, super::fleet::FleetEntry)>,
    /// Names and adverts as gossiped: changes when any advert changes.
    pub fingerprint: String,
}

/// The fleet PoW adverts of the healthy ([`healthy_members`]) publisher-eligible members
/// (only a node holding the master key can host the master service), by node name; a bad
/// advert is logged and left out.
pub fn fleet_checked(members: Vec<NodeView>, authority: Option<&AuthorityKey>) -> HealthyFleet {
    let mut out = HealthyFleet::default();
    for v in healthy_members(members, authority) {
        let Some(value) = v.get(gossip::FLEET_POW) else {
            continue;
        };
        if !v.eligible() {
            // Every round (a few a second): debug, not warn.
            tracing::debug!(
                node = %v.node_id,
                "ignoring a fleet PoW advert from a node that does not hold the master key"
            );
            continue;
        }
        match super::fleet::FleetEntry::decode(value) {
            Ok(e) => {
                let fp = &mut out.fingerprint;
                fp.push_str("fleet:");
                fp.push_str(&v.node_id);
                fp.push('=');
                fp.push_str(value);
                fp.push(';');
                out.adverts.push((v.node_id.clone(), e));
            }
            Err(e) => tracing::warn!(
                node = %v.node_id,
                "ignoring a bad fleet PoW advert: {e}; that node's tor is left out of the \
                 fleet descriptors until it sends a good one"
            ),
        }
    }
    out
}

/// [`fleet_checked`] on the membership's current view.
pub async fn healthy_fleet(m: &Membership) -> HealthyFleet {
    let authority = m.trust().map(|t| *t.authority());
    fleet_checked(m.members().await, authority.as_ref())
}

/// [`intros_checked`] without an authority key: removal lists count for nothing.
pub fn intros_of(members: Vec<NodeView>) -> HealthyIntros {
    intros_checked(members, None)
}

/// The healthy intro points among `members`: a dead node, a node whose target is down, or
/// one whose WireGuard key a live member lists as removed contributes nothing. The
/// publisher drops a removed node at once, without waiting for the node to stop or for its
/// mesh peer to go.
pub fn intros_checked(members: Vec<NodeView>, authority: Option<&AuthorityKey>) -> HealthyIntros {
    let mut out = HealthyIntros::default();
    for v in healthy_members(members, authority) {
        for (_, enc) in v.intro_points() {
            match decode_intro_points(enc) {
                Ok(ips) if !ips.is_empty() => {
                    let fp = &mut out.fingerprint;
                    fp.push_str(&v.node_id);
                    fp.push(':');
                    fp.push_str(enc);
                    fp.push(';');
                    out.nodes.push(InstanceIntros {
                        instance: v.node_id.clone(),
                        intro_points: ips,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    node = %v.node_id,
                    "ignoring bad intro points: {e}; that node is left out until it sends good ones: \
                     check its version and tor, or remove it (`rustbalance node remove`) if it is not yours"
                ),
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::join_node::tests::key;
    use std::collections::BTreeMap;

    /// A live member advertising three intro points, with WireGuard key `key`, that lists
    /// `removed` in its `mesh_removed`.
    pub(crate) fn node(name: &str, key: &str, removed: &[String]) -> NodeView {
        let ips: Vec<_> = (0..3)
            .map(|_| rustbalance_hs::fixture::fake_intro_point(&mut rand::rng()))
            .collect();
        let mut state = BTreeMap::new();
        state.insert(gossip::intro_points("tor0"), gossip::encode_intros(&ips));
        state.insert(gossip::MESH.to_string(), format!("{key} 10.0.0.1:51820"));
        if !removed.is_empty() {
            state.insert(gossip::MESH_REMOVED.to_string(), removed.join("\n"));
        }
        NodeView {
            node_id: name.into(),
            generation: 1,
            addr: "127.0.0.1:9663".parse().unwrap(),
            live: true,
            heartbeat: 0,
            state,
        }
    }

    pub(crate) fn names(nodes: Vec<NodeView>) -> Vec<String> {
        let authority = crate::join::removal::tests::authority().public();
        intros_checked(nodes, Some(&authority))
            .nodes
            .into_iter()
            .map(|i| i.instance)
            .collect()
    }

    #[test]
    fn a_removed_node_leaves_the_descriptor_at_once() {
        let (k1, k2, k3) = (key(), key(), key());
        let all = |removed: &[String]| {
            vec![
                node("node1", &k1, removed),
                node("node2", &k2, &[]),
                node("node3", &k3, &[]),
            ]
        };
        assert_eq!(names(all(&[])), ["node1", "node2", "node3"]);
        // One member's gossip names node3's key: the publisher, whoever it is, drops it.
        let revoke = crate::join::removal::tests::line;
        let line = revoke("node3", &k3);
        assert_eq!(names(all(std::slice::from_ref(&line))), ["node1", "node2"]);
        // Removal is by key: a wiped machine that joined again under the same name counts.
        let other = revoke("node3", &key());
        assert_eq!(names(all(&[other])), ["node1", "node2", "node3"]);
        // Malformed, unsigned and forged removal lines remove nothing.
        let bad = vec![
            format!("node3 {k3}"),
            format!("node3 {k3} 1795000000 node1"),
            crate::join::removal::tests::forged_line("node3", &k3),
        ];
        assert_eq!(names(all(&bad)), ["node1", "node2", "node3"]);
        // Without the authority key, nothing counts.
        assert_eq!(intros_of(all(std::slice::from_ref(&line))).nodes.len(), 3);
        // A node whose target is down contributes nothing either.
        let mut nodes = all(&[]);
        nodes[1]
            .state
            .insert(gossip::TARGET_HEALTH.to_string(), "down".into());
        assert_eq!(names(nodes), ["node1", "node3"]);
    }

    #[test]
    fn dead_members_and_their_removal_lists_count_for_nothing() {
        let (k1, k2, k3) = (key(), key(), key());
        let line = crate::join::removal::tests::line("node3", &k3);
        let mut nodes = vec![
            node("node1", &k1, std::slice::from_ref(&line)),
            node("node2", &k2, &[]),
            node("node3", &k3, &[]),
        ];
        nodes[0].live = false;
        // node1 is dead: its intro points go, and so does its word on node3.
        assert_eq!(names(nodes), ["node2", "node3"]);
    }

    #[test]
    fn a_node_most_peers_cannot_reach_through_tor_leaves_the_descriptor() {
        use crate::cluster::canary::CANARY_KEY;
        let (k1, k2, k3) = (key(), key(), key());
        let all = |reports: &[(usize, &str)]| {
            let mut nodes = vec![
                node("node1", &k1, &[]),
                node("node2", &k2, &[]),
                node("node3", &k3, &[]),
            ];
            for (i, r) in reports {
                nodes[*i]
                    .state
                    .insert(CANARY_KEY.to_string(), (*r).to_string());
            }
            nodes
        };
        // Live in gossip, target up, intro points advertised: listed.
        assert_eq!(names(all(&[])), ["node1", "node2", "node3"]);
        // Both of node1's peers fail it through Tor: it leaves the descriptor.
        let both = [(1, "node1=fail node3=pass"), (2, "node1=fail")];
        assert_eq!(names(all(&both)), ["node2", "node3"]);
        // One of two is no majority; a node's word on itself never counts.
        assert_eq!(
            names(all(&[(1, "node1=fail")])),
            ["node1", "node2", "node3"]
        );
        let self_and_one = [(0, "node1=fail"), (1, "node1=fail")];
        assert_eq!(names(all(&self_and_one)), ["node1", "node2", "node3"]);
        // It passes again from one of them: listed again.
        let one_passes = [(1, "node1=pass"), (2, "node1=fail")];
        assert_eq!(names(all(&one_passes)), ["node1", "node2", "node3"]);
        // Everybody fails from everybody: the canaries are broken, not the nodes.
        let r = "node1=fail node2=fail node3=fail";
        assert_eq!(
            names(all(&[(0, r), (1, r), (2, r)])),
            ["node1", "node2", "node3"]
        );
    }
}
