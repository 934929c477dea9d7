//! The join endpoint: the request a joining node sends (through a real [`JoinService`]),
//! the answer it reads ([`read_response`]), and `classify`, the first look at every client
//! connection of the public port.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustbalance_hs::OnionAddress;
use rustbalance_node::join::{
    build_request, read_response, Admission, AdmitError, AdmitResult, Admitter, JoinGeneration,
    JoinGrant, JoinKey, JoinParams, JoinService, JoinToken, MemberInfo, PATH_PREFIX,
};
use rustbalance_proxy::{Intercept, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::time::timeout;

/// The join service's clock (Unix seconds); seeds are built for it.
pub const JOIN_NOW: u64 = 1_795_000_000;
/// Hex digits of a token's path id (`JoinToken::path_id`).
const PATH_ID_HEX: usize = 32;

/// The join key of the targets' cluster (generation 3).
fn join_key() -> JoinKey {
    JoinKey::derive(
        b"rustbalance fuzzing cluster secret",
        Some(b"rustbalance fuzzing authority secret"),
        &JoinGeneration::first(3),
    )
}

/// The token every join target uses (the same every time; it expires in 2096, after
/// [`JOIN_NOW`] and the real clock `join_classify` runs on).
pub fn join_token() -> JoinToken {
    join_key()
        .mint_with(
            OnionAddress::from_public_key([7u8; 32]),
            80,
            4_000_000_000,
            [1, 2, 3],
        )
        .expect("a key with the authority secret mints")
}

/// The join service of the targets takes [`join_token`].
fn take_join_token(svc: &JoinService) {
    let t = join_token();
    svc.set_key(join_key(), t.master, t.port);
}

/// What a joining node says in the structured mode of `join_request`: four lines, name,
/// WireGuard key, endpoint (a default endpoint when the third does not parse), identity.
pub fn join_params(text: &str) -> JoinParams {
    let mut l = text.split('\n');
    let mut next = || l.next().unwrap_or("").to_string();
    let (name, wg_public_key) = (next(), next());
    let endpoint = next()
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([192, 0, 2, 1], 51820)));
    JoinParams {
        name,
        wg_public_key,
        endpoint,
        identity: next(),
    }
}

fn grant(name: &str) -> JoinGrant {
    JoinGrant {
        v: 1,
        cluster_id: "rustbalance".into(),
        cluster_secret: "00".repeat(32),
        gossip_port: 7946,
        join_generation: 3,
        join_salt: String::new(),
        members: vec![MemberInfo {
            name: name.into(),
            wg_public_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            endpoint: SocketAddr::from(([192, 0, 2, 2], 51820)),
        }],
        admitted_by: "node1".into(),
        authority: String::new(),
        cert: String::new(),
    }
}

/// Admits every request, except a key starting with `x` (refused as invalid).
fn admitter() -> Admitter {
    Arc::new(
        |a: Admission| -> Pin<Box<dyn Future<Output = AdmitResult> + Send>> {
            Box::pin(async move {
                if a.wg_public_key.starts_with('x') {
                    Err(AdmitError::InvalidKey)
                } else {
                    Ok(grant(&a.name))
                }
            })
        },
    )
}

struct Harness {
    rt: Runtime,
    listener: TcpListener,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = crate::new_runtime();
        let listener = rt
            .block_on(TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind a loopback listener");
        Harness { rt, listener }
    })
}

/// One request through a fresh [`JoinService`] (fresh rate limiter and replay cache, the
/// fixed clock [`JOIN_NOW`]), as the proxy hands it over: `first` is everything the client
/// sent, then it closes its side. The service's answer, whole.
fn serve_once(first: Vec<u8>) -> Vec<u8> {
    let h = harness();
    h.rt.block_on(async {
        let Ok(mut client) = TcpStream::connect(h.listener.local_addr().expect("bound")).await
        else {
            return Vec::new();
        };
        let Ok((server, _)) = h.listener.accept().await else {
            return Vec::new();
        };
        let svc = JoinService::with_clock(|| JOIN_NOW);
        take_join_token(&svc);
        svc.set_admitter(admitter());
        let task = tokio::spawn(svc.serve(server, first, Some(1)));
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let _ = timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
        let _ = task.await;
        answer
    })
}

/// The join endpoint on any request. The first byte chooses between the rest as the raw
/// request (head and JSON body: reaches the parsers; its MAC is wrong) and the rest as
/// [`join_params`] of a request built and MACed by the joining side's code (reaches every
/// check after the MAC and the admitter). Property: a `200` answer is a grant the joining
/// side accepts.
pub fn join_request(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        serve_once(rest.to_vec());
        return;
    }
    let token = join_token();
    let params = join_params(&String::from_utf8_lossy(rest));
    let (nonce, request) = build_request(&token, &params, JOIN_NOW);
    let answer = serve_once(request);
    if answer.starts_with(b"HTTP/1.1 200") {
        let read = read_response(&token, &nonce, &answer);
        assert!(read.is_ok(), "our own grant is refused: {read:?}");
    }
}

/// The joining side on any answer. The first byte chooses between the rest as the whole
/// answer and the rest as the body of a `200` whose MAC is right (reaches the grant's
/// JSON).
pub fn join_answer(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = join_token();
    let nonce = "0123456789abcdef0123456789abcdef";
    let raw = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mac = token.response_mac(nonce, rest);
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-RustBalance-MAC: {}\r\n\r\n",
            rest.len(),
            hex::encode(&mac)
        )
        .into_bytes();
        r.extend_from_slice(rest);
        r
    };
    let _ = read_response(&token, nonce, &raw);
}

/// `POST <PATH_PREFIX>`: the part of a join request line that does not depend on the token.
fn line_start() -> Vec<u8> {
    [b"POST ", PATH_PREFIX.as_bytes()].concat()
}

/// Whether `x` is a strict prefix of some join request line
/// `POST <PATH_PREFIX><32 lowercase hex> HTTP/1.1\r\n` (or `HTTP/1.0`).
pub fn strict_prefix_of_a_join_line(x: &[u8]) -> bool {
    let start = line_start();
    let id_end = start.len() + PATH_ID_HEX;
    [&b" HTTP/1.1\r\n"[..], b" HTTP/1.0\r\n"]
        .iter()
        .any(|tail| {
            x.len() < id_end + tail.len()
                && x.iter().enumerate().all(|(i, &b)| {
                    if i < start.len() {
                        b == start[i]
                    } else if i < id_end {
                        b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
                    } else {
                        b == tail[i - id_end]
                    }
                })
        })
}

fn classify_service() -> &'static Arc<JoinService> {
    static S: OnceLock<Arc<JoinService>> = OnceLock::new();
    S.get_or_init(|| {
        let s = JoinService::new();
        take_join_token(&s);
        s
    })
}

/// `classify` as a property, on every prefix of the input (the proxy calls it again as
/// bytes arrive): undecided only while the bytes are a strict prefix of a join request
/// line ([`strict_prefix_of_a_join_line`]); once decided, more bytes never change the
/// verdict; `Take` only for the current token's request line.
pub fn join_classify(data: &[u8]) {
    let data = &data[..data.len().min(256)];
    let svc = classify_service();
    let mut decided: Option<(usize, Verdict)> = None;
    for cut in 0..=data.len() {
        let x = &data[..cut];
        let v = svc.classify(x);
        match decided {
            None if v == Verdict::Undecided => assert!(
                strict_prefix_of_a_join_line(x),
                "undecided on {:?}, which no join request line starts with",
                String::from_utf8_lossy(x)
            ),
            None => decided = Some((cut, v)),
            Some((at, d)) => assert_eq!(
                v,
                d,
                "{d:?} after {at} bytes, then {v:?} after {cut}: {:?}",
                String::from_utf8_lossy(x)
            ),
        }
    }
    if let Some((_, Verdict::Take)) = decided {
        let line = format!("POST {} ", join_token().path());
        assert!(
            data.starts_with(line.as_bytes()),
            "taken without the current token's line: {:?}",
            String::from_utf8_lossy(data)
        );
    }
}
