//! The join token and the join generation it is derived from.
//!
//! A token is one opaque string: the master address, its virtual port and a 32-byte join
//! secret, `rbjoin1-` + base32 + a 2-byte check. The join secret is
//! `HKDF-SHA256(cluster secret, generation)`, so every member checks tokens without any
//! secret in gossip, and a rotation only raises the generation. The path id and the
//! request/response MACs are HMACs of the join secret.

use super::error::{JoinError, TokenProblem};
use super::message::JoinRequest;
use hmac::{Hmac, Mac};
use rustbalance_hs::OnionAddress;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Tokens start with this (and a dash).
pub const TOKEN_PREFIX: &str = "rbjoin1";
/// Length of the path id in hex characters.
pub(crate) const PATH_ID_HEX: usize = 32;
/// Bytes of a token: public key, port, join secret, check.
const TOKEN_BYTES: usize = 32 + 2 + 32 + 2;

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
    pub fn parse(text: &str) -> Result<JoinToken, JoinError> {
        let bad = |problem| JoinError::BadToken { problem };
        let t = text.trim();
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
            ],
        )
        .finalize()
        .into_bytes()
        .to_vec()
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
}
