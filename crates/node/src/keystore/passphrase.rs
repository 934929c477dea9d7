//! The passphrase of a sealed master key: a file readable by its owner only, or the
//! systemd credential [`DEFAULT_CREDENTIAL`] (`LoadCredential=` or
//! `LoadCredentialEncrypted=`, found in `$CREDENTIALS_DIRECTORY`).

use crate::err::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The systemd credential name the passphrase is read from by default.
pub const DEFAULT_CREDENTIAL: &str = "master-passphrase";
/// Longest passphrase file read (a passphrase is one line).
const MAX_PASSPHRASE_LEN: u64 = 64 * 1024;

/// Where the passphrase of a sealed master key comes from.
pub enum Passphrase {
    /// This file, read only if the key turns out to be sealed.
    File(PathBuf),
    /// Already read.
    Read(Zeroizing<Vec<u8>>),
    /// The systemd credential [`DEFAULT_CREDENTIAL`]; without it a sealed key is an error
    /// that says how to give a passphrase.
    Credential,
}

impl Passphrase {
    /// `file` if given, read only when a sealed key needs it; else the systemd credential.
    /// What the node does with `service.master_key_passphrase_file`.
    pub fn when_needed(file: Option<&Path>) -> Self {
        match file {
            Some(f) => Passphrase::File(f.to_path_buf()),
            None => Passphrase::Credential,
        }
    }

    /// `file` if given, read now (a bad file fails before anything else is done, even
    /// for a plain key); else the systemd credential. What `init` and `join` do with
    /// `--passphrase-file`.
    pub fn read_now(file: Option<&Path>) -> Result<Self> {
        Ok(match file {
            Some(f) => Passphrase::Read(passphrase_from_file(f)?),
            None => Passphrase::Credential,
        })
    }

    /// The passphrase for the sealed key `key`. The credential is consulted only without
    /// a passphrase file, so an unreadable credential directory cannot fail an explicit
    /// passphrase file.
    pub(crate) fn get(self, key: &Path) -> Result<Zeroizing<Vec<u8>>> {
        match self {
            Passphrase::File(f) => passphrase_from_file(&f),
            Passphrase::Read(p) => Ok(p),
            Passphrase::Credential => {
                passphrase_from_credentials(DEFAULT_CREDENTIAL)?.ok_or_else(|| {
                    Error::PassphraseNeeded {
                        path: key.to_path_buf(),
                    }
                })
            }
        }
    }
}

/// Read a passphrase file: not readable by group or others, one line (one trailing
/// `\n` or `\r\n` is not part of it), not empty.
pub fn passphrase_from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |reason: String| Error::Passphrase {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open it ({e})")))?;
    let mode = file
        .metadata()
        .map_err(|e| bad(format!("cannot stat it ({e})")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "it is readable by group or others (mode {:03o}); run: chmod 600 {}",
            mode & 0o777,
            path.display()
        )));
    }
    read_passphrase(file).map_err(bad)
}

/// The passphrase from the systemd credential `name` (`$CREDENTIALS_DIRECTORY/name`, from
/// `LoadCredential=` or `LoadCredentialEncrypted=`). `None` if the service manager passed
/// no credentials or not this one. systemd owns that directory, so its permissions are
/// not checked.
pub fn passphrase_from_credentials(name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => credential(Path::new(&dir), name),
        None => Ok(None),
    }
}

/// The credential `name` in the credentials directory `dir`, if there.
fn credential(dir: &Path, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let path = dir.join(name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Passphrase {
                path,
                reason: format!("cannot open the credential ({e})"),
            })
        }
    };
    read_passphrase(file)
        .map(Some)
        .map_err(|reason| Error::Passphrase { path, reason })
}

/// A passphrase from an open file: one trailing newline stripped, not empty, bounded.
fn read_passphrase(file: std::fs::File) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let mut data = Zeroizing::new(Vec::new());
    file.take(MAX_PASSPHRASE_LEN + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read it ({e})"))?;
    if data.len() as u64 > MAX_PASSPHRASE_LEN {
        return Err(format!(
            "it is over {MAX_PASSPHRASE_LEN} bytes; a passphrase file holds one line"
        ));
    }
    if data.ends_with(b"\n") {
        data.pop();
        if data.ends_with(b"\r") {
            data.pop();
        }
    }
    if data.is_empty() {
        return Err("it is empty; put the passphrase on its first line".into());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn passphrase_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        let read = |content: &[u8]| {
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            passphrase_from_file(&p).map(|v| v.to_vec())
        };
        assert_eq!(read(b"secret words\r\n").unwrap(), b"secret words");
        assert_eq!(read(b"secret words\n").unwrap(), b"secret words");
        assert_eq!(read(b"secret words").unwrap(), b"secret words");
        assert_eq!(read(b"two\n\n").unwrap(), b"two\n");
        assert_eq!(read(b" spaced \n").unwrap(), b" spaced ");
        for empty in [&b""[..], b"\n", b"\r\n"] {
            let e = read(empty).unwrap_err().to_string();
            assert!(e.contains("empty"), "{e}");
        }
        assert!(read(&vec![b'x'; 70_000])
            .unwrap_err()
            .to_string()
            .contains("one line"));

        std::fs::write(&p, b"secret words\n").unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = passphrase_from_file(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("chmod 600 {}", p.display())),
                "{mode:o}: {e}"
            );
            assert!(!e.contains("secret"), "{e}");
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(&passphrase_from_file(&p).unwrap()[..], b"secret words");
        let e = passphrase_from_file(&d.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing") && e.contains("cannot open"), "{e}");
    }

    #[test]
    fn credentials_directory() {
        let d = tempfile::tempdir().unwrap();
        assert!(credential(d.path(), DEFAULT_CREDENTIAL).unwrap().is_none());
        let p = d.path().join(DEFAULT_CREDENTIAL);
        std::fs::write(&p, b"from systemd\n").unwrap();
        // systemd's credential files are not ours to police: 0644 is fine here.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            &credential(d.path(), DEFAULT_CREDENTIAL).unwrap().unwrap()[..],
            b"from systemd"
        );
        std::fs::write(&p, b"").unwrap();
        assert!(credential(d.path(), DEFAULT_CREDENTIAL).is_err());
    }

    #[test]
    fn a_bad_file_fails_read_now_but_not_when_needed() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing");
        assert!(Passphrase::read_now(Some(&missing)).is_err());
        assert!(matches!(
            Passphrase::when_needed(Some(&missing)),
            Passphrase::File(_)
        ));
        assert!(matches!(
            Passphrase::read_now(None).unwrap(),
            Passphrase::Credential
        ));
    }
}
