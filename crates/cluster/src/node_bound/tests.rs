use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::auth::{ClusterSecret, MacKey, Sealer};
use crate::membership::{Membership, MembershipConfig};
use crate::simnet::SimNet;
use crate::wire::{self, Blocks, Message};

fn entry(name: &str, addr: SocketAddr) -> DigestEntry {
    DigestEntry {
        id: PeerId {
            node_id: name.into(),
            generation: 1,
            addr,
        },
        heartbeat: 1,
        last_gc_version: 0,
        max_version: 0,
    }
}

fn made_up(prefix: &str, count: usize) -> Vec<DigestEntry> {
    let addr = SocketAddr::from(([10, 0, 0, 9], 7946));
    (0..count)
        .map(|i| entry(&format!("{prefix}{i}"), addr))
        .collect()
}

#[test]
fn new_nodes_past_the_limit_are_refused_and_change_nothing() {
    let mut k = Known::default();
    assert_eq!(k.admit(&made_up("a", MAX_NODES - 1)), Ok(()));
    assert_eq!(k.admit(&made_up("b", 2)), Err(Exceeded::TooManyNodes));
    assert_eq!(k.nodes.len(), MAX_NODES - 1);
    // Known nodes and repeats cost nothing; the last free place is still free.
    let mut again = made_up("a", MAX_NODES - 1);
    again.extend(made_up("b", 1));
    again.extend(made_up("b", 1));
    assert_eq!(k.admit(&again), Ok(()));
    assert_eq!(k.nodes.len(), MAX_NODES);
    assert_eq!(k.admit(&made_up("a", 10)), Ok(()));
}

#[test]
fn a_long_new_name_is_refused_a_known_one_is_not() {
    let addr = SocketAddr::from(([10, 0, 0, 9], 7946));
    let long = "n".repeat(MAX_NODE_NAME + 1);
    let mut k = Known::default();
    assert_eq!(
        k.admit(&[entry("ok", addr), entry(&long, addr)]),
        Err(Exceeded::NameTooLong)
    );
    assert!(k.nodes.is_empty());
    assert_eq!(k.admit(&[entry(&"n".repeat(MAX_NODE_NAME), addr)]), Ok(()));
    // A node chitchat already knows (this node, whatever its name) is not new.
    let own = entry(&long, addr);
    k.nodes.insert(own.id.clone(), peer_bytes(&own.id));
    assert_eq!(k.admit(&[own]), Ok(()));
}

#[test]
fn the_digest_size_is_bounded_even_with_a_huge_known_name() {
    // Only this node's own name can be long and known; the digest bound still holds.
    let addr = SocketAddr::from(([10, 0, 0, 1], 7946));
    let own = entry(&"x".repeat(MAX_DIGEST_BYTES), addr);
    let mut k = Known::default();
    k.nodes.insert(own.id.clone(), peer_bytes(&own.id));
    assert_eq!(k.admit(&made_up("a", 1)), Err(Exceeded::DigestTooLarge));
}

#[test]
fn entry_sizes_are_chitchats() {
    // 2 + 4 + 8 + 7 + 24 for "abcd" over IPv4; IPv6 addresses take 12 bytes more.
    assert_eq!(entry_bytes(4, false), 45);
    assert_eq!(entry_bytes(4, true), 57);
    // What chitchat itself writes for such a digest entry.
    let d = made_up("abc", 1); // "abc0"
    let msg = wire::encode(
        &Message::Syn {
            cluster_id: String::new(),
            digest: d.clone(),
        },
        Blocks::Raw,
    );
    // magic 2 + version 1 + type 1 + count 2 + entry + empty cluster id 2
    assert_eq!(msg.len(), 2 + 1 + 1 + 2 + peer_bytes(&d[0].id) + 2);
}

const SECRET: &[u8] = b"node bound test secret, long enough";

fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET.to_vec()).unwrap()
}

fn sealed_syn(sealer: &mut Sealer, digest: Vec<DigestEntry>) -> Vec<u8> {
    let msg = Message::Syn {
        cluster_id: "rustbalance".into(),
        digest,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    sealer.seal(now.as_millis() as u64, &wire::encode(&msg, Blocks::Raw))
}

async fn member(net: &SimNet, grace: Duration) -> Arc<Membership> {
    let mut cfg = MembershipConfig::new("me", "10.0.0.1:7946".parse().unwrap());
    cfg.generation = 5;
    cfg.dead_node_grace_period = grace;
    Arc::new(
        Membership::start(cfg, &secret(), vec![], net)
            .await
            .unwrap(),
    )
}

/// Waits (in paused time) until `m` has taken in or dropped `n` datagrams.
async fn handled(m: &Membership, n: u64) {
    for _ in 0..1_000 {
        let c = m.counters();
        if c.datagrams_accepted + c.dropped() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("datagrams not handled: {:?}", m.counters());
}

/// The fuzz finding `gossip_apply-digest-over-64k`: two Syns naming 800 made-up nodes
/// each. Without the bound chitchat takes in all 1,600, its own digest passes 64 KiB and
/// `65,507 - 1 - digest` underflows in the gossip task ("attempt to subtract with
/// overflow", the task dies).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn syns_naming_1600_made_up_nodes_do_not_kill_gossip() {
    let net = SimNet::new();
    let m = member(&net, Duration::from_secs(3600)).await;
    let mut sealer = Sealer::new(MacKey::derive(&secret()), 7);
    let from = SocketAddr::from(([10, 0, 0, 2], 7946));
    for batch in ["a", "b"] {
        net.inject(
            from,
            m.local_addr(),
            sealed_syn(&mut sealer, made_up(batch, 800)),
        );
    }
    handled(&m, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(m.gossip_health().is_running(), "{:?}", m.gossip_health());
    assert_eq!(m.counters().dropped_node_bound, 2);
    assert!(m.members().await.len() <= MAX_NODES);
}

/// Syns under the limit each, many of them: chitchat never knows more than the limit,
/// and once it has forgotten made-up nodes (dead for the grace period) new ones fit
/// again, which shows the bound counts what chitchat knows, not what it once let in.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_bound_follows_what_chitchat_knows() {
    let net = SimNet::new();
    let m = member(&net, Duration::from_secs(5)).await;
    let mut sealer = Sealer::new(MacKey::derive(&secret()), 7);
    let from = SocketAddr::from(([10, 0, 0, 2], 7946));
    for (i, batch) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        net.inject(
            from,
            m.local_addr(),
            sealed_syn(&mut sealer, made_up(batch, 200)),
        );
        handled(&m, i as u64 + 1).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(m.counters().dropped_node_bound, 4);
    assert_eq!(m.members().await.len(), 201);
    // The made-up nodes never heartbeat again: dead at once, forgotten 5 s later.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(m.members().await.len(), 1);
    net.inject(
        from,
        m.local_addr(),
        sealed_syn(&mut sealer, made_up("f", 250)),
    );
    handled(&m, 6).await;
    assert_eq!(m.counters().dropped_node_bound, 4, "{:?}", m.counters());
    assert!(m.gossip_health().is_running());
}
