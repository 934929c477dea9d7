//! Onion-service identity keys: the contents of tor's `hs_ed25519_*` files and
//! Onionbalance's PKCS#8 PEM files, and generation of new keys. Bytes in, bytes out:
//! reading and writing the files is the node's key store (`rustbalance_node::keystore`).
//!
//! Secret material lives in [`Zeroizing`] buffers and is never printed:
//! `Debug` shows only the public address.

use crate::address::OnionAddress;
use crate::err::{Error, KeyFileProblem, Result};
use base64::Engine;
use rand::{CryptoRng, Rng};
use sha2::{Digest, Sha512};
use std::fmt;
use std::path::Path;
use tor_hscrypto::pk::HsIdKeypair;
use tor_llcrypto::pk::ed25519::ExpandedKeypair;
use zeroize::Zeroizing;

/// Header of tor's `hs_ed25519_secret_key` (NUL-padded to 32 bytes).
const SECRET_HEADER: &[u8] = b"== ed25519v1-secret: type0 ==";
/// Header of tor's `hs_ed25519_public_key` (NUL-padded to 32 bytes).
const PUBLIC_HEADER: &[u8] = b"== ed25519v1-public: type0 ==";
/// DER prefix of a PKCS#8 v1 ed25519 private key (RFC 8410), before the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// File names tor uses inside a `HiddenServiceDir`.
pub const SECRET_KEY_FILE: &str = "hs_ed25519_secret_key";
/// See [`SECRET_KEY_FILE`].
pub const PUBLIC_KEY_FILE: &str = "hs_ed25519_public_key";
/// See [`SECRET_KEY_FILE`].
pub const HOSTNAME_FILE: &str = "hostname";

/// The secret identity key of an onion service (an expanded ed25519 key).
pub struct IdentityKey {
    /// Scalar (32 bytes) followed by hash prefix (32 bytes), exactly as tor stores it.
    expanded: Zeroizing<[u8; 64]>,
    /// The public key matching `expanded`.
    public: [u8; 32],
}

impl IdentityKey {
    /// Generate a fresh key.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// Expand a 32-byte ed25519 seed the standard way (SHA-512, clamped).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let digest = Sha512::digest(seed);
        let mut expanded = Zeroizing::new([0u8; 64]);
        expanded.copy_from_slice(&digest);
        expanded[0] &= 248;
        expanded[31] &= 127;
        expanded[31] |= 64;
        Self::from_expanded(expanded).expect("a clamped SHA-512 output is a valid expanded key")
    }

    /// The public key bytes.
    pub(crate) fn public_bytes(&self) -> &[u8; 32] {
        &self.public
    }

    /// The 64-byte expanded secret key (for sealing).
    pub(crate) fn expanded_bytes(&self) -> &[u8; 64] {
        &self.expanded
    }

    /// From the 64-byte expanded secret key (tor's on-disk body, a sealed file's
    /// plaintext), if it is a valid key.
    pub(crate) fn from_expanded(expanded: Zeroizing<[u8; 64]>) -> Option<Self> {
        let kp = ExpandedKeypair::from_secret_key_bytes(*expanded)?;
        let public = kp.public().to_bytes();
        Some(IdentityKey { expanded, public })
    }

    /// [`IdentityKey::from_bytes`] on the contents of the key file `path` (only named
    /// in the error; nothing is read here).
    pub fn from_file_bytes(path: &Path, data: &[u8]) -> Result<Self> {
        Self::from_bytes(data).map_err(|problem| Error::BadKeyFile {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Parse the contents of a key file in any plain format: tor's
    /// `hs_ed25519_secret_key`, or a PKCS#8 PEM file as written by Onionbalance.
    /// A sealed key is refused (open it with [`IdentityKey::unseal`]).
    pub fn from_bytes(data: &[u8]) -> std::result::Result<Self, KeyFileProblem> {
        if data.starts_with(SECRET_HEADER) {
            if data.len() != 96 {
                return Err(KeyFileProblem::TorSecretLength { len: data.len() });
            }
            let mut expanded = Zeroizing::new([0u8; 64]);
            expanded.copy_from_slice(&data[32..]);
            return Self::from_expanded(expanded).ok_or(KeyFileProblem::InvalidScalar);
        }
        if data.starts_with(PUBLIC_HEADER) {
            return Err(KeyFileProblem::PublicKeyFile);
        }
        if crate::sealed::is_sealed(data) {
            return Err(KeyFileProblem::Sealed);
        }
        if data.starts_with(b"-----BEGIN") {
            return Self::from_pem(data);
        }
        Err(KeyFileProblem::UnknownFormat)
    }

    /// Parse a PKCS#8 PEM ed25519 private key (Onionbalance's format).
    fn from_pem(data: &[u8]) -> std::result::Result<Self, KeyFileProblem> {
        let text = std::str::from_utf8(data).map_err(|_| KeyFileProblem::PemNotText)?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        match lines.next() {
            Some("-----BEGIN PRIVATE KEY-----") => {}
            Some(other) if other.contains("ENCRYPTED") => return Err(KeyFileProblem::PemEncrypted),
            Some(other) => return Err(KeyFileProblem::PemType(other.to_string())),
            None => return Err(KeyFileProblem::PemEmpty),
        }
        let mut b64 = Zeroizing::new(String::new());
        let mut ended = false;
        for l in lines {
            if l == "-----END PRIVATE KEY-----" {
                ended = true;
                break;
            }
            b64.push_str(l);
        }
        if !ended {
            return Err(KeyFileProblem::PemUnterminated);
        }
        let der = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| KeyFileProblem::PemBase64(e.to_string()))?,
        );
        if der.len() < 48 || der[..16] != PKCS8_ED25519_PREFIX {
            return Err(KeyFileProblem::PemNotEd25519);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&der[16..48]);
        Ok(Self::from_seed(&seed))
    }

    /// A second copy of this key (its own zeroized buffer), for a task that
    /// must own one.
    pub fn duplicate(&self) -> Self {
        IdentityKey {
            expanded: self.expanded.clone(),
            public: self.public,
        }
    }

    /// A 32-byte secret derived from this key for another purpose named by `info`:
    /// `HKDF-SHA256(ikm = the 64-byte expanded secret key, no salt, info)`. Only holders
    /// of the key can compute it (the cluster's member authority is derived this way).
    pub fn derive_secret(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, &self.expanded[..])
            .expand(info, &mut out[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// The onion address of this key.
    pub fn address(&self) -> OnionAddress {
        OnionAddress::from_public_key(self.public)
    }

    /// The key as arti's type, for blinding and signing.
    pub fn to_hs_keypair(&self) -> HsIdKeypair {
        ExpandedKeypair::from_secret_key_bytes(*self.expanded)
            .expect("checked when the key was loaded")
            .into()
    }

    /// tor's `hs_ed25519_secret_key` file contents.
    pub fn tor_secret_file(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(padded_header(SECRET_HEADER));
        out.extend_from_slice(&self.expanded[..]);
        out
    }

    /// The key as tor's control port takes it (`ADD_ONION ED25519-V3:<base64 of the
    /// 64-byte expanded key>`), in a buffer zeroized on drop. For an authenticated control
    /// connection only: never on a command line, never in a log.
    pub fn control_port_key(&self) -> Zeroizing<String> {
        const PREFIX: &str = "ED25519-V3:";
        // All capacity up front (64 bytes are 88 base64 characters): no reallocation
        // leaves a copy of the key behind.
        let mut s = Zeroizing::new(String::with_capacity(PREFIX.len() + 88));
        s.push_str(PREFIX);
        base64::engine::general_purpose::STANDARD.encode_string(&self.expanded[..], &mut s);
        s
    }

    /// tor's `hs_ed25519_public_key` file contents.
    pub fn tor_public_file(&self) -> Vec<u8> {
        let mut out = padded_header(PUBLIC_HEADER);
        out.extend_from_slice(&self.public);
        out
    }
}

/// A 32-byte tor key-file header: the tag, NUL-padded.
fn padded_header(tag: &[u8]) -> Vec<u8> {
    let mut v = tag.to_vec();
    v.resize(32, 0);
    v
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({}, secret redacted)", self.address())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_control_port_key_is_the_expanded_key_in_base64() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let k = IdentityKey::generate(&mut rng);
        let s = k.control_port_key();
        let b64 = s.strip_prefix("ED25519-V3:").unwrap();
        assert_eq!(b64.len(), 88);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&raw[..], &k.expanded[..]);
        assert!(s.capacity() == s.len(), "no spare growth, no reallocation");
    }

    #[test]
    fn tor_files_round_trip() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let k = IdentityKey::generate(&mut rng);
        let back = IdentityKey::from_bytes(&k.tor_secret_file()).unwrap();
        assert_eq!(back.address(), k.address());
        assert_eq!(&k.tor_public_file()[32..], &k.public[..]);
        assert!(!format!("{k:?}").contains(&hex::encode(&k.expanded[..8])));
    }

    #[test]
    fn pem_seed_matches_rfc8032() {
        // RFC 8032 section 7.1, TEST 1: secret seed -> public key.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        let k = IdentityKey::from_bytes(pem.as_bytes()).unwrap();
        assert_eq!(
            hex::encode(k.address().public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn corrupt_files_are_explained() {
        let e = |d: &[u8]| IdentityKey::from_bytes(d).err().unwrap().to_string();
        assert!(e(b"hello").contains("unknown format"));
        let mut short = padded_header(SECRET_HEADER);
        short.extend_from_slice(&[1; 10]);
        assert!(e(&short).contains("96 bytes"));
        assert!(e(&padded_header(PUBLIC_HEADER)).contains("PUBLIC"));
        assert!(e(b"-----BEGIN PRIVATE KEY-----\nAAAA\n").contains("END PRIVATE KEY"));
        assert!(e(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n").contains("encrypted"));
        assert!(e(b"rustbalance-key\x01").contains("sealed"));
    }
}
