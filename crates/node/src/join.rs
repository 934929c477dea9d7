//! Joining a cluster over Tor with one token.
//!
//! A join token is one opaque string carrying the master address, its virtual port and a
//! 32-byte join secret. The join secret is derived from the cluster secret and a *join
//! generation* (`HKDF-SHA256`), so every node can check tokens without any secret in gossip,
//! and `token rotate` only has to raise the generation (gossiped as a number).
//!
//! ```text
//!  new node ── tor SOCKS ──▶ master.onion:port ──▶ some node's tor ──▶ its proxy
//!     POST /.well-known/rustbalance/join/<path id>        │ Intercept::classify: path id
//!     {ts, nonce, name, wg key, endpoint, mac}             │ matches the current token?
//!                                                          ├─ no:  bytes go to the target untouched
//!                                                          └─ yes: JoinService::serve
//!                                 rate limit ─▶ body limit ─▶ MAC ─▶ clock ─▶ replay ─▶ admit
//!     ◀── 200 {cluster id, cluster secret, gossip port, members' WireGuard keys + endpoints}
//!         X-RustBalance-MAC: HMAC(join secret, "response" | nonce | body)
//! ```
//!
//! The path id is an HMAC of the join secret, compared in constant time: without the token
//! nobody can form it, and whatever does not match is answered by the target exactly as any
//! other request — the endpoint reveals nothing to the unauthenticated. The stream is
//! end-to-end encrypted by Tor and reaches only nodes listed in the descriptor signed with
//! the master key; the MACs bind both directions to the token and the request's nonce.
//! The master key is never sent.

use crate::err::{Error, Result};
use hmac::{Hmac, Mac};
use rustbalance_hs::OnionAddress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// Tokens start with this (and a dash).
pub const TOKEN_PREFIX: &str = "rbjoin1";
/// Request path of the join endpoint, followed by the token's path id.
pub const PATH_PREFIX: &str = "/.well-known/rustbalance/join/";
/// Largest request body accepted.
pub const MAX_BODY: usize = 8 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 4 * 1024;
/// Largest response a joining node reads.
const MAX_RESPONSE: usize = 256 * 1024;
/// Clock difference tolerated between the joining node and the cluster.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Join requests accepted per minute per tor circuit (or per peer address).
const PER_SOURCE_PER_MIN: usize = 10;
/// Join requests accepted per minute in total.
const GLOBAL_PER_MIN: usize = 60;
/// Length of the path id in hex characters.
const PATH_ID_HEX: usize = 32;
/// Bytes of a token: public key, port, join secret, check.
const TOKEN_BYTES: usize = 32 + 2 + 32 + 2;
/// The response header carrying the response MAC.
const MAC_HEADER: &str = "x-rustbalance-mac";
/// How long a join request may take to arrive, head and body (over Tor: seconds).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // Invariant: HMAC takes keys of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

/// A join token: the master address, its port and the join secret.
pub struct JoinToken {
    /// The master address the cluster serves.
    pub master: OnionAddress,
    /// The virtual port clients (and joining nodes) connect to.
    pub port: u16,
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinToken({}:{}, <secret>)", self.master, self.port)
    }
}

/// A join generation: a counter raised by every rotation (the highest wins) and, from the
/// first rotation on, 16 random bytes of salt (ties between equal counters go to the
/// higher salt, so concurrent rotations converge). Written `N` or `N SALTHEX` in the
/// `join-generation` file and the `join_gen` gossip key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct JoinGeneration {
    /// The counter.
    pub n: u64,
    /// The salt: empty, or 16 bytes.
    pub salt: Vec<u8>,
}

impl JoinGeneration {
    /// Generation `n` without salt.
    pub fn first(n: u64) -> JoinGeneration {
        JoinGeneration {
            n,
            salt: Vec::new(),
        }
    }

    /// The next generation, with a fresh random salt.
    pub fn next(&self) -> JoinGeneration {
        let mut salt = vec![0u8; 16];
        rand::RngExt::fill(&mut rand::rng(), &mut salt[..]);
        JoinGeneration {
            n: self.n.saturating_add(1),
            salt,
        }
    }

    /// Parse `N` or `N SALTHEX` (32 hex digits); `None` for anything else.
    pub fn parse(text: &str) -> Option<JoinGeneration> {
        let mut f = text.split_whitespace();
        let n = f.next()?.parse().ok()?;
        let salt = match f.next() {
            None => Vec::new(),
            Some(h) if h.len() == 32 => hex::decode(h).ok()?,
            Some(_) => return None,
        };
        f.next().is_none().then_some(JoinGeneration { n, salt })
    }
}

impl std::fmt::Display for JoinGeneration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.salt.is_empty() {
            write!(f, "{}", self.n)
        } else {
            write!(f, "{} {}", self.n, hex::encode(&self.salt))
        }
    }
}

/// The salt is not secret from members, but it is never logged whole.
impl std::fmt::Debug for JoinGeneration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JoinGeneration({}{})",
            self.n,
            if self.salt.is_empty() { "" } else { ", salted" }
        )
    }
}

impl JoinToken {
    /// The token of join generation `generation` of the cluster with `cluster_secret`, with
    /// no salt (the first token of a cluster).
    pub fn derive(
        master: OnionAddress,
        port: u16,
        cluster_secret: &[u8],
        generation: u64,
    ) -> JoinToken {
        Self::derive_salted(
            master,
            port,
            cluster_secret,
            &JoinGeneration::first(generation),
        )
    }

    /// The token of `generation`. A salted generation's token cannot be derived from the
    /// cluster secret alone: the salt is random, made at rotation and shared only over the
    /// mesh, so a removed machine that kept the secret cannot compute later tokens.
    pub fn derive_salted(
        master: OnionAddress,
        port: u16,
        cluster_secret: &[u8],
        generation: &JoinGeneration,
    ) -> JoinToken {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"rustbalance-join v1"), cluster_secret);
        let mut secret = Zeroizing::new([0u8; 32]);
        let mut info = b"join token ".to_vec();
        info.extend_from_slice(&generation.n.to_be_bytes());
        info.extend_from_slice(&generation.salt);
        // Invariant: 32 bytes is far below HKDF-SHA256's output limit.
        hk.expand(&info, secret.as_mut()).unwrap_or_default();
        JoinToken {
            master,
            port,
            secret,
        }
    }

    /// The opaque string handed to operators.
    pub fn encode(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(TOKEN_BYTES));
        raw.extend_from_slice(self.master.public_key());
        raw.extend_from_slice(&self.port.to_be_bytes());
        raw.extend_from_slice(&self.secret[..]);
        let check = Sha256::digest(&raw[..]);
        raw.extend_from_slice(&check[..2]);
        Zeroizing::new(format!(
            "{TOKEN_PREFIX}-{}",
            data_encoding::BASE32_NOPAD
                .encode(&raw)
                .to_ascii_lowercase()
        ))
    }

    /// Parse a token (surrounding white space is ignored). Errors never echo the token.
    pub fn parse(text: &str) -> Result<JoinToken> {
        let bad = |why: &str| Error::Other(format!("this is not a RustBalance join token: {why}"));
        let t = text.trim();
        let body = t
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .ok_or_else(|| bad(&format!("it does not start with {TOKEN_PREFIX}-")))?;
        let raw = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(body.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad("it is not base32 (was it cut or changed when copied?)"))?,
        );
        if raw.len() != TOKEN_BYTES {
            return Err(bad(&format!(
                "it holds {} bytes, a token holds {TOKEN_BYTES} (was it cut when copied?)",
                raw.len()
            )));
        }
        let (content, check) = raw.split_at(TOKEN_BYTES - 2);
        if Sha256::digest(content)[..2] != *check {
            return Err(bad("its checksum does not match (a typo?)"));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&content[..32]);
        let master = OnionAddress::from_public_key(pk);
        let port = u16::from_be_bytes([content[32], content[33]]);
        if port == 0 {
            return Err(bad("its port is 0"));
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&content[34..66]);
        Ok(JoinToken {
            master,
            port,
            secret,
        })
    }

    /// The hex path id of the join endpoint for this token.
    pub fn path_id(&self) -> String {
        let tag = hmac(&self.secret[..], &[b"path"]).finalize().into_bytes();
        hex::encode(&tag[..PATH_ID_HEX / 2])
    }

    /// The request line's path.
    pub fn path(&self) -> String {
        format!("{PATH_PREFIX}{}", self.path_id())
    }

    fn request_mac(&self, r: &JoinRequest) -> Vec<u8> {
        hmac(
            &self.secret[..],
            &[
                b"request",
                &r.ts.to_be_bytes(),
                r.nonce.as_bytes(),
                r.name.as_bytes(),
                r.wg_public_key.as_bytes(),
                r.endpoint.to_string().as_bytes(),
            ],
        )
        .finalize()
        .into_bytes()
        .to_vec()
    }

    fn response_mac(&self, nonce: &str, body: &[u8]) -> Vec<u8> {
        hmac(&self.secret[..], &[b"response", nonce.as_bytes(), body])
            .finalize()
            .into_bytes()
            .to_vec()
    }
}

/// What a joining node sends (JSON body).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Protocol version (1).
    pub v: u32,
    /// Unix time of the request.
    pub ts: u64,
    /// 32 random hex characters, never reused.
    pub nonce: String,
    /// The joining node's name.
    pub name: String,
    /// Its WireGuard public key (base64).
    pub wg_public_key: String,
    /// Where its WireGuard listens, as the other nodes reach it.
    pub endpoint: SocketAddr,
    /// HMAC of the fields above with the join secret (hex).
    pub mac: String,
}

/// One cluster member as a joining node learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node name.
    pub name: String,
    /// WireGuard public key (base64).
    pub wg_public_key: String,
    /// WireGuard endpoint.
    pub endpoint: SocketAddr,
}

/// What the cluster answers a valid join request with.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinGrant {
    /// Protocol version (1).
    pub v: u32,
    /// The cluster id (also the mesh's address prefix).
    pub cluster_id: String,
    /// The cluster secret (hex).
    pub cluster_secret: String,
    /// Gossip UDP port on the overlay.
    pub gossip_port: u16,
    /// The join generation the token belongs to.
    pub join_generation: u64,
    /// Its salt (hex; empty for an unsalted generation, and from older nodes).
    #[serde(default)]
    pub join_salt: String,
    /// Members reachable over the mesh (the admitting node first).
    pub members: Vec<MemberInfo>,
    /// The node that admitted the request.
    pub admitted_by: String,
}

impl std::fmt::Debug for JoinGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinGrant")
            .field("cluster_id", &self.cluster_id)
            .field("gossip_port", &self.gossip_port)
            .field("members", &self.members)
            .field("admitted_by", &self.admitted_by)
            .finish_non_exhaustive()
    }
}

impl Drop for JoinGrant {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.cluster_secret);
    }
}

/// A request that passed every check, handed to the node to admit.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The request's nonce (gossiped, so that no node takes the request again).
    pub nonce: String,
    /// The new node's name.
    pub name: String,
    /// Its WireGuard public key (base64, validated by the admitter).
    pub wg_public_key: String,
    /// Its WireGuard endpoint.
    pub endpoint: SocketAddr,
}

/// Why an admission did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitError {
    /// The key was removed from the cluster (`rustbalance node remove`): answered
    /// `403 Forbidden` with the reason, counted as `removed`.
    Removed(String),
    /// Anything else (invalid key, the mesh refused the peer, ...): `500`, counted
    /// as `failed`.
    Failed(String),
}

impl From<String> for AdmitError {
    fn from(why: String) -> Self {
        AdmitError::Failed(why)
    }
}

/// What an [`Admitter`] returns.
pub type AdmitResult = std::result::Result<JoinGrant, AdmitError>;

/// Admits a new node: adds it to the mesh and returns the grant.
pub type Admitter =
    Arc<dyn Fn(Admission) -> Pin<Box<dyn Future<Output = AdmitResult> + Send>> + Send + Sync>;

/// Counters of the join endpoint (exported to Prometheus).
#[derive(Debug, Default)]
pub struct JoinCounters {
    /// Nodes admitted.
    pub accepted: AtomicU64,
    /// Requests on the join path with a path id or MAC that matches no current token
    /// (the path-id ones were passed to the target like any request).
    pub bad_token: AtomicU64,
    /// Replayed requests (nonce already seen).
    pub replayed: AtomicU64,
    /// Bodies over the limit, or no length given.
    pub oversized: AtomicU64,
    /// Requests over the rate limit.
    pub rate_limited: AtomicU64,
    /// Requests whose time is too far from ours.
    pub stale: AtomicU64,
    /// Malformed requests (bad head, bad JSON, bad fields).
    pub malformed: AtomicU64,
    /// Valid requests from a WireGuard key removed from the cluster.
    pub removed: AtomicU64,
    /// Valid requests the node failed to admit.
    pub failed: AtomicU64,
}

impl JoinCounters {
    /// `(reason, count)` of every rejection.
    pub fn rejections(&self) -> [(&'static str, u64); 8] {
        [
            ("bad_token", self.bad_token.load(Relaxed)),
            ("replayed", self.replayed.load(Relaxed)),
            ("oversized", self.oversized.load(Relaxed)),
            ("rate_limited", self.rate_limited.load(Relaxed)),
            ("stale", self.stale.load(Relaxed)),
            ("malformed", self.malformed.load(Relaxed)),
            ("removed", self.removed.load(Relaxed)),
            ("failed", self.failed.load(Relaxed)),
        ]
    }
}

/// Sliding one-minute windows per source and in total.
#[derive(Default)]
struct RateLimiter {
    per_source: HashMap<String, VecDeque<Instant>>,
    global: VecDeque<Instant>,
}

impl RateLimiter {
    fn allow(&mut self, source: &str, now: Instant) -> bool {
        let minute = Duration::from_secs(60);
        let prune = |q: &mut VecDeque<Instant>| {
            while q.front().is_some_and(|t| now.duration_since(*t) >= minute) {
                q.pop_front();
            }
        };
        prune(&mut self.global);
        self.per_source.retain(|_, q| {
            prune(q);
            !q.is_empty()
        });
        let q = self.per_source.entry(source.to_string()).or_default();
        if q.len() >= PER_SOURCE_PER_MIN || self.global.len() >= GLOBAL_PER_MIN {
            return false;
        }
        q.push_back(now);
        self.global.push_back(now);
        true
    }
}

/// Nonces seen within the clock window (a replayed request is refused).
#[derive(Default)]
struct ReplayCache {
    seen: HashMap<String, u64>,
}

impl ReplayCache {
    /// Remember `nonce`; false if it was seen already.
    fn insert(&mut self, nonce: &str, now: u64) -> bool {
        let keep = 2 * MAX_SKEW.as_secs() + 60;
        self.seen.retain(|_, t| now.saturating_sub(*t) <= keep);
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_string(), now);
        true
    }
}

/// The join endpoint of a node: an [`Intercept`](rustbalance_proxy::Intercept) on the proxy.
pub struct JoinService {
    token: RwLock<Option<JoinToken>>,
    admitter: RwLock<Option<Admitter>>,
    limiter: Mutex<RateLimiter>,
    replay: Mutex<ReplayCache>,
    /// Counters, shared with the metrics.
    pub counters: Arc<JoinCounters>,
    clock: fn() -> u64,
}

fn unix_now() -> u64 {
    rustbalance_hs::time::unix_secs(SystemTime::now())
}

const REQUEST_START: &[u8] = b"POST ";

impl JoinService {
    /// A join endpoint that takes nothing until [`set_token`](Self::set_token) and
    /// [`set_admitter`](Self::set_admitter) are called.
    pub fn new() -> Arc<JoinService> {
        Self::with_clock(unix_now)
    }

    /// As [`new`](Self::new), with a fake clock (tests).
    pub fn with_clock(clock: fn() -> u64) -> Arc<JoinService> {
        Arc::new(JoinService {
            token: RwLock::new(None),
            admitter: RwLock::new(None),
            limiter: Mutex::new(RateLimiter::default()),
            replay: Mutex::new(ReplayCache::default()),
            counters: Arc::new(JoinCounters::default()),
            clock,
        })
    }

    /// Accept this token from now on (and no other).
    pub fn set_token(&self, token: JoinToken) {
        if let Ok(mut t) = self.token.write() {
            *t = Some(token);
        }
    }

    /// Remember a nonce another node admitted (from gossip), so that a request replayed to
    /// this node is refused too.
    pub fn note_nonce(&self, nonce: &str) {
        if let Ok(mut r) = self.replay.lock() {
            r.insert(nonce, (self.clock)());
        }
    }

    /// Accept no token until the next [`JoinService::set_token`] (a removal is under way:
    /// the removed machine knows the current token). Requests on the join path then go to
    /// the target like any unknown path, and are counted as `bad_token`.
    pub fn close(&self) {
        if let Ok(mut t) = self.token.write() {
            *t = None;
        }
    }

    /// Whether a token is accepted right now.
    pub fn is_open(&self) -> bool {
        self.token.read().map(|t| t.is_some()).unwrap_or(false)
    }

    /// Take nothing any more (shutdown): forget the token and the admitter.
    pub fn clear(&self) {
        self.close();
        if let Ok(mut s) = self.admitter.write() {
            *s = None;
        }
    }

    /// Who admits valid requests.
    pub fn set_admitter(&self, a: Admitter) {
        if let Ok(mut s) = self.admitter.write() {
            *s = Some(a);
        }
    }

    fn prefix() -> Vec<u8> {
        let mut p = REQUEST_START.to_vec();
        p.extend_from_slice(PATH_PREFIX.as_bytes());
        p
    }

    async fn handle(self: Arc<Self>, mut s: TcpStream, mut buf: Vec<u8>, source: String) {
        let c = &self.counters;
        let reply = match self.process(&mut s, &mut buf, &source).await {
            Ok((nonce, body)) => {
                c.accepted.fetch_add(1, Relaxed);
                let mac = self
                    .token
                    .read()
                    .ok()
                    .and_then(|t| {
                        t.as_ref()
                            .map(|t| hex::encode(t.response_mac(&nonce, &body)))
                    })
                    .unwrap_or_default();
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{MAC_HEADER}: {mac}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            }
            Err((status, counter, why)) => {
                counter(c).fetch_add(1, Relaxed);
                tracing::info!("join request refused: {why}");
                let body = format!("{why}\n");
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        };
        let _ = s.write_all(&reply).await;
        let _ = s.shutdown().await;
    }

    async fn process(
        &self,
        s: &mut TcpStream,
        buf: &mut Vec<u8>,
        source: &str,
    ) -> std::result::Result<(String, Vec<u8>), Refusal> {
        let allowed = self
            .limiter
            .lock()
            .map(|mut l| l.allow(source, Instant::now()))
            .unwrap_or(false);
        if !allowed {
            return Err(refuse(
                "429 Too Many Requests",
                |c| &c.rate_limited,
                "too many join requests; wait a minute",
            ));
        }
        // One deadline for reading the whole request, not only per read: a client trickling
        // a byte every few seconds must not hold a task for hours. (Only the reading: the
        // admission below is never cut off halfway.)
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        // The head.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(refuse(
                    "431 Request Header Fields Too Large",
                    |c| &c.oversized,
                    "request head too large",
                ));
            }
            read_more(s, buf, deadline)
                .await
                .map_err(|_| malformed("the request head broke off"))?;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim().parse::<usize>());
        let length = match length {
            Some(Ok(n)) if n <= MAX_BODY => n,
            Some(Ok(n)) => {
                return Err(refuse(
                    "413 Content Too Large",
                    |c| &c.oversized,
                    &format!("body of {n} bytes; the limit is {MAX_BODY}"),
                ))
            }
            _ => {
                return Err(refuse(
                    "411 Length Required",
                    |c| &c.oversized,
                    "a join request needs a Content-Length",
                ))
            }
        };
        while buf.len() < head_end + length {
            read_more(s, buf, deadline)
                .await
                .map_err(|_| malformed("the request body broke off"))?;
        }
        if buf.len() > head_end + length {
            return Err(malformed("bytes after the request body"));
        }
        let req: JoinRequest = serde_json::from_slice(&buf[head_end..])
            .map_err(|e| malformed(&format!("the body is not a join request ({e})")))?;
        if req.v != 1 {
            return Err(malformed(&format!(
                "protocol version {} (this node speaks 1)",
                req.v
            )));
        }
        // The MAC, then the clock, then the nonce: nothing is remembered for forgeries.
        let valid = {
            let t = self.token.read().map_err(|_| malformed("internal lock"))?;
            let Some(t) = t.as_ref() else {
                return Err(refuse(
                    "403 Forbidden",
                    |c| &c.bad_token,
                    "token not accepted",
                ));
            };
            let want = t.request_mac(&req);
            let got = hex::decode(&req.mac).unwrap_or_default();
            bool::from(want.ct_eq(&got))
        };
        if !valid {
            return Err(refuse(
                "403 Forbidden",
                |c| &c.bad_token,
                "token not accepted",
            ));
        }
        let now = (self.clock)();
        if now.abs_diff(req.ts) > MAX_SKEW.as_secs() {
            return Err(refuse(
                "403 Forbidden",
                |c| &c.stale,
                &format!(
                    "the joining node's clock is {} s off this node's (limit {} s): fix its time (NTP)",
                    now.abs_diff(req.ts),
                    MAX_SKEW.as_secs()
                ),
            ));
        }
        if req.nonce.len() != 32 || !req.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("the nonce must be 32 hex characters"));
        }
        let fresh = self
            .replay
            .lock()
            .map(|mut r| r.insert(&req.nonce, now))
            .unwrap_or(false);
        if !fresh {
            return Err(refuse("403 Forbidden", |c| &c.replayed, "replayed request"));
        }
        if !valid_name(&req.name) {
            return Err(malformed(
                "the node name must be 1-32 letters, digits, '-' or '_'",
            ));
        }
        let admitter = self.admitter.read().ok().and_then(|a| a.clone());
        let Some(admit) = admitter else {
            return Err(refuse(
                "503 Service Unavailable",
                |c| &c.failed,
                "this node is still starting; try again",
            ));
        };
        let grant = admit(Admission {
            nonce: req.nonce.clone(),
            name: req.name.clone(),
            wg_public_key: req.wg_public_key.clone(),
            endpoint: req.endpoint,
        })
        .await
        .map_err(|e| match e {
            AdmitError::Removed(why) => refuse("403 Forbidden", |c| &c.removed, &why),
            AdmitError::Failed(why) => refuse("500 Internal Server Error", |c| &c.failed, &why),
        })?;
        tracing::info!(node = %req.name, endpoint = %req.endpoint, "admitted a new node");
        let body = serde_json::to_vec(&grant).map_err(|e| malformed(&e.to_string()))?;
        Ok((req.nonce, body))
    }
}

type Refusal = (&'static str, fn(&JoinCounters) -> &AtomicU64, String);

fn refuse(status: &'static str, counter: fn(&JoinCounters) -> &AtomicU64, why: &str) -> Refusal {
    (status, counter, why.to_string())
}

fn malformed(why: &str) -> Refusal {
    refuse("400 Bad Request", |c| &c.malformed, why)
}

/// Node names: 1–32 of `[A-Za-z0-9_-]`.
pub fn valid_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn read_more(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> std::io::Result<()> {
    let mut chunk = [0u8; 2048];
    let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

impl rustbalance_proxy::Intercept for JoinService {
    fn classify(&self, first: &[u8]) -> rustbalance_proxy::Verdict {
        use rustbalance_proxy::Verdict;
        let prefix = Self::prefix();
        let n = first.len().min(prefix.len());
        if first[..n] != prefix[..n] {
            return Verdict::Pass;
        }
        if first.len() < prefix.len() + PATH_ID_HEX + 1 {
            return Verdict::Undecided;
        }
        let id = &first[prefix.len()..prefix.len() + PATH_ID_HEX];
        let end = first[prefix.len() + PATH_ID_HEX];
        let ok = self
            .token
            .read()
            .ok()
            .and_then(|t| {
                t.as_ref()
                    .map(|t| bool::from(t.path_id().as_bytes().ct_eq(id)))
            })
            .unwrap_or(false);
        if ok && end == b' ' {
            Verdict::Take
        } else {
            // Someone tried the join path with a token we do not accept (an old one after a
            // rotation, a typo, a guess): the target answers it like any unknown path.
            self.counters.bad_token.fetch_add(1, Relaxed);
            Verdict::Pass
        }
    }

    fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        first: Vec<u8>,
        circuit: Option<u32>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let source = match circuit {
            Some(c) => format!("circuit {c}"),
            None => stream
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| "?".into()),
        };
        Box::pin(self.handle(stream, first, source))
    }
}

/// What a joining node says about itself.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// Its name.
    pub name: String,
    /// Its WireGuard public key (base64).
    pub wg_public_key: String,
    /// Its WireGuard endpoint as the other nodes reach it.
    pub endpoint: SocketAddr,
}

/// Build the request bytes (head and body) for `token` with a fresh nonce.
pub fn build_request(token: &JoinToken, p: &JoinParams, now: u64) -> (String, Vec<u8>) {
    let mut nonce = [0u8; 16];
    rand::RngExt::fill(&mut rand::rng(), &mut nonce[..]);
    let mut req = JoinRequest {
        v: 1,
        ts: now,
        nonce: hex::encode(nonce),
        name: p.name.clone(),
        wg_public_key: p.wg_public_key.clone(),
        endpoint: p.endpoint,
        mac: String::new(),
    };
    req.mac = hex::encode(token.request_mac(&req));
    let body = serde_json::to_vec(&req).unwrap_or_default();
    let mut bytes = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token.path(),
        token.master,
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    (req.nonce, bytes)
}

/// Check a join response and take the grant out of it.
pub fn read_response(token: &JoinToken, nonce: &str, raw: &[u8]) -> Result<JoinGrant> {
    let fail = |m: String| Error::Other(m);
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(fail(
            "the cluster's answer broke off (no complete HTTP head); try again".into(),
        ));
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let status = head.lines().next().unwrap_or("").to_string();
    if !status.starts_with("HTTP/1.1 200") {
        let text: String = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        return Err(fail(
            if status.contains("404") || !status.starts_with("HTTP/1.1 4") {
                format!(
                "the cluster did not take the join request ({status}{}): the token is wrong or was rotated, or the service's target answered instead; ask for a current token (`rustbalance token show` on a member)",
                if text.is_empty() { String::new() } else { format!(": {text}") }
            )
            } else {
                format!("the cluster refused the join request ({status}): {text}")
            },
        ));
    }
    let mac = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(MAC_HEADER))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let want = token.response_mac(nonce, body);
    if !bool::from(want.ct_eq(&hex::decode(mac).unwrap_or_default())) {
        return Err(fail(
            "the join answer is not authenticated by the token (a wrong token, or not a RustBalance node answered)".into(),
        ));
    }
    let grant: JoinGrant = serde_json::from_slice(body)
        .map_err(|e| fail(format!("the join answer is malformed ({e})")))?;
    if grant.v != 1 {
        return Err(fail(format!(
            "the cluster speaks join protocol {} (this node speaks 1): use the same RustBalance version",
            grant.v
        )));
    }
    Ok(grant)
}

/// Join over Tor: connect through tor's SOCKS port to the master address, send the request,
/// check the answer. Gives up after `timeout`.
pub async fn request_join(
    socks: SocketAddr,
    token: &JoinToken,
    p: &JoinParams,
    timeout: Duration,
) -> Result<JoinGrant> {
    let work = async {
        let mut s = TcpStream::connect(socks)
            .await
            .map_err(|e| Error::Other(format!("cannot reach tor's SOCKS port {socks}: {e}")))?;
        rustbalance_tor::socks::connect(
            &mut s,
            &token.master.to_string(),
            token.port,
            &rustbalance_tor::socks::Isolation::Shared,
        )
        .await
        .map_err(|why| {
            Error::Other(format!(
                "cannot reach the cluster at {}:{} over Tor: {why}",
                token.master, token.port
            ))
        })?;
        let (nonce, bytes) = build_request(token, p, unix_now());
        s.write_all(&bytes)
            .await
            .map_err(|e| Error::Other(format!("sending the join request failed: {e}")))?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| Error::Other(format!("reading the join answer failed: {e}")))?;
        read_response(token, &nonce, &raw)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        Error::Other(format!(
            "no answer from the cluster at {} within {} s (is any node up? is this machine's clock right?)",
            token.master,
            timeout.as_secs()
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> OnionAddress {
        OnionAddress::from_public_key([7u8; 32])
    }

    #[test]
    fn token_round_trip_and_generations_differ() {
        let t = JoinToken::derive(addr(), 80, b"0123456789abcdef0123456789abcdef", 0);
        let s = t.encode();
        assert!(s.starts_with("rbjoin1-"));
        let back = JoinToken::parse(&format!("  {}\n", *s)).unwrap();
        assert_eq!(back.master, t.master);
        assert_eq!(back.port, 80);
        assert_eq!(back.path_id(), t.path_id());
        let t1 = JoinToken::derive(addr(), 80, b"0123456789abcdef0123456789abcdef", 1);
        assert_ne!(t1.path_id(), t.path_id());
        assert_ne!(*t1.encode(), *s);
        assert!(!format!("{t:?}").contains(&t.path_id()));
    }

    #[test]
    fn salted_generations_parse_order_and_change_the_token() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let g0 = JoinGeneration::first(0);
        let g1 = g0.next();
        assert_eq!(g1.n, 1);
        assert_eq!(g1.salt.len(), 16);
        assert_ne!(g1.salt, g0.next().salt);
        for g in [&g0, &g1] {
            assert_eq!(JoinGeneration::parse(&g.to_string()).as_ref(), Some(g));
            assert_eq!(JoinGeneration::parse(&format!("{g}\n")).as_ref(), Some(g));
        }
        assert!(!format!("{g1:?}").contains(&hex::encode(&g1.salt)));
        for bad in ["", "x", "-1", "1 abc", "1 zz", &format!("{g1} 1"), "1 0011"] {
            assert_eq!(JoinGeneration::parse(bad), None, "{bad:?}");
        }
        // Higher counter wins; equal counters: higher salt.
        let g2 = g1.next();
        assert!(g2 > g1 && g1 > g0);
        let (a, b) = (g1.clone(), g0.next());
        assert_eq!(a > b, a.salt > b.salt);
        // The salt changes the token: the secret and the counter alone do not give it.
        let unsalted = JoinToken::derive(addr(), 80, secret, 1);
        let salted = JoinToken::derive_salted(addr(), 80, secret, &g1);
        assert_ne!(unsalted.path_id(), salted.path_id());
        assert_eq!(
            JoinToken::derive_salted(addr(), 80, secret, &JoinGeneration::first(1)).path_id(),
            unsalted.path_id()
        );
    }

    #[test]
    fn broken_tokens_are_explained_without_echoing_them() {
        let t = JoinToken::derive(addr(), 80, b"0123456789abcdef0123456789abcdef", 0);
        let s = t.encode().to_string();
        let mut typo = s.clone().into_bytes();
        let i = typo.len() - 5;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let short = format!(
            "rbjoin1-{}",
            data_encoding::BASE32_NOPAD
                .encode(&[1u8; 60])
                .to_ascii_lowercase()
        );
        let cases = [
            ("", "does not start"),
            ("rbjoin2-abc", "does not start"),
            (&s[..s.len() - 4], "base32"),
            (&short, "60 bytes"),
            (std::str::from_utf8(&typo).unwrap(), "checksum"),
        ];
        for (input, want) in cases {
            let e = JoinToken::parse(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
            if input.len() > 20 {
                assert!(!e.contains(&input[8..20]), "error echoes the token: {e}");
            }
        }
    }

    #[test]
    fn classify_takes_only_the_current_token() {
        use rustbalance_proxy::{Intercept, Verdict};
        let svc = JoinService::new();
        let t = JoinToken::derive(addr(), 80, b"0123456789abcdef0123456789abcdef", 3);
        let line = format!("POST {} HTTP/1.1\r\n", t.path());
        // No token set yet: nothing is taken.
        assert_eq!(svc.classify(line.as_bytes()), Verdict::Pass);
        svc.set_token(JoinToken::derive(
            addr(),
            80,
            b"0123456789abcdef0123456789abcdef",
            3,
        ));
        let decided = "POST ".len() + t.path().len() + 1;
        for cut in 0..decided {
            let v = svc.classify(&line.as_bytes()[..cut]);
            assert_eq!(v, Verdict::Undecided, "cut {cut}");
        }
        assert_eq!(svc.classify(line.as_bytes()), Verdict::Take);
        assert_eq!(svc.classify(b"GET / HTTP/1.1\r\n"), Verdict::Pass);
        assert_eq!(svc.classify(b"POST /other HTTP/1.1\r\n"), Verdict::Pass);
        let old = JoinToken::derive(addr(), 80, b"0123456789abcdef0123456789abcdef", 2);
        let before = svc.counters.bad_token.load(Relaxed);
        let l = format!("POST {} HTTP/1.1\r\n", old.path());
        assert_eq!(svc.classify(l.as_bytes()), Verdict::Pass);
        assert_eq!(svc.counters.bad_token.load(Relaxed), before + 1);
        // Closed (a removal waits for its rotation): the current token is not taken either,
        // until a token is set again.
        assert!(svc.is_open());
        svc.close();
        assert!(!svc.is_open());
        assert_eq!(svc.classify(line.as_bytes()), Verdict::Pass);
        assert_eq!(svc.counters.bad_token.load(Relaxed), before + 2);
        svc.set_token(JoinToken::derive(
            addr(),
            80,
            b"0123456789abcdef0123456789abcdef",
            3,
        ));
        assert_eq!(svc.classify(line.as_bytes()), Verdict::Take);
    }

    #[test]
    fn rate_limiter_windows() {
        let mut r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..PER_SOURCE_PER_MIN {
            assert!(r.allow("a", t0));
        }
        assert!(!r.allow("a", t0));
        assert!(r.allow("b", t0));
        assert!(r.allow("a", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn replay_cache_forgets_only_outside_the_window() {
        let mut c = ReplayCache::default();
        assert!(c.insert("n1", 1000));
        assert!(!c.insert("n1", 1500));
        assert!(c.insert("n1", 1000 + 2 * MAX_SKEW.as_secs() + 61));
    }
}
