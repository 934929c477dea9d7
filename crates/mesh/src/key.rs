//! WireGuard x25519 keys: the secret [`PrivateKey`] (zeroized, never printed) and its
//! [`PublicKey`], plus the 0600 key file.
//!
//! The key file holds one line of base64, the format of `wg genkey`, so an operator can inspect
//! the public key with `wg pubkey < file` and an existing WireGuard key can be reused.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use zeroize::{Zeroize, Zeroizing};

use crate::err::{Error, Result};

/// Length of an x25519 key in bytes.
const KEY_LEN: usize = 32;

/// A node's WireGuard private key. Zeroized on drop; `Debug` prints nothing secret; there is
/// no `Display` and no `Clone`, so a copy can only be made on purpose.
pub struct PrivateKey(x25519_dalek::StaticSecret);

impl PrivateKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(x25519_dalek::StaticSecret::random())
    }

    /// Build from raw bytes (e.g. a test vector). The caller should zeroize its copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The key as base64, wrapped so that it is wiped when dropped. Only for handing the key to
    /// the WireGuard backend.
    pub(crate) fn to_base64(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.0.to_bytes());
        Zeroizing::new(B64.encode(bytes.as_slice()))
    }

    /// Load a key file written by [`PrivateKey::save`] or `wg genkey`. Refuses a file that group
    /// or others may access.
    pub fn load(path: &Path) -> Result<Self> {
        let read_err = |source| Error::KeyFileRead {
            path: path.to_owned(),
            source,
        };
        let meta = fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::KeyFileMode {
                path: path.to_owned(),
                mode,
            });
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(read_err)?);
        let format_err = || Error::KeyFileFormat {
            path: path.to_owned(),
        };
        let raw = Zeroizing::new(B64.decode(text.trim()).map_err(|_| format_err())?);
        let mut bytes: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| format_err())?;
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Write the key to `path` with mode 0600, atomically: a temporary file in the same
    /// directory is written, synced and renamed over `path`, so a crash leaves either the old
    /// file or the new one, never a torn or world-readable one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut line = self.to_base64();
        line.push('\n');
        rustbalance_fsutil::write_atomic(path, line.as_bytes(), 0o600).map_err(|source| {
            Error::KeyFileWrite {
                path: path.to_owned(),
                source,
            }
        })
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<secret> for {})", self.public_key())
    }
}

/// A WireGuard public key. Public: fine to log, put in configs and send to other nodes.
/// Text form: 44 characters of standard base64, as printed by `wg pubkey`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let err = || Error::PublicKeyFormat {
            input: s.chars().take(64).collect(),
        };
        let raw = B64.decode(s.trim()).map_err(|_| err())?;
        let bytes: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| err())?;
        Ok(Self(bytes))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.key");
        let key = PrivateKey::generate();
        key.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = PrivateKey::load(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        // One base64 line, like `wg genkey`.
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 45);
        assert!(text.ends_with('\n'));
        // Overwriting keeps the mode and leaves no temporary file behind.
        let other = PrivateKey::generate();
        other.save(&path).unwrap();
        assert_eq!(
            PrivateKey::load(&path).unwrap().public_key(),
            other.public_key()
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.key");
        PrivateKey::generate().save(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = PrivateKey::load(&path).unwrap_err();
        assert!(
            matches!(err, Error::KeyFileMode { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn key_file_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.key");
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            PrivateKey::load(&path),
            Err(Error::KeyFileFormat { .. })
        ));
    }

    #[test]
    fn rfc7748_known_answer() {
        // RFC 7748 section 6.1, Alice's key pair.
        let sk: [u8; 32] =
            hex_bytes("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let pk = hex_bytes("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(PrivateKey::from_bytes(sk).public_key().as_bytes(), &pk);
        // The backend crate derives the same public key.
        let theirs = defguard_wireguard_rs::key::Key::new(sk).public_key();
        assert_eq!(theirs.as_array(), pk);
    }

    fn hex_bytes(s: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn public_key_text_round_trip_and_debug_hides_secret() {
        let sk = PrivateKey::generate();
        let pk = sk.public_key();
        assert_eq!(pk.to_string().parse::<PublicKey>().unwrap(), pk);
        assert!("abc".parse::<PublicKey>().is_err());
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains(sk.to_base64().as_str()));
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
    }
}
