//! Fairness per node, repeats, the instance cap, and a hostile member against the whole
//! publish path short of the upload (gossip views ─▶ roster ─▶ selection ─▶ both descriptors).

use super::*;
use crate::cluster::gossip;
use crate::cluster::roster::{intros_of, tests::node};
use crate::join_node::tests::key;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_hs::descriptor::{
    encode_intro_points_unchecked, parse_descriptor, MAX_DESCRIPTOR_SIZE, MAX_INTRO_POINTS,
};
use rustbalance_hs::fixture::{fake_intro_point, oversized_intro_point};
use rustbalance_hs::publish::{plan_uploads, PublishInput};
use rustbalance_hs::ring::{Consensus, HsDir, HsDirSet};
use rustbalance_hs::time::{from_unix, TimeParams};
use rustbalance_hs::IdentityKey;
use std::collections::BTreeMap;

fn points(rng: &mut ChaCha20Rng, n: usize) -> Vec<IntroPointDesc> {
    (0..n).map(|_| fake_intro_point(rng)).collect()
}

fn entry(node: &str, ips: Vec<IntroPointDesc>) -> InstanceIntros {
    InstanceIntros {
        instance: node.into(),
        intro_points: ips,
    }
}

fn count(s: &Selection, node: &str) -> usize {
    s.chosen.iter().filter(|(n, _)| n == node).count()
}

#[test]
fn a_node_with_twenty_keys_gets_no_more_than_its_share() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    // "a" sorts first, so it would win every partial round.
    let mut nodes: Vec<InstanceIntros> = (0..20)
        .map(|_| entry("a-many", points(&mut rng, 3)))
        .collect();
    nodes.push(entry("node1", points(&mut rng, 3)));
    nodes.push(entry("node2", points(&mut rng, 3)));
    let s = choose(&nodes, MAX_INTRO_POINTS);
    assert_eq!(s.share, 7);
    assert_eq!(count(&s, "node1"), 3);
    assert_eq!(count(&s, "node2"), 3);
    // Nine keys count (27 points), the other 11 are ignored; of the 27, its share.
    assert_eq!(count(&s, "a-many"), 7);
    assert_eq!(
        s.extra_instances,
        [("a-many".to_string(), 20 - MAX_INSTANCES_PER_NODE)]
    );
    // Same input, same choice.
    let again = choose(&nodes, MAX_INTRO_POINTS);
    let ids = |s: &Selection| {
        s.chosen
            .iter()
            .map(|(n, p)| (n.clone(), p.ipt_sid_key().to_bytes()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&s), ids(&again));
}

#[test]
fn one_key_with_twenty_points_is_capped_at_the_share_too() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let nodes = vec![
        entry("a-many", points(&mut rng, 20)),
        entry("node1", points(&mut rng, 3)),
    ];
    let s = choose(&nodes, MAX_INTRO_POINTS);
    assert_eq!(
        (s.share, count(&s, "a-many"), count(&s, "node1")),
        (10, 10, 3)
    );
    assert_eq!(s.left_out, [("a-many".to_string(), 10)]);
    // The tail of the order is the biggest node's: that is what a size cut drops first.
    assert_eq!(s.per_node(6..13), [("a-many".to_string(), 7)]);
}

#[test]
fn a_point_listed_twice_or_by_two_nodes_is_kept_once() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let honest = points(&mut rng, 3);
    let own = points(&mut rng, 3);
    // "a-copy" lists node1's points (and one of its own twice) before its own.
    let copy = [honest.clone(), own.clone(), vec![own[0].clone()]].concat();
    let nodes = vec![entry("a-copy", copy), entry("node1", honest.clone())];
    let s = choose(&nodes, MAX_INTRO_POINTS);
    let mut ids: Vec<_> = s
        .chosen
        .iter()
        .map(|(_, p)| p.ipt_sid_key().to_bytes())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no point twice");
    assert_eq!(n, 6);
    for p in honest.iter().chain(&own) {
        assert!(ids.contains(&p.ipt_sid_key().to_bytes()));
    }
    assert_eq!(s.duplicates, 4);
}

pub(crate) const NOW: u64 = 1_795_000_000;
pub(crate) const TP: TimeParams = TimeParams::REAL_NETWORK;

/// A consensus and HSDir ring for `plan_uploads`, in process.
pub(crate) fn network() -> (Consensus, HsDirSet) {
    let va = NOW - NOW % 3600;
    let consensus = Consensus {
        valid_after: from_unix(va),
        fresh_until: from_unix(va + 3600),
        valid_until: from_unix(va + 3 * 3600),
        srv_current: Some([1; 32]),
        srv_previous: Some([2; 32]),
        params: BTreeMap::new(),
        relays: vec![],
    };
    let dirs = (1..=12u8)
        .map(|i| HsDir {
            nickname: format!("r{i}"),
            fingerprint: hex::encode_upper([i; 20]),
            ed25519_id: [i; 32],
        })
        .collect();
    (consensus, HsDirSet::from_dirs(dirs, 2, 4))
}

/// Attack 2 of issue 13: a member gossips twenty `intro/*` keys, half of them full of
/// intro points padded with 255-byte link specifiers of unknown types (over the descriptor
/// size limit together), half of them plausible points (dead: it made up their keys). It
/// must get no more than its share of the slots, every honest point must be published,
/// and both descriptors must build within the size limit.
#[test]
fn a_hostile_member_cannot_take_the_descriptor_or_stop_publication() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut hostile = node("a-hostile", &key(), &[]);
    hostile
        .state
        .retain(|k, _| !k.starts_with(gossip::INTRO_POINTS_PREFIX));
    for k in 0..20 {
        let ips: Vec<IntroPointDesc> = (0..3)
            .map(|_| {
                if k % 2 == 0 {
                    oversized_intro_point(&mut rng, 5)
                } else {
                    fake_intro_point(&mut rng)
                }
            })
            .collect();
        hostile.state.insert(
            gossip::intro_points(&format!("k{k:02}")),
            encode_intro_points_unchecked(&ips),
        );
    }
    let (n1, n2) = (node("node1", &key(), &[]), node("node2", &key(), &[]));
    let honest: Vec<[u8; 32]> = intros_of(vec![n1.clone(), n2.clone()])
        .nodes
        .iter()
        .flat_map(|i| i.intro_points.iter().map(|p| p.ipt_sid_key().to_bytes()))
        .collect();
    assert_eq!(honest.len(), 6);

    let intros = intros_of(vec![hostile, n1, n2]);
    let s = choose(&intros.nodes, MAX_INTRO_POINTS);
    let chosen: Vec<(String, IntroPointDesc)> = s.chosen.clone();

    let share = MAX_INTRO_POINTS.div_ceil(3);
    let theirs = chosen.iter().filter(|(n, _)| n == "a-hostile").count();
    let ips: Vec<IntroPointDesc> = chosen.iter().map(|(_, p)| p.clone()).collect();
    let master = IdentityKey::generate(&mut rng);
    let (consensus, hsdirs) = network();
    let plan = plan_uploads(
        &PublishInput {
            master: &master,
            consensus: &consensus,
            hsdirs: &hsdirs,
            time: TP,
            now: from_unix(NOW),
            descriptors: std::slice::from_ref(&ips),
            flow_control: None,
            pow_params: None,
            auth_clients: None,
            fleet: &[],
            above_tor_counters: false,
        },
        &mut rng,
    );
    assert!(
        theirs <= share && plan.is_ok(),
        "the hostile member has {theirs} of {} intro points (its share is {share}); \
         publication: {:?}",
        chosen.len(),
        plan.as_ref().map(|p| p.len()).map_err(|e| e.to_string())
    );
    let plan = plan.unwrap_or_default();
    assert_eq!(plan.len(), 2);
    for up in &plan {
        assert!(up.descriptor.text.len() <= MAX_DESCRIPTOR_SIZE);
        assert_eq!(up.hsdirs.len(), 8);
        let d = parse_descriptor(&up.descriptor.text, &master.address(), &TP, from_unix(NOW))
            .expect("clients can read it");
        let listed: Vec<[u8; 32]> = d
            .intro_points
            .iter()
            .map(|p| p.ipt_sid_key().to_bytes())
            .collect();
        assert!(d.refused_intro_points.is_empty());
        for h in &honest {
            assert!(listed.contains(h), "an honest intro point is missing");
        }
    }
}

/// The lists of `windows`, as the publisher hands them to `plan_uploads`.
fn lists(w: &[Selection]) -> Vec<Vec<IntroPointDesc>> {
    w.iter().map(Selection::points).collect()
}

fn plan_for(
    master: &IdentityKey,
    descriptors: &[Vec<IntroPointDesc>],
    rng: &mut ChaCha20Rng,
) -> Vec<rustbalance_hs::publish::SlotUpload> {
    let (consensus, hsdirs) = network();
    plan_uploads(
        &PublishInput {
            master,
            consensus: &consensus,
            hsdirs: &hsdirs,
            time: TP,
            now: from_unix(NOW),
            descriptors,
            flow_control: None,
            pow_params: None,
            auth_clients: None,
            fleet: &[],
            above_tor_counters: false,
        },
        rng,
    )
    .expect("plan")
}

/// Issue 16 item 2: 8 nodes × 3 intro points (24, over the 20 a client takes) through the
/// whole path short of the upload. Every HSDir a client fetches from gets one descriptor
/// of its own, none over 20 points or the size limit, every descriptor lists every node
/// (2 or 3 of its points), every point is in some descriptor, and every responsible HSDir
/// gets exactly one descriptor.
#[test]
fn per_hsdir_descriptors_put_every_nodes_points_in_front_of_clients() {
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let nodes: Vec<InstanceIntros> = (1..=8)
        .map(|i| entry(&format!("node{i}"), points(&mut rng, 3)))
        .collect();
    let owner: BTreeMap<[u8; 32], String> = nodes
        .iter()
        .flat_map(|e| {
            e.intro_points
                .iter()
                .map(|p| (p.ipt_sid_key().to_bytes(), e.instance.clone()))
        })
        .collect();
    assert_eq!(distinct_points(&nodes), 24);
    let (consensus, hsdirs) = network();
    let groups = usize::from(hsdirs.n_replicas) * hsdirs.spread_fetch;
    assert_eq!(groups, 6);
    let windows = choose_windows(&nodes, groups, MAX_INTRO_POINTS);
    let master = IdentityKey::generate(&mut rng);
    let plan = plan_for(&master, &lists(&windows), &mut rng);
    let periods: std::collections::BTreeSet<u64> = plan.iter().map(|u| u.slot.period_num).collect();
    assert_eq!(periods.len(), 2, "both live slots");
    for period in periods {
        let ups: Vec<_> = plan
            .iter()
            .filter(|u| u.slot.period_num == period)
            .collect();
        assert_eq!(ups.len(), 6, "one descriptor per HSDir clients fetch from");
        let blinded = ups[0].descriptor.blinded_key;
        let srv = consensus.srv_for(&TP, &ups[0].slot);
        let responsible = hsdirs.responsible(&blinded, period, TP.period_minutes, &srv);
        let fetched = hsdirs.fetched_from(&blinded, period, TP.period_minutes, &srv);
        assert_eq!(fetched.len(), 6);
        assert!(fetched.iter().all(|f| responsible.contains(f)));
        let mut given: Vec<&HsDir> = ups.iter().flat_map(|u| u.hsdirs.iter()).collect();
        given.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        let mut want: Vec<&HsDir> = responsible.iter().collect();
        want.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        assert_eq!(
            given, want,
            "every responsible HSDir gets exactly one descriptor"
        );
        let mut seen: BTreeMap<[u8; 32], usize> = BTreeMap::new();
        for u in &ups {
            assert_eq!(u.hsdirs.iter().filter(|d| fetched.contains(d)).count(), 1);
            assert_eq!(u.descriptor.blinded_key, blinded);
            assert!(u.descriptor.text.len() < MAX_DESCRIPTOR_SIZE);
            let d = parse_descriptor(&u.descriptor.text, &master.address(), &TP, from_unix(NOW))
                .expect("clients can read it");
            assert_eq!(d.intro_points.len(), 20);
            let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
            for p in &d.intro_points {
                let id = p.ipt_sid_key().to_bytes();
                *per_node.entry(owner[&id].clone()).or_default() += 1;
                *seen.entry(id).or_default() += 1;
            }
            assert_eq!(per_node.len(), 8, "{per_node:?}");
            assert!(
                per_node.values().all(|c| (2..=3).contains(c)),
                "{per_node:?}"
            );
        }
        assert_eq!(seen.len(), 24, "a point is in no descriptor");
    }
    // At 20 points or fewer, one merged descriptor per slot, to all 8 responsible HSDirs.
    let few: Vec<InstanceIntros> = nodes[..6].to_vec();
    assert_eq!(distinct_points(&few), 18);
    let merged = plan_for(
        &master,
        &[choose(&few, MAX_INTRO_POINTS).points()],
        &mut rng,
    );
    assert_eq!(merged.len(), 2);
    assert!(merged.iter().all(|u| u.hsdirs.len() == 8));
}

/// Attack 2 of issue 13 against per-HSDir descriptors: a member with two keys of 20 points
/// each makes the cluster count 46 points, over 20. Each window is chosen like a merged
/// descriptor, so in every one the member has at most its share and every honest point is
/// listed (a window of the global order would have been the member's points alone).
#[test]
fn a_member_with_many_points_gets_its_share_of_every_window() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let nodes = vec![
        entry("a-many", points(&mut rng, 20)),
        entry("a-many", points(&mut rng, 20)),
        entry("node1", points(&mut rng, 3)),
        entry("node2", points(&mut rng, 3)),
    ];
    assert_eq!(distinct_points(&nodes), 46);
    let honest: Vec<[u8; 32]> = nodes[2..]
        .iter()
        .flat_map(|e| e.intro_points.iter().map(|p| p.ipt_sid_key().to_bytes()))
        .collect();
    for w in choose_windows(&nodes, 6, MAX_INTRO_POINTS) {
        assert!(
            count(&w, "a-many") <= w.share && w.share == 7,
            "{}",
            count(&w, "a-many")
        );
        let ids: Vec<[u8; 32]> = w
            .points()
            .iter()
            .map(|p| p.ipt_sid_key().to_bytes())
            .collect();
        assert!(
            honest.iter().all(|h| ids.contains(h)),
            "an honest point is missing"
        );
    }
}

/// Turbo mode: eight nodes of four tors each, a share of 3 per node (below its 4 tors).
/// Each of the 32 tors is in some per-HSDir window (found in review: with a node's tors
/// always interleaved from its first, a node's fourth tor was in none).
#[test]
fn every_tor_of_a_node_is_in_some_window_when_its_share_is_smaller() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut nodes = Vec::new();
    let mut tors: Vec<Vec<[u8; 32]>> = Vec::new();
    for n in 0..8 {
        for _ in 0..4 {
            let pts = points(&mut rng, 3);
            tors.push(pts.iter().map(|p| p.ipt_sid_key().to_bytes()).collect());
            nodes.push(entry(&format!("node{n}"), pts));
        }
    }
    let windows = choose_windows(&nodes, 6, MAX_INTRO_POINTS);
    assert_eq!(windows[0].share, 3);
    let listed: std::collections::HashSet<[u8; 32]> = windows
        .iter()
        .flat_map(|w| w.chosen.iter().map(|(_, p)| p.ipt_sid_key().to_bytes()))
        .collect();
    for (i, t) in tors.iter().enumerate() {
        assert!(
            t.iter().any(|k| listed.contains(k)),
            "tor {} of node{} is in no window",
            i % 4,
            i / 4
        );
    }
}
