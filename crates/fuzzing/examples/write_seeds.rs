//! Writes the generated seed corpus of every fuzz target into `fuzz/corpus/<target>/seed-*`:
//! `cargo run -p rustbalance-fuzzing --example write_seeds`. Inputs that once failed
//! (`seed-found-*`) are kept by hand. The seeds are valid inputs (signed descriptors for the
//! target's key and time, payloads sealed with its cluster key, requests with a valid
//! MAC), so that mutations start past the first checks.

use std::path::Path;

use base64::Engine;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_cluster::auth::Sealer;
use rustbalance_cluster::election::LeaseAdvert;
use rustbalance_cluster::wire::{self, Blocks, DeltaOp, DigestEntry, KeyStatus, Message, PeerId};
use rustbalance_fuzzing::{
    descriptor_key, gossip_key, http_input, join_params, join_token, raw_record, syn_record,
    values_input, ADMIN_COOKIE, CLIENT_AUTH_ADDED, DESCRIPTOR_NOW, GOSSIP_NOW_MS, JOIN_NOW,
    SEAL_PASSPHRASE,
};
use rustbalance_hs::descriptor::{auth_line, encode_intro_points, ClientSecret};
use rustbalance_hs::fixture::{fake_instance_descriptor, fake_intro_point};
use rustbalance_hs::sealed::SealParams;
use rustbalance_hs::time::{from_unix, TimeParams};
use rustbalance_hs::IdentityKey;
use rustbalance_node::config::{ClusterTemplate, MeshTemplate, Template};
use rustbalance_node::join::build_request;
use rustbalance_proxy::proxy_protocol::{encode_v1, ProxyAddrs};

fn main() {
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("gossip_open", gossip_open_seeds()),
        (
            "gossip_delta",
            messages()
                .iter()
                .map(|(m, b)| wire::encode(m, *b))
                .collect(),
        ),
        ("gossip_apply", gossip_apply_seeds()),
        ("gossip_values", gossip_values_seeds()),
        ("mesh_peers", mesh_peer_seeds()),
        ("hs_descriptor", descriptor_seeds()),
        ("hs_layers", hs_layer_seeds()),
        ("intro_points", intro_point_seeds()),
        ("consensus", consensus_seeds()),
        ("key_files", key_file_seeds()),
        ("proxy_v1", proxy_v1_seeds()),
        ("proxy_http", proxy_http_seeds()),
        ("control_reply", control_seeds()),
        ("join_request", join_request_seeds()),
        ("join_answer", join_answer_seeds()),
        ("join_classify", join_classify_seeds()),
        ("admin_head", admin_head_seeds()),
        ("config_file", config_file_seeds()),
        ("state_files", state_file_seeds()),
        ("client_auth", client_auth_seeds()),
        ("onionbalance_config", onionbalance_config_seeds()),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, files) in seeds {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (i, bytes) in files.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), bytes).expect("write a seed");
        }
        println!("{name}: {} seeds", files.len());
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

fn gossip_apply_seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = messages()
        .iter()
        .map(|(m, b)| raw_record(&wire::encode(m, *b)))
        .collect();
    // A Syn naming a few nodes, then one naming hundreds (well under a datagram).
    out.push([syn_record(3, b"peer-"), syn_record(400, b"x")].concat());
    out
}

fn wg_key(seed: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([seed; 32])
}

fn gossip_values_seeds() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let ips: Vec<_> = (0..3).map(|_| fake_intro_point(&mut rng)).collect();
    let intros = encode_intro_points(&ips);
    let lease = LeaseAdvert {
        incarnation: 1,
        seq: 4,
        ttl_ms: 6_000,
        until_ms: 9_000,
    }
    .encode();
    let fleet = format!("v1 3743000 {} 12 1795007200\n{intros}", "ab".repeat(32));
    let mesh = format!("{} 10.0.0.1:51820", wg_key(1));
    let removed = format!("node9 {} 1795000000 n0", wg_key(9));
    let admitted = format!(
        "node7 {} 192.0.2.7:51820 0123456789abcdef0123456789abcdef",
        wg_key(7)
    );
    let n0: &[(&str, &str)] = &[
        ("priority", "1"),
        ("eligible", "true"),
        ("role", "publisher"),
        ("lease", &lease),
        ("target_health", "up"),
        ("last_publish", "1795000000 ok"),
        ("intro/n0", &intros),
        ("fleet_pow", &fleet),
        ("mesh", &mesh),
        ("mesh_removed", &removed),
        ("mesh_admitted", &admitted),
        ("join_gen", "3 0123456789abcdef0123456789abcdef"),
    ];
    let n1: &[(&str, &str)] = &[
        ("priority", "2"),
        ("eligible", "false"),
        ("target_health", "down"),
    ];
    vec![values_input(&[n0, n1, n0]), values_input(&[n1])]
}

/// State files as a node saves them, and a removal dated after year 9999.
fn state_file_seeds() -> Vec<Vec<u8>> {
    let peers = format!(
        r#"[{{"name":"node2","public_key":"{}","endpoint":"10.0.0.2:51820"}}]"#,
        wg_key(2)
    );
    let removed = format!(
        r#"[{{"name":"node9","public_key":"{}","at":1795000000,"by":"n0"}},
           {{"name":"-","public_key":"{}","at":18446744073709551615,"by":"n1"}}]"#,
        wg_key(9),
        wg_key(8)
    );
    let token = join_token().encode();
    let files = |p: &str, r: &str, t: &str, pid: &str| [p, r, t, pid].join("\0").into_bytes();
    vec![
        files(&peers, &removed, &token, "4242\n"),
        files("[]", "[]", " \n", ""),
    ]
}

/// Members' join gossip, as `mesh_peers` reads it (this node is `n0`, key `0xEE…`): a
/// member that admitted two nodes, one that removed a third member (whose admitted
/// node must then count for nothing), and this node's own key among the peers.
fn mesh_peer_seeds() -> Vec<Vec<u8>> {
    let own = base64::engine::general_purpose::STANDARD.encode([0xEE; 32]);
    let mesh = |seed: u8, host: u8| format!("{} 10.0.0.{host}:51820", wg_key(seed));
    let admitted = format!(
        "node7 {} 192.0.2.7:51820 0123456789abcdef0123456789abcdef\n\
         node8 {} [2001:db8::8]:51820 fedcba9876543210fedcba9876543210\n\
         me {own} 10.0.0.1:51820",
        wg_key(7),
        wg_key(8)
    );
    let removed = format!("n3 {} 1795000000 n1", wg_key(3));
    let n0_mesh = format!("{own} 10.0.0.1:51820");
    let (m1, m2, m3) = (mesh(1, 2), mesh(2, 3), mesh(3, 4));
    let n3_admitted = format!("node9 {} 192.0.2.9:51820 ab", wg_key(9));
    let n0: &[(&str, &str)] = &[("mesh", &n0_mesh), ("join_gen", "2 00")];
    let n1: &[(&str, &str)] = &[
        ("mesh", &m1),
        ("mesh_admitted", &admitted),
        ("mesh_removed", &removed),
        ("join_gen", "3 0123456789abcdef0123456789abcdef"),
    ];
    let n2: &[(&str, &str)] = &[("mesh", &m2)];
    let n3: &[(&str, &str)] = &[("mesh", &m3), ("mesh_admitted", &n3_admitted)];
    vec![
        values_input(&[n0, n1, n2, n3]),
        values_input(&[n0, n2]),
        values_input(&[n1]),
    ]
}

/// Decrypted descriptor layers written by hand (middle: client-auth fields around the
/// encrypted inner layer; inner: one introduction point with made-up keys).
fn hs_layer_seeds() -> Vec<Vec<u8>> {
    let b64 = |n: usize, seed: u8| base64::engine::general_purpose::STANDARD.encode(vec![seed; n]);
    let middle = format!(
        "desc-auth-type x25519\ndesc-auth-ephemeral-key {}\n\
         auth-client {} {} {}\nencrypted\n-----BEGIN MESSAGE-----\n{}\n-----END MESSAGE-----\n",
        b64(32, 1),
        b64(8, 2),
        b64(16, 3),
        b64(16, 4),
        b64(64, 5)
    );
    let inner = format!(
        "create2-formats 2\nflow-control 1-2 31\nintroduction-point {}\nonion-key ntor {}\n\
         auth-key\n-----BEGIN ED25519 CERT-----\n{}\n-----END ED25519 CERT-----\n\
         enc-key ntor {}\nenc-key-cert\n-----BEGIN ED25519 CERT-----\n{}\n-----END ED25519 CERT-----\n",
        b64(40, 6),
        b64(32, 7),
        b64(140, 8),
        b64(32, 9),
        b64(140, 10)
    );
    vec![
        [&[0u8][..], middle.as_bytes()].concat(),
        [&[1u8][..], inner.as_bytes()].concat(),
    ]
}

/// A consensus with three relays (two HSDirs) and their microdescriptors.
fn consensus_seeds() -> Vec<Vec<u8>> {
    use sha2::Digest;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(b);
    let mut cons = String::from(
        "network-status-version 3 microdesc\nvote-status consensus\n\
         valid-after 2026-11-18 12:00:00\nfresh-until 2026-11-18 13:00:00\n\
         valid-until 2026-11-18 15:00:00\n",
    );
    cons += &format!(
        "shared-rand-previous-value 9 {}\nshared-rand-current-value 9 {}\n\
         params hsdir_n_replicas=2 hsdir_spread_store=4 hsdir-interval=1440\n",
        b64(&[1; 32]),
        b64(&[2; 32])
    );
    let mut mds = String::new();
    for i in 0..3u8 {
        let md = format!(
            "onion-key\nntor-onion-key {}\nid ed25519 {}\n",
            b64(&[i; 32]),
            b64(&[i + 10; 32])
        );
        let digest = sha2::Sha256::digest(md.as_bytes());
        let flags = if i < 2 {
            "Fast HSDir Running Stable V2Dir Valid"
        } else {
            "Fast Running Valid"
        };
        cons += &format!(
            "r relay{i} {} 2026-11-18 11:00:00 127.0.0.{} 5000 0\nm {}\ns {flags}\npr HSDir=1-2 Link=1-5\n",
            b64(&[i; 20]),
            i + 1,
            b64(&digest)
        );
        mds += &md;
    }
    cons += "directory-footer\n";
    vec![format!("{cons}\0{mds}").into_bytes(), cons.into_bytes()]
}

fn key_file_seeds() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let key = IdentityKey::generate(&mut rng);
    let sealed = key
        .seal(SEAL_PASSPHRASE, SealParams::fast_for_tests(), &mut rng)
        .expect("cheap parameters are within the limits");
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&[5u8; 32]);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&pkcs8)
    );
    vec![
        key.tor_secret_file().to_vec(),
        key.tor_public_file(),
        sealed,
        pem.into_bytes(),
    ]
}

fn join_request_seeds() -> Vec<Vec<u8>> {
    let params = format!("node2\n{}\n192.0.2.5:51820", wg_key(2));
    let (_, raw) = build_request(&join_token(), &join_params(&params), JOIN_NOW);
    let refused = format!("node3\nx{}\n[2001:db8::1]:51820", wg_key(3));
    vec![
        [&[1u8][..], params.as_bytes()].concat(),
        [&[1u8][..], refused.as_bytes()].concat(),
        [&[0u8][..], &raw].concat(),
        [
            &[0u8][..],
            b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        ]
        .concat(),
    ]
}

fn join_answer_seeds() -> Vec<Vec<u8>> {
    let grant = format!(
        "{{\"v\":1,\"cluster_id\":\"rustbalance\",\"cluster_secret\":\"{}\",\"gossip_port\":7946,\
         \"join_generation\":3,\"join_salt\":\"\",\"members\":[{{\"name\":\"node1\",\
         \"wg_public_key\":\"{}\",\"endpoint\":\"192.0.2.1:51820\"}}],\"admitted_by\":\"node1\"}}",
        "00".repeat(32),
        wg_key(1)
    );
    vec![
        [&[1u8][..], grant.as_bytes()].concat(),
        [
            &[0u8][..],
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 8\r\n\r\nremoved\n",
        ]
        .concat(),
        [&[0u8][..], b"HTTP/1.1 404 Not Found\r\n\r\n"].concat(),
    ]
}

fn join_classify_seeds() -> Vec<Vec<u8>> {
    let line = format!(
        "POST {} HTTP/1.1\r\nHost: x.onion\r\n\r\n",
        join_token().path()
    );
    vec![
        line.into_bytes(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"POST /.well-known/rustbalance/join/0123456789abcdef0123456789abcdef HTTP/1.1\r\n"
            .to_vec(),
    ]
}

fn admin_head_seeds() -> Vec<Vec<u8>> {
    let auth = format!("Authorization: Bearer {ADMIN_COOKIE}\r\n");
    [
        "GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
        "GET /metrics HTTP/1.0\r\n\r\n".to_string(),
        format!("GET /token HTTP/1.0\r\n{auth}\r\n"),
        format!("POST /token/rotate HTTP/1.0\r\n{auth}\r\n"),
        format!("POST /node/remove/node2 HTTP/1.0\r\n{auth}\r\n"),
        "GET /token HTTP/1.0\r\nAuthorization: Bearer wrong\r\n\r\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn config_file_seeds() -> Vec<Vec<u8>> {
    let base = Template {
        name: "node1".into(),
        data_dir: "/var/lib/rustbalance".into(),
        master_key: None,
        passphrase_file: None,
        master_address: Some(descriptor_key().address().to_string()),
        virtual_port: 80,
        target: Some("tcp://127.0.0.1:8080".into()),
        admin: "127.0.0.1:9663".parse().unwrap(),
        extra_torrc: vec!["HiddenServiceMaxStreams 100".into()],
        testing_network: false,
        cluster: None,
        mesh: None,
    };
    let cluster = Template {
        cluster: Some(ClusterTemplate {
            secret_file: "/var/lib/rustbalance/cluster.secret".into(),
            listen: "10.0.0.1:7946".parse().unwrap(),
            seeds: vec!["10.0.0.2:7946".parse().unwrap()],
            priority: 2,
            cluster_id: None,
            quorum: None,
            gossip_signatures: None,
        }),
        mesh: Some(MeshTemplate {
            interface: "rb0".into(),
            private_key_file: "/var/lib/rustbalance/wg.key".into(),
            listen_port: 51820,
            endpoint: Some("192.0.2.1:51820".parse().unwrap()),
            peers: vec![(wg_key(2), "192.0.2.2:51820".parse().unwrap())],
        }),
        target: Some(format!("onion://{}:80", descriptor_key().address())),
        ..base.clone()
    };
    vec![base.render().into_bytes(), cluster.render().into_bytes()]
}

/// A client name for `client-auth add`, then `notes.txt`, then `.auth` files (NUL-separated):
/// a valid directory (one key in lower case with white space around it), a name that is
/// not valid, a name already taken, the added key already listed, a file that is not a key.
fn client_auth_seeds() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let a = auth_line(&ClientSecret::generate(&mut rng).public());
    let b = auth_line(&ClientSecret::generate(&mut rng).public());
    let lower = format!("  {}\n", b.to_lowercase());
    let files = |parts: &[&str]| parts.join("\0").into_bytes();
    vec![
        files(&["carol", "not a key", &a, &lower]),
        files(&["../x", "", &a]),
        files(&["c0", "", &a, &b]),
        files(&["dave", "", CLIENT_AUTH_ADDED]),
        files(&["erin", "", "descriptor:x25519:nope"]),
        files(&["frank", "", &format!("{a}\n{b}")]),
    ]
}

/// Onionbalance v3 configs as `onionbalance-config` writes them, with the keys
/// Onionbalance ignores, a duplicate instance, two services, a relative key path.
fn onionbalance_config_seeds() -> Vec<Vec<u8>> {
    let addr = |seed: u8| IdentityKey::from_seed(&[seed; 32]).address().to_string();
    let plain = format!(
        "services:\n- instances:\n  - address: {}\n    name: node1\n  - address: {}\n    \
         name: node2\n  key: /etc/onionbalance/master.key\n",
        addr(1),
        addr(2)
    );
    let extras = format!(
        "REFRESH_INTERVAL: 600\nstatus-socket-location: /var/run/onionbalance/control\n\
         services:\n- key: keys/a.key\n  weight: 2\n  instances:\n  - {{address: '{}', \
         name: 1}}\n  - address: {}\n    weight: 3\n  - address: \"{}\"\n- key: b.pem\n  \
         instances: [{{address: {}}}]\n",
        addr(3),
        addr(4),
        addr(3).trim_end_matches(".onion"),
        addr(5)
    );
    vec![plain.into_bytes(), extras.into_bytes()]
}
