//! Fleet PoW, pure: the advert's format, which tors go into which descriptors, and the
//! descriptors themselves (parsed back as a client reads them).

use super::*;
use crate::cluster::gossip;
use crate::cluster::roster::{fleet_checked, tests::node};
use crate::cluster::selection::tests::{network, NOW, TP};
use crate::join_node::tests::key;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_hs::descriptor::{parse_descriptor, ABOVE_TOR_COUNTER_BASE};
use rustbalance_hs::fixture::fake_intro_point;
use rustbalance_hs::publish::{plan_uploads, PublishInput};
use rustbalance_hs::time::from_unix;
use rustbalance_hs::IdentityKey;
use std::collections::BTreeSet;

fn entry(rng: &mut ChaCha20Rng, period: u64, effort: u32) -> FleetEntry {
    let seed: [u8; 32] = rand::RngExt::random(rng);
    FleetEntry {
        period_num: period,
        seed,
        effort,
        expires: NOW + 7200,
        intro_points: (0..3).map(|_| fake_intro_point(rng)).collect(),
    }
}

/// The points' service keys, sorted (a descriptor need not keep the order).
fn ids(points: &[IntroPointDesc]) -> Vec<[u8; 32]> {
    let mut v: Vec<[u8; 32]> = points.iter().map(|p| p.ipt_sid_key().to_bytes()).collect();
    v.sort_unstable();
    v
}

fn seed_of(p: &PowParams) -> [u8; 32] {
    PowV1::of(p).expect("v1").seed
}

#[test]
fn an_advert_reads_back_as_written_and_a_bad_one_says_what_is_wrong() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let e = entry(&mut rng, 20_000, 7);
    let back = FleetEntry::decode(&e.encode()).expect("decodes");
    assert_eq!(back.encode(), e.encode());
    assert_eq!(
        (back.period_num, back.effort, back.seed),
        (20_000, 7, e.seed)
    );
    let (head, points) = e
        .encode()
        .split_once('\n')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    for (bad, why) in [
        (head.clone(), "no intro points line"),
        (format!("v2{}\n{points}", &head[2..]), "not scheme v1"),
        (format!("{head} 9\n{points}"), "not five fields"),
        (
            head.replacen(&hex::encode(e.seed), "zz", 1) + "\n" + &points,
            "seed",
        ),
        (
            format!("v1 1 {} 4294967296 5\n{points}", hex::encode(e.seed)),
            "32 bits",
        ),
        (format!("{head}\nnot base64!"), "intro points"),
        (format!("{head}\n"), "intro points"),
        (
            format!("v1 1 {} 0 {}\n{points}", hex::encode(e.seed), u64::MAX),
            "year 9999",
        ),
    ] {
        let err = FleetEntry::decode(&bad).expect_err(why).to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
}

#[test]
fn each_tor_gets_its_own_descriptor_with_its_own_seed_and_the_effort_floor() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let entries: Vec<(String, FleetEntry)> = (0..3)
        .map(|i| (format!("node{i}"), entry(&mut rng, 100, i * 40)))
        .collect();
    let slots = fleet_slots(&entries, 100, 6, 50, from_unix(NOW));
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].period_num, 100);
    assert_eq!(slots[0].descriptors.len(), 3);
    for (points, pow) in &slots[0].descriptors {
        let (_, owner) = entries
            .iter()
            .find(|(_, e)| ids(&e.intro_points) == ids(points))
            .expect("a tor's own points");
        let p = PowV1::of(pow).unwrap();
        assert_eq!(p.seed, owner.seed, "another tor's seed cannot verify");
        assert_eq!(p.effort, owner.effort.max(50));
    }
    // A huge suggestion is capped at what tor's client solves.
    let mut greedy = entries.clone();
    greedy[0].1.effort = u32::MAX;
    let s = fleet_slots(&greedy, 100, 6, 0, from_unix(NOW));
    let top = s[0]
        .descriptors
        .iter()
        .map(|(_, p)| PowV1::of(p).unwrap().effort)
        .max();
    assert_eq!(top, Some(MAX_EFFORT));
}

#[test]
fn expired_seeds_and_other_periods_drop_out_and_more_tors_than_hsdirs_take_turns() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut entries: Vec<(String, FleetEntry)> = (0..8)
        .map(|i| (format!("node{i}"), entry(&mut rng, 100, 0)))
        .collect();
    entries[7].1.expires = NOW;
    entries[6].1.period_num = 101;
    let slots = fleet_slots(&entries, 100, 6, 0, from_unix(NOW));
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].descriptors.len(), 6, "the six live tors of 100");
    let names = fleet_nodes(&entries, &slots);
    assert!(
        !names[&100].contains(&"node7".to_string()),
        "expired seed listed"
    );
    assert!(
        !names[&100].contains(&"node6".to_string()),
        "another period's advert"
    );
    // The publisher asks for the first live slot's period only: an advert for another
    // (stale, or a hostile member's for the slot clients use between a period start and
    // the SRV) makes no slot there, where it would be alone in every descriptor.
    assert_eq!(fleet_slots(&entries, 101, 6, 0, from_unix(NOW)).len(), 1);
    assert!(fleet_slots(&entries, 102, 6, 0, from_unix(NOW)).is_empty());
    // Over the periods every tor gets its turn.
    let mut seen = BTreeSet::new();
    for period in 100..107 {
        let mut e = entries[..6].to_vec();
        e.push(entries[7].clone());
        for (_, x) in e.iter_mut() {
            x.period_num = period;
            x.expires = NOW + 1;
        }
        let s = fleet_slots(&e, period, 6, 0, from_unix(NOW));
        seen.extend(fleet_nodes(&e, &s).remove(&period).unwrap());
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
}

/// The whole path short of the upload: the slot of the fleet's period gets one descriptor
/// per tor, each listing only that tor's points with that tor's seed, and every HSDir a
/// client fetches from gets one; the other slot gets the ordinary descriptor, without
/// `pow-params`; every counter is above any tor's.
#[test]
fn fleet_descriptors_pair_each_tors_points_with_its_seed() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let master = IdentityKey::generate(&mut rng);
    let (consensus, hsdirs) = network();
    let slots_live = TP.live_slots(NOW, consensus.valid_after_unix());
    let period = slots_live[0].period_num;
    let entries: Vec<(String, FleetEntry)> = (0..3)
        .map(|i| (format!("node{i}"), entry(&mut rng, period, 3)))
        .collect();
    let fleet = fleet_slots(&entries, period, 6, 0, from_unix(NOW));
    let ordinary: Vec<IntroPointDesc> = (0..6).map(|_| fake_intro_point(&mut rng)).collect();
    let plan = plan_uploads(
        &PublishInput {
            master: &master,
            consensus: &consensus,
            hsdirs: &hsdirs,
            time: TP,
            now: from_unix(NOW),
            descriptors: std::slice::from_ref(&ordinary),
            flow_control: None,
            pow_params: None,
            auth_clients: None,
            fleet: &fleet,
            above_tor_counters: true,
        },
        &mut rng,
    )
    .expect("plan");
    let mut fleet_dirs = 0;
    for up in &plan {
        assert!(up.descriptor.revision > ABOVE_TOR_COUNTER_BASE);
        let d = parse_descriptor(&up.descriptor.text, &master.address(), &TP, from_unix(NOW))
            .expect("clients can read it");
        if up.slot.period_num == period {
            fleet_dirs += up.hsdirs.len();
            let seed = seed_of(d.pow_params.first().expect("pow-params"));
            let (_, owner) = entries
                .iter()
                .find(|(_, e)| e.seed == seed)
                .expect("a tor's seed");
            let (listed, own) = (ids(&d.intro_points), ids(&owner.intro_points));
            assert_eq!(
                listed, own,
                "a fleet descriptor lists its tor's points only"
            );
        } else {
            assert!(
                d.pow_params.is_empty(),
                "no tor behind the ordinary points verifies"
            );
            assert_eq!(d.intro_points.len(), 6);
        }
    }
    assert_eq!(
        fleet_dirs, 8,
        "every responsible HSDir of the period gets a fleet descriptor"
    );
    assert_eq!(
        plan.iter().filter(|u| u.slot.period_num == period).count(),
        3
    );
}

/// A worker (not eligible: it holds no master key, so its tor cannot host the master
/// service), a dead node and a garbled advert are left out.
#[test]
fn only_live_eligible_members_with_good_adverts_count() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let good = entry(&mut rng, 9, 0).encode();
    let with = |name: &str, eligible: bool, value: &str| {
        let mut v = node(name, &key(), &[]);
        v.state.insert(gossip::FLEET_POW.into(), value.into());
        if eligible {
            v.state.insert(gossip::ELIGIBLE.into(), "true".into());
        }
        v
    };
    let mut dead = with("dead", true, &good);
    dead.live = false;
    let members = vec![
        with("a", true, &good),
        with("worker", false, &good),
        dead,
        with("garbled", true, "v1 9 zz 0 0\nAAAA"),
    ];
    let names: Vec<String> = fleet_checked(members, None)
        .adverts
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a"]);
}
