//! Member certificates and the authority that signs them.
//!
//! A **member certificate** binds a node's name (its chitchat node id) to its identity key
//! ([`crate::identity`]), its WireGuard public key, its tor instance's onion address and
//! its role (`worker`, or `eligible` to publish), with an issue time and a serial. The
//! **authority** signs it. The authority key is an Ed25519 key derived from the master
//! onion key, `seed = HKDF-SHA256(ikm = master secret key, info =`
//! [`AUTHORITY_INFO`]`)`, so only nodes holding the master key (publisher-eligible
//! nodes) can certify; every node trusts the authority's public key ([`AuthorityKey`]),
//! which eligible nodes compute and workers receive when they join.
//!
//! Text form, one line that fits a gossip value (fields separated by one space):
//!
//! ```text
//! rbcert1 <name> <role> <identity key> <wireguard key|-> <onion|-> <issued> <serial> <signature>
//! ```
//!
//! * `name`: 1–64 of `A–Z a–z 0–9 . _ -`;
//! * `role`: `worker` or `eligible`;
//! * `identity key`: 32 bytes, base64url without padding;
//! * `wireguard key`: 32 bytes, standard base64 with padding (as `wg` prints it), or `-`;
//! * `onion`: the instance's 56-character v3 address without `.onion`, or `-`;
//! * `issued`: Unix seconds; `serial`: decimal `u64` (both without leading zeros);
//! * `signature`: Ed25519 by the authority over `"rustbalance member certificate v1\0"`
//!   followed by the line up to (not including) the space before the signature;
//!   base64url without padding.
//!
//! [`parse`] accepts exactly what [`MemberCert::encode`] writes (a fuzz target feeds it
//! bytes); it does not check the signature: [`MemberCert::verify`] does.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::err::ClusterError;
use crate::identity::{decode32, decode64, encode_b64, NodePublicKey};

/// HKDF `info` that derives the authority key from the master secret key.
pub const AUTHORITY_INFO: &[u8] = b"rustbalance member authority v1";
/// First field of a certificate.
const TAG: &str = "rbcert1";
/// Domain separation of the authority's certificate signatures.
const CERT_DOMAIN: &[u8] = b"rustbalance member certificate v1\0";
/// Longest certificate accepted by [`parse`] (a real one is under 300 bytes).
pub const MAX_CERT_LEN: usize = 512;

/// What a member may do.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CertRole {
    /// Serves clients and advertises intro points; holds no master key.
    Worker,
    /// Holds the master key: may hold the publisher lease and certify members.
    Eligible,
}

impl CertRole {
    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Worker => "worker",
            CertRole::Eligible => "eligible",
        }
    }
}

/// Everything a certificate says, before the authority signs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFields {
    /// The node's name (its gossip node id).
    pub name: String,
    pub role: CertRole,
    /// The node's identity key.
    pub identity: NodePublicKey,
    /// The node's WireGuard public key, if it is meshed.
    pub wireguard: Option<[u8; 32]>,
    /// The node's instance onion address (56 characters, no `.onion`), if known.
    pub onion: Option<String>,
    /// When the authority issued it (Unix seconds).
    pub issued: u64,
    /// Chosen by the authority (random); revocations may name it.
    pub serial: u64,
}

/// A signed member certificate. Construct it with [`Authority::certify`] or [`parse`].
#[derive(Clone, PartialEq, Eq)]
pub struct MemberCert {
    fields: CertFields,
    signature: [u8; 64],
}

impl MemberCert {
    /// What the certificate says.
    pub fn fields(&self) -> &CertFields {
        &self.fields
    }
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.fields.name
    }
    /// The node's role.
    pub fn role(&self) -> CertRole {
        self.fields.role
    }
    /// The node's identity key.
    pub fn identity(&self) -> NodePublicKey {
        self.fields.identity
    }
    /// The serial.
    pub fn serial(&self) -> u64 {
        self.fields.serial
    }

    /// The text form (see the module doc).
    pub fn encode(&self) -> String {
        format!(
            "{} {}",
            signed_part(&self.fields),
            encode_b64(&self.signature)
        )
    }

    /// Whether `authority` signed this certificate.
    pub fn verify(&self, authority: &AuthorityKey) -> bool {
        let msg = [CERT_DOMAIN, signed_part(&self.fields).as_bytes()].concat();
        authority
            .0
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&self.signature))
            .is_ok()
    }
}

impl fmt::Debug for MemberCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MemberCert({} {} serial {})",
            self.fields.name,
            self.fields.role.as_str(),
            self.fields.serial
        )
    }
}

/// The certificate line without its signature: what the authority signs.
fn signed_part(c: &CertFields) -> String {
    format!(
        "{TAG} {} {} {} {} {} {} {}",
        c.name,
        c.role.as_str(),
        c.identity,
        c.wireguard.map_or("-".to_string(), |k| STANDARD.encode(k)),
        c.onion.as_deref().unwrap_or("-"),
        c.issued,
        c.serial
    )
}

/// A node name a certificate can carry.
pub fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_onion(s: &str) -> bool {
    s.len() == 56 && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
}

/// A decimal `u64` without sign or leading zeros.
fn parse_u64(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Reads a certificate's text form (strict: only what [`MemberCert::encode`] writes).
/// The signature is not checked here.
pub fn parse(data: &[u8]) -> Result<MemberCert, ClusterError> {
    let bad = |problem: &'static str| ClusterError::BadCert { problem };
    if data.len() > MAX_CERT_LEN {
        return Err(bad("it is longer than 512 bytes"));
    }
    let text = std::str::from_utf8(data).map_err(|_| bad("it is not UTF-8"))?;
    let f: Vec<&str> = text.split(' ').collect();
    let [tag, name, role, identity, wg, onion, issued, serial, sig] = f[..] else {
        return Err(bad("it does not have 9 space-separated fields"));
    };
    if tag != TAG {
        return Err(bad("it does not start with `rbcert1`"));
    }
    if !valid_name(name) {
        return Err(bad("the name is not 1-64 letters, digits, '.', '_' or '-'"));
    }
    let role = match role {
        "worker" => CertRole::Worker,
        "eligible" => CertRole::Eligible,
        _ => return Err(bad("the role is neither `worker` nor `eligible`")),
    };
    let identity =
        NodePublicKey::decode(identity).map_err(|_| bad("the identity key is invalid"))?;
    let wireguard = match wg {
        "-" => None,
        k => Some(decode_wg(k).ok_or(bad("the WireGuard key is not 32 bytes of base64"))?),
    };
    let onion = match onion {
        "-" => None,
        o if valid_onion(o) => Some(o.to_string()),
        _ => return Err(bad("the onion address is not 56 base32 characters")),
    };
    let issued = parse_u64(issued).ok_or(bad("the issue time is not a decimal number"))?;
    let serial = parse_u64(serial).ok_or(bad("the serial is not a decimal number"))?;
    let signature = decode64(sig).ok_or(bad("the signature is not 64 bytes of base64url"))?;
    Ok(MemberCert {
        fields: CertFields {
            name: name.to_string(),
            role,
            identity,
            wireguard,
            onion,
            issued,
            serial,
        },
        signature,
    })
}

/// A WireGuard key in its usual text form (standard base64, 44 characters).
fn decode_wg(s: &str) -> Option<[u8; 32]> {
    if s.len() != 44 {
        return None;
    }
    let b = STANDARD.decode(s).ok()?;
    // Only the canonical encoding (the last character's unused bits zero).
    (STANDARD.encode(&b) == s).then_some(())?;
    b.try_into().ok()
}

/// The authority's public key: what every node trusts. Text form: base64url without
/// padding (43 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthorityKey(VerifyingKey);

impl AuthorityKey {
    /// The text form.
    pub fn encode(&self) -> String {
        encode_b64(self.0.as_bytes())
    }

    /// Parses the text form (surrounding whitespace allowed, as read from a file).
    pub fn decode(s: &str) -> Result<AuthorityKey, ClusterError> {
        let bad = ClusterError::BadAuthorityKey {
            problem: "it is not 32 bytes of base64url (43 characters)",
        };
        let b = decode32(s.trim()).ok_or(bad)?;
        VerifyingKey::from_bytes(&b)
            .map(AuthorityKey)
            .map_err(|_| ClusterError::BadAuthorityKey {
                problem: "it is not a valid Ed25519 key",
            })
    }

    /// Checks a signature by [`Authority::sign`] over `domain` followed by `msg`.
    pub fn verify(&self, domain: &[u8], msg: &[u8], sig: &[u8; 64]) -> bool {
        let m = [domain, msg].concat();
        self.0
            .verify_strict(&m, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }
}

impl fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorityKey({})", self.encode())
    }
}

/// The authority's secret key (only on nodes holding the master key). Zeroized on drop.
pub struct Authority {
    key: SigningKey,
}

impl Authority {
    /// The authority whose seed is `seed`: in production
    /// `HKDF-SHA256(master secret key, info = AUTHORITY_INFO)`, which
    /// `rustbalance_hs::IdentityKey::derive_secret(AUTHORITY_INFO)` computes.
    pub fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Authority {
        Authority {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The public key every node trusts.
    pub fn public(&self) -> AuthorityKey {
        AuthorityKey(self.key.verifying_key())
    }

    /// Signs a member certificate.
    pub fn certify(&self, fields: CertFields) -> Result<MemberCert, ClusterError> {
        if !valid_name(&fields.name) {
            return Err(ClusterError::BadCert {
                problem: "the name is not 1-64 letters, digits, '.', '_' or '-'",
            });
        }
        if fields.onion.as_deref().is_some_and(|o| !valid_onion(o)) {
            return Err(ClusterError::BadCert {
                problem: "the onion address is not 56 base32 characters",
            });
        }
        let msg = [CERT_DOMAIN, signed_part(&fields).as_bytes()].concat();
        let signature = self.key.sign(&msg).to_bytes();
        Ok(MemberCert { fields, signature })
    }

    /// Signs `domain` followed by `msg` (for other authority statements, e.g.
    /// revocations; every kind of statement uses its own domain string ending in `\0`).
    pub fn sign(&self, domain: &[u8], msg: &[u8]) -> [u8; 64] {
        self.key.sign(&[domain, msg].concat()).to_bytes()
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Authority({}, <secret redacted>)",
            self.public().encode()
        )
    }
}

#[cfg(test)]
mod tests;
