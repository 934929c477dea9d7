//! The publisher's own decisions on fake tor: counters after refusals, whose answer is whose.

use super::*;

fn report(answers: &[&str]) -> SlotReport {
    SlotReport {
        period_num: 1,
        revision: 5,
        intro_points: 3,
        size: 100,
        hsdirs: answers
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("D{i}"), a.to_string()))
            .collect(),
    }
}

/// After fleet PoW is turned off the HSDirs refuse tor's counters for hours: the
/// first refusal of a new descriptor switches to counters above tor's until such
/// descriptors have expired; other failures do not.
#[test]
fn a_refused_new_descriptor_moves_the_counters_above_tors_for_the_hsdirs_memory() {
    let t0 = Instant::now();
    let mut m = CounterMemory::default();
    assert!(!m.above_tor(t0));
    let other = [report(&["UPLOADED", "FAILED UNEXPECTED", "NO ANSWER"])];
    assert!(!m.answered(&other, t0));
    assert!(!m.above_tor(t0));
    // One HSDir of three refusing is not enough (a misbehaving HSDir must not move
    // the counters for hours); two of three is.
    let one = [report(&["UPLOADED", "FAILED UPLOAD_REJECTED", "UPLOADED"])];
    assert!(!m.answered(&one, t0));
    assert!(!m.above_tor(t0));
    // A new period's HSDirs (empty) take it, the old period's (fleet leftovers) refuse.
    let mut old = report(&[
        "FAILED UPLOAD_REJECTED",
        "FAILED UPLOAD_REJECTED",
        "UPLOADED",
    ]);
    old.period_num = 0;
    let refused = [old, report(&["UPLOADED", "UPLOADED", "UPLOADED"])];
    assert!(m.answered(&refused, t0), "the stretch starts");
    assert!(m.above_tor(t0 + HSDIR_MEMORY - Duration::from_secs(1)));
    let later = t0 + Duration::from_secs(60);
    assert!(!m.answered(&refused, later), "already above");
    assert!(m.above_tor(later + HSDIR_MEMORY - Duration::from_secs(1)));
    assert!(!m.above_tor(later + HSDIR_MEMORY));
    assert!(HSDIR_MEMORY > Duration::from_secs(180 * 60));
}

/// With fleet PoW (or the single-node switch) tor uploads master descriptors of its
/// own to the same HSDirs, and the HSDirs refuse them (our counters are higher). Those
/// answers come on the publisher's control connection too; they begin with tor's
/// `UPLOAD` event (an `HSPOST` sends none) and must not be taken for ours.
#[tokio::test]
async fn tors_own_uploads_are_not_taken_for_the_publishers_answers() {
    let fake = rustbalance_tor::fake::FakeTor::start().await.unwrap();
    let ctl = ControlClient::connect_authenticated(fake.addr())
        .await
        .unwrap();
    let key = IdentityKey::generate(&mut rand::rng());
    let addr = key.address().without_suffix();
    let mut p = Publisher::new(ctl, key, true, 20).await.unwrap();
    let (a, b) = ("A".repeat(40), "B".repeat(40));
    let mut reports = vec![SlotReport {
        period_num: 1,
        revision: 5,
        intro_points: 3,
        size: 100,
        hsdirs: [
            (a.clone(), "NO ANSWER".to_string()),
            (b.clone(), "NO ANSWER".to_string()),
        ]
        .into_iter()
        .collect(),
    }];
    // tor uploads both of its descriptors to A (two UPLOADs, two refusals), a late
    // anti-entropy fetch failure for B comes in, then the HSDirs' answers to us.
    for line in [
        format!("HS_DESC UPLOAD {addr} UNKNOWN ${a}~r1 AAAA"),
        format!("HS_DESC UPLOAD {addr} UNKNOWN ${a}~r1 BBBB"),
        format!("HS_DESC FAILED {addr} UNKNOWN ${a}~r1 REASON=UPLOAD_REJECTED"),
        format!("HS_DESC FAILED {addr} UNKNOWN ${a}~r1 REASON=UPLOAD_REJECTED"),
        format!("HS_DESC FAILED {addr} UNKNOWN ${b}~r2 REASON=NOT_FOUND"),
        format!("HS_DESC UPLOADED {addr} UNKNOWN ${a}~r1"),
        format!("HS_DESC UPLOADED {addr} UNKNOWN ${b}~r2"),
    ] {
        fake.emit(&line);
    }
    p.confirm(&addr, &mut reports, Duration::from_secs(5)).await;
    assert_eq!(
        reports[0].hsdirs[&a], "UPLOADED",
        "tor's refusal taken for ours"
    );
    assert_eq!(reports[0].hsdirs[&b], "UPLOADED");
}
