//! Gossip as a member receives it: authenticated datagrams into a real [`Membership`]
//! (transport, validator, chitchat's decoder and state), which must keep gossiping.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustbalance_cluster::auth::Sealer;
use rustbalance_cluster::wire::{self, Blocks, DigestEntry, Message, PeerId};
use rustbalance_cluster::{Membership, MembershipConfig, SimNet};
use tokio::runtime::Runtime;

use crate::gossip::{gossip_key, gossip_secret};

/// Datagrams per input at most (the simulated receive queue holds 512).
const MAX_DATAGRAMS: usize = 64;
/// Digest entries one generated Syn carries at most.
const MAX_ENTRIES: usize = 4096;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(crate::new_runtime)
}

/// One record of a `gossip_apply` input: a payload as it is, sent sealed.
pub fn raw_record(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    [&[0u8][..], &len.to_le_bytes(), &payload[..usize::from(len)]].concat()
}

/// One record of a `gossip_apply` input: a Syn whose digest names `count` nodes
/// `<prefix><i>` (what one hostile member can send).
pub fn syn_record(count: u16, prefix: &[u8]) -> Vec<u8> {
    let len = u8::try_from(prefix.len()).unwrap_or(u8::MAX);
    [
        &[1u8][..],
        &count.to_le_bytes(),
        &[len],
        &prefix[..usize::from(len)],
    ]
    .concat()
}

/// The payloads an input describes: records of a tag byte (even: raw payload, `u16` LE
/// length then bytes; odd: a generated Syn, `u16` LE entry count, `u8` prefix length, the
/// node id prefix).
fn payloads(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let [tag, a, b, rest @ ..] = data {
        if out.len() == MAX_DATAGRAMS {
            break;
        }
        let n = usize::from(u16::from_le_bytes([*a, *b]));
        if tag & 1 == 0 {
            let n = n.min(rest.len());
            out.push(rest[..n].to_vec());
            data = &rest[n..];
        } else {
            let Some((&plen, rest)) = rest.split_first() else {
                break;
            };
            let plen = usize::from(plen).min(rest.len());
            let prefix = String::from_utf8_lossy(&rest[..plen]).into_owned();
            out.push(syn(n.min(MAX_ENTRIES), &prefix));
            data = &rest[plen..];
        }
    }
    out
}

fn syn(count: usize, prefix: &str) -> Vec<u8> {
    let digest = (0..count)
        .map(|i| DigestEntry {
            id: PeerId {
                node_id: format!("{prefix}{i}"),
                generation: 1,
                addr: SocketAddr::from(([10, 0, 0, 9], 7946)),
            },
            heartbeat: 1,
            last_gc_version: 0,
            max_version: 0,
        })
        .collect();
    let msg = Message::Syn {
        cluster_id: "rustbalance".into(),
        digest,
    };
    wire::encode(&msg, Blocks::Raw)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The datagrams of the input (see [`raw_record`], [`syn_record`]), sealed with the
/// cluster key, into a fresh member `me` (generation 5) from a peer address, in order.
/// Property: once the member has taken them all in, its gossip task still runs (a panic
/// in chitchat ends it).
pub fn gossip_apply(data: &[u8]) {
    let payloads = payloads(data);
    if payloads.is_empty() {
        return;
    }
    runtime().block_on(async {
        let net = SimNet::new();
        let mut cfg = MembershipConfig::new("me", SocketAddr::from(([10, 0, 0, 1], 7946)));
        cfg.generation = 5;
        let Ok(secret) = gossip_secret() else {
            return;
        };
        let node = Membership::start(cfg, &secret, Vec::new(), &net)
            .await
            .expect("a member starts on the simulated network");
        let peer = SocketAddr::from(([10, 0, 0, 2], 7946));
        let mut sealer = Sealer::new(gossip_key(), 0x5eed);
        for p in &payloads {
            net.inject(peer, node.local_addr(), sealer.seal(unix_ms(), p));
        }
        // Every datagram is either accepted (then chitchat handles it before the transport
        // reads the next) or dropped by the transport.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = node.counters();
            if c.datagrams_accepted + c.dropped() >= payloads.len() as u64
                || Instant::now() > deadline
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        let _ = node.members().await;
        let health = node.gossip_health();
        assert!(health.is_running(), "the gossip task ended: {health:?}");
        let _ = node.shutdown().await;
    });
}
