//! Hostile input on the gossip port: random datagrams and mutations of valid ones (a
//! seeded generator, thousands of cases) never open and never panic; only the intact
//! datagram opens, once. Lease adverts (gossip values) decode or fail cleanly.

use rustbalance_cluster::auth::{MacKey, Opener, Rejection, Sealer};
use rustbalance_cluster::{ClusterSecret, LeaseAdvert};

/// xorshift64*: deterministic, dependency-free.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn mutate(g: &mut Gen, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + g.below(3) {
        let len = d.len();
        match g.below(5) {
            0 if len > 0 => {
                let i = g.below(len);
                d[i] ^= 1 << g.below(8);
            }
            1 if len > 0 => {
                let i = g.below(len);
                d[i] = g.next() as u8;
            }
            2 => d.truncate(g.below(len + 1)),
            3 => {
                let i = g.below(len + 1);
                let n = 1 + g.below(16);
                let junk = g.bytes(n);
                d.splice(i..i, junk);
            }
            _ if len > 0 => {
                d.remove(g.below(len));
            }
            _ => d.push(g.next() as u8),
        }
    }
    d
}

const NOW: u64 = 1_795_000_000_000;

fn key() -> MacKey {
    MacKey::derive(&ClusterSecret::new(b"a cluster secret of enough length".to_vec()).unwrap())
}

#[test]
fn mutated_and_random_datagrams_never_open() {
    let mut g = Gen(0x5eed);
    let mut sealer = Sealer::new(key(), 7);
    // Small (plain) and large (zstd-compressed) payloads.
    let small = sealer.seal(NOW, b"a small gossip payload");
    let large = sealer.seal(NOW, &"intro points ".repeat(200).into_bytes());
    let mut tally = std::collections::BTreeMap::new();
    for i in 0..50_000 {
        let mut opener = Opener::new(key(), 30_000);
        let input = match i % 3 {
            0 => mutate(&mut g, &small),
            1 => mutate(&mut g, &large),
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
    let mut g = Gen(0xbad);
    let valid = LeaseAdvert {
        incarnation: 1,
        seq: 2,
        ttl_ms: 6000,
        until_ms: 9,
    }
    .encode();
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..20_000 {
        let m = String::from_utf8_lossy(&mutate(&mut g, valid.as_bytes())).into_owned();
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
