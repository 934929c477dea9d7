//! Datagram authentication: key derivation, sealing, opening and the replay guard.
//!
//! Pure code: the caller passes the wall-clock time (Unix milliseconds) in.
//!
//! Wire format of one datagram (all integers big-endian):
//!
//! ```text
//! 0      4       5            13           21             29        n-32      n
//! │"RBG1"│ flags │ session u64 │ counter u64 │ unix ms u64  │ payload │ tag (32) │
//! ```
//!
//! * `flags` bit 0: the payload is zstd-compressed.
//! * `session`: random, chosen when the socket opens (a restarted node is a new session).
//! * `counter`: starts at 0 and increases by one per datagram of the session.
//! * `tag`: HMAC-SHA256 over everything before it, keyed with
//!   `HKDF-SHA256(salt = "rustbalance-cluster v1", ikm = cluster secret,
//!   info = "gossip datagram mac")`.
//!
//! A receiver checks, in this order: length (over [`MAX_MESSAGE`] plus the frame: *oversize*)
//! and magic (else *malformed*), the tag in
//! constant time (else *bad MAC*), the timestamp within ± `window` of its own clock (else
//! *stale*), and the `(session, counter)` pair against a 64-datagram sliding window per
//! session (else *replayed*). Only then is the payload decompressed (a payload that
//! would inflate past [`MAX_MESSAGE`] is *oversize*) and handed over.
//! Sessions silent for twice the window are forgotten: any datagram of theirs would be
//! stale anyway.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::err::ClusterError;

const MAGIC: &[u8; 4] = b"RBG1";
const HEADER_LEN: usize = 4 + 1 + 8 + 8 + 8;
const TAG_LEN: usize = 32;
/// Bytes added to every gossip payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
const FLAG_ZSTD: u8 = 1;
/// Payloads above this size are compressed when that makes them smaller.
const COMPRESS_ABOVE: usize = 512;
/// Largest payload accepted, on the wire or after decompression. chitchat never writes a
/// message over 65,507 bytes (its UDP payload limit, which it respects with its MTU
/// logic); anything bigger did not come from chitchat.
pub const MAX_MESSAGE: usize = 64 * 1024;
const MIN_SECRET_LEN: usize = 16;
const MAX_SESSIONS: usize = 4096;
const REPLAY_WINDOW: u64 = 64;

/// The cluster secret shared by every node. Never logged.
#[derive(Clone)]
pub struct ClusterSecret(Zeroizing<Vec<u8>>);

impl ClusterSecret {
    /// Wraps the secret bytes; at least 16 bytes are required.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<ClusterSecret, ClusterError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ClusterError::WeakSecret {
                len: bytes.len(),
                min: MIN_SECRET_LEN,
            });
        }
        Ok(ClusterSecret(bytes))
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// The gossip MAC key, derived from the cluster secret.
#[derive(Clone)]
pub struct MacKey(Zeroizing<[u8; 32]>);

impl MacKey {
    /// HKDF-SHA256 derivation with a purpose label, so that the same cluster secret can
    /// key other things (join tokens, ...) without related keys.
    pub fn derive(secret: &ClusterSecret) -> MacKey {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"rustbalance-cluster v1"), &secret.0);
        let mut okm = Zeroizing::new([0u8; 32]);
        // Invariant: 32 bytes is far below HKDF-SHA256's 255 × 32 output limit.
        hk.expand(b"gossip datagram mac", okm.as_mut())
            .unwrap_or_default();
        MacKey(okm)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // Invariant: HMAC accepts keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

/// Why a datagram was dropped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Too short, wrong magic, undecodable payload.
    Malformed,
    /// The tag does not verify: not from a cluster member, or altered on the way.
    BadMac,
    /// Timestamp outside the accepted window.
    Stale,
    /// `(session, counter)` already seen or too old for the sliding window.
    Replayed,
    /// The datagram, or its payload once inflated, is over [`MAX_MESSAGE`].
    Oversize,
}

/// Seals outgoing payloads for one session.
#[derive(Debug)]
pub struct Sealer {
    key: MacKey,
    session: u64,
    counter: u64,
}

impl Sealer {
    /// `session` must be random (the caller draws it).
    pub fn new(key: MacKey, session: u64) -> Sealer {
        Sealer {
            key,
            session,
            counter: 0,
        }
    }

    /// Frames, compresses if worthwhile, and authenticates `payload`.
    pub fn seal(&mut self, now_unix_ms: u64, payload: &[u8]) -> Vec<u8> {
        let compressed = (payload.len() > COMPRESS_ABOVE)
            .then(|| zstd::bulk::compress(payload, 1).ok())
            .flatten()
            .filter(|c| c.len() < payload.len());
        match &compressed {
            Some(c) => self.seal_body(now_unix_ms, true, c),
            None => self.seal_body(now_unix_ms, false, payload),
        }
    }

    /// Frames and authenticates `body` as it is, flagged as zstd-compressed or not
    /// whatever it holds: what a member of the cluster could send. [`Sealer::seal`] uses
    /// it; tests and fuzzing use it to send crafted compressed bodies.
    pub fn seal_body(&mut self, now_unix_ms: u64, zstd: bool, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + body.len());
        out.extend_from_slice(MAGIC);
        out.push(if zstd { FLAG_ZSTD } else { 0 });
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&now_unix_ms.to_be_bytes());
        out.extend_from_slice(body);
        let mut mac = self.key.mac();
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        self.counter += 1;
        out
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    top: u64,
    bitmap: u64,
    last_seen_ms: u64,
}

/// Checks incoming datagrams.
#[derive(Debug)]
pub struct Opener {
    key: MacKey,
    window_ms: u64,
    sessions: HashMap<u64, Window>,
}

/// The sender's timestamp (Unix ms) in a datagram's header, unauthenticated: read it only
/// from a datagram [`Opener::open`] checked the MAC of (accepted, or refused as stale).
pub fn sent_ms(datagram: &[u8]) -> Option<u64> {
    (datagram.len() >= HEADER_LEN && &datagram[..4] == MAGIC).then(|| be_u64(&datagram[21..29]))
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

impl Opener {
    /// `window_ms`: accepted clock difference between sender and receiver.
    pub fn new(key: MacKey, window_ms: u64) -> Opener {
        Opener {
            key,
            window_ms,
            sessions: HashMap::new(),
        }
    }

    /// Verifies `datagram` and returns its payload.
    pub fn open(&mut self, now_unix_ms: u64, datagram: &[u8]) -> Result<Vec<u8>, Rejection> {
        if datagram.len() > MAX_MESSAGE + OVERHEAD {
            return Err(Rejection::Oversize);
        }
        if datagram.len() < OVERHEAD || &datagram[..4] != MAGIC {
            return Err(Rejection::Malformed);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        let mut mac = self.key.mac();
        mac.update(signed);
        // `verify_slice` compares in constant time.
        mac.verify_slice(tag).map_err(|_| Rejection::BadMac)?;

        let flags = signed[4];
        let session = be_u64(&signed[5..13]);
        let counter = be_u64(&signed[13..21]);
        let sent_ms = be_u64(&signed[21..29]);
        if now_unix_ms.abs_diff(sent_ms) > self.window_ms {
            return Err(Rejection::Stale);
        }
        self.check_replay(now_unix_ms, session, counter)?;

        let body = &signed[HEADER_LEN..];
        if flags & FLAG_ZSTD != 0 {
            inflate(body)
        } else if body.len() > MAX_MESSAGE {
            Err(Rejection::Oversize)
        } else {
            Ok(body.to_vec())
        }
    }

    fn check_replay(&mut self, now: u64, session: u64, counter: u64) -> Result<(), Rejection> {
        if !self.sessions.contains_key(&session) && self.sessions.len() >= MAX_SESSIONS {
            self.prune(now);
        }
        match self.sessions.get_mut(&session) {
            None => {
                self.sessions.insert(
                    session,
                    Window {
                        top: counter,
                        bitmap: 1,
                        last_seen_ms: now,
                    },
                );
            }
            Some(w) => {
                if counter > w.top {
                    let shift = counter - w.top;
                    w.bitmap = if shift >= REPLAY_WINDOW {
                        1
                    } else {
                        (w.bitmap << shift) | 1
                    };
                    w.top = counter;
                } else {
                    let offset = w.top - counter;
                    if offset >= REPLAY_WINDOW || w.bitmap & (1 << offset) != 0 {
                        return Err(Rejection::Replayed);
                    }
                    w.bitmap |= 1 << offset;
                }
                w.last_seen_ms = now;
            }
        }
        Ok(())
    }

    /// Forgets sessions silent for twice the window; if still full, the oldest one.
    fn prune(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.window_ms.saturating_mul(2));
        self.sessions.retain(|_, w| w.last_seen_ms >= horizon);
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, w)| w.last_seen_ms)
                .map(|(s, _)| *s)
            {
                self.sessions.remove(&oldest);
            }
        }
    }
}

/// Inflates a zstd payload into at most [`MAX_MESSAGE`] bytes. A frame that declares a
/// bigger size is oversize; one that does not, and inflates past the limit, fails like
/// any broken frame (malformed).
fn inflate(body: &[u8]) -> Result<Vec<u8>, Rejection> {
    if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(body) {
        if declared > MAX_MESSAGE as u64 {
            return Err(Rejection::Oversize);
        }
    }
    zstd::bulk::decompress(body, MAX_MESSAGE).map_err(|_| Rejection::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> MacKey {
        MacKey::derive(&ClusterSecret::new(s.as_bytes().to_vec()).unwrap())
    }

    const SECRET: &str = "correct horse battery staple";

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            ClusterSecret::new(b"short".to_vec()),
            Err(ClusterError::WeakSecret { len: 5, .. })
        ));
        assert_eq!(
            format!("{:?}", ClusterSecret::new(SECRET).unwrap()),
            "ClusterSecret(<redacted>)"
        );
    }

    #[test]
    fn sealed_payloads_open_once() {
        let mut s = Sealer::new(key(SECRET), 42);
        let mut o = Opener::new(key(SECRET), 30_000);
        let small = s.seal(1_000, b"hello");
        let big_payload = vec![b'x'; 10_000];
        let big = s.seal(1_000, &big_payload);
        assert!(big.len() < 1_000, "compressed: {}", big.len());
        assert_eq!(o.open(1_100, &small).unwrap(), b"hello");
        assert_eq!(o.open(1_100, &big).unwrap(), big_payload);
        assert_eq!(o.open(1_200, &small), Err(Rejection::Replayed));
    }

    #[test]
    fn another_secret_or_a_flipped_bit_fails_the_mac() {
        let mut s = Sealer::new(key("another cluster's secret"), 1);
        let mut o = Opener::new(key(SECRET), 30_000);
        assert_eq!(o.open(0, &s.seal(0, b"hi")), Err(Rejection::BadMac));

        let mut s = Sealer::new(key(SECRET), 1);
        let d = s.seal(0, b"hello");
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 0x01;
            let r = o.open(0, &t);
            assert!(
                matches!(r, Err(Rejection::BadMac | Rejection::Malformed)),
                "{i}"
            );
        }
        assert!(
            o.open(0, &d).is_ok(),
            "failed attempts do not burn the counter"
        );
    }

    #[test]
    fn payloads_over_64_kib_are_oversize() {
        let mut s = Sealer::new(key(SECRET), 3);
        let mut o = Opener::new(key(SECRET), 30_000);
        let fits = vec![b'z'; MAX_MESSAGE];
        assert_eq!(
            o.open(0, &s.seal(0, &fits)).map(|p| p.len()),
            Ok(MAX_MESSAGE)
        );
        let inflates = s.seal(0, &vec![b'z'; MAX_MESSAGE + 1]);
        assert!(inflates.len() < 1_000);
        assert_eq!(o.open(0, &inflates), Err(Rejection::Oversize));
        let mut huge = vec![0u8; MAX_MESSAGE + OVERHEAD + 1];
        huge[..4].copy_from_slice(MAGIC);
        assert_eq!(o.open(0, &huge), Err(Rejection::Oversize));
    }

    #[test]
    fn junk_is_malformed() {
        let mut o = Opener::new(key(SECRET), 30_000);
        assert_eq!(o.open(0, b"junk"), Err(Rejection::Malformed));
        assert_eq!(o.open(0, &[0u8; 100]), Err(Rejection::Malformed));
    }

    #[test]
    fn timestamps_outside_the_window_are_stale() {
        let mut s = Sealer::new(key(SECRET), 1);
        let mut o = Opener::new(key(SECRET), 30_000);
        let d = s.seal(100_000, b"x");
        assert_eq!(o.open(130_001, &d), Err(Rejection::Stale));
        assert_eq!(o.open(69_999, &d), Err(Rejection::Stale));
        assert!(o.open(130_000, &d).is_ok());
    }

    #[test]
    fn reordering_within_the_window_is_accepted_once() {
        let mut s = Sealer::new(key(SECRET), 9);
        let mut o = Opener::new(key(SECRET), 30_000);
        let ds: Vec<Vec<u8>> = (0..100).map(|_| s.seal(0, b"m")).collect();
        assert!(o.open(0, &ds[99]).is_ok());
        assert!(o.open(0, &ds[40]).is_ok(), "59 behind: inside the window");
        assert_eq!(o.open(0, &ds[40]), Err(Rejection::Replayed));
        assert_eq!(o.open(0, &ds[35]), Err(Rejection::Replayed), "64 behind");
        assert!(o.open(0, &ds[98]).is_ok());
    }

    #[test]
    fn sessions_are_independent_and_pruned() {
        let mut o = Opener::new(key(SECRET), 1_000);
        for session in 0..(MAX_SESSIONS as u64 + 10) {
            let mut s = Sealer::new(key(SECRET), session);
            assert!(o.open(session * 10, &s.seal(session * 10, b"a")).is_ok());
        }
        assert!(o.sessions.len() <= MAX_SESSIONS);
    }
}
