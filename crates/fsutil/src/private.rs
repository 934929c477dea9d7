//! Private directories and secret files: checked, not trusted.
//!
//! [`create_private_dir`] creates a directory with mode 0700, and checks one that exists
//! already: it must belong to this user or to root (or we are root), and it must be closed
//! to group and others — if it is not, and it is ours to change (our own, or we are root),
//! the group and other bits are cleared; otherwise it is refused with an error that says
//! what to run. [`read_secret_file`] refuses a secret file that group or others may read,
//! as the key and passphrase loaders do.

use crate::err::{Error, Result};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// Create `dir` (and its parents) with mode 0700 if it does not exist; if it exists,
/// check its owner and mode (see the module doc): clear group and other bits where that
/// is ours to do, refuse otherwise.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    ensure_private_dir(dir).map_err(Error::into_io)
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    let io = |action| {
        move |source| Error::Io {
            action,
            path: dir.to_path_buf(),
            source,
        }
    };
    match fs::metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create directory"))?;
        }
        Err(e) => return Err(io("inspect")(e)),
    }
    let meta = fs::metadata(dir).map_err(io("inspect"))?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let euid = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    match judge_dir(meta.uid(), mode, euid) {
        DirVerdict::Private => Ok(()),
        DirVerdict::Close => fs::set_permissions(dir, fs::Permissions::from_mode(mode & !0o077))
            .map_err(io("close (chmod go-rwx)")),
        DirVerdict::ForeignOwner => Err(Error::DirOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            euid,
        }),
        DirVerdict::OpenNotOurs => Err(Error::DirMode {
            path: dir.to_path_buf(),
            mode: mode & 0o777,
            owner: meta.uid(),
        }),
    }
}

/// What to do with an existing private directory.
#[derive(Debug, PartialEq, Eq)]
enum DirVerdict {
    /// Fine as it is.
    Private,
    /// Open to group or others, ours to close.
    Close,
    /// Owned by another non-root user.
    ForeignOwner,
    /// Open to group or others, owned by root, and we are not root.
    OpenNotOurs,
}

/// The verdict on a directory of `owner` with permission bits `mode`, for user `euid`.
fn judge_dir(owner: u32, mode: u32, euid: u32) -> DirVerdict {
    if owner != euid && owner != 0 && euid != 0 {
        DirVerdict::ForeignOwner
    } else if mode & 0o077 == 0 {
        DirVerdict::Private
    } else if owner == euid || euid == 0 {
        DirVerdict::Close
    } else {
        DirVerdict::OpenNotOurs
    }
}

/// Read a secret file that group and others may not read (mode `0600` or stricter);
/// the bytes are wiped when dropped.
pub fn read_secret_file(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    read_secret(path).map_err(Error::into_io)
}

fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let io = |action| {
        move |source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut f = fs::File::open(path).map_err(io("open"))?;
    let meta = f.metadata().map_err(io("inspect"))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::FileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Room for the whole file up front: no reallocation leaves a copy behind.
    let cap = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    f.read_to_end(&mut out).map_err(io("read"))?;
    Ok(out)
}

#[cfg(test)]
mod test {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dirs_are_0700() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a").join("b");
        create_private_dir(&p).unwrap();
        assert_eq!(mode(&p), 0o700);
        create_private_dir(&p).unwrap();
    }

    /// An existing data directory that group or others may enter (made by hand, by a
    /// careless `mkdir`, or restored from a backup) is closed, not trusted as it is.
    #[test]
    fn an_existing_open_dir_is_closed() {
        let d = tempfile::tempdir().unwrap();
        for open in [0o755, 0o750, 0o711, 0o777] {
            let p = d.path().join(format!("data-{open:o}"));
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(open)).unwrap();
            create_private_dir(&p).unwrap();
            assert_eq!(mode(&p), 0o700, "a {open:o} directory was trusted as it is");
        }
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data");
        fs::write(&p, b"").unwrap();
        let e = create_private_dir(&p).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn owners_and_modes_are_judged() {
        use DirVerdict::*;
        const ME: u32 = 1000;
        const OTHER: u32 = 1001;
        assert_eq!(judge_dir(ME, 0o700, ME), Private);
        assert_eq!(judge_dir(ME, 0o755, ME), Close);
        assert_eq!(judge_dir(OTHER, 0o700, ME), ForeignOwner);
        assert_eq!(judge_dir(OTHER, 0o755, ME), ForeignOwner);
        // A root-owned directory is trusted (root can read everything anyway), but we
        // cannot close it ourselves.
        assert_eq!(judge_dir(0, 0o700, ME), Private);
        assert_eq!(judge_dir(0, 0o755, ME), OpenNotOurs);
        // Root may use (and close) a directory of the service user (install.sh runs
        // `rustbalance init` as root in the service user's state directory).
        assert_eq!(judge_dir(OTHER, 0o700, 0), Private);
        assert_eq!(judge_dir(OTHER, 0o750, 0), Close);
        let e = Error::DirOwner {
            path: "/srv/rb".into(),
            owner: OTHER,
            euid: ME,
        };
        assert!(e.to_string().contains("chown -R 1000 /srv/rb"), "{e}");
    }

    #[test]
    fn secret_files_must_be_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cluster.secret");
        fs::write(&p, [7u8; 32]).unwrap();
        for open in [0o640, 0o604, 0o644] {
            fs::set_permissions(&p, fs::Permissions::from_mode(open)).unwrap();
            let e = read_secret_file(&p).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&read_secret_file(&p).unwrap()[..], &[7u8; 32]);
    }
}
