//! The join endpoint on a real proxy (in-process; Tor is replaced by a direct TCP
//! connection): a valid request is admitted once; a wrong, expired or spent token reaches
//! the target like any request; replays, oversized bodies, stale clocks and floods are
//! refused and counted, and none of them reaches the admitter.

use rustbalance_hs::fixture::Mutator;
use rustbalance_hs::OnionAddress;
use rustbalance_node::join::{
    build_request, read_response, Admission, AdmitError, JoinGeneration, JoinGrant, JoinKey,
    JoinParams, JoinService, JoinToken, MemberInfo, Removal,
};
use rustbalance_proxy::{Proxy, ProxyConfig, ProxyHandle, Target};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"an example cluster secret, 32+ bytes long";

fn master() -> OnionAddress {
    OnionAddress::from_public_key([9u8; 32])
}

fn now() -> u64 {
    rustbalance_hs::time::unix_secs(std::time::SystemTime::now())
}

/// What the master key gives eligible nodes to mint tokens with.
const AUTH: &[u8] = b"the master key's join secret, 32 bytes";

/// The join key of generation `n` of the cluster with `SECRET`, on an eligible node.
fn key(n: u64) -> JoinKey {
    JoinKey::derive(SECRET, Some(AUTH), &JoinGeneration::first(n))
}

/// A token of `k` expiring at `expires`.
fn mint(k: &JoinKey, expires: u64) -> JoinToken {
    k.mint(master(), 80, expires)
        .expect("an eligible key mints")
}

/// A fresh token of generation 0, valid for an hour.
fn fresh() -> JoinToken {
    mint(&key(0), now() + 3600)
}

/// A target answering every connection with a fixed 404 and recording what it got.
async fn target() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or(0);
                if n > 0 {
                    seen.lock().unwrap().push(buf[..n].to_vec());
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n",
                        )
                        .await;
                }
            });
        }
    });
    (a, seen)
}

struct Fixture {
    proxy: ProxyHandle,
    svc: Arc<JoinService>,
    admitted: Arc<Mutex<Vec<Admission>>>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn fixture() -> Fixture {
    let (t, seen) = target().await;
    let svc = JoinService::new();
    svc.set_key(key(0), master(), 80);
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let a2 = admitted.clone();
    svc.set_admitter(Arc::new(move |a: Admission| {
        a2.lock().unwrap().push(a.clone());
        Box::pin(async move {
            Ok(JoinGrant {
                v: 1,
                cluster_id: "c".into(),
                cluster_secret: hex::encode(SECRET),
                gossip_port: 9663,
                join_generation: 0,
                join_salt: String::new(),
                members: vec![MemberInfo {
                    name: "node1".into(),
                    wg_public_key: "k".into(),
                    endpoint: "10.0.0.1:51820".parse().unwrap(),
                }],
                admitted_by: "node1".into(),
                authority: String::new(),
                cert: String::new(),
            })
        })
    }));
    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Target::Tcp {
            host: t.ip().to_string(),
            port: t.port(),
        },
    );
    cfg.intercept = Some(svc.clone());
    let proxy = Proxy::start(cfg).await.unwrap();
    Fixture {
        proxy,
        svc,
        admitted,
        seen,
    }
}

fn params() -> JoinParams {
    JoinParams {
        name: "node4".into(),
        wg_public_key: "d2dwdWJsaWNrZXl3Z3B1YmxpY2tleXdncHVibGljaz0=".into(),
        endpoint: "10.0.0.4:51820".parse().unwrap(),
        identity: "aWRlbnRpdHlpZGVudGl0eWlkZW50aXR5aWRlbnRpdHk".into(),
    }
}

async fn send(p: &ProxyHandle, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

fn status(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn valid_join_is_admitted_and_authenticated() {
    let f = fixture().await;
    let token = fresh();
    let (nonce, req) = build_request(&token, &params(), now());
    let raw = send(&f.proxy, &req).await;
    let grant = read_response(&token, &nonce, &raw).unwrap();
    assert_eq!(grant.gossip_port, 9663);
    assert_eq!(grant.cluster_secret, hex::encode(SECRET));
    let got = f.admitted.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "node4");
    assert_eq!(got[0].endpoint, params().endpoint);
    assert_eq!(
        got[0].token_id,
        token.path_id(),
        "the admitter learns the spent token"
    );
    assert_eq!(f.svc.counters.accepted.load(Relaxed), 1);
    // The target saw nothing of it.
    assert!(f.seen.lock().unwrap().is_empty());
    // The answer is bound to the request's nonce: replaying it under another nonce fails.
    assert!(read_response(&token, "00000000000000000000000000000000", &raw).is_err());
}

#[tokio::test]
async fn wrong_token_reaches_the_target_like_any_request() {
    let f = fixture().await;
    let wrong = mint(
        &JoinKey::derive(
            b"another secret, 32 bytes or more..",
            Some(AUTH),
            &JoinGeneration::first(0),
        ),
        now() + 3600,
    );
    let (nonce, req) = build_request(&wrong, &params(), now());
    let raw = send(&f.proxy, &req).await;
    assert_eq!(
        status(&raw),
        "HTTP/1.1 404 Not Found",
        "the target's own answer"
    );
    let e = read_response(&wrong, &nonce, &raw).unwrap_err().to_string();
    assert!(e.contains("token is wrong or was rotated"), "{e}");
    assert_eq!(f.seen.lock().unwrap().len(), 1);
    assert_eq!(f.svc.counters.bad_token.load(Relaxed), 1);
    assert!(f.admitted.lock().unwrap().is_empty());
    // An unrelated request is untouched and not counted.
    let raw = send(&f.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&raw), "HTTP/1.1 404 Not Found");
    assert_eq!(f.svc.counters.bad_token.load(Relaxed), 1);
}

#[tokio::test]
async fn replay_oversize_stale_and_forged_mac_are_refused_and_counted() {
    let f = fixture().await;
    let token = fresh();
    let (_, req) = build_request(&token, &params(), now());
    assert!(status(&send(&f.proxy, &req).await).contains("200"));
    // Replay: same bytes again. The token is spent: the target answers, as for any path.
    let raw = send(&f.proxy, &req).await;
    assert_eq!(status(&raw), "HTTP/1.1 404 Not Found");
    assert_eq!(f.svc.counters.bad_token.load(Relaxed), 1);
    // A nonce another member admitted (from gossip), under a live token: refused.
    let token = fresh();
    let (nonce, req) = build_request(&token, &params(), now());
    f.svc.note_nonce(&nonce);
    let raw = send(&f.proxy, &req).await;
    assert_eq!(status(&raw), "HTTP/1.1 403 Forbidden");
    assert_eq!(f.svc.counters.replayed.load(Relaxed), 1);
    // Oversized: refused before the body is read.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
        token.path()
    );
    let raw = send(&f.proxy, head.as_bytes()).await;
    assert!(status(&raw).contains("413"), "{}", status(&raw));
    assert_eq!(f.svc.counters.oversized.load(Relaxed), 1);
    // A clock ten minutes off.
    let (_, req) = build_request(&token, &params(), now() - 600);
    let raw = send(&f.proxy, &req).await;
    assert!(String::from_utf8_lossy(&raw).contains("clock"));
    assert_eq!(f.svc.counters.stale.load(Relaxed), 1);
    // A forged MAC (right path, changed endpoint).
    let (_, req) = build_request(&token, &params(), now());
    let forged = String::from_utf8(req)
        .unwrap()
        .replace("10.0.0.4:51820", "10.0.0.5:51820");
    let raw = send(&f.proxy, forged.as_bytes()).await;
    assert_eq!(status(&raw), "HTTP/1.1 403 Forbidden");
    assert_eq!(f.svc.counters.bad_token.load(Relaxed), 2);
    assert_eq!(
        f.admitted.lock().unwrap().len(),
        1,
        "only the first one got in"
    );
    assert_eq!(
        f.seen.lock().unwrap().len(),
        1,
        "only the replay of the spent token reached the target"
    );
    // None of these spent the token.
    let (nonce, req) = build_request(&token, &params(), now());
    assert!(read_response(&token, &nonce, &send(&f.proxy, &req).await).is_ok());
}

#[tokio::test]
async fn floods_are_rate_limited() {
    let f = fixture().await;
    let mut limited = 0;
    for _ in 0..10 {
        let (_, req) = build_request(&fresh(), &params(), now());
        if status(&send(&f.proxy, &req).await).contains("429") {
            limited += 1;
        }
    }
    assert_eq!(limited, 0, "10 per minute per source");
    assert_eq!(f.svc.counters.rate_limited.load(Relaxed), 0);
    let (_, req) = build_request(&fresh(), &params(), now());
    assert!(status(&send(&f.proxy, &req).await).contains("429"));
    assert_eq!(f.svc.counters.rate_limited.load(Relaxed), 1);
    assert_eq!(f.admitted.lock().unwrap().len(), 10);
}

#[tokio::test]
async fn rotation_invalidates_the_old_token() {
    let f = fixture().await;
    let old = fresh();
    f.svc.set_key(key(1), master(), 80);
    let (_, req) = build_request(&old, &params(), now());
    assert_eq!(
        status(&send(&f.proxy, &req).await),
        "HTTP/1.1 404 Not Found"
    );
    let new = mint(&key(1), now() + 3600);
    let (nonce, req) = build_request(&new, &params(), now());
    let raw = send(&f.proxy, &req).await;
    assert!(read_response(&new, &nonce, &raw).is_ok());
}

/// Issue 13 attack 6: the token was multi-use and never expired. A token admits once; a
/// spent one (here or on another member, learned from gossip) and an expired one get
/// exactly the answer of a wrong token: the target's, like any unknown path.
#[tokio::test]
async fn a_token_admits_once_and_never_after_it_expires() {
    let f = fixture().await;
    let wrong = mint(&key(7), now() + 3600);
    let (_, req) = build_request(&wrong, &params(), now());
    let answer_to_wrong = send(&f.proxy, &req).await;
    assert_eq!(status(&answer_to_wrong), "HTTP/1.1 404 Not Found");

    let token = fresh();
    let (nonce, req) = build_request(&token, &params(), now());
    assert!(read_response(&token, &nonce, &send(&f.proxy, &req).await).is_ok());
    // Spent here: a new request (new nonce) with the same token.
    let (_, again) = build_request(&token, &params(), now());
    let spent_here = send(&f.proxy, &again).await;
    // Spent on another member: learned from its gossip.
    let elsewhere = fresh();
    assert_eq!(
        f.svc
            .learn_spent(&format!("{} {}", elsewhere.path_id(), elsewhere.expires())),
        1
    );
    let (_, req) = build_request(&elsewhere, &params(), now());
    let spent_elsewhere = send(&f.proxy, &req).await;
    // Expired a second ago.
    let expired = mint(&key(0), now() - 1);
    let (_, req) = build_request(&expired, &params(), now());
    let too_late = send(&f.proxy, &req).await;
    for (what, raw) in [
        ("spent here", spent_here),
        ("spent elsewhere", spent_elsewhere),
        ("expired", too_late),
    ] {
        assert_eq!(
            raw, answer_to_wrong,
            "{what}: not the answer to a wrong token"
        );
    }
    assert_eq!(f.admitted.lock().unwrap().len(), 1, "admitted once");
    assert_eq!(f.svc.counters.bad_token.load(Relaxed), 4);
}

/// The joining side reads answers from whatever sits at the master address: a mutated
/// answer is refused (with a message that never echoes the token) or, when the mutation
/// only touched unauthenticated head lines, yields exactly the original grant.
#[tokio::test]
async fn mutated_answers_are_refused_or_harmless() {
    let f = fixture().await;
    let token = fresh();
    let (nonce, req) = build_request(&token, &params(), now());
    let raw = send(&f.proxy, &req).await;
    let original = serde_json::to_string(&read_response(&token, &nonce, &raw).unwrap()).unwrap();
    let encoded = token.encode();
    let mut g = Mutator::new(0xfeed);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let m = g.mutate(&raw);
        match read_response(&token, &nonce, &m) {
            Ok(grant) => {
                ok += 1;
                assert_eq!(serde_json::to_string(&grant).unwrap(), original);
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().contains(encoded.as_str()));
            }
        }
    }
    eprintln!("answers: {ok} mutated answers still valid (head-only changes), {refused} refused");
    assert!(refused > 10_000);
}

/// Tokens are pasted by people: every mutation of a valid token is refused or decodes to
/// a token, never panics, and the error never repeats the text it was given.
#[test]
fn mutated_tokens_are_refused_without_echo() {
    let token = mint(&key(0), 1_790_000_000);
    let text = token.encode();
    let mut g = Mutator::new(0x70c3);
    let mut refused = 0;
    for _ in 0..20_000 {
        let m = String::from_utf8_lossy(&g.mutate(text.as_bytes())).into_owned();
        if let Err(e) = JoinToken::parse(&m) {
            refused += 1;
            let e = e.to_string();
            // No 12-character run of the input in the message (tokens are secrets).
            let chars: Vec<char> = m.chars().collect();
            for w in chars.windows(12) {
                let s: String = w.iter().collect();
                assert!(!e.contains(&s), "error echoes the token: {e}");
            }
        }
    }
    assert!(refused > 15_000, "{refused}");
}

/// Mutated join requests from several sources over the real proxy: every connection gets
/// an answer or is closed (nothing hangs), at most the one intact nonce is ever admitted,
/// and the proxy keeps forwarding ordinary requests to the target.
#[tokio::test]
async fn mutated_requests_never_hang_or_admit_twice() {
    let f = fixture().await;
    let token = fresh();
    let (_, req) = build_request(&token, &params(), now());
    let mut g = Mutator::new(0x12345);
    for i in 0..400 {
        let m = g.mutate(&req);
        // Sources 127.0.0.2-7: the per-source limit (10/min) lets more mutations reach
        // the parser than one source would.
        let src = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 6) as u8);
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((src, 0))).unwrap();
        let mut s = sock.connect(f.proxy.local_addr()).await.unwrap();
        let _ = s.write_all(&m).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("a mutated join request hung the connection")
            .ok();
    }
    assert!(f.admitted.lock().unwrap().len() <= 1);
    assert_eq!(
        f.svc.counters.accepted.load(Relaxed) as usize,
        f.admitted.lock().unwrap().len()
    );
    let rejected: u64 = f.svc.counters.rejections().iter().map(|(_, n)| n).sum();
    eprintln!(
        "requests: {} admitted, {rejected} refused by the join endpoint, {} reached the target",
        f.admitted.lock().unwrap().len(),
        f.seen.lock().unwrap().len()
    );
    let raw = send(&f.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&raw), "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn a_removed_key_is_told_why_and_counted_apart() {
    let f = fixture().await;
    f.svc.set_admitter(Arc::new(|_a: Admission| {
        Box::pin(async {
            Err(AdmitError::Removed(Box::new(Removal {
                name: "node4".into(),
                public_key: "d2dwdWJsaWNrZXl3Z3B1YmxpY2tleXdncHVibGljaz0=".into(),
                identity: "-".into(),
                serial: 0,
                at: 1_790_000_000,
                by: "node3".into(),
                signature: String::new(),
            })))
        })
    }));
    let token = fresh();
    let (nonce, req) = build_request(&token, &params(), now());
    let raw = send(&f.proxy, &req).await;
    assert_eq!(status(&raw), "HTTP/1.1 403 Forbidden");
    let err = read_response(&token, &nonce, &raw).unwrap_err().to_string();
    assert!(
        err.contains("was removed from the cluster by node3"),
        "{err}"
    );
    assert_eq!(f.svc.counters.removed.load(Relaxed), 1);
    assert_eq!(f.svc.counters.failed.load(Relaxed), 0);
    assert_eq!(f.svc.counters.accepted.load(Relaxed), 0);
    assert!(f.seen.lock().unwrap().is_empty());
}

/// Issue 13 attack 6: names were not checked at admission (two nodes with the default host
/// name hid each other). The joiner is told why, the refusal is counted apart, and the token
/// is not spent by it: the same token admits under another name.
#[tokio::test]
async fn a_taken_name_is_told_to_the_joiner_and_the_token_stays_good() {
    let f = fixture().await;
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (r2, a2) = (refuse.clone(), f.admitted.clone());
    f.svc.set_admitter(Arc::new(move |a: Admission| {
        let refuse = r2.load(Relaxed);
        a2.lock().unwrap().push(a.clone());
        Box::pin(async move {
            if refuse {
                return Err(AdmitError::NameTaken {
                    name: a.name,
                    removed: false,
                });
            }
            Err(AdmitError::KeyOfAnotherNode {
                key: a.wg_public_key,
                holder: "node2".into(),
            })
        })
    }));
    let token = fresh();
    let (nonce, req) = build_request(&token, &params(), now());
    let raw = send(&f.proxy, &req).await;
    assert_eq!(status(&raw), "HTTP/1.1 409 Conflict");
    let err = read_response(&token, &nonce, &raw).unwrap_err().to_string();
    assert!(
        err.contains("name node4 is already taken") && err.contains("--name"),
        "{err}"
    );
    refuse.store(false, Relaxed);
    let (nonce, req) = build_request(&token, &params(), now());
    let raw = send(&f.proxy, &req).await;
    assert_eq!(
        status(&raw),
        "HTTP/1.1 409 Conflict",
        "the token was not spent"
    );
    let err = read_response(&token, &nonce, &raw).unwrap_err().to_string();
    assert!(err.contains("already belongs to member node2"), "{err}");
    assert_eq!(f.svc.counters.collision.load(Relaxed), 2);
    assert_eq!(f.svc.counters.failed.load(Relaxed), 0);
    assert!(f.seen.lock().unwrap().is_empty());
}

/// A join that reaches a worker (it holds the cluster secret, not the master key): the
/// worker cannot check the request nor certify the node, so it answers 503 with a clear
/// sentence, the joiner's client takes it as "ask again" (over a new circuit), and the
/// token stays good for the eligible node that answers next.
#[tokio::test]
async fn a_worker_sends_the_joiner_elsewhere_without_spending_the_token() {
    let f = fixture().await;
    f.svc.set_key(
        JoinKey::derive(SECRET, None, &JoinGeneration::first(0)),
        master(),
        80,
    );
    let token = fresh();
    let (nonce, req) = build_request(&token, &params(), now());
    let raw = send(&f.proxy, &req).await;
    assert_eq!(status(&raw), "HTTP/1.1 503 Service Unavailable");
    let e = read_response(&token, &nonce, &raw).unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string().contains("does not hold the master key"),
        "{e}"
    );
    assert!(f.admitted.lock().unwrap().is_empty());
    assert!(f.seen.lock().unwrap().is_empty());
    assert_eq!(f.svc.counters.not_eligible.load(Relaxed), 1);
    // The next answer comes from an eligible node: the token was not spent.
    f.svc.set_key(key(0), master(), 80);
    let (nonce, req) = build_request(&token, &params(), now());
    assert!(read_response(&token, &nonce, &send(&f.proxy, &req).await).is_ok());
}
