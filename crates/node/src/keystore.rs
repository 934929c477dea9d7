//! The node's key store: every key file RustBalance reads or writes, and the one
//! master-key loader.
//!
//! - tor's `hs_ed25519_secret_key` / `hs_ed25519_public_key` / `hostname` and
//!   Onionbalance's PKCS#8 PEM keys ([`KeyFiles::load`], [`KeyFiles::write_tor_dir`]);
//! - master keys sealed with a passphrase (argon2id + XChaCha20-Poly1305,
//!   [`KeyFiles::write_sealed`], [`KeyFiles::load_with`]);
//! - [`key_address`]: the onion address of a key file of any format, without its
//!   passphrase;
//! - their passphrase: a 0600 file or the systemd credential `master-passphrase`
//!   ([`passphrase`]);
//! - [`load_master`]: a master key of any of these formats, with its [`Passphrase`];
//! - the node's identity key, member certificate and trusted authority key
//!   ([`identity`]);
//! - crash-safe writes ([`write_atomic`], 0600 for secrets), private directories and the
//!   cluster secret ([`read_cluster_secret`], refused when others may read it), through
//!   `rustbalance_fsutil`, the errors naming the file.
//!
//! The formats themselves (bytes in, bytes out) are `rustbalance_hs::keys` and
//! `rustbalance_hs::sealed`; this module only moves them between files and memory.

pub mod identity;
pub mod passphrase;

use crate::err::{Error, Result};
use rustbalance_hs::keys::{HOSTNAME_FILE, PUBLIC_KEY_FILE, SECRET_KEY_FILE};
use rustbalance_hs::sealed::{self, SealParams};
use rustbalance_hs::{IdentityKey, OnionAddress};
use std::path::Path;
use zeroize::Zeroizing;

pub use passphrase::{
    passphrase_from_credentials, passphrase_from_file, Passphrase, DEFAULT_CREDENTIAL,
};

/// Write `data` to `path` atomically, with Unix permissions `mode` (`0o600` for
/// secrets); see [`rustbalance_fsutil::write_atomic`].
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    rustbalance_fsutil::write_atomic(path, data, mode).map_err(|source| Error::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

/// Create `dir` (and parents) with mode 0700 if it does not exist; an existing one must
/// be ours (or root's) and is closed to group and others; see
/// [`rustbalance_fsutil::create_private_dir`].
pub fn create_private_dir(dir: &Path) -> Result<()> {
    rustbalance_fsutil::create_private_dir(dir).map_err(|source| Error::Io {
        action: "cannot use the private directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// The cluster secret (`cluster.secret_file`), zeroized on drop; refused when group or
/// others may read the file, as for the other key files.
pub fn read_cluster_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    rustbalance_fsutil::read_secret_file(path).map_err(|source| Error::Io {
        action: "cannot read the cluster secret",
        path: path.to_path_buf(),
        source,
    })
}

/// The contents of a key file, in a buffer zeroized on drop.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| Error::Io {
            action: "cannot read key file",
            path: path.to_path_buf(),
            source,
        })
}

/// Key files of an [`IdentityKey`] (whose formats live in `rustbalance_hs`).
pub trait KeyFiles: Sized {
    /// Load a key file in any plain format: tor's `hs_ed25519_secret_key`, or a PKCS#8
    /// PEM file as written by Onionbalance. A sealed key file is refused with an error
    /// saying how to give its passphrase; use [`KeyFiles::load_with`] for those.
    fn load(path: &Path) -> Result<Self>;

    /// Load a key file of any format. A plain one loads as with [`KeyFiles::load`] and
    /// `passphrase` is not called; a sealed one calls `passphrase` once, after its header
    /// was checked.
    fn load_with(
        path: &Path,
        passphrase: impl FnOnce() -> Result<Zeroizing<Vec<u8>>>,
    ) -> Result<Self>;

    /// Write `hs_ed25519_secret_key`, `hs_ed25519_public_key` and `hostname` into `dir`
    /// (created 0700), each file 0600 and written atomically.
    fn write_tor_dir(&self, dir: &Path) -> Result<()>;

    /// Write this key sealed with `passphrase` to `path` (mode 0600, atomically), salt
    /// and nonce from the operating system's generator.
    fn write_sealed(&self, path: &Path, passphrase: &[u8], params: SealParams) -> Result<()>;
}

impl KeyFiles for IdentityKey {
    fn load(path: &Path) -> Result<Self> {
        let data = read_key_file(path)?;
        if sealed::is_sealed(&data) {
            return Err(Error::SealedKey {
                path: path.to_path_buf(),
            });
        }
        Ok(IdentityKey::from_file_bytes(path, &data)?)
    }

    fn load_with(
        path: &Path,
        passphrase: impl FnOnce() -> Result<Zeroizing<Vec<u8>>>,
    ) -> Result<Self> {
        let data = read_key_file(path)?;
        if !sealed::is_sealed(&data) {
            return Ok(IdentityKey::from_file_bytes(path, &data)?);
        }
        sealed::sealed_address(path, &data)?;
        let pass = passphrase()?;
        Ok(IdentityKey::unseal_file(path, &data, &pass)?)
    }

    fn write_tor_dir(&self, dir: &Path) -> Result<()> {
        create_private_dir(dir)?;
        write_atomic(&dir.join(SECRET_KEY_FILE), &self.tor_secret_file(), 0o600)?;
        write_atomic(&dir.join(PUBLIC_KEY_FILE), &self.tor_public_file(), 0o600)?;
        write_atomic(
            &dir.join(HOSTNAME_FILE),
            format!("{}\n", self.address()).as_bytes(),
            0o600,
        )
    }

    fn write_sealed(&self, path: &Path, passphrase: &[u8], params: SealParams) -> Result<()> {
        let bytes = self.seal(passphrase, params, &mut rand::rng())?;
        write_atomic(path, &bytes, 0o600)
    }
}

/// The master key in `path`, plain or sealed; a sealed one is opened with `passphrase`.
/// The one loader of the node (`service.master_key`) and of `init` / `join`
/// (`--master-key`).
pub fn load_master(path: &Path, passphrase: Passphrase) -> Result<IdentityKey> {
    IdentityKey::load_with(path, || passphrase.get(path))
}

/// File name of a sealed master key inside a node directory.
pub const SEALED_MASTER_FILE: &str = "master.key";
/// Directory of a plain (tor-format) master key inside a node directory.
pub const PLAIN_MASTER_DIR: &str = "master";

/// How `init` / `onionbalance import` keep a new node's master key on disk.
#[derive(Debug, Clone)]
pub enum MasterStorage {
    /// Unencrypted, tor's own format, in `<dir>/master/`.
    Plain,
    /// Sealed with the passphrase in `passphrase_file` (argon2id, 64 MiB), in
    /// `<dir>/master.key`.
    Sealed {
        /// The 0600 passphrase file.
        passphrase_file: std::path::PathBuf,
        /// The running node gets the passphrase as the systemd credential: the
        /// config does not name the file.
        systemd_credential: bool,
    },
}

/// Where [`store_master`] put the key, for the config.
#[derive(Debug, Clone)]
pub struct StoredMaster {
    /// `service.master_key`.
    pub key_file: std::path::PathBuf,
    /// `service.master_key_passphrase_file` (absent: plain, or the systemd credential).
    pub passphrase_file: Option<std::path::PathBuf>,
}

/// Write `key` into the node directory `dir` as `storage` says. Never replaces a
/// master key already there: that would lose its .onion address.
pub fn store_master(
    key: &IdentityKey,
    dir: &Path,
    storage: &MasterStorage,
) -> Result<StoredMaster> {
    for existing in [
        dir.join(SEALED_MASTER_FILE),
        dir.join(PLAIN_MASTER_DIR).join(SECRET_KEY_FILE),
    ] {
        if existing.exists() {
            return Err(Error::MasterKeyExists { path: existing });
        }
    }
    match storage {
        MasterStorage::Plain => {
            let kd = dir.join(PLAIN_MASTER_DIR);
            key.write_tor_dir(&kd)?;
            Ok(StoredMaster {
                key_file: kd.join(SECRET_KEY_FILE),
                passphrase_file: None,
            })
        }
        MasterStorage::Sealed {
            passphrase_file,
            systemd_credential,
        } => {
            let pf = std::path::absolute(passphrase_file).map_err(|source| Error::Io {
                action: "cannot resolve the passphrase file",
                path: passphrase_file.clone(),
                source,
            })?;
            let pass = passphrase_from_file(&pf)?;
            let file = dir.join(SEALED_MASTER_FILE);
            key.write_sealed(&file, &pass, SealParams::default())?;
            Ok(StoredMaster {
                key_file: file,
                passphrase_file: (!systemd_credential).then_some(pf),
            })
        }
    }
}

/// The onion address of a key file of any format, without its passphrase: a sealed
/// file's header names it (authenticated only when the key is unsealed).
pub fn key_address(path: &Path) -> Result<OnionAddress> {
    let data = read_key_file(path)?;
    if sealed::is_sealed(&data) {
        return Ok(sealed::sealed_address(path, &data)?);
    }
    Ok(IdentityKey::from_file_bytes(path, &data)?.address())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::os::unix::fs::PermissionsExt;

    fn key() -> IdentityKey {
        IdentityKey::from_seed(&[5u8; 32])
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// A second `store_master` into the same directory is refused, whatever the
    /// storage, and leaves the first key as it was.
    #[test]
    fn a_stored_master_key_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = store_master(&key(), dir.path(), &MasterStorage::Plain).unwrap();
        assert!(first.passphrase_file.is_none());
        assert_eq!(mode(&first.key_file), 0o600);
        let before = std::fs::read(&first.key_file).unwrap();
        let pf = dir.path().join("pass");
        write_atomic(&pf, b"correct horse battery staple\n", 0o600).unwrap();
        let other = IdentityKey::from_seed(&[6u8; 32]);
        for storage in [
            MasterStorage::Plain,
            MasterStorage::Sealed {
                passphrase_file: pf.clone(),
                systemd_credential: false,
            },
        ] {
            let e = store_master(&other, dir.path(), &storage).unwrap_err();
            assert!(matches!(e, Error::MasterKeyExists { .. }), "{e}");
        }
        assert_eq!(std::fs::read(&first.key_file).unwrap(), before);
        assert!(!dir.path().join(SEALED_MASTER_FILE).exists());
    }

    #[test]
    fn a_cluster_secret_others_may_read_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cluster.secret");
        std::fs::write(&p, [9u8; 32]).unwrap();
        for open in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(open)).unwrap();
            let e = read_cluster_secret(&p)
                .expect_err("a group/world-readable cluster secret was accepted")
                .to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&read_cluster_secret(&p).unwrap()[..], &[9u8; 32]);
    }

    #[test]
    fn tor_files_round_trip() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let k = IdentityKey::generate(&mut rng);
        let d = tempfile::tempdir().unwrap();
        k.write_tor_dir(&d.path().join("hs")).unwrap();
        assert_eq!(mode(&d.path().join("hs")), 0o700);
        let back = IdentityKey::load(&d.path().join("hs").join(SECRET_KEY_FILE)).unwrap();
        assert_eq!(back.address(), k.address());
        let host = std::fs::read_to_string(d.path().join("hs").join(HOSTNAME_FILE)).unwrap();
        assert_eq!(host.trim(), k.address().to_string());
        for f in [SECRET_KEY_FILE, PUBLIC_KEY_FILE, HOSTNAME_FILE] {
            assert_eq!(mode(&d.path().join("hs").join(f)), 0o600, "{f}");
        }
        let e = IdentityKey::load(&d.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read key file "), "{e}");
    }

    #[test]
    fn load_with_plain_and_sealed_files() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        k.write_tor_dir(&d.path().join("plain")).unwrap();
        let plain = d.path().join("plain").join(SECRET_KEY_FILE);
        let got =
            IdentityKey::load_with(&plain, || panic!("no passphrase for plain keys")).unwrap();
        assert_eq!(got.address(), k.address());
        let sealed = d.path().join("master.key");
        k.write_sealed(&sealed, b"pw", SealParams::fast_for_tests())
            .unwrap();
        assert_eq!(mode(&sealed), 0o600);
        assert_eq!(key_address(&sealed).unwrap(), k.address());
        assert_eq!(key_address(&plain).unwrap(), k.address());

        let e = IdentityKey::load(&sealed).unwrap_err().to_string();
        assert!(e.contains("master.key") && e.contains("sealed"), "{e}");
        assert!(e.contains("service.master_key_passphrase_file"), "{e}");
        assert!(e.contains("`master-passphrase`"), "{e}");

        let mut calls = 0;
        let got = IdentityKey::load_with(&sealed, || {
            calls += 1;
            Ok(Zeroizing::new(b"pw".to_vec()))
        })
        .unwrap();
        assert_eq!((got.address(), calls), (k.address(), 1));
        let e = IdentityKey::load_with(&sealed, || Ok(Zeroizing::new(b"no".to_vec())))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "cannot unseal {}: wrong passphrase or the file is corrupt (authentication failed)",
                sealed.display()
            )
        );
        // A broken header is reported without asking for the passphrase.
        let bytes = std::fs::read(&sealed).unwrap();
        std::fs::write(&sealed, &bytes[..100]).unwrap();
        let e = IdentityKey::load_with(&sealed, || panic!("header first"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated: 100 bytes"), "{e}");
        assert!(key_address(&sealed).is_err());
    }

    #[test]
    fn load_master_with_each_passphrase_source() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        let sealed = d.path().join("master.key");
        k.write_sealed(&sealed, b"pw", SealParams::fast_for_tests())
            .unwrap();
        let pf = d.path().join("pass");
        write_atomic(&pf, b"pw\n", 0o600).unwrap();
        let from_file = load_master(&sealed, Passphrase::when_needed(Some(&pf))).unwrap();
        assert_eq!(from_file.address(), k.address());
        let read = load_master(&sealed, Passphrase::read_now(Some(&pf)).unwrap()).unwrap();
        assert_eq!(read.address(), k.address());
        // A plain key never reads the passphrase file (here a missing one).
        k.write_tor_dir(&d.path().join("plain")).unwrap();
        let plain = d.path().join("plain").join(SECRET_KEY_FILE);
        let missing = d.path().join("missing");
        let got = load_master(&plain, Passphrase::when_needed(Some(&missing))).unwrap();
        assert_eq!(got.address(), k.address());
        let e = load_master(&sealed, Passphrase::when_needed(Some(&missing)))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("passphrase file "), "{e}");
        // Without a file and without systemd's credential a sealed key says what to do.
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            let e = load_master(&sealed, Passphrase::Credential)
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "{} is a sealed (encrypted) master key and no passphrase was provided: \
                     set service.master_key_passphrase_file, or give the node the systemd \
                     credential `master-passphrase` (LoadCredential=)",
                    sealed.display()
                )
            );
        }
    }
}
