//! Unit tests of the election machine.

use std::time::Duration;

use super::*;

fn cfg() -> ElectionConfig {
    ElectionConfig::default()
}

fn member(id: &str, priority: u32, lease: Option<LeaseAdvert>) -> Member {
    Member {
        id: id.into(),
        priority,
        eligible: true,
        live: true,
        lease,
    }
}

fn lease(seq: u64) -> LeaseAdvert {
    LeaseAdvert {
        incarnation: 1,
        seq,
        ttl_ms: 6_000,
        until_ms: 0,
    }
}

#[test]
fn rejects_a_lease_shorter_than_the_renew_interval() {
    let bad = ElectionConfig {
        lease: Duration::from_secs(1),
        ..cfg()
    };
    assert!(Election::new("a", 0, true, 1, bad).is_err());
}

#[test]
fn a_lone_node_acquires_after_settling_and_renews() {
    let mut e = Election::new("a", 0, true, 7, cfg()).unwrap();
    assert!(e.handle(Millis(0), Input::Membership(vec![])).is_empty());
    assert_eq!(e.role(Millis(0)), Role::Settling);
    assert!(e.handle(Millis(1_999), Input::Tick).is_empty());
    let acts = e.handle(Millis(2_000), Input::Tick);
    assert!(
        matches!(&acts[..], [Action::AdvertiseLease(l), Action::StartPublishing]
        if l.incarnation == 7 && l.seq == 0 && l.until_ms == 8_000)
    );
    assert!(e.handle(Millis(3_000), Input::Tick).is_empty());
    let acts = e.handle(Millis(4_000), Input::Tick);
    assert!(matches!(&acts[..], [Action::AdvertiseLease(l)] if l.seq == 1));
}

#[test]
fn a_better_node_does_not_steal_a_valid_lease() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    for t in (0..20_000).step_by(100) {
        // "b" is worse ranked but renews its lease every 2 s.
        let view = vec![member("b", 5, Some(lease(t / 2_000)))];
        assert!(e.handle(Millis(t), Input::Membership(view)).is_empty());
    }
    assert_eq!(
        e.role(Millis(20_000)),
        Role::Follower {
            holder: Some("b".into())
        }
    );
}

#[test]
fn an_unrenewed_lease_lapses_after_its_ttl_as_observed_locally() {
    let c = ElectionConfig {
        takeover_on_holder_death: false,
        ..cfg()
    };
    let mut e = Election::new("a", 0, true, 1, c).unwrap();
    e.handle(
        Millis(0),
        Input::Membership(vec![member("b", 5, Some(lease(3)))]),
    );
    // The same advert keeps coming (the holder froze): valid until seen_at + ttl.
    for t in (100..6_000).step_by(100) {
        let view = vec![member("b", 5, Some(lease(3)))];
        assert!(
            e.handle(Millis(t), Input::Membership(view)).is_empty(),
            "{t}"
        );
    }
    let acts = e.handle(Millis(6_000), Input::Tick);
    assert!(acts.contains(&Action::StartPublishing));
}

#[test]
fn a_worse_candidate_waits_its_turn() {
    let mut e = Election::new("c", 0, true, 1, cfg()).unwrap();
    // "a" and "b" rank before "c" (same priority, smaller ids); nobody holds a lease.
    let view = || vec![member("a", 0, None), member("b", 0, None)];
    e.handle(Millis(0), Input::Membership(view()));
    // settled at 2 s, position 2 → waits 4 s more.
    for t in (100..6_000).step_by(100) {
        assert!(
            e.handle(Millis(t), Input::Membership(view())).is_empty(),
            "{t}"
        );
    }
    assert!(e
        .handle(Millis(6_000), Input::Membership(view()))
        .contains(&Action::StartPublishing));
}

#[test]
fn a_holder_yields_to_a_better_valid_holder() {
    let mut e = Election::new("b", 0, true, 1, cfg()).unwrap();
    e.handle(Millis(0), Input::Membership(vec![]));
    assert!(e
        .handle(Millis(2_000), Input::Tick)
        .contains(&Action::StartPublishing));
    let acts = e.handle(
        Millis(2_100),
        Input::Membership(vec![member("a", 0, Some(lease(0)))]),
    );
    assert_eq!(acts, vec![Action::StopPublishing, Action::WithdrawLease]);
}

#[test]
fn without_quorum_the_holder_stops_when_its_lease_ends() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    let peers = |live| {
        vec![
            Member {
                live,
                ..member("b", 1, None)
            },
            Member {
                live,
                ..member("c", 2, None)
            },
        ]
    };
    e.handle(Millis(0), Input::Membership(peers(true)));
    assert!(e
        .handle(Millis(2_000), Input::Membership(peers(true)))
        .contains(&Action::StartPublishing));
    // Cut off at 3 s: the last renewal was at 2 s, so the lease ends at 8 s.
    for t in (3_000..8_000).step_by(100) {
        let acts = e.handle(Millis(t), Input::Membership(peers(false)));
        assert!(!acts.contains(&Action::StopPublishing), "{t}");
    }
    let acts = e.handle(Millis(8_000), Input::Membership(peers(false)));
    assert_eq!(acts, vec![Action::StopPublishing, Action::WithdrawLease]);
    assert!(!e.is_publishing());
}

#[test]
fn after_regaining_quorum_a_node_settles_before_it_acquires() {
    // "a" ranks best; "b" took the lease while "a" was cut off. After the heal the
    // failure detector reports "c" live first, and "b" (the holder) only later.
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    let view = |b_live, c_live, b_lease: Option<LeaseAdvert>| {
        vec![
            Member {
                live: b_live,
                ..member("b", 1, b_lease)
            },
            Member {
                live: c_live,
                ..member("c", 2, None)
            },
        ]
    };
    e.handle(Millis(0), Input::Membership(view(true, true, None)));
    assert!(e
        .handle(Millis(2_000), Input::Membership(view(true, true, None)))
        .contains(&Action::StartPublishing));
    // Cut off at 3 s; its own lease ends at 8 s.
    for t in (3_000..=8_000).step_by(100) {
        e.handle(Millis(t), Input::Membership(view(false, false, None)));
    }
    assert!(!e.is_publishing());
    // Healed at 20 s: "c" is live at once, "b" (holding lease 4) 600 ms later.
    for t in (20_000..20_600).step_by(100) {
        let acts = e.handle(
            Millis(t),
            Input::Membership(view(false, true, Some(lease(4)))),
        );
        assert!(
            acts.is_empty(),
            "acquired at {t} while the holder looked dead"
        );
    }
    for t in (20_600..40_000).step_by(100) {
        let acts = e.handle(
            Millis(t),
            Input::Membership(view(true, true, Some(lease(4 + t / 2_000)))),
        );
        assert!(acts.is_empty(), "stole a valid lease at {t}");
    }
    assert_eq!(
        e.role(Millis(40_000)),
        Role::Follower {
            holder: Some("b".into())
        }
    );
}

#[test]
fn yield_hands_over_and_stays_out_for_one_lease() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    e.handle(Millis(0), Input::Tick);
    e.handle(Millis(2_000), Input::Tick);
    assert!(e.is_publishing());
    assert_eq!(
        e.handle(Millis(2_500), Input::Yield),
        vec![Action::StopPublishing, Action::WithdrawLease]
    );
    assert!(e.handle(Millis(8_400), Input::Tick).is_empty());
    assert!(e
        .handle(Millis(8_500), Input::Tick)
        .contains(&Action::StartPublishing));
}

#[test]
fn an_ineligible_node_never_acquires() {
    let mut e = Election::new("a", 0, false, 1, cfg()).unwrap();
    for t in (0..30_000).step_by(500) {
        assert!(e.handle(Millis(t), Input::Tick).is_empty());
    }
}

#[test]
fn the_lease_advert_round_trips() {
    let l = lease(9);
    assert_eq!(LeaseAdvert::decode(&l.encode()).unwrap(), l);
    assert!(LeaseAdvert::decode("{").is_err());
}
