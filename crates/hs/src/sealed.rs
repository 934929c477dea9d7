//! Master keys sealed at rest: the 64-byte expanded secret key encrypted with
//! XChaCha20-Poly1305 under a 32-byte key derived from a passphrase with argon2id.
//!
//! File layout, "rustbalance sealed key v1" (180 bytes, integers big-endian):
//!
//! ```text
//!  offset  size  field
//!       0    16  magic "rustbalance-key\x01"   (last byte: format version, 1)
//!      16     4  argon2id m_cost (KiB)
//!      20     4  argon2id t_cost (passes)
//!      24     4  argon2id p_cost (lanes)
//!      28    32  ed25519 public key (the onion address, readable without the passphrase)
//!      60    16  salt (random)
//!      76    24  XChaCha20 nonce (random)
//!     100    80  ciphertext: the 64-byte expanded secret key + 16-byte Poly1305 tag
//! ```
//!
//! The 100-byte header is the AEAD's associated data, so changing a parameter, the
//! public key, the salt or the nonce fails authentication exactly like a wrong
//! passphrase. After decryption the public key is also recomputed from the secret and
//! compared with the header's.
//!
//! A file is checked before any key derivation ([`SealParams::check`]): the version
//! must be 1, the length exactly 180 bytes and the parameters within hard limits
//! (at most 1 GiB of memory, 16 passes, 16 lanes), so a corrupt or hostile file cannot
//! make us allocate gigabytes or spin for minutes. The derived key lives in a buffer
//! zeroized on drop; so does the decrypted secret key.
//!
//! Bytes in, bytes out: the salt and nonce come from the caller's generator. Reading
//! and writing sealed files and their passphrases (a 0600 file or a systemd credential)
//! is the node's key store (`rustbalance_node::keystore`).

use crate::err::{Error, Result, SealedKeyProblem as P};
use crate::keys::IdentityKey;
use crate::OnionAddress;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, Rng};
use std::path::Path;
use zeroize::Zeroizing;

/// Magic of a sealed key file; its last byte is the format version.
const MAGIC: &[u8; 16] = b"rustbalance-key\x01";
/// The magic without the version byte: what [`is_sealed`] recognises.
const MAGIC_TAG: &[u8] = b"rustbalance-key";
const PARAMS_AT: usize = 16;
const PUBLIC_AT: usize = 28;
const SALT_AT: usize = 60;
const NONCE_AT: usize = 76;
const HEADER_LEN: usize = 100;
const CIPHER_LEN: usize = 64 + 16;
/// Size of a sealed key file.
pub const SEALED_LEN: usize = HEADER_LEN + CIPHER_LEN;

/// Most memory a sealed file may ask for: 1 GiB.
pub const MAX_M_COST: u32 = 1024 * 1024;
/// Most argon2 passes a sealed file may ask for.
pub const MAX_T_COST: u32 = 16;
/// Most argon2 lanes a sealed file may ask for.
pub const MAX_P_COST: u32 = 16;

/// argon2id cost parameters, stored in the sealed file.
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
    /// Cheap parameters for tests (256 KiB, 1 pass): never for real keys.
    pub fn fast_for_tests() -> Self {
        SealParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Are these within the hard limits (and what argon2 accepts)? Cheap: this runs
    /// before any key derivation.
    pub fn check(&self) -> std::result::Result<(), P> {
        let within = |what, value, min, max, unit| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(P::Params {
                    what,
                    value,
                    min,
                    max,
                    unit,
                })
            }
        };
        within("lanes", self.p_cost, 1, MAX_P_COST, "")?;
        within("passes", self.t_cost, 1, MAX_T_COST, "")?;
        within("memory", self.m_cost, 8 * self.p_cost, MAX_M_COST, " KiB")
    }
}

/// Does `bytes` look like a sealed key (by its magic, any version)?
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC_TAG)
}

/// The parts of a sealed file, checked: everything needed before key derivation.
struct Sealed<'a> {
    params: SealParams,
    public: &'a [u8],
    salt: &'a [u8],
    nonce: &'a [u8],
    header: &'a [u8],
    ciphertext: &'a [u8],
}

/// Split and check a sealed file without any expensive work: magic, version, length,
/// parameter limits. The error says what is wrong (there is nothing secret here).
fn parse(data: &[u8]) -> std::result::Result<Sealed<'_>, P> {
    let truncated = || P::Truncated {
        len: data.len(),
        expected: SEALED_LEN,
    };
    if !is_sealed(data) {
        return Err(if MAGIC_TAG.starts_with(data) {
            truncated()
        } else {
            P::NotSealed
        });
    }
    let supported = MAGIC[MAGIC.len() - 1];
    match data.get(MAGIC.len() - 1) {
        None => return Err(truncated()),
        Some(&found) if found != supported => return Err(P::Version { found, supported }),
        Some(_) => {}
    }
    if data.len() < SEALED_LEN {
        return Err(truncated());
    }
    if data.len() > SEALED_LEN {
        return Err(P::TooLong {
            len: data.len(),
            expected: SEALED_LEN,
        });
    }
    let u32_at = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let params = SealParams {
        m_cost: u32_at(PARAMS_AT),
        t_cost: u32_at(PARAMS_AT + 4),
        p_cost: u32_at(PARAMS_AT + 8),
    };
    params.check()?;
    Ok(Sealed {
        params,
        public: &data[PUBLIC_AT..SALT_AT],
        salt: &data[SALT_AT..NONCE_AT],
        nonce: &data[NONCE_AT..HEADER_LEN],
        header: &data[..HEADER_LEN],
        ciphertext: &data[HEADER_LEN..],
    })
}

/// The 32-byte AEAD key: argon2id(passphrase, salt, params), zeroized on drop.
fn derive(
    passphrase: &[u8],
    salt: &[u8],
    p: SealParams,
) -> std::result::Result<XChaCha20Poly1305, P> {
    p.check()?;
    let params = argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| P::Argon2(format!("parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| P::Argon2(e.to_string()))?;
    // The cipher keeps its own copy of the key and zeroizes it on drop.
    Ok(XChaCha20Poly1305::new(key.as_ref().into()))
}

/// Open a sealed key; the error says what is wrong (never anything secret).
fn unseal_bytes(data: &[u8], passphrase: &[u8]) -> std::result::Result<IdentityKey, P> {
    let s = parse(data)?;
    let cipher = derive(passphrase, s.salt, s.params)?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(s.nonce),
                Payload {
                    msg: s.ciphertext,
                    aad: s.header,
                },
            )
            .map_err(|_| P::Authentication)?,
    );
    let mut expanded = Zeroizing::new([0u8; 64]);
    expanded.copy_from_slice(&plain);
    let key = IdentityKey::from_expanded(expanded).ok_or(P::InvalidSecret)?;
    if key.public_bytes()[..] != *s.public {
        return Err(P::PublicKeyMismatch);
    }
    Ok(key)
}

impl IdentityKey {
    /// This key sealed with `passphrase`: the bytes of a sealed key file, with a fresh
    /// salt and nonce from `rng`. Fails only if `params` are outside the limits.
    pub fn seal<R: Rng + CryptoRng>(
        &self,
        passphrase: &[u8],
        params: SealParams,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(SEALED_LEN);
        out.extend_from_slice(MAGIC);
        for v in [params.m_cost, params.t_cost, params.p_cost] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(self.public_bytes());
        out.resize(HEADER_LEN, 0);
        rng.fill_bytes(&mut out[SALT_AT..HEADER_LEN]);
        let cipher = derive(passphrase, &out[SALT_AT..NONCE_AT], params)
            .map_err(|problem| Error::Seal { problem })?;
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&out[NONCE_AT..HEADER_LEN]),
                Payload {
                    msg: self.expanded_bytes(),
                    aad: &out[..HEADER_LEN],
                },
            )
            .map_err(|_| Error::Seal {
                problem: P::Encryption,
            })?;
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Open the bytes of a sealed key file.
    pub fn unseal(data: &[u8], passphrase: &[u8]) -> Result<IdentityKey> {
        Self::unseal_file(Path::new("sealed key"), data, passphrase)
    }

    /// Open the contents of the sealed key file `path` (only named in the error).
    pub fn unseal_file(path: &Path, data: &[u8], passphrase: &[u8]) -> Result<IdentityKey> {
        unseal_bytes(data, passphrase).map_err(|problem| Error::Unseal {
            path: path.to_path_buf(),
            problem,
        })
    }
}

/// Check the header of the sealed key file `path` (only named in the error) without
/// the passphrase and without any key derivation: magic, version, length, parameter
/// limits. Returns the onion address it names (authenticated only when the key is
/// unsealed).
pub fn sealed_address(path: &Path, data: &[u8]) -> Result<OnionAddress> {
    let s = parse(data).map_err(|problem| Error::Unseal {
        path: path.to_path_buf(),
        problem,
    })?;
    let mut pk = [0u8; 32];
    pk.copy_from_slice(s.public);
    Ok(OnionAddress::from_public_key(pk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key() -> IdentityKey {
        IdentityKey::from_seed(&[5u8; 32])
    }

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(9)
    }

    fn sealed(pass: &[u8]) -> Vec<u8> {
        key()
            .seal(pass, SealParams::fast_for_tests(), &mut rng())
            .unwrap()
    }

    fn unseal_err(data: &[u8], pass: &[u8]) -> String {
        IdentityKey::unseal(data, pass).unwrap_err().to_string()
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let k = key();
        let s = sealed(b"correct horse");
        assert_eq!(s.len(), SEALED_LEN);
        assert!(is_sealed(&s));
        assert!(!is_sealed(&k.tor_secret_file()));
        let back = IdentityKey::unseal(&s, b"correct horse").unwrap();
        assert_eq!(back.address(), k.address());
        assert_eq!(back.tor_secret_file(), k.tor_secret_file());
        let e = unseal_err(&s, b"correct horsf");
        assert!(
            e.contains("wrong passphrase or the file is corrupt (authentication failed)"),
            "{e}"
        );
        assert!(!e.contains("horse"), "{e}");
        // The same RNG gives the same file; another gives a fresh salt and nonce.
        assert_eq!(s, sealed(b"correct horse"));
        let other = k
            .seal(
                b"correct horse",
                SealParams::fast_for_tests(),
                &mut rand_chacha::ChaCha20Rng::seed_from_u64(10),
            )
            .unwrap();
        assert_ne!(s[SALT_AT..HEADER_LEN], other[SALT_AT..HEADER_LEN]);
        assert_eq!(
            IdentityKey::unseal(&other, b"correct horse")
                .unwrap()
                .address(),
            k.address()
        );
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let s = sealed(b"pw");
        for i in 0..s.len() {
            for mask in [0x01, 0x80] {
                let mut t = s.clone();
                t[i] ^= mask;
                assert!(
                    IdentityKey::unseal(&t, b"pw").is_err(),
                    "flip {mask:#x} at byte {i} accepted"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_refused_as_truncated() {
        let s = sealed(b"pw");
        for n in 0..s.len() {
            let e = unseal_err(&s[..n], b"pw");
            assert!(
                e.contains(&format!("truncated: {n} bytes, a sealed key is 180 bytes")),
                "{n}: {e}"
            );
        }
        let mut long = s.clone();
        long.push(b'\n');
        assert!(unseal_err(&long, b"pw").contains("181 bytes"));
    }

    #[test]
    fn other_versions_and_formats_are_named() {
        let mut s = sealed(b"pw");
        s[15] = 2;
        let e = unseal_err(&s, b"pw");
        assert!(e.contains("unknown sealed-key format version 2"), "{e}");
        let e = unseal_err(&key().tor_secret_file(), b"pw");
        assert!(e.contains("not a sealed RustBalance key"), "{e}");
    }

    #[test]
    fn parameter_limits() {
        let ok = |m, t, p| {
            SealParams {
                m_cost: m,
                t_cost: t,
                p_cost: p,
            }
            .check()
        };
        assert!(ok(MAX_M_COST, MAX_T_COST, MAX_P_COST).is_ok());
        assert!(SealParams::default().check().is_ok());
        assert!(SealParams::fast_for_tests().check().is_ok());
        for (m, t, p) in [
            (MAX_M_COST + 1, 1, 1),
            (u32::MAX, 1, 1),
            (7, 1, 1),
            (64, 1, 16),
            (256, 0, 1),
            (256, MAX_T_COST + 1, 1),
            (256, 1, 0),
            (4096, 1, MAX_P_COST + 1),
        ] {
            let e = ok(m, t, p).unwrap_err().to_string();
            assert!(e.contains("hostile"), "{m} {t} {p}: {e}");
        }
        // Sealing with such parameters is refused too, before any work.
        let e = key()
            .seal(
                b"pw",
                SealParams {
                    m_cost: u32::MAX,
                    ..SealParams::default()
                },
                &mut rng(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot seal the master key: argon2 memory"),
            "{e}"
        );
    }

    #[test]
    fn hostile_parameters_are_refused_before_any_work() {
        let s = sealed(b"pw");
        for (off, val) in [
            (PARAMS_AT, MAX_M_COST + 1),
            (PARAMS_AT, u32::MAX),
            (PARAMS_AT + 4, 1000),
            (PARAMS_AT + 4, 0),
            (PARAMS_AT + 8, 0),
            (PARAMS_AT + 8, 17),
        ] {
            let mut t = s.clone();
            t[off..off + 4].copy_from_slice(&val.to_be_bytes());
            // parse() is all that runs before key derivation, and it refuses them.
            // (unseal runs parse() first, so no key derivation starts.)
            let e = parse(&t).err().unwrap();
            assert!(matches!(e, P::Params { .. }), "{e}");
            let e = unseal_err(&t, b"pw");
            assert!(e.contains("hostile"), "{e}");
        }
    }

    #[test]
    fn sealed_address_reads_the_header() {
        let s = sealed(b"pw");
        let file = Path::new("master.key");
        assert_eq!(sealed_address(file, &s).unwrap(), key().address());
        let e = sealed_address(file, &s[..100]).unwrap_err().to_string();
        assert!(
            e.contains("master.key") && e.contains("truncated: 100 bytes"),
            "{e}"
        );
        let e = IdentityKey::unseal_file(file, &s, b"no")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot unseal master.key: wrong passphrase or the file is corrupt (authentication failed)"
        );
    }
}
