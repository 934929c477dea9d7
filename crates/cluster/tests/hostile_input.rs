//! Hostile input on the gossip port: random datagrams and mutations of valid ones (a
//! seeded generator, thousands of cases) never open and never panic; only the intact
//! datagram opens, once. Lease adverts (gossip values) decode or fail cleanly. Crafted
//! chitchat messages from an authenticated peer (assert-tripping, for the receiver's own
//! id, decompression bombs, oversize) are refused and leave gossip running.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{ChitchatMessage, Deserializable};
use rustbalance_cluster::auth::{MacKey, Opener, Rejection, Sealer};
use rustbalance_cluster::validator::{Validator, MAX_INFLATED};
use rustbalance_cluster::wire::{self, Blocks, DeltaOp, KeyStatus, Message, PeerId};
use rustbalance_cluster::{ClusterSecret, LeaseAdvert, Membership, MembershipConfig, SimNet};
use rustbalance_hs::fixture::Mutator;
use tokio::time::{sleep, Instant};

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

// ---------------------------------------------------------------------------------------
// Hostile chitchat messages from an authenticated peer (a member whose host is compromised,
// or a bug). Two nodes gossip over SimNet on the paused clock; the test seals crafted
// messages with the cluster key and injects them into `b` as if `a` had sent them.

struct Pair {
    net: SimNet,
    a: Membership,
    b: Membership,
    a_id: PeerId,
    b_id: PeerId,
    sealer: Sealer,
}

const PAIR_SECRET: &str = "hostile input pair secret, 32 b.";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Pair {
    /// Boots `a` and `b` and waits until `b` holds `a`'s key `k`.
    async fn start() -> Pair {
        let net = SimNet::new();
        net.record();
        let secret = ClusterSecret::new(PAIR_SECRET.as_bytes().to_vec()).unwrap();
        let mut cfg = MembershipConfig::new("a", "10.0.0.1:0".parse().unwrap());
        cfg.gossip_interval = Duration::from_millis(50);
        cfg.generation = 1;
        let kv = |v: &str| vec![("k".to_owned(), v.to_owned())];
        let a = Membership::start(cfg, &secret, kv("a0"), &net)
            .await
            .unwrap();
        let mut cfg = MembershipConfig::new("b", "10.0.0.2:0".parse().unwrap());
        cfg.gossip_interval = Duration::from_millis(50);
        cfg.generation = 2;
        cfg.seeds = vec![a.local_addr()];
        let b = Membership::start(cfg, &secret, kv("b0"), &net)
            .await
            .unwrap();
        let id = |name: &str, generation, addr| PeerId {
            node_id: name.into(),
            generation,
            addr,
        };
        let pair = Pair {
            a_id: id("a", 1, a.local_addr()),
            b_id: id("b", 2, b.local_addr()),
            net,
            a,
            b,
            sealer: Sealer::new(MacKey::derive(&secret), 0x0bad_5eed),
        };
        assert!(
            pair.b_sees("a", "k", "a0", Duration::from_secs(5)).await,
            "b never learnt a's state"
        );
        pair
    }

    /// Seals `payload` with the cluster key and delivers it to `b` as if from `a`.
    fn inject_payload(&mut self, payload: &[u8]) {
        let datagram = self.sealer.seal(unix_ms(), payload);
        self.net
            .inject(self.a.local_addr(), self.b.local_addr(), datagram);
    }

    fn inject(&mut self, msg: &Message, blocks: Blocks) {
        self.inject_payload(&wire::encode(msg, blocks));
    }

    /// `node`'s value of `key` as `b` sees it.
    async fn in_b(&self, node: &str, key: &str) -> Option<String> {
        let members = self.b.members().await;
        let view = members.into_iter().find(|v| v.node_id == node)?;
        view.get(key).map(str::to_owned)
    }

    /// Waits (virtual time) until `b` sees `node`'s `key` equal to `value`.
    async fn b_sees(&self, node: &str, key: &str, value: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.in_b(node, key).await.as_deref() == Some(value) {
                return true;
            }
            sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

fn node_op(id: &PeerId) -> DeltaOp {
    DeltaOp::Node {
        id: id.clone(),
        last_gc_version: 0,
        from_version_excluded: 0,
    }
}

fn set(key: &str, value: String, version: u64) -> DeltaOp {
    DeltaOp::KeyValue {
        key: key.into(),
        value,
        version,
        status: KeyStatus::Set,
    }
}

/// Everything chitchat itself sends passes the validator, and our reading of it agrees
/// with chitchat's.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn real_gossip_passes_the_validator() {
    let p = Pair::start().await;
    p.a.set("intro/x", &noise(9, 3_000)).await;
    assert!(
        p.b_sees("a", "intro/x", &noise(9, 3_000), Duration::from_secs(5))
            .await
    );
    let key = MacKey::derive(&ClusterSecret::new(PAIR_SECRET.as_bytes().to_vec()).unwrap());
    let mut opener = Opener::new(key, 60_000);
    let recorded = p.net.recorded();
    assert!(recorded.len() > 20, "{}", recorded.len());
    for d in recorded {
        let payload = opener.open(unix_ms(), &d.bytes).unwrap();
        let to_b = d.to == p.b.local_addr();
        let validator = if to_b {
            Validator::new("b", 2)
        } else {
            Validator::new("a", 1)
        };
        assert_eq!(validator.check(&payload), Ok(()));
        let ours = wire::decode(&payload, MAX_INFLATED).unwrap();
        let theirs = ChitchatMessage::deserialize(&mut payload.as_slice()).unwrap();
        let same = matches!(
            (&ours, &theirs),
            (Message::Syn { .. }, ChitchatMessage::Syn { .. })
                | (Message::SynAck { .. }, ChitchatMessage::SynAck { .. })
                | (Message::Ack { .. }, ChitchatMessage::Ack { .. })
                | (Message::BadCluster, ChitchatMessage::BadCluster)
        );
        assert!(same, "{ours:?} vs {theirs:?}");
    }
    assert_eq!(p.b.counters().dropped(), 0);
    assert_eq!(p.a.counters().dropped(), 0);
}

/// chitchat asserts (state.rs) that a delta's max version is at least every version it
/// applied; a `SetMaxVersion` after a key with a higher version trips it and the panic
/// kills the gossip task: `b` then never hears from anyone again.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_delta_whose_max_version_is_below_its_keys_does_not_kill_gossip() {
    let mut p = Pair::start().await;
    let delta = vec![
        node_op(&p.a_id),
        set("k", "forged".into(), 1_000),
        DeltaOp::SetMaxVersion(999),
    ];
    p.inject(&Message::Ack { delta }, Blocks::Raw);
    sleep(Duration::from_millis(200)).await;
    p.a.set("k", "a1").await;
    assert!(
        p.b_sees("a", "k", "a1", Duration::from_secs(5)).await,
        "b stopped gossiping after the crafted delta (its gossip task died)"
    );
    assert_eq!(p.b.counters().dropped_bad_max_version, 1);
    assert!(p.b.gossip_health().is_running());
}

/// A delta for the receiver's own node id would overwrite the receiver's own state.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_delta_for_the_receivers_own_id_is_not_applied() {
    let mut p = Pair::start().await;
    let delta = vec![node_op(&p.b_id), set("lease", "forged".into(), 1_000)];
    p.inject(&Message::Ack { delta }, Blocks::Raw);
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        p.in_b("b", "lease").await,
        None,
        "a peer wrote into b's own state"
    );
    assert!(p.b_sees("a", "k", "a0", Duration::from_secs(1)).await);
    assert_eq!(p.b.counters().dropped_own_node, 1);
}

/// An Ack whose delta is `count` copies of one zstd block of 65,535 zero bytes.
fn zero_block_bomb(count: usize) -> Vec<u8> {
    let block = zstd::bulk::compress(&[0u8; 65_535], 19).unwrap();
    let mut payload = vec![0x53, 0xb0, 0, 2];
    for _ in 0..count {
        payload.push(1);
        payload.extend_from_slice(&(block.len() as u16).to_le_bytes());
        payload.extend_from_slice(&block);
    }
    payload.push(0);
    payload
}

/// A few kilobytes of tiny zstd blocks, each inflating to 64 KiB.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_decompression_bomb_is_refused() {
    let mut p = Pair::start().await;
    let mut delta = vec![node_op(&p.a_id)];
    for i in 0..200u64 {
        delta.push(set(&format!("bomb{i}"), "x".repeat(65_000), 1_000 + i));
    }
    let payload = wire::encode(&Message::Ack { delta }, Blocks::Zstd { block: 65_535 });
    assert!(payload.len() < 16_384, "{} bytes", payload.len());
    p.inject_payload(&payload);
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        p.in_b("a", "bomb0").await.map(|v| v.len()),
        None,
        "b inflated and applied a {}-byte delta bomb",
        payload.len()
    );
    assert_eq!(p.b.counters().dropped_overcompressed, 1);

    // As many blocks as fit in 64 KiB: about 190 MB once inflated.
    let per_block = zero_block_bomb(1).len() - 5;
    let fits = (65_536 - 5) / per_block;
    p.inject_payload(&zero_block_bomb(fits));
    // The 13,000 blocks of the issue (850 MB) inflate past 64 KiB at the first layer.
    p.inject_payload(&zero_block_bomb(13_000));
    sleep(Duration::from_millis(500)).await;
    let c = p.b.counters();
    assert_eq!(
        (c.dropped_overcompressed, c.dropped_oversize),
        (2, 1),
        "{c:?}"
    );
    assert!(p.b.gossip_health().is_running());
}

/// Alphanumeric text that zstd cannot shrink much.
fn noise(seed: u64, len: usize) -> String {
    let mut g = Mutator::new(seed);
    (0..len)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[g.below(36)]))
        .collect()
}

/// chitchat never sends more than 64 KiB: a bigger message, or a datagram that inflates
/// to one, is hostile.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn oversize_datagrams_are_refused() {
    let mut p = Pair::start().await;
    // Small on the wire, 80 KB once inflated.
    let delta = vec![
        node_op(&p.a_id),
        set("inflated0", "y".repeat(40_000), 998),
        set("inflated1", "y".repeat(40_000), 999),
    ];
    p.inject(&Message::Ack { delta }, Blocks::Raw);
    // 240 KB of noise: over 64 KiB even compressed.
    let mut delta = vec![node_op(&p.a_id)];
    for i in 0..4 {
        delta.push(set(&format!("huge{i}"), noise(i, 60_000), 1_001 + i));
    }
    let payload = wire::encode(&Message::Ack { delta }, Blocks::Raw);
    let datagram = p.sealer.seal(unix_ms(), &payload);
    assert!(datagram.len() > 65_536, "{} bytes", datagram.len());
    p.net.inject(p.a.local_addr(), p.b.local_addr(), datagram);
    sleep(Duration::from_millis(500)).await;
    let applied = |v: Option<String>| v.map(|v| v.len());
    assert_eq!(
        applied(p.in_b("a", "inflated0").await),
        None,
        "b applied an 80 KB message that came in a small datagram"
    );
    assert_eq!(
        applied(p.in_b("a", "huge0").await),
        None,
        "b applied a message from a datagram over 64 KiB"
    );
    assert_eq!(p.b.counters().dropped_oversize, 2);
}

/// A member stamps a clock ten minutes ahead on datagrams sent from many source ports
/// (the MAC checks: it holds the cluster secret). Only the gossip address a member of the
/// view advertises counts, once, so the receiver does not come to believe that its own
/// clock is off (it would make itself ineligible to publish).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn false_timestamps_from_many_ports_do_not_skew_the_receiver() {
    let mut p = Pair::start().await;
    for port in 0..20u16 {
        let from = std::net::SocketAddr::from(([10, 0, 0, 9], 7000 + port));
        let datagram = p.sealer.seal(unix_ms() + 600_000, b"not even chitchat");
        p.net.inject(from, p.b.local_addr(), datagram);
    }
    sleep(Duration::from_millis(200)).await;
    // Reading the view tells the transport whose clocks count.
    assert!(p.in_b("a", "k").await.is_some());
    let offset = p.b.counters().clock_offset_ms.expect("a was heard");
    assert!(
        offset.abs() < 5_000,
        "b believes its clock is {offset} ms off the cluster's"
    );
    assert!(p.b.counters().dropped_stale >= 20);
}

/// A node whose clock is ten minutes behind the cluster's hears only stale datagrams, so
/// it learns no member: its configured seeds' clocks still count, and it finds out that
/// its own clock is off (the health check then keeps it from publishing alone).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_node_far_off_learns_its_offset_from_its_seeds() {
    let net = SimNet::new();
    let secret = ClusterSecret::new(PAIR_SECRET.as_bytes().to_vec()).unwrap();
    let seeds: Vec<std::net::SocketAddr> = vec![
        "10.0.0.1:7946".parse().unwrap(),
        "10.0.0.2:7946".parse().unwrap(),
    ];
    let mut cfg = MembershipConfig::new("far", "10.0.0.3:7946".parse().unwrap());
    cfg.gossip_interval = Duration::from_millis(50);
    cfg.seeds = seeds.clone();
    let far = Membership::start(cfg, &secret, vec![], &net).await.unwrap();
    let mut sealer = Sealer::new(MacKey::derive(&secret), 0x5eed);
    for seed in &seeds {
        // The cluster's clock is ten minutes ahead of this node's.
        let datagram = sealer.seal(unix_ms() + 600_000, b"a peer's gossip");
        net.inject(*seed, far.local_addr(), datagram);
    }
    sleep(Duration::from_millis(200)).await;
    assert_eq!(far.members().await.len(), 1, "it learnt no member");
    let offset = far
        .counters()
        .clock_offset_ms
        .expect("its seeds were heard");
    assert!(
        (-600_500..=-599_500).contains(&offset),
        "offset {offset} ms, want about -600000"
    );
}
