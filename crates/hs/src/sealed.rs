//! Master keys sealed at rest: the 64-byte expanded secret key encrypted with
//! XChaCha20-Poly1305 under a key derived from a passphrase with argon2id.
//!
//! File layout (all integers big-endian):
//!
//! ```text
//!  offset  size  field
//!       0    16  magic "rustbalance-key\x01"   (last byte: format version 1)
//!      16     4  argon2id m_cost (KiB)
//!      20     4  argon2id t_cost (passes)
//!      24     4  argon2id p_cost (lanes)
//!      28    32  public key (so the onion address is known without the passphrase)
//!      60    16  salt (random)
//!      76    24  nonce (random)
//!     100    80  ciphertext: 64-byte expanded key + 16-byte tag
//! ```
//!
//! The 100-byte header is the AEAD's associated data, so changing a parameter, the salt or
//! the nonce fails authentication like a wrong passphrase. Parameters are checked against
//! hard limits *before* any key derivation: a hostile file cannot make us allocate
//! gigabytes or spin for minutes.

use crate::atomic::write_atomic;
use crate::err::{Error, Result};
use crate::keys::IdentityKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;
use zeroize::Zeroizing;

const MAGIC: &[u8; 16] = b"rustbalance-key\x01";
const HEADER_LEN: usize = 16 + 12 + 32 + 16 + 24;
const CIPHER_LEN: usize = 64 + 16;
/// Size of a sealed key file.
pub const SEALED_LEN: usize = HEADER_LEN + CIPHER_LEN;
/// The systemd credential name the daemon reads the passphrase from.
pub const DEFAULT_CREDENTIAL: &str = "master-passphrase";

const MAX_M_COST: u32 = 1024 * 1024; // 1 GiB
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for SealParams {
    /// 64 MiB, 3 passes, 1 lane.
    fn default() -> Self {
        SealParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl SealParams {
    /// Cheap parameters for tests (never for real keys).
    pub fn fast_for_tests() -> Self {
        SealParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Within the hard limits?
    fn check(&self) -> std::result::Result<(), String> {
        if self.m_cost > MAX_M_COST || self.m_cost < 8 * self.p_cost.max(1) {
            return Err(format!(
                "argon2 memory {} KiB is outside 8..={MAX_M_COST} KiB (corrupt or hostile file)",
                self.m_cost
            ));
        }
        if self.t_cost == 0 || self.t_cost > MAX_T_COST {
            return Err(format!(
                "argon2 passes {} outside 1..={MAX_T_COST} (corrupt or hostile file)",
                self.t_cost
            ));
        }
        if self.p_cost == 0 || self.p_cost > MAX_P_COST {
            return Err(format!(
                "argon2 lanes {} outside 1..={MAX_P_COST} (corrupt or hostile file)",
                self.p_cost
            ));
        }
        Ok(())
    }
}

/// Does `bytes` look like a sealed key (by its magic)?
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= 15 && bytes[..15] == MAGIC[..15]
}

fn derive(
    passphrase: &[u8],
    salt: &[u8],
    p: SealParams,
) -> std::result::Result<Zeroizing<[u8; 32]>, String> {
    p.check()?;
    let params = argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| format!("argon2 parameters: {e}"))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|e| format!("argon2: {e}"))?;
    Ok(out)
}

/// Seal `expanded` (64 bytes) with `passphrase`.
fn seal_bytes(
    expanded: &[u8; 64],
    public: &[u8; 32],
    passphrase: &[u8],
    p: SealParams,
) -> std::result::Result<Vec<u8>, String> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    rand::RngExt::fill(&mut rand::rng(), &mut salt[..]);
    rand::RngExt::fill(&mut rand::rng(), &mut nonce[..]);
    let mut out = Vec::with_capacity(SEALED_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&p.m_cost.to_be_bytes());
    out.extend_from_slice(&p.t_cost.to_be_bytes());
    out.extend_from_slice(&p.p_cost.to_be_bytes());
    out.extend_from_slice(public);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let key = derive(passphrase, &salt, p)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: expanded,
                aad: &out[..HEADER_LEN],
            },
        )
        .map_err(|_| "encryption failed".to_string())?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Open a sealed key; the error says what is wrong (never anything secret).
fn unseal_bytes(
    data: &[u8],
    passphrase: &[u8],
) -> std::result::Result<Zeroizing<[u8; 64]>, String> {
    if !is_sealed(data) {
        return Err("not a sealed RustBalance key".into());
    }
    if data.len() < 16 {
        return Err(format!(
            "{} bytes, a sealed key has {SEALED_LEN} (truncated or corrupt)",
            data.len()
        ));
    }
    if data[15] != MAGIC[15] {
        return Err(format!(
            "sealed-key format version {} (this RustBalance reads version 1)",
            data[15]
        ));
    }
    if data.len() != SEALED_LEN {
        return Err(format!(
            "{} bytes, a sealed key has {SEALED_LEN} (truncated or corrupt)",
            data.len()
        ));
    }
    let u32_at = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let p = SealParams {
        m_cost: u32_at(16),
        t_cost: u32_at(20),
        p_cost: u32_at(24),
    };
    let salt = &data[60..76];
    let nonce = &data[76..100];
    let key = derive(passphrase, salt, p)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &data[HEADER_LEN..],
                    aad: &data[..HEADER_LEN],
                },
            )
            .map_err(|_| {
                "wrong passphrase, or the file is corrupt (authentication failed)".to_string()
            })?,
    );
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&plain);
    Ok(out)
}

impl IdentityKey {
    /// This key sealed with `passphrase` (the bytes of a sealed key file).
    pub fn seal(&self, passphrase: &[u8], params: SealParams) -> Result<Vec<u8>> {
        seal_bytes(
            self.expanded_bytes(),
            self.public_bytes(),
            passphrase,
            params,
        )
        .map_err(|reason| Error::Unseal {
            path: "(new key)".into(),
            reason,
        })
    }

    /// Open a sealed key file's bytes.
    pub fn unseal(data: &[u8], passphrase: &[u8]) -> Result<IdentityKey> {
        let expanded = unseal_bytes(data, passphrase).map_err(|reason| Error::Unseal {
            path: "(sealed key)".into(),
            reason,
        })?;
        let key = IdentityKey::from_expanded_checked(expanded).ok_or_else(|| Error::Unseal {
            path: "(sealed key)".into(),
            reason: "the sealed bytes are not an ed25519 key".into(),
        })?;
        if key.public_bytes()[..] != data[28..60] {
            return Err(Error::Unseal {
                path: "(sealed key)".into(),
                reason: "the public key in the header does not match the sealed key".into(),
            });
        }
        Ok(key)
    }

    /// Write this key sealed to `path` (0600, atomically).
    pub fn write_sealed(&self, path: &Path, passphrase: &[u8], params: SealParams) -> Result<()> {
        let bytes = self.seal(passphrase, params)?;
        write_atomic(path, &bytes, 0o600)
    }

    /// Load a key file of any format; a sealed one asks `passphrase` (once).
    pub fn load_with(
        path: &Path,
        passphrase: impl FnOnce() -> Result<Zeroizing<Vec<u8>>>,
    ) -> Result<IdentityKey> {
        let data = Zeroizing::new(std::fs::read(path).map_err(|source| Error::KeyFileIo {
            path: path.to_path_buf(),
            source,
        })?);
        if !is_sealed(&data) {
            return IdentityKey::load(path);
        }
        let pass = passphrase()?;
        IdentityKey::unseal(&data, &pass).map_err(|e| match e {
            Error::Unseal { reason, .. } => Error::Unseal {
                path: path.to_path_buf(),
                reason,
            },
            e => e,
        })
    }
}

/// The onion address of a sealed key file, read from its header (no passphrase needed;
/// the header is authenticated when the key is unsealed).
pub fn sealed_address(path: &Path) -> Result<Option<crate::OnionAddress>> {
    let data = std::fs::read(path).map_err(|source| Error::KeyFileIo {
        path: path.to_path_buf(),
        source,
    })?;
    if !is_sealed(&data) {
        return Ok(None);
    }
    if data.len() != SEALED_LEN {
        return Err(Error::Unseal {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, a sealed key has {SEALED_LEN} (truncated or corrupt)",
                data.len()
            ),
        });
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&data[28..60]);
    Ok(Some(crate::OnionAddress::from_public_key(pk)))
}

/// Read a passphrase file: one line (a trailing newline is not part of it), not empty,
/// not readable by group or others.
pub fn passphrase_from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |reason: String| Error::Passphrase {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(format!(
            "readable by group or others (mode {:o}); run: chmod 600 {}",
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    read_passphrase(path).map_err(bad)
}

fn read_passphrase(path: &Path) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let mut data =
        Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))?);
    if data.ends_with(b"\n") {
        data.pop();
        if data.ends_with(b"\r") {
            data.pop();
        }
    }
    if data.is_empty() {
        return Err("it is empty".into());
    }
    Ok(data)
}

/// The passphrase from the systemd credential `name` (`$CREDENTIALS_DIRECTORY/name`), if the
/// service manager passed credentials.
pub fn passphrase_from_credentials(name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        return Ok(None);
    };
    let path = Path::new(&dir).join(name);
    if !path.exists() {
        return Ok(None);
    }
    read_passphrase(&path)
        .map(Some)
        .map_err(|reason| Error::Passphrase { path, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key() -> IdentityKey {
        IdentityKey::from_seed(&[5u8; 32])
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let k = key();
        let s = k
            .seal(b"correct horse", SealParams::fast_for_tests())
            .unwrap();
        assert_eq!(s.len(), SEALED_LEN);
        assert!(is_sealed(&s));
        let back = IdentityKey::unseal(&s, b"correct horse").unwrap();
        assert_eq!(back.address(), k.address());
        let e = IdentityKey::unseal(&s, b"wrong").unwrap_err().to_string();
        assert!(e.contains("wrong passphrase"), "{e}");
        // Two seals of the same key differ (fresh salt and nonce).
        assert_ne!(
            s,
            k.seal(b"correct horse", SealParams::fast_for_tests())
                .unwrap()
        );
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let s = key().seal(b"pw", SealParams::fast_for_tests()).unwrap();
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x01;
            assert!(
                IdentityKey::unseal(&t, b"pw").is_err(),
                "flip at {i} accepted"
            );
        }
        for n in 0..s.len() {
            assert!(
                IdentityKey::unseal(&s[..n], b"pw").is_err(),
                "truncation {n}"
            );
        }
    }

    #[test]
    fn hostile_parameters_are_refused_before_any_work() {
        let s = key().seal(b"pw", SealParams::fast_for_tests()).unwrap();
        for (off, val) in [(16, u32::MAX), (20, 1000), (24, 0), (20, 0)] {
            let mut t = s.clone();
            t[off..off + 4].copy_from_slice(&val.to_be_bytes());
            let start = std::time::Instant::now();
            let e = IdentityKey::unseal(&t, b"pw").unwrap_err().to_string();
            assert!(e.contains("hostile"), "{e}");
            assert!(start.elapsed() < std::time::Duration::from_millis(100));
        }
    }

    #[test]
    fn load_with_plain_and_sealed_files() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        k.write_tor_dir(&d.path().join("plain")).unwrap();
        let plain = d.path().join("plain").join(crate::keys::SECRET_KEY_FILE);
        let got =
            IdentityKey::load_with(&plain, || panic!("no passphrase for plain keys")).unwrap();
        assert_eq!(got.address(), k.address());
        let sealed = d.path().join("master.key");
        k.write_sealed(&sealed, b"pw", SealParams::fast_for_tests())
            .unwrap();
        assert_eq!(
            std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(sealed_address(&sealed).unwrap(), Some(k.address()));
        assert_eq!(sealed_address(&plain).unwrap(), None);
        let e = IdentityKey::load(&sealed).unwrap_err().to_string();
        assert!(e.contains("sealed"), "{e}");
        let got = IdentityKey::load_with(&sealed, || Ok(Zeroizing::new(b"pw".to_vec()))).unwrap();
        assert_eq!(got.address(), k.address());
        let e = IdentityKey::load_with(&sealed, || Ok(Zeroizing::new(b"no".to_vec())))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("master.key") && e.contains("wrong passphrase"),
            "{e}"
        );
    }

    #[test]
    fn passphrase_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, b"secret words\r\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = passphrase_from_file(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&passphrase_from_file(&p).unwrap()[..], b"secret words");
        std::fs::write(&p, b"\n").unwrap();
        assert!(passphrase_from_file(&p)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
