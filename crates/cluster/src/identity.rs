//! A node's identity: an Ed25519 key pair of its own, made when the node is created
//! (`init` / `join`, or on the first `run` of a node made before identities existed).
//!
//! The secret half never leaves the node: it lives in one 0600 file in the node's data
//! directory (the node's key store reads and writes it) and in memory that is zeroized on
//! drop. The public half ([`NodePublicKey`]) is what the node's member certificate
//! ([`crate::cert`]) binds to its name, and what every other node checks the signatures of
//! its gossip values ([`crate::signed`]) against.
//!
//! File format (text, so that an operator can tell what the file is):
//!
//! ```text
//! rustbalance node identity v1
//! <the 32-byte Ed25519 seed, base64url without padding (43 characters)>
//! ```

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::err::ClusterError;

/// First line of an identity file.
const FILE_HEADER: &str = "rustbalance node identity v1";

/// A node's secret identity key. Never logged; zeroized on drop.
pub struct NodeIdentity {
    key: SigningKey,
}

impl NodeIdentity {
    /// A new identity from the operating system's random generator.
    pub fn generate() -> NodeIdentity {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::fill(&mut seed[..]);
        NodeIdentity::from_seed(&seed)
    }

    /// The identity with this 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> NodeIdentity {
        NodeIdentity {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The public key other nodes verify this node's signatures with.
    pub fn public(&self) -> NodePublicKey {
        NodePublicKey(self.key.verifying_key())
    }

    /// Signs `msg` (callers put a domain string first; see [`crate::signed`]).
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The identity file's content (secret: write it 0600, atomically).
    pub fn to_file_bytes(&self) -> Zeroizing<Vec<u8>> {
        let seed = Zeroizing::new(self.key.to_bytes());
        let text = Zeroizing::new(format!(
            "{FILE_HEADER}\n{}\n",
            URL_SAFE_NO_PAD.encode(&seed[..])
        ));
        Zeroizing::new(text.as_bytes().to_vec())
    }

    /// Reads an identity file's content; the error says what is wrong with it.
    pub fn from_file_bytes(data: &[u8]) -> Result<NodeIdentity, ClusterError> {
        let bad = |problem: &'static str| ClusterError::BadIdentity { problem };
        let text = std::str::from_utf8(data).map_err(|_| bad("it is not text"))?;
        let mut lines = text.lines();
        if lines.next() != Some(FILE_HEADER) {
            return Err(bad("its first line is not `rustbalance node identity v1`"));
        }
        let encoded = lines.next().ok_or(bad("the key line is missing"))?;
        if lines.next().is_some() {
            return Err(bad("it has lines after the key"));
        }
        let raw = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(encoded.trim_end())
                .map_err(|_| bad("the key line is not base64url"))?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            raw.as_slice()
                .try_into()
                .map_err(|_| bad("the key is not 32 bytes long"))?,
        );
        Ok(NodeIdentity::from_seed(&seed))
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeIdentity({}, <secret redacted>)", self.public())
    }
}

/// A node's public identity key. Text form: base64url without padding (43 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodePublicKey(pub(crate) VerifyingKey);

impl NodePublicKey {
    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// From 32 bytes; fails if they are not a valid Ed25519 point.
    pub fn from_bytes(b: &[u8; 32]) -> Result<NodePublicKey, ClusterError> {
        VerifyingKey::from_bytes(b)
            .map(NodePublicKey)
            .map_err(|_| ClusterError::BadIdentity {
                problem: "the public key is not a valid Ed25519 key",
            })
    }

    /// Parses the text form.
    pub fn decode(s: &str) -> Result<NodePublicKey, ClusterError> {
        NodePublicKey::from_bytes(&decode32(s).ok_or(ClusterError::BadIdentity {
            problem: "the public key is not 32 bytes of base64url",
        })?)
    }

    /// Checks a signature made by [`NodeIdentity::sign`] (strict: no malleable or
    /// small-order forms).
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.0
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }
}

impl fmt::Display for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodePublicKey({self})")
    }
}

/// 32 bytes from base64url without padding, or `None`.
pub(crate) fn decode32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
}

/// 64 bytes (a signature) from base64url without padding, or `None`.
pub(crate) fn decode64(s: &str) -> Option<[u8; 64]> {
    if s.len() != 86 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
}

/// base64url without padding.
pub(crate) fn encode_b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_strict_parse() {
        let id = NodeIdentity::from_seed(&[7u8; 32]);
        let bytes = id.to_file_bytes();
        let back = NodeIdentity::from_file_bytes(&bytes).unwrap();
        assert_eq!(back.public(), id.public());
        assert!(!format!("{id:?}").contains(&encode_b64(&[7u8; 32])));
        let text = std::str::from_utf8(&bytes).unwrap().to_string();
        let cases = [
            (b"\xff".to_vec(), "not text"),
            (text.replace("v1", "v2").into_bytes(), "first line"),
            (FILE_HEADER.as_bytes().to_vec(), "missing"),
            (format!("{text}extra\n").into_bytes(), "after the key"),
            (text.replace('B', "*").into_bytes(), "base64url"),
            (
                format!("{FILE_HEADER}\n{}\n", encode_b64(&[1u8; 31])).into_bytes(),
                "32 bytes",
            ),
        ];
        for (data, want) in cases {
            let e = NodeIdentity::from_file_bytes(&data)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn public_key_text_form_round_trips() {
        let k = NodeIdentity::from_seed(&[9u8; 32]).public();
        assert_eq!(NodePublicKey::decode(&k.to_string()).unwrap(), k);
        assert!(NodePublicKey::decode("short").is_err());
        let sig = NodeIdentity::from_seed(&[9u8; 32]).sign(b"m");
        assert!(k.verify(b"m", &sig));
        assert!(!k.verify(b"n", &sig));
    }
}
