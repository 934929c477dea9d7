//! The seed corpus on the stable toolchain: every file of `corpus/<target>/` goes through
//! its target's check (a smoke run, part of `scripts/test.sh` later). The ignored test
//! `write_seeds` (re)writes the seeds from code.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_cluster::auth::Sealer;
use rustbalance_cluster::wire::{self, Blocks, DeltaOp, DigestEntry, KeyStatus, Message, PeerId};
use rustbalance_fuzz::{
    descriptor_key, gossip_key, http_input, DESCRIPTOR_NOW, GOSSIP_NOW_MS, TARGETS,
};
use rustbalance_hs::descriptor::encode_intro_points;
use rustbalance_hs::fixture::{fake_instance_descriptor, fake_intro_point};
use rustbalance_hs::time::{from_unix, TimeParams};
use rustbalance_proxy::proxy_protocol::{encode_v1, ProxyAddrs};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// The committed seeds of `target` (`seed-*`: written by code, or inputs that once
/// crashed), not what a fuzzing run added.
fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_passes_its_target() {
    for (name, check) in TARGETS {
        let files = seeds(name);
        for path in &files {
            check(&std::fs::read(path).unwrap());
        }
        assert!(!files.is_empty(), "no seeds for {name}");
        println!("{name}: {} seeds", files.len());
    }
}

#[test]
#[ignore = "writes the seed corpus: cargo test -- --ignored write_seeds"]
fn write_seeds() {
    let seeds: [(&str, Vec<Vec<u8>>); 7] = [
        ("gossip_open", gossip_open_seeds()),
        (
            "gossip_delta",
            messages()
                .iter()
                .map(|(m, b)| wire::encode(m, *b))
                .collect(),
        ),
        ("hs_descriptor", descriptor_seeds()),
        ("intro_points", intro_point_seeds()),
        ("proxy_v1", proxy_v1_seeds()),
        ("proxy_http", proxy_http_seeds()),
        ("control_reply", control_seeds()),
    ];
    for (name, files) in seeds {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, bytes) in files.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), bytes).unwrap();
        }
    }
}

fn peer(name: &str, generation: u64) -> PeerId {
    PeerId {
        node_id: name.into(),
        generation,
        addr: "10.0.0.1:7946".parse().unwrap(),
    }
}

fn node(name: &str, generation: u64) -> DeltaOp {
    DeltaOp::Node {
        id: peer(name, generation),
        last_gc_version: 0,
        from_version_excluded: 0,
    }
}

fn kv(key: &str, value: &str, version: u64) -> DeltaOp {
    DeltaOp::KeyValue {
        key: key.into(),
        value: value.into(),
        version,
        status: KeyStatus::Set,
    }
}

/// Gossip messages as chitchat sends them, and the hostile kinds the validator refuses.
fn messages() -> Vec<(Message, Blocks)> {
    let digest = vec![DigestEntry {
        id: peer("a", 1),
        heartbeat: 12,
        last_gc_version: 0,
        max_version: 4,
    }];
    let delta = vec![
        node("a", 1),
        kv("role", "follower", 1),
        kv("lease", "1:2:6000:9", 2),
        node("b", 3),
        DeltaOp::SetMaxVersion(7),
    ];
    let zstd = Blocks::Zstd { block: 16_384 };
    vec![
        (
            Message::Syn {
                cluster_id: "rustbalance".into(),
                digest: digest.clone(),
            },
            Blocks::Raw,
        ),
        (
            Message::SynAck {
                digest,
                delta: delta.clone(),
            },
            zstd,
        ),
        (Message::Ack { delta }, Blocks::Raw),
        (Message::BadCluster, Blocks::Raw),
        (
            Message::Ack {
                delta: vec![node("a", 1), kv("k", "v", 9), DeltaOp::SetMaxVersion(8)],
            },
            Blocks::Raw,
        ),
        (
            Message::Ack {
                delta: vec![node("me", 5), kv("k", "v", 1)],
            },
            zstd,
        ),
    ]
}

fn gossip_open_seeds() -> Vec<Vec<u8>> {
    let mut sealer = Sealer::new(gossip_key(), 1);
    let mut out: Vec<Vec<u8>> = messages()
        .iter()
        .map(|(m, b)| {
            [
                &[0u8][..],
                &sealer.seal(GOSSIP_NOW_MS, &wire::encode(m, *b)),
            ]
            .concat()
        })
        .collect();
    // Compressed by the sealer (over 512 bytes).
    let long = sealer.seal(GOSSIP_NOW_MS, &"intro points ".repeat(100).into_bytes());
    out.push([&[0u8][..], &long].concat());
    // zstd bodies to be sealed by the target: one within the cap, one over it.
    for n in [1_000, 100_000] {
        let body = zstd::bulk::compress(&vec![b'z'; n], 3).unwrap();
        out.push([&[1u8][..], &body].concat());
    }
    out
}

fn descriptor_seeds() -> Vec<Vec<u8>> {
    let tp = TimeParams::REAL_NETWORK;
    let slot = tp.live_slots(DESCRIPTOR_NOW, DESCRIPTOR_NOW - DESCRIPTOR_NOW % 3600)[0];
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    [1, 3]
        .iter()
        .map(|&n| {
            let key = descriptor_key();
            let now = from_unix(DESCRIPTOR_NOW);
            fake_instance_descriptor(&key, tp, slot, now, n, &mut rng)
                .unwrap()
                .into_bytes()
        })
        .collect()
}

fn intro_point_seeds() -> Vec<Vec<u8>> {
    use base64::Engine;
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut out = Vec::new();
    for n in [1, 3] {
        let ips: Vec<_> = (0..n).map(|_| fake_intro_point(&mut rng)).collect();
        let text = encode_intro_points(&ips);
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&text)
            .unwrap();
        out.push([&[0u8][..], &raw].concat());
        out.push([&[1u8][..], text.as_bytes()].concat());
    }
    out
}

fn proxy_v1_seeds() -> Vec<Vec<u8>> {
    vec![
        b"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n".to_vec(),
        encode_v1(&ProxyAddrs::tor_circuit(123_456, 80)),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ]
}

fn proxy_http_seeds() -> Vec<Vec<u8>> {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let moved = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1/login\r\n\
        Set-Cookie: sid=1; Domain=127.0.0.1; Path=/\r\nContent-Length: 0\r\n\r\n";
    let tor_line = encode_v1(&ProxyAddrs::tor_circuit(7, 80));
    let post = b"POST /f HTTP/1.1\r\nHost: master.onion\r\nOrigin: http://master.onion\r\n\
        Content-Length: 4\r\n\r\nbody";
    vec![
        http_input(0, b"GET / HTTP/1.1\r\nHost: master.onion\r\n\r\n", ok),
        http_input(0, b"GET /a HTTP/1.0\r\n\r\n", moved),
        http_input(1, &[&tor_line[..], &post[..]].concat(), moved),
        http_input(1, &[&tor_line[..], b"GET / HTTP/1.1\r\n\r\n"].concat(), ok),
    ]
}

fn control_seeds() -> Vec<Vec<u8>> {
    [
        "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.8.13\"\r\n250 OK\r\n\
         250-version=0.4.8.13\r\n250 OK\r\n\
         250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"\r\n250 OK\r\n",
        "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/run/tor/control.authcookie\"\r\n\
         250 OK\r\n250+version=\r\n0.4.8\r\n..dot\r\n.\r\n250 OK\r\n552 Unrecognized key\r\n",
        "650 HS_DESC UPLOADED abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcd UNKNOWN \
         $AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA~relay desc-id\r\n\
         650 HS_DESC FAILED abcd NO_AUTH $BB~x id REASON=UPLOAD_REJECTED\r\n\
         650+HS_DESC_CONTENT abcd descid $CC~y\r\nhs-descriptor 3\r\n.\r\n650 OK\r\n",
        "515 Authentication failed\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// The descriptor seeds are valid for the target's key and time, so that mutations start
/// from inputs that reach the encrypted layers.
#[test]
fn descriptor_seeds_parse() {
    let key = descriptor_key();
    for path in seeds("hs_descriptor") {
        let text = std::fs::read_to_string(path).unwrap();
        let parsed = rustbalance_hs::descriptor::parse_descriptor(
            &text,
            &key.address(),
            &TimeParams::REAL_NETWORK,
            from_unix(DESCRIPTOR_NOW),
        );
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
