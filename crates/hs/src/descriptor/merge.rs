//! Fair, deterministic choice of introduction points across instances.
//!
//! ```text
//!  entries ─same name─▶ one group (a node with several instances counts once), its
//!             entries' points interleaved (first of each entry, then second of each, …)
//!          ─▶ per group: drop repeats (same auth key), keep the first; cap at the fair share
//!          ─▶ round robin over groups in order: round 0 takes each group's first point,
//!             round 1 each group's second, … ; a point already chosen for an earlier group,
//!             or on a relay a chosen point is on, is skipped without using the turn
//!          ─▶ at most `max` points, in that order
//! ```
//!
//! One intro point per relay: a tor client picks a random intro point, builds a circuit to
//! its relay, and then takes the auth key of the *first* intro point the descriptor lists
//! on that relay (`hs_client_setup_intro_circ_auth_key`, which looks the point up by the
//! relay's legacy id). A second point on the same relay is never introduced to: in a small
//! network this left whole nodes listed and silent (issue 15), and it skewed the split.
//!
//! The fair share is `ceil(max / groups)`: however many points a group lists, it gets no
//! more than that, so one member cannot crowd the others out. The order is the order of
//! loss: the last points belong to the groups with the most, so a caller that must list
//! fewer (a descriptor over the size limit) drops from the end. The same inputs always
//! give the same choice (no randomness), so an unchanged cluster publishes an unchanged
//! set.

use std::collections::HashSet;
use tor_netdoc::doc::hsdesc::IntroPointDesc;

/// The intro points one instance currently offers.
#[derive(Debug, Clone)]
pub struct InstanceIntros {
    /// The instance's group name (the node it runs on; entries with the same name are
    /// one group). Used for fairness and reporting.
    pub instance: String,
    /// Its intro points, as read from its own descriptor.
    pub intro_points: Vec<IntroPointDesc>,
}

impl InstanceIntros {
    /// The intro points of each parsed instance descriptor, grouped by its address.
    pub fn from_parsed(instances: &[super::ParsedDescriptor]) -> Vec<InstanceIntros> {
        instances
            .iter()
            .map(|d| InstanceIntros {
                instance: d.address.to_string(),
                intro_points: d.intro_points.clone(),
            })
            .collect()
    }
}

/// The `flow-control` line a merged descriptor may carry: the first instance's, and only
/// when every instance has one (a client must be able to use it through any intro point).
pub fn common_flow_control(
    instances: &[super::ParsedDescriptor],
) -> Option<(super::Protocols, u8)> {
    if instances.iter().all(|d| d.flow_control.is_some()) {
        instances.first().and_then(|d| d.flow_control.clone())
    } else {
        None
    }
}

/// What [`select_intro_points`] chose and what it left out.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    /// The chosen points with their group names, in round-robin order.
    pub chosen: Vec<(String, IntroPointDesc)>,
    /// Points left out as repeats: the same auth key twice in one group, or already
    /// chosen for another group.
    pub duplicates: usize,
    /// Per group (in order), points left out because a chosen point of another group (or
    /// of its own) is on the same relay: clients could never introduce through them.
    pub same_relay: Vec<(String, usize)>,
    /// Per group (in order), the distinct points not chosen: over its fair share, or
    /// past `max`.
    pub left_out: Vec<(String, usize)>,
    /// The fair share: the most points one group may have.
    pub share: usize,
}

/// One group while choosing: its name, its distinct points in order, their ids.
type Group<'a> = (&'a str, Vec<&'a IntroPointDesc>, HashSet<[u8; 32]>);

/// The auth key identifies an intro point: tor's intro circuit is keyed by it.
fn point_id(ip: &IntroPointDesc) -> [u8; 32] {
    *ip.ipt_sid_key().as_bytes()
}

/// Choose at most `max` intro points fairly over the groups of `instances` (see the
/// module documentation).
pub fn select_intro_points(instances: &[InstanceIntros], max: usize) -> Selected {
    let mut out = Selected::default();
    // Groups in order of first appearance, each its distinct points: the points of its
    // entries interleaved, so that a node running several tors (turbo mode) has each of
    // them in any window of its share, not its first tor only.
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut entries: Vec<Vec<&[IntroPointDesc]>> = Vec::new();
    for e in instances {
        match groups.iter().position(|(n, _, _)| *n == e.instance) {
            Some(i) => entries[i].push(&e.intro_points),
            None => {
                groups.push((e.instance.as_str(), Vec::new(), HashSet::new()));
                entries.push(vec![&e.intro_points]);
            }
        }
    }
    for ((_, points, seen), lists) in groups.iter_mut().zip(&entries) {
        let longest = lists.iter().map(|l| l.len()).max().unwrap_or(0);
        for ip in (0..longest).flat_map(|k| lists.iter().filter_map(move |l| l.get(k))) {
            if seen.insert(point_id(ip)) {
                points.push(ip);
            } else {
                out.duplicates += 1;
            }
        }
    }
    groups.retain(|(_, p, _)| !p.is_empty());
    if groups.is_empty() || max == 0 {
        return out;
    }
    out.share = max.div_ceil(groups.len());
    let mut chosen_ids: HashSet<[u8; 32]> = HashSet::new();
    let mut chosen_relays: HashSet<String> = HashSet::new();
    let mut next = vec![0usize; groups.len()];
    let mut round = 0;
    while out.chosen.len() < max && round < out.share {
        let mut took = false;
        for (g, (name, points, _)) in groups.iter().enumerate() {
            if out.chosen.len() >= max {
                break;
            }
            // This group's next point not chosen yet and on a relay no chosen point is on
            // (a repeat or a taken relay does not use the turn).
            while let Some(ip) = points.get(next[g]) {
                next[g] += 1;
                if chosen_ids.contains(&point_id(ip)) {
                    out.duplicates += 1;
                    continue;
                }
                let relay = super::intro_point_relay(ip);
                if relay.as_ref().is_some_and(|r| chosen_relays.contains(r)) {
                    match out.same_relay.iter_mut().find(|(n, _)| n == name) {
                        Some(e) => e.1 += 1,
                        None => out.same_relay.push((name.to_string(), 1)),
                    }
                    continue;
                }
                chosen_ids.insert(point_id(ip));
                chosen_relays.extend(relay);
                out.chosen.push((name.to_string(), (*ip).clone()));
                took = true;
                break;
            }
        }
        if !took {
            break;
        }
        round += 1;
    }
    for (g, (name, points, _)) in groups.iter().enumerate() {
        // Points never looked at.
        let left = points.len() - next[g];
        if left > 0 {
            out.left_out.push((name.to_string(), left));
        }
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::fixture::fake_intro_point;
    use rand::SeedableRng;

    fn group(name: &str, ips: &[IntroPointDesc]) -> InstanceIntros {
        InstanceIntros {
            instance: name.into(),
            intro_points: ips.to_vec(),
        }
    }

    fn counts(s: &Selected) -> Vec<(String, usize)> {
        let mut c: Vec<(String, usize)> = Vec::new();
        for (n, _) in &s.chosen {
            match c.iter_mut().find(|(m, _)| m == n) {
                Some(e) => e.1 += 1,
                None => c.push((n.clone(), 1)),
            }
        }
        c.sort();
        c
    }

    fn pts(rng: &mut rand_chacha::ChaCha20Rng, n: usize) -> Vec<IntroPointDesc> {
        (0..n).map(|_| fake_intro_point(rng)).collect()
    }

    /// Turbo mode: a node with two tors of ten points each, share five (four nodes of 20
    /// slots): both tors are in its five, first points first, not only the first tor's.
    #[test]
    fn a_node_s_tors_are_interleaved_within_its_share() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let (t0, t1) = (pts(&mut rng, 10), pts(&mut rng, 10));
        let mut all = vec![group("n1", &t0), group("n1", &t1)];
        for n in ["n2", "n3", "n4"] {
            all.push(group(n, &pts(&mut rng, 10)));
        }
        let s = select_intro_points(&all, 20);
        assert_eq!(s.share, 5);
        let mine: Vec<[u8; 32]> = s
            .chosen
            .iter()
            .filter(|(n, _)| n == "n1")
            .map(|(_, ip)| point_id(ip))
            .collect();
        let want: Vec<[u8; 32]> = [&t0[0], &t1[0], &t0[1], &t1[1], &t0[2]]
            .iter()
            .map(|ip| point_id(ip))
            .collect();
        assert_eq!(mine, want);
    }

    /// Found in the lab (issue 15): clients only ever introduce through the first point
    /// listed on a relay, so a node whose points all sat on relays where another node's
    /// point came first was listed and never served.
    #[test]
    fn never_two_points_on_one_relay() {
        use crate::fixture::fake_intro_point_on;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let a = pts(&mut rng, 3);
        // "b" has one point on a relay of "a" and two on relays of its own; "c" has all
        // three on "a"'s relays.
        let b = vec![
            fake_intro_point_on(&a[0], &mut rng),
            fake_intro_point(&mut rng),
            fake_intro_point(&mut rng),
        ];
        let c: Vec<IntroPointDesc> = a
            .iter()
            .map(|ip| fake_intro_point_on(ip, &mut rng))
            .collect();
        let s = select_intro_points(&[group("a", &a), group("b", &b), group("c", &c)], 20);
        let relays: Vec<Option<String>> = s
            .chosen
            .iter()
            .map(|(_, ip)| super::super::intro_point_relay(ip))
            .collect();
        let distinct: HashSet<&Option<String>> = relays.iter().collect();
        assert_eq!(distinct.len(), relays.len(), "{relays:?}");
        // Round robin still shares: every group keeps a point on a relay of its own.
        assert_eq!(
            counts(&s),
            vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 1)]
        );
        assert_eq!(
            s.same_relay,
            vec![("b".into(), 1), ("c".into(), 2), ("a".into(), 1)]
        );
        assert_eq!(s.duplicates, 0);
    }

    #[test]
    fn a_group_with_many_entries_gets_its_share_only() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let (a, b) = (pts(&mut rng, 3), pts(&mut rng, 3));
        let mut inst = vec![group("a", &a), group("b", &b)];
        // "m" lists twenty entries of three points each.
        for _ in 0..20 {
            inst.push(group("m", &pts(&mut rng, 3)));
        }
        let s = select_intro_points(&inst, 20);
        assert_eq!(s.share, 7);
        assert_eq!(
            counts(&s),
            [
                ("a".to_string(), 3),
                ("b".to_string(), 3),
                ("m".to_string(), 7)
            ]
        );
        assert_eq!(s.left_out, [("m".to_string(), 53)]);
        // Alone, a group gets everything up to max.
        let alone = select_intro_points(&inst[2..], 20);
        assert_eq!(counts(&alone), [("m".to_string(), 20)]);
    }

    #[test]
    fn deterministic_round_robin_order_loses_the_biggest_first() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let inst = vec![
            group("a", &pts(&mut rng, 2)),
            group("b", &pts(&mut rng, 9)),
            group("c", &pts(&mut rng, 4)),
        ];
        let s = select_intro_points(&inst, 20);
        let again = select_intro_points(&inst, 20);
        let names: Vec<&str> = s.chosen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "c", "a", "b", "c", "b", "c", "b", "c", "b", "b", "b"]
        );
        let ids = |s: &Selected| {
            s.chosen
                .iter()
                .map(|(_, p)| point_id(p))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&s), ids(&again));
        // Each group's points in the order it listed them.
        assert_eq!(point_id(&s.chosen[1].1), point_id(&inst[1].intro_points[0]));
        assert_eq!(point_id(&s.chosen[4].1), point_id(&inst[1].intro_points[1]));
    }

    #[test]
    fn duplicates_are_kept_once() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let a = pts(&mut rng, 3);
        let b = pts(&mut rng, 3);
        // "a" lists its first point twice; "m" copies all of b's points before its own.
        let a_twice = [a.clone(), vec![a[0].clone()]].concat();
        let m = [b.clone(), pts(&mut rng, 3)].concat();
        let s = select_intro_points(&[group("a", &a_twice), group("b", &b), group("m", &m)], 20);
        let mut ids: Vec<_> = s.chosen.iter().map(|(_, p)| point_id(p)).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "no point twice");
        // Every point of a and b is in: a copy in m's list costs b nothing.
        for p in a.iter().chain(&b) {
            assert!(ids.contains(&point_id(p)));
        }
        assert_eq!(n, 9);
        assert_eq!(s.duplicates, 4);
    }

    #[test]
    fn nothing_to_choose() {
        assert!(select_intro_points(&[], 20).chosen.is_empty());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let g = [group("a", &[]), group("b", &pts(&mut rng, 2))];
        assert!(select_intro_points(&g, 0).chosen.is_empty());
        assert_eq!(counts(&select_intro_points(&g, 20)), [("b".to_string(), 2)]);
    }
}
