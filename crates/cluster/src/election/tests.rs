//! Unit tests of the election machine.

use std::time::Duration;

use super::*;

fn cfg() -> ElectionConfig {
    ElectionConfig::majority()
}

fn member(id: &str, priority: u32, lease: Option<LeaseAdvert>) -> Member {
    Member {
        id: id.into(),
        priority,
        eligible: true,
        live: true,
        heartbeat: None,
        lease,
    }
}

/// The node acquired: it advertises a lease (it publishes one candidate step later).
fn acquires(a: &Action) -> bool {
    matches!(a, Action::AdvertiseLease(_))
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
    assert!(matches!(&acts[..], [Action::AdvertiseLease(l)]
        if l.incarnation == 7 && l.seq == 0 && l.until_ms == 8_000));
    assert!(!e.is_publishing());
    assert!(e.handle(Millis(3_000), Input::Tick).is_empty());
    assert_eq!(e.handle(Millis(4_000), Input::Tick).len(), 1);
    // The publish delay (3 s) after acquiring, with no conflict: it publishes.
    let acts = e.handle(Millis(6_000), Input::Tick);
    assert!(
        matches!(&acts[..], [Action::AdvertiseLease(l), Action::StartPublishing] if l.seq == 2)
    );
    assert!(e.is_publishing());
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
        quorum: QuorumMode::Majority,
        ..cfg()
    };
    let mut e = Election::new("a", 0, true, 1, c).unwrap();
    e.handle(
        Millis(0),
        Input::Membership(vec![member("b", 5, Some(lease(3)))]),
    );
    // The same advert keeps coming (the holder froze): valid until seen_at + ttl + guard (10 s).
    for t in (100..16_000).step_by(100) {
        let view = vec![member("b", 5, Some(lease(3)))];
        assert!(
            e.handle(Millis(t), Input::Membership(view)).is_empty(),
            "{t}"
        );
    }
    let acts = e.handle(Millis(16_000), Input::Tick);
    assert!(acts.iter().any(acquires));
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
        .iter()
        .any(acquires));
}

#[test]
fn a_holder_yields_to_a_better_valid_holder() {
    let mut e = Election::new("b", 0, true, 1, cfg()).unwrap();
    e.handle(Millis(0), Input::Membership(vec![]));
    assert!(e.handle(Millis(2_000), Input::Tick).iter().any(acquires));
    assert!(e
        .handle(Millis(5_000), Input::Tick)
        .contains(&Action::StartPublishing));
    let acts = e.handle(
        Millis(5_100),
        Input::Membership(vec![member("a", 0, Some(lease(0)))]),
    );
    assert_eq!(acts, vec![Action::StopPublishing, Action::WithdrawLease]);
}

#[test]
fn two_nodes_acquiring_at_once_never_both_publish() {
    // "b" acquired; "a", better ranked, acquired at the same moment (it never saw a lease):
    // "b" sees it before its candidate step is over and withdraws without publishing.
    let mut e = Election::new("b", 1, true, 1, cfg()).unwrap();
    e.handle(Millis(0), Input::Membership(vec![]));
    assert!(e.handle(Millis(2_000), Input::Tick).iter().any(acquires));
    let acts = e.handle(
        Millis(3_000),
        Input::Membership(vec![member("a", 0, Some(lease(0)))]),
    );
    assert_eq!(acts, vec![Action::WithdrawLease]);
    assert!(!e.is_publishing());
}

/// Peers `b` and `c`, both live or both not.
fn two_peers(live: bool) -> Vec<Member> {
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
}

#[test]
fn without_quorum_the_holder_stops_when_its_lease_ends() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    let peers = two_peers;
    e.handle(Millis(0), Input::Membership(peers(true)));
    assert!(e
        .handle(Millis(2_000), Input::Membership(peers(true)))
        .iter()
        .any(acquires));
    e.handle(Millis(4_000), Input::Membership(peers(true)));
    assert!(e
        .handle(Millis(5_000), Input::Membership(peers(true)))
        .contains(&Action::StartPublishing));
    // Cut off at 5.1 s: the last renewal was at 4 s, so the lease ends at 10 s.
    for t in (5_100..10_000).step_by(100) {
        let acts = e.handle(Millis(t), Input::Membership(peers(false)));
        assert!(!acts.contains(&Action::StopPublishing), "{t}");
    }
    let acts = e.handle(Millis(10_000), Input::Membership(peers(false)));
    assert_eq!(acts, vec![Action::StopPublishing, Action::WithdrawLease]);
    assert!(!e.is_publishing());
}

/// The lab (issue 15, 5-minute partition): the phi-accrual detector of a cut-off holder
/// kept reporting its peers live for ~30 s, so it renewed past the moment the majority,
/// which waited `lease + guard` after the last advert it saw, took over: two publishers.
/// Here the detector never reports the peers dead; their heartbeats stop at the cut.
#[test]
fn a_cut_off_holder_stops_renewing_when_heartbeats_stop_even_if_peers_look_live() {
    let c = cfg();
    let mut e = Election::new("a", 0, true, 1, c.clone()).unwrap();
    let peers = |hb: u64| {
        ["b", "c"]
            .iter()
            .enumerate()
            .map(|(i, id)| Member {
                heartbeat: Some(hb),
                ..member(id, u32::try_from(i).unwrap() + 1, None)
            })
            .collect::<Vec<_>>()
    };
    let mut hb = 0;
    let mut last_renewal = Millis(0);
    // Connected: heartbeats advance every 100 ms; "a" acquires and publishes.
    for t in (0..=5_000).step_by(100) {
        hb += 1;
        for a in e.handle(Millis(t), Input::Membership(peers(hb))) {
            if matches!(a, Action::AdvertiseLease(_)) {
                last_renewal = Millis(t);
            }
        }
    }
    assert!(e.is_publishing());
    // Cut off at 5 s: the peers stay `live`, their heartbeats never advance again.
    let cut = Millis(5_000);
    let mut stopped = None;
    for t in (5_100..=30_000).step_by(100) {
        for a in e.handle(Millis(t), Input::Membership(peers(hb))) {
            match a {
                Action::AdvertiseLease(_) => last_renewal = Millis(t),
                Action::StopPublishing => stopped = stopped.or(Some(Millis(t))),
                _ => {}
            }
        }
    }
    let stopped = stopped.expect("the cut-off holder never stopped publishing");
    // No renewal later than `detection` after the cut, so the lease ends by then plus
    // one lease: before the majority's takeover (last advert seen + lease + guard).
    assert!(
        last_renewal <= cut.plus(c.detection),
        "renewed at {last_renewal:?}, cut at {cut:?}"
    );
    assert!(
        stopped <= cut.plus(c.detection).plus(c.lease),
        "stopped at {stopped:?}"
    );
    assert!(!e.is_publishing());
}

#[test]
fn after_regaining_quorum_a_node_settles_before_it_acquires() {
    // "a" ranks best; "b" took the lease while "a" was cut off. After the heal the
    // failure detector reports "c" live first, and "b" (the holder) only later.
    let c = ElectionConfig {
        quorum: QuorumMode::Majority,
        ..cfg()
    };
    let mut e = Election::new("a", 0, true, 1, c).unwrap();
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
        .iter()
        .any(acquires));
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
    e.handle(Millis(5_000), Input::Tick);
    assert!(e.is_publishing());
    assert_eq!(
        e.handle(Millis(4_500), Input::Yield),
        vec![Action::StopPublishing, Action::WithdrawLease]
    );
    assert!(e.handle(Millis(10_400), Input::Tick).is_empty());
    assert!(e.handle(Millis(10_500), Input::Tick).iter().any(acquires));
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

#[test]
fn a_lease_from_an_ineligible_member_is_ignored() {
    let mut e = Election::new("a", 5, true, 1, cfg()).unwrap();
    let forged = LeaseAdvert {
        ttl_ms: u64::MAX,
        ..lease(0)
    };
    let view = || {
        vec![Member {
            eligible: false,
            ..member("w", 0, Some(forged.clone()))
        }]
    };
    e.handle(Millis(0), Input::Membership(view()));
    let acts = e.handle(Millis(2_000), Input::Membership(view()));
    assert!(acts.iter().any(acquires), "{acts:?}");
    assert_eq!(e.role(Millis(2_000)), Role::Holder);
}

#[test]
fn an_advertised_ttl_counts_at_most_our_own_lease_time() {
    let mut e = Election::new("a", 5, true, 1, cfg()).unwrap();
    // An eligible member that froze with a lease claiming an hour.
    let frozen = LeaseAdvert {
        ttl_ms: 3_600_000,
        ..lease(0)
    };
    let view = || vec![member("b", 0, Some(frozen.clone()))];
    e.handle(Millis(0), Input::Membership(view()));
    // Valid for lease (6 s) + guard (10 s) from when we saw it, not for an hour; then
    // one candidate step, as "b" (live) still ranks first.
    for t in (100..18_000).step_by(100) {
        assert!(
            e.handle(Millis(t), Input::Membership(view())).is_empty(),
            "{t}"
        );
    }
    assert!(e
        .handle(Millis(18_000), Input::Membership(view()))
        .iter()
        .any(acquires));
}

#[test]
fn a_cut_off_node_never_acquires_again_however_long_the_cut() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    let peers = two_peers;
    e.handle(Millis(0), Input::Membership(peers(true)));
    assert!(e
        .handle(Millis(2_000), Input::Membership(peers(true)))
        .iter()
        .any(acquires));
    let mut last_publishing = 0;
    for t in (2_100..600_000).step_by(100) {
        e.handle(Millis(t), Input::Membership(peers(false)));
        if e.is_publishing() {
            last_publishing = t;
        }
    }
    assert!(
        last_publishing < 8_000,
        "published again at {last_publishing} ms"
    );
    assert_eq!(e.known_size(), 3);
}

#[test]
fn members_that_vanish_from_the_view_still_count() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    e.handle(
        Millis(0),
        Input::Membership(vec![member("b", 1, None), member("c", 2, None)]),
    );
    // The gossip layer forgot them (dead too long): still three known.
    for t in (100..60_000).step_by(100) {
        assert!(
            e.handle(Millis(t), Input::Membership(vec![])).is_empty(),
            "{t}"
        );
    }
    assert_eq!(e.known_size(), 3);
    // A removal shrinks the known size, even while the member is still listed.
    e.handle(Millis(60_000), Input::Forget("b".into()));
    e.handle(Millis(60_000), Input::Forget("c".into()));
    let dead_b = Member {
        live: false,
        ..member("b", 1, None)
    };
    e.handle(Millis(60_100), Input::Membership(vec![dead_b]));
    assert_eq!(e.known_size(), 1);
    // Rule 1 makes it settle again after regaining quorum.
    assert!(e.handle(Millis(62_100), Input::Tick).iter().any(acquires));
}

#[test]
fn a_configured_cluster_size_keeps_a_lone_restarted_node_quiet() {
    let c = ElectionConfig {
        cluster_size: 3,
        ..cfg()
    };
    let mut e = Election::new("a", 0, true, 2, c).unwrap();
    for t in (0..600_000).step_by(500) {
        assert!(
            e.handle(Millis(t), Input::Membership(vec![])).is_empty(),
            "{t}"
        );
    }
    // One peer back: two of three. Quorum came after the start: settle, and one
    // candidate step for "b", which may have kept quorum.
    e.handle(
        Millis(600_000),
        Input::Membership(vec![member("b", 1, None)]),
    );
    assert!(e
        .handle(
            Millis(603_900),
            Input::Membership(vec![member("b", 1, None)])
        )
        .is_empty());
    assert!(e
        .handle(
            Millis(604_000),
            Input::Membership(vec![member("b", 1, None)])
        )
        .iter()
        .any(acquires));
}

#[test]
fn an_even_split_has_no_quorum() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    let view = |live| {
        vec![
            member("b", 1, None),
            Member {
                live,
                ..member("c", 2, None)
            },
            Member {
                live,
                ..member("d", 3, None)
            },
        ]
    };
    e.handle(Millis(0), Input::Membership(view(true)));
    for t in (100..30_000).step_by(100) {
        assert!(
            e.handle(Millis(t), Input::Membership(view(false)))
                .is_empty(),
            "{t}"
        );
    }
}

#[test]
fn may_publish_ends_with_the_lease() {
    let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
    e.handle(Millis(0), Input::Tick);
    e.handle(Millis(2_000), Input::Tick);
    assert!(
        !e.may_publish(Millis(2_000)),
        "not before the publish delay"
    );
    e.handle(Millis(4_000), Input::Tick);
    e.handle(Millis(5_000), Input::Tick);
    assert!(e.may_publish(Millis(9_999)));
    assert!(!e.may_publish(Millis(10_000)));
}
