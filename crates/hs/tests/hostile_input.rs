//! Hostile input: the decoders that see data from outside (intro points gossiped by peers,
//! descriptors, sealed key files on disk) get thousands of mutated and random inputs from
//! a seeded generator. None may panic; a mutated signed or sealed input must be refused;
//! what decodes must encode back to the same thing.

use base64::Engine;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_hs::descriptor::{decode_intro_points, encode_intro_points, parse_descriptor};
use rustbalance_hs::fixture::{fake_instance_descriptor, fake_intro_point, Mutator};
use rustbalance_hs::sealed::SealParams;
use rustbalance_hs::time::{from_unix, TimeParams};
use rustbalance_hs::IdentityKey;

const NOW: u64 = 1_795_000_000;
const TP: TimeParams = TimeParams::REAL_NETWORK;

#[test]
fn gossiped_intro_points_survive_mutation() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut g = Mutator::new(1);
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut seeds = Vec::new();
    for n in [1, 3, 10] {
        let ips: Vec<_> = (0..n).map(|_| fake_intro_point(&mut rng)).collect();
        seeds.push(encode_intro_points(&ips));
    }
    let (mut ok, mut refused) = (0, 0);
    for i in 0..20_000 {
        let seed = &seeds[i % seeds.len()];
        let input = match i % 3 {
            // Mutate the binary form and encode it again: reaches the field parsers.
            0 => b64.encode(g.mutate(&b64.decode(seed).unwrap())),
            // Mutate the text itself: reaches the base64 layer.
            1 => String::from_utf8_lossy(&g.mutate(seed.as_bytes())).into_owned(),
            // Random text.
            _ => {
                let n = g.below(600);
                b64.encode(g.bytes(n))
            }
        };
        match decode_intro_points(&input) {
            Ok(ips) => {
                ok += 1;
                // What decodes is a real list: it encodes and decodes to the same points.
                let again = decode_intro_points(&encode_intro_points(&ips)).unwrap();
                assert_eq!(again.len(), ips.len());
                assert_eq!(encode_intro_points(&again), encode_intro_points(&ips));
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    eprintln!("intro points: {ok} mutated inputs decoded (and round-trip), {refused} refused");
    assert!(refused > 10_000, "ok {ok}, refused {refused}");
}

#[test]
fn mutated_descriptors_are_refused_without_panic() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let key = IdentityKey::generate(&mut rng);
    let now = from_unix(NOW);
    let slot = TP.live_slots(NOW, NOW - NOW % 3600)[0];
    let text = fake_instance_descriptor(&key, TP, slot, now, 3, &mut rng).unwrap();
    let mut g = Mutator::new(2);
    assert!(parse_descriptor(&text, &key.address(), &TP, now).is_ok());
    let (mut accepted, mut tried) = (0, 0);
    for _ in 0..1_500 {
        let m = g.mutate(text.as_bytes());
        let Ok(m) = String::from_utf8(m) else {
            continue;
        };
        if m == text {
            continue;
        }
        tried += 1;
        if let Ok(d) = parse_descriptor(&m, &key.address(), &TP, now) {
            // Only a change outside the signed body can pass (e.g. trailing bytes after the
            // signature line that the parser tolerates): the content must be the original's.
            accepted += 1;
            let orig = parse_descriptor(&text, &key.address(), &TP, now).unwrap();
            assert_eq!(
                encode_intro_points(&d.intro_points),
                encode_intro_points(&orig.intro_points)
            );
        }
    }
    eprintln!(
        "descriptors: {accepted} of {tried} mutated texts parsed, all to the original content"
    );
    assert!(accepted < 300, "{accepted} mutated descriptors accepted");
}

#[test]
fn mutated_sealed_keys_never_open() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let key = IdentityKey::generate(&mut rng);
    let pass = b"correct horse battery staple";
    let sealed = key
        .seal(pass, SealParams::fast_for_tests(), &mut rng)
        .unwrap();
    assert!(IdentityKey::unseal(&sealed, pass).is_ok());
    let mut g = Mutator::new(3);
    for _ in 0..300 {
        let mut m = g.mutate(&sealed);
        // Keep the cost parameters (offsets 16..28) the test's cheap ones: a larger cost
        // is allowed (up to the hard limits) and would only make the test slow.
        if m.len() >= 28 {
            m[16..28].copy_from_slice(&sealed[16..28]);
        }
        if m == sealed {
            continue;
        }
        let r = IdentityKey::unseal(&m, pass);
        assert!(r.is_err(), "a mutated sealed key opened");
    }
}
