//! Build → parse round trips with a seeded RNG, and the failure cases.

use base64::Engine;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_hs::descriptor::{
    build_master_descriptor, build_master_descriptor_within, max_descriptor_size, parse_descriptor,
    select_intro_points, BuildParams, InstanceIntros, DEFAULT_LIFETIME_MINUTES,
    MAX_DESCRIPTOR_SIZE, MAX_INTRO_POINTS,
};
use rustbalance_hs::fixture::{
    fake_instance_descriptor, fake_intro_point, full_intro_point, oversized_intro_point,
    tor_flow_control,
};
use rustbalance_hs::time::{from_unix, DescriptorSlot, TimeParams};
use rustbalance_hs::{Error, IdentityKey};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

const NOW: u64 = 1_795_000_000; // 2026-11-18
const TP: TimeParams = TimeParams::REAL_NETWORK;

fn slot(now: u64) -> DescriptorSlot {
    // A consensus that became valid on the hour.
    TP.live_slots(now, now - now % 3600)[0]
}

fn now() -> SystemTime {
    from_unix(NOW)
}

fn instances(rng: &mut ChaCha20Rng, n: usize, ips: usize) -> Vec<InstanceIntros> {
    (0..n)
        .map(|i| {
            let key = IdentityKey::generate(rng);
            let text = fake_instance_descriptor(&key, TP, slot(NOW), now(), ips, rng).unwrap();
            let parsed = parse_descriptor(&text, &key.address(), &TP, now()).unwrap();
            assert_eq!(parsed.intro_points.len(), ips);
            InstanceIntros {
                instance: format!("i{i}"),
                intro_points: parsed.intro_points,
            }
        })
        .collect()
}

fn build(
    master: &IdentityKey,
    ips: &[rustbalance_hs::descriptor::IntroPointDesc],
    at: u64,
    rng: &mut ChaCha20Rng,
) -> rustbalance_hs::descriptor::BuiltDescriptor {
    build_master_descriptor(
        &BuildParams {
            master,
            time: TP,
            slot: slot(at),
            now: from_unix(at),
            intro_points: ips,
            flow_control: Some(tor_flow_control()),
            pow_params: None,
            lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
            auth_clients: None,
            revision: None,
        },
        rng,
    )
    .unwrap()
}

#[test]
fn merged_descriptor_round_trips() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let master = IdentityKey::generate(&mut rng);
    let inst = instances(&mut rng, 3, 3);
    let chosen = select_intro_points(&inst, MAX_INTRO_POINTS).chosen;
    assert_eq!(chosen.len(), 9);
    let ips: Vec<_> = chosen.into_iter().map(|(_, ip)| ip).collect();
    let built = build(&master, &ips, NOW, &mut rng);

    let parsed = parse_descriptor(&built.text, &master.address(), &TP, now()).unwrap();
    assert_eq!(parsed.intro_points.len(), 9);
    assert_eq!(parsed.revision, built.revision);
    assert_eq!(parsed.blinded_key, built.blinded_key);
    assert_eq!(parsed.period_num, slot(NOW).period_num);
    assert_eq!(parsed.lifetime_minutes, DEFAULT_LIFETIME_MINUTES);
    let (fc, inc) = parsed.flow_control.clone().unwrap();
    assert_eq!((fc.to_string(), inc), ("FlowCtrl=1-2".to_string(), 31));
    let mut want: Vec<_> = ips.iter().map(|i| i.ipt_ntor_key().to_bytes()).collect();
    let mut got: Vec<_> = parsed
        .intro_points
        .iter()
        .map(|i| i.ipt_ntor_key().to_bytes())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(want, got);
}

#[test]
fn superencrypted_layer_is_padded_like_c_tor() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let master = IdentityKey::generate(&mut rng);
    for n in [1, 20] {
        let ips: Vec<_> = (0..n).map(|_| fake_intro_point(&mut rng)).collect();
        let text = build(&master, &ips, NOW, &mut rng).text;
        let b = text.find("-----BEGIN MESSAGE-----\n").unwrap() + 24;
        let e = text.find("-----END MESSAGE-----").unwrap();
        let blob: String = text[b..e].split_whitespace().collect();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .unwrap();
        let plain_len = blob.len() - 16 - 32; // salt and MAC
        assert_eq!(
            plain_len % 10_000,
            0,
            "{n} intro points: plaintext {plain_len}"
        );
    }
}

#[test]
fn same_seed_same_descriptor() {
    let make = || {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let master = IdentityKey::generate(&mut rng);
        let ips: Vec<_> = (0..4).map(|_| fake_intro_point(&mut rng)).collect();
        build(&master, &ips, NOW, &mut rng).text
    };
    assert_eq!(make(), make());
}

#[test]
fn revision_counter_grows_with_time() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let master = IdentityKey::generate(&mut rng);
    let ips = vec![fake_intro_point(&mut rng)];
    let a = build(&master, &ips, NOW, &mut rng).revision;
    let b = build(&master, &ips, NOW + 1, &mut rng).revision;
    let c = build(&master, &ips, NOW + 600, &mut rng).revision;
    assert!(a < b && b < c, "{a} {b} {c}");
}

#[test]
fn fair_round_robin_and_cap() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let inst: Vec<InstanceIntros> = (0..7)
        .map(|i| InstanceIntros {
            instance: format!("n{i}"),
            intro_points: (0..3).map(|_| fake_intro_point(&mut rng)).collect(),
        })
        .collect();
    for cap in [1, 5, 10, 20] {
        let chosen = select_intro_points(&inst, cap).chosen;
        assert_eq!(chosen.len(), cap.min(21));
        let mut per: HashMap<String, usize> = HashMap::new();
        for (n, _) in &chosen {
            *per.entry(n.clone()).or_default() += 1;
        }
        let counts: Vec<usize> = (0..7)
            .map(|i| per.get(&format!("n{i}")).copied().unwrap_or(0))
            .collect();
        let (mn, mx) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(mx - mn <= 1, "cap {cap}: {counts:?}");
    }
}

#[test]
fn refuses_more_than_twenty_and_none() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let master = IdentityKey::generate(&mut rng);
    let ips: Vec<_> = (0..21).map(|_| fake_intro_point(&mut rng)).collect();
    let p = |ips| BuildParams {
        master: &master,
        time: TP,
        slot: slot(NOW),
        now: now(),
        intro_points: ips,
        flow_control: None,
        pow_params: None,
        lifetime_minutes: 180,
        auth_clients: None,
        revision: None,
    };
    let e = build_master_descriptor(&p(&ips), &mut rng).unwrap_err();
    assert!(e.to_string().contains("at most 20"), "{e}");
    let e = build_master_descriptor(&p(&[]), &mut rng).unwrap_err();
    assert!(matches!(e, Error::NoIntroPoints));
}

#[test]
fn rejects_wrong_address_expired_malformed_oversized() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let key = IdentityKey::generate(&mut rng);
    let other = IdentityKey::generate(&mut rng);
    let text = fake_instance_descriptor(&key, TP, slot(NOW), now(), 3, &mut rng).unwrap();

    let e = parse_descriptor(&text, &other.address(), &TP, now()).unwrap_err();
    assert!(matches!(e, Error::DescriptorNotForAddress { .. }), "{e}");
    assert!(e.to_string().contains("wrong address"));

    let later = now() + Duration::from_secs(3 * 24 * 3600);
    let e = parse_descriptor(&text, &key.address(), &TP, later).unwrap_err();
    assert!(matches!(e, Error::DescriptorExpired { .. }), "{e}");

    let truncated = &text[..text.len() / 2];
    let e = parse_descriptor(truncated, &key.address(), &TP, now()).unwrap_err();
    assert!(matches!(e, Error::BadDescriptor { .. }), "{e}");

    // Flip one base64 character inside the encrypted body: the MAC must catch it.
    let i = text.find("-----BEGIN MESSAGE-----\n").unwrap() + 40;
    let mut tampered = text.clone().into_bytes();
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(parse_descriptor(&tampered, &key.address(), &TP, now()).is_err());

    let e = parse_descriptor("garbage", &key.address(), &TP, now()).unwrap_err();
    assert!(e.to_string().contains("hs-descriptor 3"), "{e}");

    let huge = format!("{text}{}", "x".repeat(50_001));
    let e = parse_descriptor(&huge, &key.address(), &TP, now()).unwrap_err();
    assert!(matches!(e, Error::DescriptorTooLarge { .. }), "{e}");
}

#[test]
fn twenty_of_the_largest_intro_points_tor_writes_fit() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let master = IdentityKey::generate(&mut rng);
    let ips: Vec<_> = (0..20).map(|_| full_intro_point(&mut rng)).collect();
    let built = build(&master, &ips, NOW, &mut rng);
    eprintln!(
        "20 intro points with IPv4, legacy ID, ed25519 and IPv6: {} bytes (limit {MAX_DESCRIPTOR_SIZE})",
        built.text.len()
    );
    assert!(built.text.len() <= MAX_DESCRIPTOR_SIZE);
    assert_eq!(built.dropped, 0);
}

#[test]
fn an_oversized_descriptor_lists_fewer_points_instead_of_failing() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let master = IdentityKey::generate(&mut rng);
    // Five plain points first, then fifteen padded with 255-byte specifiers of unknown
    // types (what a hostile member would gossip if the codec let it through).
    let mut ips: Vec<_> = (0..5).map(|_| fake_intro_point(&mut rng)).collect();
    ips.extend((0..15).map(|_| oversized_intro_point(&mut rng, 5)));
    let p = |ips| BuildParams {
        master: &master,
        time: TP,
        slot: slot(NOW),
        now: now(),
        intro_points: ips,
        flow_control: Some(tor_flow_control()),
        pow_params: None,
        lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
        auth_clients: None,
        revision: None,
    };
    let e = build_master_descriptor(&p(&ips), &mut rng).unwrap_err();
    assert!(matches!(e, Error::DescriptorTooLarge { .. }), "{e}");

    let d = build_master_descriptor_within(&p(&ips), MAX_DESCRIPTOR_SIZE, &mut rng).unwrap();
    eprintln!(
        "fitted: {} of 20 intro points, {} bytes",
        d.intro_count,
        d.text.len()
    );
    assert!(d.text.len() <= MAX_DESCRIPTOR_SIZE);
    assert!(d.dropped > 0 && d.intro_count >= 5);
    assert_eq!(d.intro_count + d.dropped, 20);
    // The longest prefix that fits: one more point does not.
    let e = build_master_descriptor(&p(&ips[..d.intro_count + 1]), &mut rng).unwrap_err();
    assert!(matches!(e, Error::DescriptorTooLarge { .. }), "{e}");
    // A client reads it; the padded points are what parsing refuses.
    let parsed = parse_descriptor(&d.text, &master.address(), &TP, now()).unwrap();
    assert_eq!(parsed.intro_points.len(), 5);
    assert_eq!(parsed.refused_intro_points.len(), d.intro_count - 5);

    // A consensus that lowers the limit lowers it here too.
    let limit = max_descriptor_size(Some(20_000));
    let small = build_master_descriptor_within(&p(&ips), limit, &mut rng).unwrap();
    assert!(small.text.len() < 20_000 && small.intro_count < d.intro_count);
    // Nothing fits: the error says so.
    let e = build_master_descriptor_within(&p(&ips), 3_000, &mut rng).unwrap_err();
    assert!(
        matches!(e, Error::DescriptorTooLarge { limit: 3_000, .. }),
        "{e}"
    );
    let e = build_master_descriptor_within(&p(&[]), MAX_DESCRIPTOR_SIZE, &mut rng).unwrap_err();
    assert!(matches!(e, Error::NoIntroPoints), "{e}");
}

#[test]
fn size_limit_follows_the_consensus_parameter() {
    assert_eq!(max_descriptor_size(None), 49_999);
    assert_eq!(max_descriptor_size(Some(20_000)), 19_999);
    // Nonsense or a higher value: tor's default still holds for HSDirs on older consensuses.
    assert_eq!(max_descriptor_size(Some(0)), 49_999);
    assert_eq!(max_descriptor_size(Some(-5)), 49_999);
    assert_eq!(max_descriptor_size(Some(1_000_000)), 49_999);
}
