//! Signed gossip values: every value in a node's gossip state is signed by that node's
//! identity ([`crate::identity`]), so that only the node a state describes can write it.
//!
//! A value as stored in chitchat (an *envelope*):
//!
//! ```text
//! "+" <signature, 86 characters of base64url> <value>     a value
//! "-" <signature>                                          a deleted key (tombstone)
//! ```
//!
//! The signature is Ed25519 by the node's identity over
//!
//! ```text
//! "rustbalance gossip value v2\0" | len u16 | node name | generation u64
//!   | address | len u16 | key | version u64 | "+" or "-" | value   (integers big-endian)
//! address = 4 | IPv4 (4 bytes) | port u16,  or  6 | IPv6 (16 bytes) | port u16
//! ```
//!
//! where `generation` is the node's chitchat generation, `address` the gossip address it
//! advertises (an IPv4-mapped IPv6 address is signed as IPv4) and `version` the chitchat
//! version of this key-value. Covering the address matters because chitchat tells nodes
//! apart by name, generation *and* address: without it a member could gossip a copy of
//! another node at its own address, carrying that node's real envelopes, and the copy
//! could stand for the node in a view (found in review, 2026-12-06). Covering the version is what stops replays: chitchat keeps
//! the value with the highest version, so a member that re-sends an old signed value
//! under a higher version would otherwise overwrite the current one; the signature no
//! longer matches once the version changes. Covering the generation stops moving values
//! into a forged generation of the same node.
//!
//! **Deletions.** chitchat's own tombstones carry an empty value, which cannot carry a
//! signature, and its garbage collection of tombstones lets peers reset a node's state.
//! So signed nodes never delete with chitchat: a deleted key is overwritten with a signed
//! tombstone (`-`), which [`crate::membership`] hides from its views, and a key is never
//! removed from the state (a node's keys are a small fixed set plus one per instance). A
//! node delta from a signing node that carries a chitchat tombstone, a `SetMaxVersion`
//! or a non-zero last-GC version is refused ([`crate::validator`]).

use std::net::{IpAddr, SocketAddr};

use crate::identity::{decode64, encode_b64, NodeIdentity, NodePublicKey};

/// Domain separation of gossip value signatures.
const VALUE_DOMAIN: &[u8] = b"rustbalance gossip value v2\0";
/// Length of the envelope's header: tag + signature.
pub const ENVELOPE_OVERHEAD: usize = 1 + 86;

/// Where a value lives: the five things a value's signature covers besides the value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ValueCtx<'a> {
    /// The node's name (chitchat node id).
    pub node: &'a str,
    /// The node's chitchat generation.
    pub generation: u64,
    /// The gossip address the node advertises (chitchat's third part of a node's id).
    pub addr: SocketAddr,
    /// The gossip key.
    pub key: &'a str,
    /// The chitchat version of this key-value.
    pub version: u64,
}

/// An envelope's content.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Opened<'a> {
    /// The key holds this value.
    Set(&'a str),
    /// The key was deleted.
    Deleted,
}

impl<'a> Opened<'a> {
    /// The value, `None` for a deleted key.
    pub fn value(self) -> Option<&'a str> {
        match self {
            Opened::Set(v) => Some(v),
            Opened::Deleted => None,
        }
    }
}

/// Why an envelope was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EnvelopeFault {
    /// Not an envelope (an unsigned value).
    Unsigned,
    /// The signature does not match the node's identity and the value's place.
    BadSignature,
}

fn message(ctx: &ValueCtx<'_>, opened: Opened<'_>) -> Vec<u8> {
    let value = opened.value().unwrap_or("");
    let mut m =
        Vec::with_capacity(VALUE_DOMAIN.len() + 40 + ctx.node.len() + ctx.key.len() + value.len());
    m.extend_from_slice(VALUE_DOMAIN);
    // Names and keys are chitchat strings (u16 lengths), so the casts cannot truncate
    // anything chitchat carries; a longer string still signs unambiguously because the
    // fields after it have fixed lengths.
    m.extend_from_slice(&(ctx.node.len() as u16).to_be_bytes());
    m.extend_from_slice(ctx.node.as_bytes());
    m.extend_from_slice(&ctx.generation.to_be_bytes());
    match ctx.addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            m.push(4);
            m.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            m.push(6);
            m.extend_from_slice(&ip.octets());
        }
    }
    m.extend_from_slice(&ctx.addr.port().to_be_bytes());
    m.extend_from_slice(&(ctx.key.len() as u16).to_be_bytes());
    m.extend_from_slice(ctx.key.as_bytes());
    m.extend_from_slice(&ctx.version.to_be_bytes());
    m.push(match opened {
        Opened::Set(_) => b'+',
        Opened::Deleted => b'-',
    });
    m.extend_from_slice(value.as_bytes());
    m
}

/// The envelope of `opened` at `ctx`, signed by `identity`.
pub fn seal(identity: &NodeIdentity, ctx: &ValueCtx<'_>, opened: Opened<'_>) -> String {
    let sig = encode_b64(&identity.sign(&message(ctx, opened)));
    match opened {
        Opened::Set(v) => format!("+{sig}{v}"),
        Opened::Deleted => format!("-{sig}"),
    }
}

/// Splits an envelope into its content and signature without checking the signature
/// (for values that were checked when they arrived).
pub fn peek(envelope: &str) -> Result<(Opened<'_>, [u8; 64]), EnvelopeFault> {
    let tag = envelope.as_bytes().first().copied();
    let (Some(tag @ (b'+' | b'-')), Some(sig)) = (tag, envelope.get(1..ENVELOPE_OVERHEAD)) else {
        return Err(EnvelopeFault::Unsigned);
    };
    let sig = decode64(sig).ok_or(EnvelopeFault::Unsigned)?;
    let rest = &envelope[ENVELOPE_OVERHEAD..];
    let opened = match tag {
        b'+' => Opened::Set(rest),
        _ if rest.is_empty() => Opened::Deleted,
        _ => return Err(EnvelopeFault::Unsigned),
    };
    Ok((opened, sig))
}

/// Checks an envelope found at `ctx` against the node's identity key.
pub fn open<'e>(
    key: &NodePublicKey,
    ctx: &ValueCtx<'_>,
    envelope: &'e str,
) -> Result<Opened<'e>, EnvelopeFault> {
    let (opened, sig) = peek(envelope)?;
    if key.verify(&message(ctx, opened), &sig) {
        Ok(opened)
    } else {
        Err(EnvelopeFault::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: ValueCtx<'static> = ValueCtx {
        node: "a",
        generation: 5,
        addr: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 7946),
        key: "intro/x",
        version: 9,
    };

    #[test]
    fn sealed_values_open_only_where_they_were_signed() {
        let id = NodeIdentity::from_seed(&[1u8; 32]);
        let pk = id.public();
        let env = seal(&id, &CTX, Opened::Set("v a l"));
        assert_eq!(env.len(), ENVELOPE_OVERHEAD + 5);
        assert_eq!(open(&pk, &CTX, &env), Ok(Opened::Set("v a l")));
        let tomb = seal(&id, &CTX, Opened::Deleted);
        assert_eq!(open(&pk, &CTX, &tomb), Ok(Opened::Deleted));
        let moved = [
            ValueCtx { node: "b", ..CTX },
            ValueCtx {
                generation: 6,
                ..CTX
            },
            ValueCtx {
                key: "intro/y",
                ..CTX
            },
            ValueCtx { version: 10, ..CTX },
            ValueCtx {
                addr: "10.0.0.1:7947".parse().unwrap(),
                ..CTX
            },
            ValueCtx {
                addr: "10.0.0.2:7946".parse().unwrap(),
                ..CTX
            },
        ];
        for ctx in moved {
            assert_eq!(
                open(&pk, &ctx, &env),
                Err(EnvelopeFault::BadSignature),
                "{ctx:?}"
            );
        }
        let other = NodeIdentity::from_seed(&[2u8; 32]).public();
        assert_eq!(open(&other, &CTX, &env), Err(EnvelopeFault::BadSignature));
        // The value and the tag are covered too.
        let changed = format!("{}X", &env[..env.len() - 1]);
        assert_eq!(open(&pk, &CTX, &changed), Err(EnvelopeFault::BadSignature));
        let as_tomb = format!("-{}", &env[1..ENVELOPE_OVERHEAD]);
        assert_eq!(open(&pk, &CTX, &as_tomb), Err(EnvelopeFault::BadSignature));
    }

    #[test]
    fn unsigned_values_are_told_apart() {
        let pk = NodeIdentity::from_seed(&[1u8; 32]).public();
        let long_tomb = format!("-{}x", "A".repeat(86));
        for v in ["", "true", "+short", "-", long_tomb.as_str()] {
            assert_eq!(open(&pk, &CTX, v), Err(EnvelopeFault::Unsigned), "{v:?}");
        }
    }
}
