//! The join endpoint of a node: an [`Intercept`](rustbalance_proxy::Intercept) on the proxy.
//!
//! ```text
//!  classify: "POST <PATH_PREFIX><token id> ", the id minted with the current generation's
//!            key, not expired, not spent? ─ no ─▶ target (wrong, expired, spent: alike)
//!  serve:    rate limit ─▶ head + body (limits, one deadline) ─▶ token again ─▶ MAC ─▶ clock
//!            ─▶ nonce ─▶ replay ─▶ name ─▶ spend ─▶ admitter ─▶ 200 + grant + response MAC
//!            | refusal (a failed admission gives the token back)
//! ```
//!
//! The checks run in that order so that nothing is remembered for forgeries.

use super::admission::{Admission, Admitter};
use super::counters::JoinCounters;
use super::limiter::RateLimiter;
use super::message::{
    head_end, header, valid_name, JoinRequest, MAC_HEADER, MAX_BODY, MAX_SKEW, PATH_PREFIX, VERSION,
};
use super::refusal::Refusal;
use super::replay::ReplayCache;
use super::spent::SpentTokens;
use super::token::{JoinKey, JoinToken, LiveToken, PATH_ID_HEX};
use rustbalance_hs::OnionAddress;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head accepted.
const MAX_HEAD: usize = 4 * 1024;
/// How long a join request may take to arrive, head and body (over Tor: seconds).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
const REQUEST_START: &[u8] = b"POST ";

/// The join endpoint of a node: an [`Intercept`](rustbalance_proxy::Intercept) on the proxy.
pub struct JoinService {
    /// The current generation's key with the master address and port tokens carry.
    key: RwLock<Option<(JoinKey, OnionAddress, u16)>>,
    spent: Mutex<SpentTokens>,
    admitter: RwLock<Option<Admitter>>,
    limiter: Mutex<RateLimiter>,
    replay: Mutex<ReplayCache>,
    /// Counters, shared with the metrics.
    pub counters: Arc<JoinCounters>,
    clock: fn() -> u64,
}

/// The Unix time now.
pub(crate) fn unix_now() -> u64 {
    rustbalance_hs::time::unix_secs(SystemTime::now())
}

impl JoinService {
    /// A join endpoint that takes nothing until [`set_key`](Self::set_key) and
    /// [`set_admitter`](Self::set_admitter) are called.
    pub fn new() -> Arc<JoinService> {
        Self::with_clock(unix_now)
    }

    /// As [`new`](Self::new), with a fake clock (tests).
    pub fn with_clock(clock: fn() -> u64) -> Arc<JoinService> {
        Arc::new(JoinService {
            key: RwLock::new(None),
            spent: Mutex::new(SpentTokens::default()),
            admitter: RwLock::new(None),
            limiter: Mutex::new(RateLimiter::default()),
            replay: Mutex::new(ReplayCache::default()),
            counters: Arc::new(JoinCounters::default()),
            clock,
        })
    }

    /// Accept the tokens of this generation's key, for `master:port`, from now on (and no
    /// other).
    pub fn set_key(&self, key: JoinKey, master: OnionAddress, port: u16) {
        if let Ok(mut t) = self.key.write() {
            *t = Some((key, master, port));
        }
    }

    /// Record token `id` (hex, expiring at `expires`) as spent (from gossip, or at start from
    /// the saved list); true if it was not known.
    pub fn note_spent(&self, id: &str, expires: u64) -> bool {
        let now = (self.clock)();
        self.spent
            .lock()
            .map(|mut s| s.insert(id, expires, now))
            .unwrap_or(false)
    }

    /// Learn a member's spent-token gossip value; how many were new.
    pub fn learn_spent(&self, text: &str) -> usize {
        let now = (self.clock)();
        self.spent
            .lock()
            .map(|mut s| s.learn(text, now))
            .unwrap_or(0)
    }

    /// The spent tokens known here (expired ones forgotten).
    pub fn spent(&self) -> SpentTokens {
        let now = (self.clock)();
        self.spent
            .lock()
            .map(|mut s| {
                s.prune(now);
                s.clone()
            })
            .unwrap_or_default()
    }

    /// The unexpired, unspent token of the current key whose id is `hex_id`. Wrong,
    /// expired and spent ids all cost one HMAC and a lookup.
    fn live_token(&self, hex_id: &[u8]) -> Option<LiveToken> {
        let now = (self.clock)();
        let token = self.key.read().ok().and_then(|k| {
            k.as_ref()
                .and_then(|(k, m, p)| k.token_of(*m, *p, hex_id, now))
        });
        // The id as minted (lowercase): an upper-case spelling of a spent id is the same id.
        let id = token.as_ref().map(LiveToken::id).unwrap_or_default();
        let spent = self.spent.lock().map(|s| s.contains(&id)).unwrap_or(true);
        token.filter(|_| !spent)
    }

    /// Remember a nonce another node admitted (from gossip), so that a request replayed to
    /// this node is refused too.
    pub fn note_nonce(&self, nonce: &str) {
        if let Ok(mut r) = self.replay.lock() {
            r.insert(nonce, (self.clock)());
        }
    }

    /// Accept no token until the next [`JoinService::set_key`] (a removal is under way:
    /// the removed machine may know an unspent token). Requests on the join path then go to
    /// the target like any unknown path, and are counted as `bad_token`.
    pub fn close(&self) {
        if let Ok(mut t) = self.key.write() {
            *t = None;
        }
    }

    /// Whether tokens are accepted right now.
    pub fn is_open(&self) -> bool {
        self.key.read().map(|t| t.is_some()).unwrap_or(false)
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

    /// The token id in a request that starts with the join path (`buf`'s first bytes).
    fn path_id(buf: &[u8]) -> &[u8] {
        let start = REQUEST_START.len() + PATH_PREFIX.len();
        buf.get(start..start + PATH_ID_HEX).unwrap_or_default()
    }

    async fn handle(self: Arc<Self>, mut s: TcpStream, mut buf: Vec<u8>, source: String) {
        let reply = match self.process(&mut s, &mut buf, &source).await {
            Ok((token, nonce, body)) => {
                self.counters.accepted.fetch_add(1, Relaxed);
                let mac = hex::encode(token.response_mac(&nonce, &body));
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{MAC_HEADER}: {mac}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            }
            Err(refusal) => {
                refusal.counter(&self.counters).fetch_add(1, Relaxed);
                tracing::info!("join request refused: {refusal}");
                let body = format!("{refusal}\n");
                format!(
                    "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    refusal.status(),
                    body.len()
                )
                .into_bytes()
            }
        };
        let _ = s.write_all(&reply).await;
        let _ = s.shutdown().await;
    }

    /// Every step of one request: the token, the nonce and the grant's bytes, or why not.
    async fn process(
        &self,
        s: &mut TcpStream,
        buf: &mut Vec<u8>,
        source: &str,
    ) -> Result<(JoinToken, String, Vec<u8>), Refusal> {
        let allowed = self
            .limiter
            .lock()
            .map(|mut l| l.allow(source, Instant::now()))
            .unwrap_or(false);
        if !allowed {
            return Err(Refusal::RateLimited);
        }
        let req = read_request(s, buf).await?;
        // Spent or expired while the request arrived, or rotated: as a wrong token.
        let token = match self.live_token(Self::path_id(buf)) {
            Some(LiveToken::Verifiable(t)) => t,
            // A worker cannot check the request nor certify the node: the joiner asks
            // again, over another circuit (another node).
            Some(LiveToken::TagOnly { .. }) => return Err(Refusal::NotEligible),
            None => return Err(Refusal::BadToken),
        };
        self.check(&token, &req, (self.clock)())?;
        let id = token.path_id();
        if !self.note_spent(&id, token.expires()) {
            // Another request spent it meanwhile.
            return Err(Refusal::BadToken);
        }
        match self.admit(req, &token).await {
            Ok((nonce, body)) => Ok((token, nonce, body)),
            Err(refusal) => {
                // Not admitted (a name taken, say): the joiner may try again with it.
                if let Ok(mut spent) = self.spent.lock() {
                    spent.remove(&id);
                }
                Err(refusal)
            }
        }
    }

    /// The MAC, then the clock, then the nonce, then the name: nothing is remembered for
    /// forgeries.
    fn check(&self, token: &JoinToken, req: &JoinRequest, now: u64) -> Result<(), Refusal> {
        let valid = bool::from(
            token
                .request_mac(req)
                .ct_eq(&hex::decode(&req.mac).unwrap_or_default()),
        );
        if !valid {
            return Err(Refusal::BadToken);
        }
        if now.abs_diff(req.ts) > MAX_SKEW.as_secs() {
            return Err(Refusal::Stale {
                off: now.abs_diff(req.ts),
            });
        }
        if req.nonce.len() != 32 || !req.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::BadNonce);
        }
        let fresh = self
            .replay
            .lock()
            .map(|mut r| r.insert(&req.nonce, now))
            .unwrap_or(false);
        if !fresh {
            return Err(Refusal::Replayed);
        }
        if !valid_name(&req.name) {
            return Err(Refusal::BadName);
        }
        Ok(())
    }

    /// Hand a checked request to the admitter; the nonce and the grant's bytes.
    async fn admit(
        &self,
        req: JoinRequest,
        token: &JoinToken,
    ) -> Result<(String, Vec<u8>), Refusal> {
        let admitter = self.admitter.read().ok().and_then(|a| a.clone());
        let Some(admit) = admitter else {
            return Err(Refusal::Starting);
        };
        let grant = admit(Admission {
            nonce: req.nonce.clone(),
            name: req.name.clone(),
            wg_public_key: req.wg_public_key.clone(),
            endpoint: req.endpoint,
            identity: req.identity.clone(),
            token_id: token.path_id(),
            token_expires: token.expires(),
        })
        .await
        .map_err(Refusal::Admit)?;
        tracing::info!(node = %req.name, endpoint = %req.endpoint, "admitted a new node");
        let body = serde_json::to_vec(&grant).map_err(Refusal::Encode)?;
        Ok((req.nonce, body))
    }
}

/// Read the rest of a join request (its start is in `buf`) within one deadline, not only
/// per read: a client trickling a byte every few seconds must not hold a task for hours.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<JoinRequest, Refusal> {
    let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
    let head_end = loop {
        if let Some(end) = head_end(buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(Refusal::HeadTooLarge);
        }
        read_more(s, buf, deadline)
            .await
            .map_err(|_| Refusal::HeadBrokeOff)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = match header(&head, "content-length").map(str::parse::<usize>) {
        Some(Ok(n)) if n <= MAX_BODY => n,
        Some(Ok(n)) => return Err(Refusal::BodyTooLarge(n)),
        _ => return Err(Refusal::LengthRequired),
    };
    while buf.len() < head_end + length {
        read_more(s, buf, deadline)
            .await
            .map_err(|_| Refusal::BodyBrokeOff)?;
    }
    if buf.len() > head_end + length {
        return Err(Refusal::TrailingBytes);
    }
    let req: JoinRequest =
        serde_json::from_slice(&buf[head_end..]).map_err(Refusal::NotARequest)?;
    if req.v != VERSION {
        return Err(Refusal::Version(req.v));
    }
    Ok(req)
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

/// What a connection's first bytes are to the join endpoint (see [`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinLine {
    /// A strict prefix of a join request line: more bytes are needed.
    Partial,
    /// Not a join request line: the target answers it.
    Other,
    /// A join request line with the accepted path id.
    Current,
    /// A join request line with another path id (or while no token is accepted).
    Stale,
}

/// Length of the part of a join request line [`classify`] decides on:
/// `POST /.well-known/rustbalance/join/<PATH_ID_HEX lowercase hex digits> ` (the space included).
pub const JOIN_LINE_DECIDED: usize = REQUEST_START.len() + PATH_PREFIX.len() + PATH_ID_HEX + 1;

/// Classify a connection's first bytes against the join request line, given the path id
/// accepted now (`None`: no token is). A pure function of its inputs.
///
/// Property (fuzzed): the answer is [`JoinLine::Partial`] exactly while `first` is a strict
/// prefix of some `POST /.well-known/rustbalance/join/<32 lowercase hex> ` line; the first
/// byte that cannot continue such a line decides [`JoinLine::Other`], so a client is never
/// held back on a line that can no longer become a join request (a plain `POST
/// /.well-known/rustbalance/join/ HTTP/1.0` is passed on at its space, like any unknown
/// path). The syntax alone decides when; the path id is compared only once complete, in
/// constant time, so the timing tells nothing about the token.
pub fn classify(first: &[u8], path_id: Option<&[u8]>) -> JoinLine {
    let id_start = REQUEST_START.len() + PATH_PREFIX.len();
    let id_end = id_start + PATH_ID_HEX;
    for (i, &b) in first.iter().take(JOIN_LINE_DECIDED).enumerate() {
        let fits = if i < REQUEST_START.len() {
            b == REQUEST_START[i]
        } else if i < id_start {
            b == PATH_PREFIX.as_bytes()[i - REQUEST_START.len()]
        } else if i < id_end {
            matches!(b, b'0'..=b'9' | b'a'..=b'f')
        } else {
            b == b' '
        };
        if !fits {
            return JoinLine::Other;
        }
    }
    if first.len() < JOIN_LINE_DECIDED {
        return JoinLine::Partial;
    }
    let id = &first[id_start..id_end];
    match path_id {
        Some(p) if bool::from(p.ct_eq(id)) => JoinLine::Current,
        _ => JoinLine::Stale,
    }
}

impl rustbalance_proxy::Intercept for JoinService {
    fn classify(&self, first: &[u8]) -> rustbalance_proxy::Verdict {
        use rustbalance_proxy::Verdict;
        // The syntax first (pure, no secret involved); a complete join line is then checked
        // against the live tokens (one HMAC and a lookup, the same cost for any id).
        let line = match classify(first, None) {
            JoinLine::Stale => {
                let live = self.live_token(Self::path_id(first)).map(|t| t.id());
                classify(first, live.as_ref().map(|id| id.as_bytes()))
            }
            decided => decided,
        };
        match line {
            JoinLine::Partial => Verdict::Undecided,
            JoinLine::Other => Verdict::Pass,
            JoinLine::Current => Verdict::Take,
            JoinLine::Stale => {
                // Someone tried the join path with a token we do not accept (spent, expired,
                // of an old generation, a typo, a guess): the target answers it like any
                // unknown path.
                self.counters.bad_token.fetch_add(1, Relaxed);
                Verdict::Pass
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::token::JoinGeneration;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn addr() -> OnionAddress {
        OnionAddress::from_public_key([7u8; 32])
    }

    fn key(n: u64) -> JoinKey {
        JoinKey::derive(SECRET, Some(SECRET), &JoinGeneration::first(n))
    }

    fn line(t: &JoinToken) -> String {
        format!("POST {} HTTP/1.1\r\n", t.path())
    }

    #[test]
    fn classify_takes_only_live_tokens_of_the_current_key() {
        use rustbalance_proxy::{Intercept, Verdict};
        let svc = JoinService::new();
        let now = unix_now();
        let t = key(3).mint(addr(), 80, now + 3600).unwrap();
        // No key set yet: nothing is taken.
        assert_eq!(svc.classify(line(&t).as_bytes()), Verdict::Pass);
        svc.set_key(key(3), addr(), 80);
        let decided = "POST ".len() + t.path().len() + 1;
        for cut in 0..decided {
            let v = svc.classify(&line(&t).as_bytes()[..cut]);
            assert_eq!(v, Verdict::Undecided, "cut {cut}");
        }
        assert_eq!(svc.classify(line(&t).as_bytes()), Verdict::Take);
        assert_eq!(svc.classify(b"GET / HTTP/1.1\r\n"), Verdict::Pass);
        assert_eq!(svc.classify(b"POST /other HTTP/1.1\r\n"), Verdict::Pass);
        let before = svc.counters.bad_token.load(Relaxed);
        // Another generation's, an expired one, a spent one (in either case): target.
        let old = key(2).mint(addr(), 80, now + 3600).unwrap();
        let expired = key(3).mint(addr(), 80, now.saturating_sub(1)).unwrap();
        let spent = key(3).mint(addr(), 80, now + 3600).unwrap();
        assert_eq!(svc.classify(line(&spent).as_bytes()), Verdict::Take);
        assert!(svc.note_spent(&spent.path_id(), spent.expires()));
        for l in [line(&old), line(&expired), line(&spent)] {
            assert_eq!(svc.classify(l.as_bytes()), Verdict::Pass, "{l}");
        }
        assert_eq!(svc.counters.bad_token.load(Relaxed), before + 3);
        // An upper-case spelling of a spent id is no join line at all (ids are lowercase).
        let upper = line(&spent).replace(&spent.path_id(), &spent.path_id().to_uppercase());
        assert_eq!(svc.classify(upper.as_bytes()), Verdict::Pass);
        // Closed (a removal waits for its rotation): no token is taken until a key is set.
        assert!(svc.is_open());
        svc.close();
        assert!(!svc.is_open());
        assert_eq!(svc.classify(line(&t).as_bytes()), Verdict::Pass);
        svc.set_key(key(3), addr(), 80);
        assert_eq!(svc.classify(line(&t).as_bytes()), Verdict::Take);
    }

    /// The probe of issue 14: a join path without a path id was held until the client gave
    /// up (seconds through Tor, `idle_timeout` in Tcp mode) while any other path was passed
    /// on at once. It must be passed on at the first byte that rules out a join request.
    #[test]
    fn a_join_path_probe_is_passed_on_at_once() {
        use rustbalance_proxy::{Intercept, Verdict};
        let svc = JoinService::new();
        svc.set_key(key(0), addr(), 80);
        for probe in [
            &b"POST /.well-known/rustbalance/join/ HTTP/1.0\r\n\r\n"[..],
            b"POST /.well-known/rustbalance/join/\r\n",
            b"POST /.well-known/rustbalance/join/ABCDEF",
            b"POST /.well-known/rustbalance/join/0123456789abcdef0123456789abcdef0",
            b"POST /.well-known/rustbalance/join/0123456789abcdef0123456789abcdef?",
            b"POST /.well-known/rustbalance/joinx",
            b"POST  /",
            b"post /",
        ] {
            assert_eq!(
                svc.classify(probe),
                Verdict::Pass,
                "{}",
                String::from_utf8_lossy(probe)
            );
        }
    }

    /// Independent statement of the property: `x` is a strict prefix of
    /// `POST <PATH_PREFIX><32 lowercase hex> `.
    fn strict_prefix_of_a_join_line(x: &[u8]) -> bool {
        let mut model = format!("POST {PATH_PREFIX}").into_bytes();
        let hex_at = model.len();
        model.extend_from_slice(&[b'0'; 32]);
        model.push(b' ');
        x.len() < model.len()
            && x.iter().enumerate().all(|(i, &b)| {
                if (hex_at..hex_at + 32).contains(&i) {
                    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
                } else {
                    b == model[i]
                }
            })
    }

    #[test]
    fn undecided_exactly_on_strict_prefixes_of_a_join_line() {
        let t = key(0).mint(addr(), 80, unix_now() + 3600).unwrap();
        let id = t.path_id();
        let line = format!("POST {} HTTP/1.1\r\n", t.path()).into_bytes();
        let other = format!("POST {PATH_PREFIX}{} x", "f".repeat(32)).into_bytes();
        for base in [&line, &other] {
            for cut in 0..=base.len() {
                for b in 0..=255u8 {
                    let mut x = base[..cut].to_vec();
                    x.push(b);
                    for pid in [Some(id.as_bytes()), None] {
                        let v = classify(&x, pid);
                        assert_eq!(
                            v == JoinLine::Partial,
                            strict_prefix_of_a_join_line(&x),
                            "{:?} -> {v:?}",
                            String::from_utf8_lossy(&x)
                        );
                        assert_eq!(
                            classify(&x[..cut], pid) == JoinLine::Partial,
                            strict_prefix_of_a_join_line(&x[..cut])
                        );
                    }
                }
            }
        }
        assert_eq!(classify(&line, Some(id.as_bytes())), JoinLine::Current);
        assert_eq!(classify(&line, None), JoinLine::Stale);
        assert_eq!(classify(&other, Some(id.as_bytes())), JoinLine::Stale);
        assert_eq!(JOIN_LINE_DECIDED, "POST ".len() + t.path().len() + 1);
    }
}
