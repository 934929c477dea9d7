//! Hostile input on the gossip port: random datagrams and mutations of valid ones (a
//! seeded generator, thousands of cases) never open and never panic; only the intact
//! datagram opens, once. Lease adverts (gossip values) decode or fail cleanly.

use rustbalance_cluster::auth::{MacKey, Opener, Rejection, Sealer};
use rustbalance_cluster::{ClusterSecret, LeaseAdvert};
use rustbalance_hs::fixture::Mutator;

const NOW: u64 = 1_795_000_000_000;

fn key() -> MacKey {
    MacKey::derive(&ClusterSecret::new(b"a cluster secret of enough length".to_vec()).unwrap())
}

#[test]
fn mutated_and_random_datagrams_never_open() {
    let mut g = Mutator::new(0x5eed);
    let mut sealer = Sealer::new(key(), 7);
    // Small (plain) and large (zstd-compressed) payloads.
    let small = sealer.seal(NOW, b"a small gossip payload");
    let large = sealer.seal(NOW, &"intro points ".repeat(200).into_bytes());
    let mut tally = std::collections::BTreeMap::new();
    for i in 0..50_000 {
        let mut opener = Opener::new(key(), 30_000);
        let input = match i % 3 {
            0 => g.mutate(&small),
            1 => g.mutate(&large),
            _ => {
                let n = g.below(2048);
                g.bytes(n)
            }
        };
        if input == small || input == large {
            continue;
        }
        let r = opener.open(NOW, &input);
        let Err(why) = r else {
            panic!("a mutated or random datagram opened: {input:?}");
        };
        *tally.entry(format!("{why:?}")).or_insert(0u32) += 1;
    }
    eprintln!("rejections: {tally:?}");
    assert!(tally.get("BadMac").copied().unwrap_or(0) > 10_000);
    // The intact datagrams open exactly once each.
    let mut opener = Opener::new(key(), 30_000);
    assert!(opener.open(NOW, &small).is_ok());
    assert!(opener.open(NOW, &large).is_ok());
    assert_eq!(opener.open(NOW, &small), Err(Rejection::Replayed));
}

#[test]
fn lease_adverts_decode_or_fail_cleanly() {
    let mut g = Mutator::new(0xbad);
    let valid = LeaseAdvert {
        incarnation: 1,
        seq: 2,
        ttl_ms: 6000,
        until_ms: 9,
    }
    .encode();
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..20_000 {
        let m = String::from_utf8_lossy(&g.mutate(valid.as_bytes())).into_owned();
        match LeaseAdvert::decode(&m) {
            Ok(_) => ok += 1,
            Err(e) => {
                bad += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    eprintln!("lease adverts: {ok} mutated texts decoded, {bad} refused");
    assert!(bad > 0);
}
