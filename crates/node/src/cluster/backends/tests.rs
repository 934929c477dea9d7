//! The pure decisions with fake time: when to fetch, the backoff, and when a backend is
//! listed.

use super::*;
use rustbalance_hs::fixture::fake_intro_point;
use rustbalance_hs::IdentityKey;

fn addr(seed: u8) -> OnionAddress {
    IdentityKey::from_seed(&[seed; 32]).address()
}

fn descriptor(
    a: OnionAddress,
    revision: u64,
    points: usize,
    expiry: SystemTime,
) -> ParsedDescriptor {
    ParsedDescriptor {
        address: a,
        period_num: 1,
        blinded_key: [0; 32],
        revision,
        lifetime_minutes: 180,
        signing_cert_expiry: expiry,
        intro_points: (0..points)
            .map(|_| fake_intro_point(&mut rand::rng()))
            .collect(),
        refused_intro_points: Vec::new(),
        flow_control: None,
        pow_params: Vec::new(),
        single_onion: false,
        intro_auth_required: false,
        size: 0,
    }
}

fn two() -> (Backends, OnionAddress, OnionAddress) {
    let (a, b) = (addr(1), addr(2));
    let s = Backends::new(
        vec![("a".into(), a), ("b".into(), b)],
        BackendTimers::default(),
    );
    (s, a, b)
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
    let (min, max) = (Duration::from_secs(2), Duration::from_secs(60));
    let got: Vec<u64> = (1..=8).map(|n| backoff(n, min, max).as_secs()).collect();
    assert_eq!(got, [2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(u32::MAX, min, max), max);
}

#[test]
fn fetches_are_due_at_start_after_refresh_on_a_new_consensus_and_after_backoff() {
    let (mut s, a, b) = two();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    assert_eq!(s.take_due(t0), vec![a, b], "all due at start");
    assert!(s.take_due(t0).is_empty(), "in flight: not asked twice");
    s.fetched(&a, &descriptor(a, 1, 3, wall + HOUR), t0, wall);
    s.failed(&b, "NOT_FOUND".into(), t0);
    let t = s.timers().clone();
    assert!(s
        .take_due(t0 + t.retry_min - Duration::from_millis(1))
        .is_empty());
    assert_eq!(
        s.take_due(t0 + t.retry_min),
        vec![b],
        "retried after the backoff"
    );
    s.failed(&b, "NOT_FOUND".into(), t0 + t.retry_min);
    assert!(
        s.take_due(t0 + t.retry_min * 2).is_empty(),
        "second failure: twice as long"
    );
    assert_eq!(s.take_due(t0 + t.retry_min * 3), vec![b]);
    assert_eq!(s.take_due(t0 + t.refresh), vec![a], "refreshed");
    s.fetched(&a, &descriptor(a, 1, 3, wall + HOUR), t0 + t.refresh, wall);
    s.new_consensus();
    assert_eq!(
        s.take_due(t0 + t.refresh),
        vec![a],
        "new consensus: at once"
    );
}

#[test]
fn a_backend_is_listed_from_its_first_good_fetch_until_it_is_stale() {
    let (mut s, a, b) = two();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    assert!(s.listed(t0, wall).is_empty(), "nothing before a fetch");
    s.take_due(t0);
    s.fetched(&a, &descriptor(a, 1, 3, wall + HOUR), t0, wall);
    let l = s.listed(t0, wall);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].instance, "backend/a");
    assert_eq!(l[0].intro_points.len(), 3);
    // Fetches keep failing: listed until stale_after, then out.
    let stale = s.timers().stale_after;
    s.failed(
        &a,
        "no answer from tor".into(),
        t0 + Duration::from_secs(60),
    );
    assert_eq!(s.listed(t0 + stale, wall).len(), 1);
    assert!(s
        .listed(t0 + stale + Duration::from_secs(1), wall)
        .is_empty());
    let row = &s.status(t0 + stale + Duration::from_secs(1), wall)[0];
    assert_eq!(
        row.not_listed_because.as_deref(),
        Some(Unlisted::Stale.as_str())
    );
    assert_eq!(row.last_error.as_deref(), Some("no answer from tor"));
    assert_eq!(
        s.status(t0, wall)[1].not_listed_because.as_deref(),
        Some("never fetched")
    );
    let _ = b;
}

#[test]
fn an_expired_or_empty_descriptor_is_not_listed() {
    let (mut s, a, b) = two();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    s.take_due(t0);
    s.fetched(
        &a,
        &descriptor(a, 1, 3, wall + Duration::from_secs(10)),
        t0,
        wall,
    );
    s.fetched(&b, &descriptor(b, 1, 0, wall + HOUR), t0, wall);
    assert_eq!(s.listed(t0, wall).len(), 1, "b lists no intro point");
    assert!(
        s.listed(t0, wall + Duration::from_secs(10)).is_empty(),
        "a expired"
    );
}

#[test]
fn an_older_revision_refreshes_the_time_but_keeps_the_newer_points() {
    let (mut s, a, _) = two();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    s.take_due(t0);
    let newer = descriptor(a, 5, 3, wall + HOUR);
    s.fetched(&a, &newer, t0, wall);
    let older = descriptor(a, 4, 2, wall + HOUR);
    let later = t0 + Duration::from_secs(100);
    s.fetched(&a, &older, later, wall);
    let l = s.listed(later, wall);
    assert_eq!(
        crate::cluster::gossip::encode_intros(&l[0].intro_points),
        crate::cluster::gossip::encode_intros(&newer.intro_points)
    );
    assert_eq!(s.status(later, wall)[0].fetch_age_secs, Some(0));
}

/// A new time period's descriptor starts its revision counter again (OPE of the time
/// since its SRV period began) and may carry a signing certificate expiring no later than
/// the old one's: it must replace the previous period's all the same. In the dropin
/// benchmark a publisher kept a backend's previous-period intro points, which the backend
/// had closed at its rotation, and clients of the master failed with SOCKS 0xF2 while the
/// backend's new descriptor was being fetched and thrown away every minute.
#[test]
fn a_new_periods_descriptor_replaces_the_old_one_whatever_its_revision() {
    let (mut s, a, _) = two();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    s.take_due(t0);
    let old = descriptor(a, 22_531_702, 3, wall + HOUR);
    s.fetched(&a, &old, t0, wall);
    let new = ParsedDescriptor {
        period_num: 2,
        ..descriptor(a, 867_042, 3, wall + HOUR)
    };
    let later = t0 + Duration::from_secs(60);
    s.fetched(&a, &new, later, wall);
    let l = s.listed(later, wall);
    assert_eq!(
        crate::cluster::gossip::encode_intros(&l[0].intro_points),
        crate::cluster::gossip::encode_intros(&new.intro_points)
    );
    // The old period's descriptor, still held by its HSDirs, does not come back, and
    // does not count as a fresh fetch of the points listed either.
    let replay = later + Duration::from_secs(60);
    s.fetched(&a, &old, replay, wall);
    let l = s.listed(replay, wall);
    assert_eq!(
        crate::cluster::gossip::encode_intros(&l[0].intro_points),
        crate::cluster::gossip::encode_intros(&new.intro_points)
    );
    assert_eq!(s.status(replay, wall)[0].fetch_age_secs, Some(60));
}

#[test]
fn a_backend_failing_its_probe_leaves_at_once_and_is_fetched_again() {
    let (mut s, a, b) = two();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    s.take_due(t0);
    s.fetched(&a, &descriptor(a, 1, 3, wall + HOUR), t0, wall);
    s.fetched(&b, &descriptor(b, 1, 3, wall + HOUR), t0, wall);
    assert_eq!(s.probes_due(t0), vec![a, b]);
    let fail_after = s.timers().probe.fail_after;
    let mut t = t0;
    for _ in 0..fail_after - 1 {
        t += Duration::from_secs(1);
        assert_eq!(s.probed(&a, false, t), None);
        assert_eq!(
            s.listed(t, wall).len(),
            2,
            "one failed probe decides nothing"
        );
    }
    t += Duration::from_secs(1);
    assert_eq!(s.probed(&a, false, t), Some(Verdict::Fail));
    let l = s.listed(t, wall);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].instance, "backend/b");
    assert_eq!(s.take_due(t), vec![a], "fetched again at once");
    // Back: listed again after pass_after good probes.
    for _ in 0..s.timers().probe.pass_after {
        s.probed(&a, true, t);
    }
    assert_eq!(s.listed(t, wall).len(), 2);
}

#[test]
fn names_default_to_the_position_and_never_repeat() {
    let (a, b, c) = (addr(1), addr(2), addr(3));
    let n = names(&[(Some("x".into()), a), (None, b), (Some("x".into()), c)]);
    let got: Vec<&str> = n.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(got, ["x", "backend2", "x-3"]);
}

/// Backends are groups of their own in the fair share: with two nodes and five
/// backends of three points each (21 > 20), every node and every backend keeps points,
/// none more than the share, and a backend never shares a node's share.
#[test]
fn backends_are_groups_of_their_own_in_the_merge() {
    let t0 = Instant::now();
    let wall = SystemTime::now();
    let list: Vec<(String, OnionAddress)> = (1..=5).map(|i| (format!("b{i}"), addr(i))).collect();
    let mut s = Backends::new(list.clone(), BackendTimers::default());
    s.take_due(t0);
    for (_, a) in &list {
        s.fetched(a, &descriptor(*a, 1, 3, wall + HOUR), t0, wall);
    }
    let node = |name: &str| InstanceIntros {
        instance: name.into(),
        intro_points: (0..3).map(|_| fake_intro_point(&mut rand::rng())).collect(),
    };
    let mut groups = vec![node("node1"), node("node2")];
    groups.extend(s.listed(t0, wall));
    let sel = crate::cluster::selection::choose(&groups, 20);
    assert_eq!(sel.chosen.len(), 20);
    assert_eq!(sel.share, 3, "ceil(20 / 7 groups)");
    let per = sel.per_node(0..sel.chosen.len());
    assert_eq!(per.len(), 7, "every node and every backend listed: {per:?}");
    assert!(per.iter().all(|(_, n)| *n >= 2 && *n <= 3), "{per:?}");
    assert!(per.iter().any(|(g, _)| g == "backend/b5"));
}

#[test]
fn flow_control_goes_in_only_when_every_source_has_it() {
    let fc = rustbalance_hs::fixture::tor_flow_control();
    let some = Some(fc.clone());
    // Publisher-only: the nodes list nothing, the backends decide.
    assert_eq!(
        merged_flow(None, false, &[some.clone(), some.clone()]),
        some
    );
    assert_eq!(merged_flow(None, false, &[some.clone(), None]), None);
    // Mixed: this node's own line counts only when nodes are listed.
    assert_eq!(
        merged_flow(some.clone(), true, std::slice::from_ref(&some)),
        some
    );
    assert_eq!(merged_flow(None, true, std::slice::from_ref(&some)), None);
    assert_eq!(merged_flow(some.clone(), true, &[None]), None);
    assert_eq!(merged_flow(some.clone(), true, &[]), some);
}
