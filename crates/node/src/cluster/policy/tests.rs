//! The publish and advertise decisions on fake time: every `now` is a fixed base plus an
//! offset, nothing sleeps and nothing reads the clock.

use super::*;
use crate::cluster::roster::{intros_of, tests::node};
use crate::join_node::tests::key;
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Inputs with these intro points, PoW fingerprint, periods and ring.
fn input(intros: &str, pow: &str, periods: &[u64], ring: &str) -> PublishInputs {
    PublishInputs {
        intros: intros.into(),
        pow: pow.into(),
        periods: periods.to_vec(),
        ring: ring.into(),
        solo_epoch: 0,
    }
}

/// A node that has published `inp` completely at `at`.
fn published(inp: &PublishInputs, at: Instant, t: &Timers) -> PublishState {
    let mut s = PublishState::default();
    assert!(
        s.building(1, 1),
        "the first build makes this node publisher"
    );
    s.finished(inp.clone(), Outcome::Complete, at, t);
    s
}

#[test]
fn a_standby_that_gets_the_lease_publishes_at_once_without_the_dead_publisher() {
    let t = Timers::default();
    let t0 = Instant::now();
    let (k1, k2, k3) = (key(), key(), key());
    let mut nodes = vec![
        node("node1", &k1, &[]),
        node("node2", &k2, &[]),
        node("node3", &k3, &[]),
    ];
    let before = intros_of(nodes.clone());
    // node1 published; node2 followed and remembers nothing.
    let inp = input(&before.fingerprint, "", &[1, 2], "ring");
    let mut old = published(&inp, t0, &t);
    let standby = PublishState::default();
    // node1 dies: the failure detector calls it dead, node2 gets the lease.
    nodes[0].live = false;
    let after = intros_of(nodes);
    let names: Vec<_> = after.nodes.iter().map(|i| i.instance.as_str()).collect();
    assert_eq!(names, ["node2", "node3"]);
    let now = t0 + secs(1);
    let inp2 = input(&after.fingerprint, "", &[1, 2], "ring");
    assert_eq!(
        standby.reason(&inp2, now, &t),
        Some(Reason::BecamePublisher)
    );
    // Had node1 kept the lease it would publish because the set changed.
    assert_eq!(old.reason(&inp2, now, &t), Some(Reason::Changed));
    // node1 comes back without the lease: it steps down once.
    assert!(old.step_down());
    assert!(!old.step_down());
    // ... and publishes at once when it gets the lease back.
    assert_eq!(old.reason(&inp, now, &t), Some(Reason::BecamePublisher));
}

#[test]
fn pow_params_coming_and_going_trigger_a_publication() {
    // Which pow-params may go in is `cluster::pow`'s decision; here only the trigger.
    let t = Timers::default();
    let t0 = Instant::now();
    let (k1, k2) = (key(), key());
    let own_pow = "v1 seed 8 expiry".to_string();
    let both = intros_of(vec![node("node1", &k1, &[]), node("node2", &k2, &[])]);
    let alone = intros_of(vec![node("node1", &k1, &[])]);
    let pow = pow_fingerprint(Some(&own_pow));
    assert_eq!(pow_fingerprint::<String>(None), "");
    let with_pow = input(&alone.fingerprint, &pow, &[1], "r");
    let mut s = published(&with_pow, t0, &t);
    assert_eq!(s.reason(&with_pow, t0 + secs(1), &t), None);
    // tor changed its seed: republish with the new one.
    let new_seed = input(&alone.fingerprint, "other seed", &[1], "r");
    assert_eq!(
        s.reason(&new_seed, t0 + secs(1), &t),
        Some(Reason::PowChanged)
    );
    // node2 is back: the set changed and the PoW goes.
    let back = input(&both.fingerprint, "", &[1], "r");
    assert_eq!(s.reason(&back, t0 + secs(2), &t), Some(Reason::Changed));
    s.building(3, 3);
    s.finished(back.clone(), Outcome::Complete, t0 + secs(3), &t);
    assert_eq!(s.reason(&back, t0 + secs(4), &t), None);
}

#[test]
fn a_removed_node_triggers_a_publication_without_it() {
    let t = Timers::default();
    let t0 = Instant::now();
    let (k1, k2) = (key(), key());
    let full = intros_of(vec![node("node1", &k1, &[]), node("node2", &k2, &[])]);
    let inp = input(&full.fingerprint, "", &[1], "r");
    let s = published(&inp, t0, &t);
    let line = crate::join::removal::tests::line("node2", &k2);
    let authority = crate::join::removal::tests::authority().public();
    let removed = crate::cluster::roster::intros_checked(
        vec![node("node1", &k1, &[line]), node("node2", &k2, &[])],
        Some(&authority),
    );
    assert_eq!(removed.nodes.len(), 1);
    assert_eq!(removed.nodes[0].instance, "node1");
    let inp2 = input(&removed.fingerprint, "", &[1], "r");
    assert_eq!(s.reason(&inp2, t0 + secs(1), &t), Some(Reason::Changed));
}

#[test]
fn republish_triggers() {
    let t = Timers::default();
    let t0 = Instant::now();
    let inp = input("a", "", &[1, 2], "ring");
    let s = published(&inp, t0, &t);
    // Nothing changed, not due.
    assert_eq!(s.reason(&inp, t0 + secs(1), &t), None);
    assert_eq!(s.reason(&inp, t0 + t.republish - secs(1), &t), None);
    // Due.
    assert_eq!(s.reason(&inp, t0 + t.republish, &t), Some(Reason::Periodic));
    // Each change, in order of precedence.
    let now = t0 + secs(1);
    assert_eq!(
        s.reason(&input("b", "", &[1, 2], "ring"), now, &t),
        Some(Reason::Changed)
    );
    assert_eq!(
        s.reason(&input("a", "p", &[1, 2], "ring"), now, &t),
        Some(Reason::PowChanged)
    );
    assert_eq!(
        s.reason(&input("a", "", &[2, 3], "ring"), now, &t),
        Some(Reason::NewPeriod)
    );
    assert_eq!(
        s.reason(&input("a", "", &[1, 2], "other"), now, &t),
        Some(Reason::HsDirsChanged)
    );
    assert_eq!(
        s.reason(&input("b", "p", &[2], "x"), now, &t),
        Some(Reason::Changed)
    );
    // A shorter republish interval (tests) is honoured.
    let fast = Timers {
        republish: secs(2),
        ..Timers::default()
    };
    assert_eq!(s.reason(&inp, t0 + secs(2), &fast), Some(Reason::Periodic));
}

#[test]
fn failed_hsdirs_are_retried_after_a_doubling_backoff() {
    let t = Timers::default();
    let t0 = Instant::now();
    let inp = input("a", "", &[1], "r");
    let mut s = PublishState::default();
    s.building(1, 1);
    // Some HSDirs did not confirm: retry after 10 s, not before.
    s.finished(inp.clone(), Outcome::Incomplete, t0, &t);
    assert_eq!(s.reason(&inp, t0 + secs(9), &t), None);
    assert_eq!(s.reason(&inp, t0 + secs(10), &t), Some(Reason::Retry));
    // Each further failure doubles the wait, up to 60 s.
    let waits: Vec<u64> = (1..=6).map(|f| retry_backoff(f, &t).as_secs()).collect();
    assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
    s.finished(inp.clone(), Outcome::Incomplete, t0, &t);
    assert_eq!(s.reason(&inp, t0 + secs(19), &t), None);
    assert_eq!(s.reason(&inp, t0 + secs(20), &t), Some(Reason::Retry));
    // An upload that failed outright is retried too, and does not count as published:
    // a change made meanwhile still reads as a change.
    s.finished(input("b", "", &[1], "r"), Outcome::Failed, t0, &t);
    assert_eq!(s.reason(&inp, t0 + secs(39), &t), None);
    assert_eq!(s.reason(&inp, t0 + secs(40), &t), Some(Reason::Retry));
    // A complete publication ends the backoff.
    s.finished(inp.clone(), Outcome::Complete, t0 + secs(40), &t);
    assert_eq!(s.reason(&inp, t0 + secs(100), &t), None);
    s.finished(inp.clone(), Outcome::Incomplete, t0 + secs(100), &t);
    assert_eq!(s.reason(&inp, t0 + secs(110), &t), Some(Reason::Retry));
}

#[test]
fn one_build_per_second_and_a_role_change_once() {
    let mut s = PublishState::default();
    assert!(s.may_build(100));
    assert!(s.building(100, 100));
    assert!(!s.may_build(100), "same second: same revision counter");
    assert!(!s.may_build(99));
    assert!(s.may_build(101));
    assert!(!s.building(101, 101), "already publisher");
}

#[test]
fn which_descriptor_to_advertise() {
    let t = Timers::default();
    let t0 = Instant::now();
    let after_srv = |current, running| Period {
        current,
        running,
        between: false,
    };
    let none = NextState::default();
    // After the SRV: tor's current descriptor, once tor has rotated it.
    assert_eq!(
        advertise_source(after_srv(5, Some(5)), &none, t0, &t),
        Source::Current
    );
    assert_eq!(
        advertise_source(after_srv(5, None), &none, t0, &t),
        Source::Current
    );
    assert!(matches!(
        advertise_source(after_srv(4, Some(5)), &none, t0, &t),
        Source::Wait(_)
    ));
    // Between a period start and the SRV: the fetched descriptor of the running period...
    let between = Period {
        current: 4,
        running: Some(5),
        between: true,
    };
    let fetched = NextState {
        window_since: Some(t0),
        fetched_with_intros: true,
    };
    assert_eq!(advertise_source(between, &fetched, t0, &t), Source::Fetched);
    // ... waited for up to `next_wait`, then tor's current one.
    let waiting = NextState {
        window_since: Some(t0),
        fetched_with_intros: false,
    };
    let w = t.next_wait;
    assert!(matches!(
        advertise_source(between, &waiting, t0 + w - secs(1), &t),
        Source::Wait(_)
    ));
    assert_eq!(
        advertise_source(between, &waiting, t0 + w, &t),
        Source::Current
    );
    assert!(matches!(
        advertise_source(between, &none, t0 + w, &t),
        Source::Wait(_)
    ));
}

#[test]
fn refetch_and_advert_changes() {
    let t = Timers::new(true);
    let t0 = Instant::now();
    assert!(refetch_due(None, t0, &t));
    assert!(!refetch_due(Some(t0), t0 + secs(14), &t));
    assert!(refetch_due(Some(t0), t0 + secs(15), &t));
    assert_eq!(Timers::new(false).next_refresh, secs(300));
    assert_eq!(advert("", Some("x".into())), Advert::Set("x".into()));
    assert_eq!(advert("x", Some("x".into())), Advert::Keep);
    assert_eq!(advert("x", None), Advert::Withdraw);
    assert_eq!(advert("", None), Advert::Keep);
}

#[test]
fn the_revision_time_never_goes_back_nor_follows_a_forged_future() {
    let mut s = PublishState::default();
    // Not publishing yet: the first build is `margin` (5 s) ahead of our clock.
    assert_eq!(s.revision_time(1_000, [], 60, 5), 1_005);
    // Another publisher's clock was 8 s ahead.
    assert_eq!(s.revision_time(1_000, [1_008], 60, 5), 1_009);
    // A time an hour ahead is ignored.
    assert_eq!(s.revision_time(1_000, [4_600], 60, 5), 1_005);
    // Our own last revision counts even before gossip carries it; later builds take
    // no margin.
    s.building(1_000, 1_005);
    assert_eq!(s.revision_time(1_001, [], 60, 5), 1_006);
    assert_eq!(s.revision_time(1_100, [], 60, 5), 1_100);
    assert!(s.may_build(1_001));
    assert!(!s.may_build(1_000));
}

/// When this node's tor uploaded its own master descriptor or stopped hosting the
/// master service, the publisher republishes at once even with the same intro points:
/// the HSDirs may hold tor's descriptor, newer than the last merged one.
#[test]
fn the_single_node_switch_republishes() {
    let t = Timers::default();
    let t0 = Instant::now();
    let inp = input("a", "", &[1, 2], "r");
    let s = published(&inp, t0, &t);
    assert_eq!(s.reason(&inp, t0 + secs(1), &t), None);
    let ended = PublishInputs {
        solo_epoch: 1,
        ..inp
    };
    assert_eq!(s.reason(&ended, t0 + secs(1), &t), Some(Reason::SingleNode));
}
