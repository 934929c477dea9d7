//! Gossip values: what every reader of another node's state makes of it (priority,
//! eligibility, lease, intro points, fleet PoW adverts, target health, join generation,
//! removal lines), then the roster, the fleet descriptors' plan and the election fed with
//! the result.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rustbalance_cluster::election::{ElectionConfig, Input, Millis};
use rustbalance_cluster::{Election, NodeView};
use rustbalance_node::cluster::{fleet, gossip, roster};
use rustbalance_node::join::{JoinGeneration, Removal};

/// Builds a `gossip_values` input: per member, its `(key, value)` pairs.
pub fn values_input(members: &[&[(&str, &str)]]) -> Vec<u8> {
    members
        .iter()
        .map(|kv| {
            kv.iter()
                .map(|(k, v)| format!("{k}\x1f{v}"))
                .collect::<Vec<_>>()
                .join("\x1e")
        })
        .collect::<Vec<_>>()
        .join("\0")
        .into_bytes()
}

/// The members an input describes: separated by NUL, their entries by `\x1e`, key and
/// value by `\x1f`. Member `i` is node `n<i>`, live when `i` is even.
pub(crate) fn members(data: &[u8]) -> Vec<NodeView> {
    String::from_utf8_lossy(data)
        .split('\0')
        .take(16)
        .enumerate()
        .map(|(i, text)| NodeView {
            node_id: format!("n{i}"),
            generation: 1,
            addr: SocketAddr::from(([10, 0, 0, 1], 7946)),
            live: i % 2 == 0,
            heartbeat: 0,
            state: text
                .split('\x1e')
                .filter_map(|kv| kv.split_once('\x1f'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        })
        .collect()
}

/// Every value parser on every member's state, then the roster (who is in the master
/// descriptor) and an election observing the members at several times. No panic.
pub fn gossip_values(data: &[u8]) {
    let views = members(data);
    for v in &views {
        let _ = (v.priority(), v.eligible(), v.lease(), v.to_member());
        let _ = (
            gossip::intro_count(v),
            gossip::target_of(v),
            gossip::target_down(v),
        );
        if let Some(g) = v.get(gossip::JOIN_GENERATION) {
            let _ = JoinGeneration::parse(g).map(|g| g.to_string());
        }
        if let Some(Ok(e)) = v.get(gossip::FLEET_POW).map(fleet::FleetEntry::decode) {
            let once = e.encode();
            let again = fleet::FleetEntry::decode(&once)
                .expect("an encoded fleet advert decodes")
                .encode();
            assert_eq!(once, again, "a fleet advert must encode back to itself");
            let _ = e.pow_params(25);
        }
        for line in v.get(gossip::MESH_REMOVED).unwrap_or("").lines() {
            if let Some(r) = Removal::parse_line(line) {
                let _ = (r.describe(), r.is_recent(u64::MAX, Duration::MAX));
            }
        }
    }
    let _ = roster::removed_keys(&views, None);
    let _ = roster::intros_of(views.clone());
    let adverts = roster::fleet_checked(views.clone(), None).adverts;
    for now in [0, 1_795_000_000, 4_000_000_000] {
        let period = adverts.first().map_or(0, |(_, e)| e.period_num);
        let slots = fleet::fleet_slots(
            &adverts,
            period,
            6,
            25,
            rustbalance_hs::time::from_unix(now),
        );
        let _ = fleet::fleet_nodes(&adverts, &slots);
    }
    let Ok(mut e) = Election::new("me", 5, true, 1, ElectionConfig::default()) else {
        return;
    };
    let view: Vec<_> = views.iter().map(NodeView::to_member).collect();
    for now in [0, 1_000, 3_000, 60_000, u64::MAX / 2, u64::MAX] {
        let _ = e.handle(Millis(now), Input::Membership(view.clone()));
        let _ = e.handle(Millis(now), Input::Tick);
        let _ = e.role(Millis(now));
    }
}
