//! A hostile member: it holds the cluster secret (so its datagrams pass the MAC) and a
//! valid certificate of its own, and speaks raw chitchat. It tries to write other nodes'
//! state (issue 13, attack 4): their intro points, target health and eligibility, a forged
//! new generation of another node, a forged certificate, another node's certificate, and
//! a replay of a value the victim really signed under a higher version. Every attempt is
//! dropped and counted, and the honest values stay and keep flowing.
//!
//! Four members gossip over [`SimNet`] on the paused clock: `a` (eligible), `b` (worker),
//! `c` (the receiver the attacks target, worker) and `m` (the hostile worker). The test
//! seals crafted messages with the cluster key and delivers them to `c` as if `m` sent
//! them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustbalance_cluster::auth::{MacKey, Sealer};
use rustbalance_cluster::keys;
use rustbalance_cluster::signed::{self, Opened, ValueCtx};
use rustbalance_cluster::wire::{self, Blocks, DeltaOp, KeyStatus, Message, PeerId};
use rustbalance_cluster::{
    Authority, CertFields, CertRole, ClusterSecret, GossipAuth, Membership, MembershipConfig,
    NodeIdentity, SignatureMode, SimNet, Trust,
};
use tokio::time::{sleep, Instant};
use zeroize::Zeroizing;

#[path = "hostile_member/cluster.rs"]
mod cluster;
#[path = "hostile_member/upgrade.rs"]
mod upgrade;

const SECRET: &str = "hostile member cluster secret 32b";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Node {
    name: &'static str,
    generation: u64,
    identity: Arc<NodeIdentity>,
    m: Membership,
}

impl Node {
    fn id(&self) -> PeerId {
        PeerId {
            node_id: self.name.into(),
            generation: self.generation,
            addr: self.m.local_addr(),
        }
    }
}

struct Cluster {
    net: SimNet,
    authority: Authority,
    a: Node,
    b: Node,
    c: Node,
    m: Node,
    sealer: Sealer,
}

fn authority() -> Authority {
    Authority::from_seed(&Zeroizing::new([0xa5; 32]))
}

/// `name`'s gossip credentials: a new identity certified by `authority` with `role`.
fn credentials(authority: &Authority, name: &str, role: CertRole, seed: u8) -> GossipAuth {
    let identity = Arc::new(NodeIdentity::from_seed(&[seed; 32]));
    let cert = authority
        .certify(CertFields {
            name: name.into(),
            role,
            identity: identity.public(),
            wireguard: Some([seed; 32]),
            onion: None,
            issued: 1_795_000_000,
            serial: u64::from(seed),
        })
        .unwrap();
    GossipAuth {
        identity,
        cert,
        trust: Arc::new(Trust::new(authority.public(), SignatureMode::Require)),
    }
}

async fn start_node(
    net: &SimNet,
    name: &'static str,
    n: u8,
    auth: Option<GossipAuth>,
    seeds: Vec<std::net::SocketAddr>,
    initial: Vec<(String, String)>,
) -> Node {
    let mut cfg = MembershipConfig::new(name, format!("10.0.0.{n}:0").parse().unwrap());
    cfg.gossip_interval = Duration::from_millis(50);
    cfg.generation = 100 + u64::from(n);
    cfg.seeds = seeds;
    let identity = auth
        .as_ref()
        .map(|a| a.identity.clone())
        .unwrap_or_else(|| Arc::new(NodeIdentity::from_seed(&[n; 32])));
    cfg.auth = auth;
    let secret = ClusterSecret::new(SECRET.as_bytes().to_vec()).unwrap();
    let m = Membership::start(cfg, &secret, initial, net).await.unwrap();
    Node {
        name,
        generation: 100 + u64::from(n),
        identity,
        m,
    }
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node_op(id: &PeerId) -> DeltaOp {
    DeltaOp::Node {
        id: id.clone(),
        last_gc_version: 0,
        from_version_excluded: 0,
    }
}

fn set(key: &str, value: &str, version: u64) -> DeltaOp {
    DeltaOp::KeyValue {
        key: key.into(),
        value: value.into(),
        version,
        status: KeyStatus::Set,
    }
}

/// `value` at `key`/`version` of `node`, signed by `by`.
fn signed_by(by: &NodeIdentity, node: &PeerId, key: &str, value: &str, version: u64) -> DeltaOp {
    let ctx = ValueCtx {
        node: &node.node_id,
        generation: node.generation,
        addr: node.addr,
        key,
        version,
    };
    set(key, &signed::seal(by, &ctx, Opened::Set(value)), version)
}

/// Attack 4: `m` overwrites `a`'s intro points, target health and eligibility, with plain
/// values and with values signed by its own (certified) identity, at versions far above
/// `a`'s. `c` keeps `a`'s values, and `a`'s next honest update still reaches `c`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_member_cannot_rewrite_another_nodes_state() {
    let mut k = Cluster::start().await;
    let a = k.a.id();
    k.inject(vec![
        node_op(&a),
        set("intro/a", "m's intro points", 1_000),
        set(keys::TARGET_HEALTH, "down", 1_001),
        set(keys::ELIGIBLE, "false", 1_002),
        set("intro/extra", "m's extra intro points", 1_003),
    ]);
    let m_id = k.m.identity.clone();
    k.inject(vec![
        node_op(&a),
        signed_by(&m_id, &a, "intro/a", "m's intro points", 2_000),
        signed_by(&m_id, &a, keys::TARGET_HEALTH, "down", 2_001),
        signed_by(&m_id, &a, "intro/extra", "m's extra intro points", 2_002),
    ]);
    k.settle().await;
    assert_eq!(
        k.in_c("a", "intro/a").await.as_deref(),
        Some("a's intro points")
    );
    assert_eq!(
        k.in_c("a", keys::TARGET_HEALTH).await.as_deref(),
        Some("up")
    );
    assert_eq!(
        k.in_c("a", "intro/extra").await,
        None,
        "m added an intro key to a"
    );
    let view =
        k.c.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "a")
            .unwrap();
    assert!(view.eligible(), "m made a look ineligible");
    // a's own next value still gets through (nothing pushed a's versions up at c).
    k.a.m.set(keys::TARGET_HEALTH, "unknown").await;
    assert!(k.c_sees("a", keys::TARGET_HEALTH, Some("unknown")).await);
    let c = k.c.m.counters();
    assert_eq!(
        (c.dropped_unsigned, c.dropped_bad_signature),
        (4, 3),
        "{c:?}"
    );
}

/// `m` gossips a new generation of `a` (which would replace `a`'s view: members show a
/// node's newest live generation) holding m's values, with a copy of `a`'s real
/// certificate envelope. `c` still shows `a`'s real state.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_forged_generation_of_another_node_is_ignored() {
    let mut k = Cluster::start().await;
    let real = k.a.id();
    let fake = PeerId {
        generation: real.generation + 1_000,
        ..real.clone()
    };
    let a_cert =
        k.a.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "a")
            .unwrap();
    let a_cert = a_cert.cert().unwrap().encode();
    let a_identity = k.a.identity.clone();
    // a's certificate, signed by a, but for a's real generation (as m could copy it).
    let copied = signed_by(&a_identity, &real, keys::CERT, &a_cert, 1);
    let DeltaOp::KeyValue { value: copied, .. } = copied else {
        unreachable!()
    };
    for _ in 0..10 {
        k.inject(vec![
            node_op(&fake),
            set(keys::CERT, &copied, 1),
            set("intro/a", "m's intro points", 2),
            set(keys::TARGET_HEALTH, "down", 3),
        ]);
        // Without any delta, a digest entry alone creates the node and keeps it alive.
        let digest = vec![wire::DigestEntry {
            id: fake.clone(),
            heartbeat: unix_ms(),
            last_gc_version: 0,
            max_version: 3,
        }];
        let payload = wire::encode(
            &Message::SynAck {
                digest,
                delta: vec![],
            },
            Blocks::Raw,
        );
        let datagram = k.sealer.seal(unix_ms(), &payload);
        k.net
            .inject(k.m.m.local_addr(), k.c.m.local_addr(), datagram);
        sleep(Duration::from_millis(100)).await;
    }
    let view =
        k.c.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "a")
            .unwrap();
    assert_eq!(
        view.generation, real.generation,
        "c shows m's forged generation of a"
    );
    assert_eq!(view.get("intro/a"), Some("a's intro points"));
    assert!(
        k.c.m.counters().dropped_bad_cert >= 1,
        "{:?}",
        k.c.m.counters()
    );
}

/// A certificate for `a` signed by another key than the authority, and `m`'s own genuine
/// certificate presented as `a`'s, are refused with everything they would bring.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn forged_and_foreign_certificates_are_refused() {
    let mut k = Cluster::start().await;
    let a = k.a.id();
    let m_id = k.m.identity.clone();
    let rogue = Authority::from_seed(&Zeroizing::new([0x66; 32]));
    let forged = credentials(&rogue, "a", CertRole::Eligible, 4)
        .cert
        .encode();
    k.inject(vec![
        node_op(&a),
        signed_by(&m_id, &a, keys::CERT, &forged, 5_000),
        signed_by(&m_id, &a, "intro/a", "m's intro points", 5_001),
    ]);
    let m_cert =
        k.m.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "m")
            .unwrap();
    let m_cert = m_cert.cert().unwrap().encode();
    k.inject(vec![
        node_op(&a),
        signed_by(&m_id, &a, keys::CERT, &m_cert, 6_000),
        signed_by(&m_id, &a, "intro/a", "m's intro points", 6_001),
    ]);
    k.settle().await;
    assert_eq!(
        k.in_c("a", "intro/a").await.as_deref(),
        Some("a's intro points")
    );
    let view =
        k.c.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "a")
            .unwrap();
    assert_eq!(view.cert().unwrap().identity(), k.a.identity.public());
    assert_eq!(
        k.c.m.counters().dropped_bad_cert,
        2,
        "{:?}",
        k.c.m.counters()
    );
    // The rogue authority signed a valid-looking certificate: only the trust tells.
    assert_ne!(rogue.public(), k.authority.public());
}

/// `a` once signed `target_health = up` at some version; it is now `down`. `m` replays
/// the old signed value under a higher version: the signature no longer matches.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_replayed_value_with_a_bumped_version_is_refused() {
    let mut k = Cluster::start().await;
    let a = k.a.id();
    // The envelope a wrote for "up" (a's initial value), as m saw it in gossip: a signed
    // its initial values at versions 1..=4 (cert first), target_health third.
    let a_identity = k.a.identity.clone();
    let old = signed_by(&a_identity, &a, keys::TARGET_HEALTH, "up", 3);
    let DeltaOp::KeyValue {
        value: old_envelope,
        ..
    } = old
    else {
        unreachable!()
    };
    k.a.m.set(keys::TARGET_HEALTH, "down").await;
    assert!(k.c_sees("a", keys::TARGET_HEALTH, Some("down")).await);
    k.inject(vec![
        node_op(&a),
        set(keys::TARGET_HEALTH, &old_envelope, 9_999),
    ]);
    k.settle().await;
    assert_eq!(
        k.in_c("a", keys::TARGET_HEALTH).await.as_deref(),
        Some("down")
    );
    assert_eq!(
        k.c.m.counters().dropped_bad_signature,
        1,
        "{:?}",
        k.c.m.counters()
    );
}

/// Eligibility comes from the certificate: a worker gossiping `eligible = true` (or `m`
/// writing it for `b`) is not eligible in anyone's view.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn only_certified_eligible_nodes_are_eligible() {
    let k = Cluster::start().await;
    k.m.m.set(keys::ELIGIBLE, "true").await;
    assert!(k.c_sees("m", keys::ELIGIBLE, Some("true")).await);
    let members = k.c.m.members().await;
    let of = |n: &str| members.iter().find(|v| v.node_id == n).unwrap().clone();
    assert!(!of("m").eligible(), "a worker's claim made it eligible");
    assert_eq!(of("m").certified_role(), Some(CertRole::Worker));
    assert!(of("a").eligible());
    assert!(!of("m").to_member().eligible);
}

/// A revoked member disappears from every view at once, and its new values are dropped.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_revoked_member_is_cut_off() {
    let k = Cluster::start().await;
    let trust = k.c.m.trust().unwrap();
    let m_view =
        k.c.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "m")
            .unwrap();
    trust.revoke_identity(&m_view.cert().unwrap().identity());
    assert!(k.c.m.members().await.iter().all(|v| v.node_id != "m"));
    k.m.m.set("intro/m", "after revocation").await;
    k.settle().await;
    assert!(
        k.c.m.counters().dropped_revoked >= 1,
        "{:?}",
        k.c.m.counters()
    );
    assert!(k.c.m.members().await.iter().any(|v| v.node_id == "b"));
}

/// Honest signed gossip loses nothing: updates and deletions flow, nothing is dropped.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn honest_signed_gossip_flows_and_nothing_is_dropped() {
    let k = Cluster::start().await;
    k.b.m.set("intro/b", "new points").await;
    assert!(k.c_sees("b", "intro/b", Some("new points")).await);
    k.b.m.delete("intro/b").await;
    assert!(k.c_sees("b", "intro/b", None).await);
    k.b.m.set("intro/b", "back").await;
    assert!(k.c_sees("b", "intro/b", Some("back")).await);
    for n in [&k.a, &k.b, &k.c, &k.m] {
        let c = n.m.counters();
        assert_eq!(
            c.dropped() + c.dropped_by_signature_check(),
            0,
            "{}: {c:?}",
            n.name
        );
    }
}

/// Upgrade path: a node not yet upgraded (unsigned) is seen by a signing node only in
/// `accept-unsigned` mode; in `require` mode it is not.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unsigned_nodes_are_seen_only_in_accept_unsigned_mode() {
    for mode in [SignatureMode::AcceptUnsigned, SignatureMode::Require] {
        let net = SimNet::new();
        let ca = authority();
        let mut auth = credentials(&ca, "new", CertRole::Eligible, 1);
        auth.trust = Arc::new(Trust::new(ca.public(), mode));
        let new = start_node(&net, "new", 1, Some(auth), vec![], kv(&[("k", "n")])).await;
        let old = start_node(
            &net,
            "old",
            2,
            None,
            vec![new.m.local_addr()],
            kv(&[("k", "o")]),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(3);
        let (mut new_sees_old, mut old_sees_new) = (false, false);
        while Instant::now() < deadline {
            let of = |v: Vec<rustbalance_cluster::NodeView>, n: &str| {
                v.iter().any(|v| v.node_id == n && v.get("k").is_some())
            };
            new_sees_old = of(new.m.members().await, "old");
            old_sees_new = of(old.m.members().await, "new");
            sleep(Duration::from_millis(50)).await;
        }
        assert!(old_sees_new, "{mode:?}");
        assert_eq!(
            new_sees_old,
            mode == SignatureMode::AcceptUnsigned,
            "{mode:?}"
        );
    }
}

/// `node remove` of a member that then changes its claimed WireGuard key (issue 13, attack
/// 5). The removal is enforced by identity: once the signed revocation's identity is in a
/// node's `Trust` (what `JoinNode::trust_removals` does with every removal it takes), the
/// removed member stays cut off whatever key it now claims — in its running state, and
/// after a restart as a new chitchat generation under its old certificate — so its new
/// key never reaches a member's view (nor, through it, the mesh peers read from views).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_removed_member_that_changes_its_wireguard_key_stays_cut_off() {
    let mut k = Cluster::start().await;
    let m_cert =
        k.c.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "m")
            .and_then(|v| v.cert())
            .expect("c knows m's certificate");
    let trust = k.c.m.trust().unwrap();
    trust.revoke_identity(&m_cert.identity());
    let before = k.c.m.counters().dropped_revoked;
    let new_claim = format!("{} 10.0.0.44:51820", "N".repeat(43) + "=");
    // The running process changes its claim...
    k.m.m.set(keys::MESH, &new_claim).await;
    k.settle().await;
    // ...and comes back as a new generation, certificate and claim signed by its identity.
    let reborn = PeerId {
        node_id: "m".into(),
        generation: k.m.generation + 1,
        addr: k.m.m.local_addr(),
    };
    k.inject(vec![
        node_op(&reborn),
        signed_by(&k.m.identity, &reborn, keys::CERT, &m_cert.encode(), 1),
        signed_by(&k.m.identity, &reborn, keys::MESH, &new_claim, 2),
    ]);
    k.settle().await;
    let members = k.c.m.members().await;
    assert!(
        members.iter().all(|v| v.node_id != "m"),
        "the removed member is back in c's view: {:?}",
        members.iter().find(|v| v.node_id == "m")
    );
    assert!(
        k.c.m.counters().dropped_revoked >= before + 2,
        "{:?}",
        k.c.m.counters()
    );
    // The honest members are unaffected.
    assert!(members.iter().any(|v| v.node_id == "a"));
    assert!(members.iter().any(|v| v.node_id == "b"));
}

/// Attack 3: a worker advertises a lease with a huge TTL and priority 0. Its advert
/// reaches the other members (it is its own, signed state), but the election's view of a
/// member that is not certified eligible carries no lease, so the eligible node `a`,
/// electing on what `c` sees, still becomes and stays the holder for a simulated hour.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_workers_giant_lease_does_not_stop_publishing() {
    use rustbalance_cluster::{Election, ElectionConfig, Input, LeaseAdvert, Millis, Role};
    let k = Cluster::start().await;
    let giant = LeaseAdvert {
        incarnation: 1,
        seq: 1,
        ttl_ms: u64::MAX / 4,
        until_ms: u64::MAX / 4,
    };
    k.m.m.set(keys::PRIORITY, "0").await;
    k.m.m.set(keys::LEASE, &giant.encode()).await;
    assert!(
        k.c_sees("m", keys::LEASE, Some(&giant.encode())).await,
        "the worker's advert never reached c"
    );
    let mut e = Election::new("a", 5, true, 1, ElectionConfig::default()).unwrap();
    let others: Vec<_> =
        k.c.m
            .members()
            .await
            .iter()
            .filter(|v| v.node_id != "a")
            .map(|v| v.to_member())
            .collect();
    assert!(others.iter().any(|m| m.id == "m"));
    let mut held = 0;
    for s in 0..3_600u64 {
        let now = Millis(s * 1_000);
        let _ = e.handle(now, Input::Membership(others.clone()));
        let _ = e.handle(now, Input::Tick);
        if e.role(now) == Role::Holder {
            held += 1;
        }
    }
    assert!(
        held > 3_500,
        "a held the lease {held} of 3600 s next to the worker's giant lease"
    );
}

/// `m` makes a copy of `a` at its own address: same name, same generation, another
/// gossip address (chitchat tells nodes apart by all three), carrying `a`'s real
/// certificate envelope and a value `a` really signed, and keeps it alive with digests.
/// Had the copy been admitted, it could stand for `a` in `c`'s view (a tie broken by
/// chitchat's hash order), freezing `a`'s state there, and its address would count as a
/// member's clock. The signatures cover the address, so the copy's certificate is refused.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_copy_of_another_node_at_another_address_is_refused() {
    let mut k = Cluster::start().await;
    let real = k.a.id();
    let a_identity = k.a.identity.clone();
    let a_cert =
        k.a.m
            .members()
            .await
            .into_iter()
            .find(|v| v.node_id == "a")
            .and_then(|v| v.cert())
            .unwrap()
            .encode();
    // What m can copy from a's gossip: a's envelopes, signed by a where a lives.
    let copied = |key: &str, value: &str, version: u64| {
        let DeltaOp::KeyValue { value, .. } = signed_by(&a_identity, &real, key, value, version)
        else {
            unreachable!()
        };
        value
    };
    let cert = copied(keys::CERT, &a_cert, 1);
    let stale = copied("intro/a", "a's old intro points", 2);
    for port in 0..8u16 {
        let copy = PeerId {
            addr: std::net::SocketAddr::new(k.m.m.local_addr().ip(), 9000 + port),
            ..real.clone()
        };
        let digest = vec![wire::DigestEntry {
            id: copy.clone(),
            heartbeat: unix_ms(),
            last_gc_version: 0,
            max_version: 2,
        }];
        let payload = wire::encode(
            &Message::SynAck {
                digest,
                delta: vec![
                    node_op(&copy),
                    set(keys::CERT, &cert, 1),
                    set("intro/a", &stale, 2),
                ],
            },
            Blocks::Raw,
        );
        let datagram = k.sealer.seal(unix_ms(), &payload);
        k.net
            .inject(k.m.m.local_addr(), k.c.m.local_addr(), datagram);
        sleep(Duration::from_millis(100)).await;
    }
    k.settle().await;
    let views: Vec<_> =
        k.c.m
            .members()
            .await
            .into_iter()
            .filter(|v| v.node_id == "a")
            .collect();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].addr, real.addr, "c shows a copy of a");
    assert_eq!(views[0].get("intro/a"), Some("a's intro points"));
    let c = k.c.m.counters();
    assert!(c.dropped_bad_cert >= 8, "the copies' certificates: {c:?}");
}
