//! Join tokens and the join generation their key comes from.
//!
//! A token is one opaque string: the master address, its virtual port, a 16-byte token id
//! and a 32-byte token secret, `rbjoin2-` + base32 + a 2-byte check. Members do not keep a
//! list of tokens: each generation has a [`JoinKey`] — a tag key, `HKDF-SHA256(cluster
//! secret, generation counter | salt)`, and on eligible nodes a secret key,
//! `HKDF-SHA256(master key's JOIN_SECRET_INFO secret, counter | salt)` — and a token is
//! *minted* from it:
//!
//! ```text
//!  id     = expires (5 bytes, Unix s) | random (3) | HMAC(tag key, "token id" | first 8)[..8]
//!  secret = HMAC(secret key, "token secret" | id)
//!  path   = PATH_PREFIX + hex(id)          (what the proxy's classifier sees)
//! ```
//!
//! so every member recognises a token from its id alone, only eligible nodes mint and
//! check one, the expiry cannot be changed (the tag covers it), and a token is spent once:
//! its id is gossiped ([`super::spent`]). Every
//! generation carries a random salt, the first one too (made at `init`), so no token is
//! derivable from the cluster secret alone; `token rotate` raises the generation, which
//! voids every token made before.

use super::error::{JoinError, TokenProblem};
use super::message::JoinRequest;
use hmac::{Hmac, Mac};
use rustbalance_hs::OnionAddress;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Tokens start with this (and a dash).
pub const TOKEN_PREFIX: &str = "rbjoin2";
/// Length of the path id (the token id) in hex characters.
pub(crate) const PATH_ID_HEX: usize = 32;
/// Bytes of a token id: expiry, random, tag.
pub(crate) const ID_BYTES: usize = 16;
/// Bytes of a token: public key, port, id, secret, check.
const TOKEN_BYTES: usize = 32 + 2 + ID_BYTES + 32 + 2;
/// The longest lifetime a token may have (`token create --ttl`): spent ids are kept (and
/// gossiped) until their token expires, so this bounds that list.
pub const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// The default lifetime of a token.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

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

/// A join token: the master address, its port, the token id and the token secret.
pub struct JoinToken {
    /// The master address the cluster serves.
    pub master: OnionAddress,
    /// The virtual port clients (and joining nodes) connect to.
    pub port: u16,
    id: [u8; ID_BYTES],
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinToken({}:{}, <secret>)", self.master, self.port)
    }
}

/// The keys a generation's tokens are checked and minted with. The *tag key* comes from
/// the cluster secret, so every member recognises a live token of its generation (and
/// answers a worker's refusal the same way everywhere); the *secret key* comes from the
/// master key ([`JOIN_SECRET_INFO`]), so only publisher-eligible nodes can mint tokens
/// and check a request's MAC: a worker, which holds the cluster secret but not the master
/// key, can forge a token id but not its secret.
#[derive(Clone)]
pub struct JoinKey {
    tag: Zeroizing<[u8; 32]>,
    secrets: Option<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for JoinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinKey(<secret>, eligible: {})", self.secrets.is_some())
    }
}

/// What the derivation of the token secrets from the master key uses
/// (`IdentityKey::derive_secret`).
pub const JOIN_SECRET_INFO: &[u8] = b"rustbalance join token secrets v1";

/// A live token of the current generation, as a member sees it from its id.
pub(crate) enum LiveToken {
    /// An eligible node: the whole token, its secret included.
    Verifiable(JoinToken),
    /// A worker: the id is genuine and live, but only an eligible node can check the rest.
    TagOnly {
        /// The id (hex).
        id: String,
    },
}

/// The expiry written in a token id (Unix seconds).
pub(crate) fn id_expires(id: &[u8; ID_BYTES]) -> u64 {
    let mut b = [0u8; 8];
    b[3..].copy_from_slice(&id[..5]);
    u64::from_be_bytes(b)
}

fn hkdf32(salt: &[u8], ikm: &[u8], generation: &JoinGeneration) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut key = Zeroizing::new([0u8; 32]);
    let mut info = b"join key ".to_vec();
    info.extend_from_slice(&generation.n.to_be_bytes());
    info.extend_from_slice(&generation.salt);
    // Invariant: 32 bytes is far below HKDF-SHA256's output limit.
    hk.expand(&info, key.as_mut()).unwrap_or_default();
    key
}

impl JoinKey {
    /// The keys of `generation` of the cluster with `cluster_secret`; with
    /// `authority_secret` (the master key's [`JOIN_SECRET_INFO`] secret, eligible nodes
    /// only) tokens can be minted and fully checked.
    pub fn derive(
        cluster_secret: &[u8],
        authority_secret: Option<&[u8]>,
        generation: &JoinGeneration,
    ) -> JoinKey {
        JoinKey {
            tag: hkdf32(b"rustbalance-join v2", cluster_secret, generation),
            secrets: authority_secret
                .map(|a| hkdf32(b"rustbalance-join secrets v2", a, generation)),
        }
    }

    /// Whether this node can mint tokens and check requests (it holds the master key).
    pub fn is_eligible(&self) -> bool {
        self.secrets.is_some()
    }

    fn tag(&self, head: &[u8]) -> [u8; 8] {
        let t = hmac(&self.tag[..], &[b"token id", head])
            .finalize()
            .into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&t[..8]);
        out
    }

    fn secret_of(secrets: &[u8; 32], id: &[u8; ID_BYTES]) -> Zeroizing<[u8; 32]> {
        let t = hmac(&secrets[..], &[b"token secret", id])
            .finalize()
            .into_bytes();
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(&t);
        s
    }

    /// A new token for `master:port` that expires at Unix time `expires`; `None` on a
    /// worker (only eligible nodes mint).
    pub fn mint(&self, master: OnionAddress, port: u16, expires: u64) -> Option<JoinToken> {
        let mut random = [0u8; 3];
        rand::RngExt::fill(&mut rand::rng(), &mut random[..]);
        self.mint_with(master, port, expires, random)
    }

    /// As [`mint`](Self::mint), with the id's 3 random bytes given: the same token every
    /// time (fuzz targets and their seeds). Production code calls `mint`.
    pub fn mint_with(
        &self,
        master: OnionAddress,
        port: u16,
        expires: u64,
        random: [u8; 3],
    ) -> Option<JoinToken> {
        let secrets = self.secrets.as_ref()?;
        let mut id = [0u8; ID_BYTES];
        id[..5].copy_from_slice(&expires.min((1 << 40) - 1).to_be_bytes()[3..]);
        id[5..8].copy_from_slice(&random);
        let tag = self.tag(&id[..8]);
        id[8..].copy_from_slice(&tag);
        Some(JoinToken {
            master,
            port,
            id,
            secret: Self::secret_of(secrets, &id),
        })
    }

    /// The token whose path id is `hex_id`, if it was minted with this generation and has
    /// not expired at Unix time `now`. The tag is checked in constant time and the expiry
    /// always read, so a wrong and an expired id cost the same.
    pub(crate) fn token_of(
        &self,
        master: OnionAddress,
        port: u16,
        hex_id: &[u8],
        now: u64,
    ) -> Option<LiveToken> {
        let mut id = [0u8; ID_BYTES];
        let parsed = hex::decode_to_slice(hex_id, &mut id).is_ok();
        let tag_ok = bool::from(self.tag(&id[..8]).ct_eq(&id[8..]));
        let live = id_expires(&id) > now;
        if !(parsed & tag_ok & live) {
            return None;
        }
        Some(match &self.secrets {
            Some(secrets) => LiveToken::Verifiable(JoinToken {
                master,
                port,
                id,
                secret: Self::secret_of(secrets, &id),
            }),
            None => LiveToken::TagOnly {
                id: hex::encode(id),
            },
        })
    }

    /// A short public fingerprint of this generation (which one a node takes, without
    /// telling its salt): what `node remove` watches for the rotation.
    pub fn fingerprint(&self) -> String {
        let t = hmac(&self.tag[..], &[b"fingerprint"])
            .finalize()
            .into_bytes();
        hex::encode(&t[..8])
    }
}

impl LiveToken {
    /// The token id (hex, lowercase).
    pub(crate) fn id(&self) -> String {
        match self {
            LiveToken::Verifiable(t) => t.path_id(),
            LiveToken::TagOnly { id } => id.clone(),
        }
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
        Self::salted(self.n.saturating_add(1))
    }

    /// Generation `n` with a fresh random salt (`init` makes generation 0 this way, so
    /// that not even the first token is derivable from the cluster secret alone).
    pub fn salted(n: u64) -> JoinGeneration {
        let mut salt = vec![0u8; 16];
        rand::RngExt::fill(&mut rand::rng(), &mut salt[..]);
        JoinGeneration { n, salt }
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
    /// The opaque string handed to operators.
    pub fn encode(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(TOKEN_BYTES));
        raw.extend_from_slice(self.master.public_key());
        raw.extend_from_slice(&self.port.to_be_bytes());
        raw.extend_from_slice(&self.id);
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
    pub fn parse(text: &str) -> Result<JoinToken, JoinError> {
        let bad = |problem| JoinError::BadToken { problem };
        let t = text.trim();
        if t.starts_with("rbjoin1-") {
            return Err(bad(TokenProblem::OldFormat));
        }
        let body = t
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .ok_or(bad(TokenProblem::Prefix))?;
        let raw = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(body.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad(TokenProblem::NotBase32))?,
        );
        if raw.len() != TOKEN_BYTES {
            return Err(bad(TokenProblem::Length {
                got: raw.len(),
                want: TOKEN_BYTES,
            }));
        }
        let (content, check) = raw.split_at(TOKEN_BYTES - 2);
        if Sha256::digest(content)[..2] != *check {
            return Err(bad(TokenProblem::Checksum));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&content[..32]);
        let master = OnionAddress::from_public_key(pk);
        let port = u16::from_be_bytes([content[32], content[33]]);
        if port == 0 {
            return Err(bad(TokenProblem::PortZero));
        }
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&content[34..34 + ID_BYTES]);
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&content[34 + ID_BYTES..]);
        Ok(JoinToken {
            master,
            port,
            id,
            secret,
        })
    }

    /// The hex path id of the join endpoint for this token: its id.
    pub fn path_id(&self) -> String {
        hex::encode(self.id)
    }

    /// When it expires (Unix seconds).
    pub fn expires(&self) -> u64 {
        id_expires(&self.id)
    }

    /// The request line's path.
    pub fn path(&self) -> String {
        format!("{}{}", super::message::PATH_PREFIX, self.path_id())
    }

    pub(crate) fn request_mac(&self, r: &JoinRequest) -> Vec<u8> {
        hmac(
            &self.secret[..],
            &[
                b"request",
                &r.ts.to_be_bytes(),
                r.nonce.as_bytes(),
                r.name.as_bytes(),
                r.wg_public_key.as_bytes(),
                r.endpoint.to_string().as_bytes(),
                r.identity.as_bytes(),
            ],
        )
        .finalize()
        .into_bytes()
        .to_vec()
    }

    /// The request MAC's key, hashed (tests compare tokens with it).
    #[cfg(test)]
    fn request_mac_key(&self) -> Vec<u8> {
        Sha256::digest(&self.secret[..]).to_vec()
    }

    /// The response MAC the join endpoint sends with a grant (public for the fuzz target
    /// of the joining side's answer reader).
    pub fn response_mac(&self, nonce: &str, body: &[u8]) -> Vec<u8> {
        hmac(&self.secret[..], &[b"response", nonce.as_bytes(), body])
            .finalize()
            .into_bytes()
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const AUTH: &[u8] = b"the master key's join secret....";
    const NOW: u64 = 1_790_000_000;

    fn addr() -> OnionAddress {
        OnionAddress::from_public_key([7u8; 32])
    }

    fn key(n: u64) -> JoinKey {
        JoinKey::derive(SECRET, Some(AUTH), &JoinGeneration::first(n))
    }

    fn mint(k: &JoinKey, expires: u64) -> JoinToken {
        k.mint(addr(), 80, expires).expect("an eligible key mints")
    }

    fn check(k: &JoinKey, t: &JoinToken, now: u64) -> Option<JoinToken> {
        match k.token_of(addr(), 80, t.path_id().as_bytes(), now)? {
            LiveToken::Verifiable(t) => Some(t),
            LiveToken::TagOnly { .. } => None,
        }
    }

    /// A worker (cluster secret, no master key) recognises live ids but can neither mint a
    /// token nor learn a token's secret: a token it forges is refused by eligible nodes.
    #[test]
    fn a_worker_recognises_tokens_but_cannot_mint_them() {
        let g = JoinGeneration::first(0);
        let worker = JoinKey::derive(SECRET, None, &g);
        assert!(!worker.is_eligible() && key(0).is_eligible());
        assert!(worker.mint(addr(), 80, NOW + 60).is_none());
        let t = mint(&key(0), NOW + 60);
        match worker.token_of(addr(), 80, t.path_id().as_bytes(), NOW) {
            Some(LiveToken::TagOnly { id }) => assert_eq!(id, t.path_id()),
            _ => panic!("a worker recognises a live id"),
        }
        assert!(worker
            .token_of(addr(), 80, t.path_id().as_bytes(), NOW + 60)
            .is_none());
        // A forgery with another authority secret: a valid tag, the wrong secret.
        let forger = JoinKey::derive(SECRET, Some(b"not the master key's secret....."), &g);
        let forged = mint(&forger, NOW + 60);
        let seen = check(&key(0), &forged, NOW).expect("the tag is the cluster's");
        assert_ne!(seen.request_mac_key(), forged.request_mac_key());
    }

    #[test]
    fn token_round_trip_and_only_its_key_takes_it_until_it_expires() {
        let k = key(0);
        let t = mint(&k, NOW + 3600);
        assert_eq!(t.expires(), NOW + 3600);
        let s = t.encode();
        assert!(s.starts_with("rbjoin2-"));
        let back = JoinToken::parse(&format!("  {}\n", *s)).unwrap();
        assert_eq!((back.master, back.port), (t.master, 80));
        assert_eq!(back.path_id(), t.path_id());
        assert_eq!(back.path_id().len(), PATH_ID_HEX);
        let found = check(&k, &back, NOW).expect("its own key takes it");
        assert_eq!(found.request_mac_key(), t.request_mac_key());
        assert!(check(&k, &t, NOW + 3599).is_some());
        assert!(check(&k, &t, NOW + 3600).is_none(), "expired");
        assert!(check(&key(1), &t, NOW).is_none(), "another generation");
        // Two tokens of one key differ; a changed expiry breaks the tag.
        let t2 = mint(&k, NOW + 3600);
        assert_ne!(t2.path_id(), t.path_id());
        let mut id = t.path_id().into_bytes();
        id[9] = if id[9] == b'f' { b'e' } else { b'f' };
        assert!(k.token_of(addr(), 80, &id, NOW).is_none());
        assert!(k.token_of(addr(), 80, b"zz", NOW).is_none());
        assert!(!format!("{t:?}").contains(&t.path_id()));
        assert!(!format!("{k:?}").contains(&k.fingerprint()));
        assert_ne!(k.fingerprint(), key(1).fingerprint());
    }

    #[test]
    fn salted_generations_parse_order_and_change_the_key() {
        let g0 = JoinGeneration::first(0);
        let g1 = g0.next();
        assert_eq!(g1.n, 1);
        assert_eq!(g1.salt.len(), 16);
        assert_ne!(g1.salt, g0.next().salt);
        assert_eq!(JoinGeneration::salted(0).n, 0);
        assert_ne!(JoinGeneration::salted(0), JoinGeneration::salted(0));
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
        // The salt changes the key: the secret and the counter alone do not give it.
        let unsalted = JoinKey::derive(SECRET, Some(AUTH), &JoinGeneration::first(1));
        let salted = JoinKey::derive(SECRET, Some(AUTH), &g1);
        assert_ne!(unsalted.fingerprint(), salted.fingerprint());
        let t = mint(&salted, NOW + 60);
        assert!(check(&unsalted, &t, NOW).is_none());
    }

    #[test]
    fn broken_tokens_are_explained_without_echoing_them() {
        let t = mint(&key(0), NOW + 60);
        let s = t.encode().to_string();
        let mut typo = s.clone().into_bytes();
        let i = typo.len() - 5;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let short = format!(
            "rbjoin2-{}",
            data_encoding::BASE32_NOPAD
                .encode(&[1u8; 60])
                .to_ascii_lowercase()
        );
        let cases = [
            ("", "does not start"),
            ("rbjoin1-abc", "old multi-use token"),
            ("rbjoin3-abc", "does not start"),
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
}
