//! [`PidLock`]: one process per data directory.
//!
//! The pid file is locked with `flock(LOCK_EX | LOCK_NB)` and stays locked while the
//! [`PidLock`] lives; the kernel drops the lock when the process dies, however it dies.
//! So a pid file left behind by a crash never blocks a start, even when its pid now
//! belongs to another process, and two processes never both hold it. The pid written
//! inside is for people (and error messages) only.
//!
//! Dropping the lock removes the file while still holding the lock. A process that
//! opened the old file just before may then lock it; it notices that the path no longer
//! names the file it locked and starts over with the new one.

use crate::err::{Error, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How often [`PidLock::acquire`] starts over when the file was replaced under it.
const ATTEMPTS: usize = 8;

/// A locked pid file holding this process's pid; unlocked and removed on drop.
#[derive(Debug)]
pub struct PidLock {
    file: File,
    path: PathBuf,
}

impl PidLock {
    /// Lock `path` (created with mode 0644 if missing) and write our pid into it.
    /// [`Error::Locked`] (with the pid written in the file, if readable) when another
    /// process, or another `PidLock` of this one, holds it.
    pub fn acquire(path: &Path) -> Result<PidLock> {
        let io = |action| {
            move |source| Error::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        for _ in 0..ATTEMPTS {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(io("open pid file"))?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                        pid: fs::read_to_string(path)
                            .ok()
                            .and_then(|s| s.trim().parse().ok()),
                    })
                }
                Err(e) => return Err(io("lock pid file")(e.into())),
            }
            if !names_file(path, &file) {
                continue;
            }
            let mut lock = PidLock {
                file,
                path: path.to_path_buf(),
            };
            lock.file.set_len(0).map_err(io("truncate pid file"))?;
            writeln!(lock.file, "{}", std::process::id()).map_err(io("write pid file"))?;
            lock.file.sync_all().map_err(io("sync pid file"))?;
            return Ok(lock);
        }
        Err(io("lock pid file")(std::io::Error::other(
            "it was replaced under us again and again; is something deleting it?",
        )))
    }

    /// The pid file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether `path` still names the open `file` (same device and inode).
fn names_file(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes when `file` is closed right after.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A pid file left by a crash whose pid now belongs to another live process (here
    /// init, pid 1, and our parent) must not block the start.
    #[test]
    fn a_stale_pid_file_naming_a_live_process_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rustbalance.pid");
        let parent = std::os::unix::process::parent_id();
        for other in [1, parent] {
            fs::write(&p, format!("{other}\n")).unwrap();
            let lock = PidLock::acquire(&p).expect("a stale pid file blocked the start");
            assert_eq!(
                fs::read_to_string(&p).unwrap(),
                format!("{}\n", std::process::id())
            );
            drop(lock);
            assert!(!p.exists(), "the pid file is removed on the way out");
        }
    }

    #[test]
    fn a_held_lock_refuses_a_second_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rustbalance.pid");
        let first = PidLock::acquire(&p).unwrap();
        match PidLock::acquire(&p) {
            Err(Error::Locked { pid, path }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(path, p);
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let e = PidLock::acquire(&p).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        let again = PidLock::acquire(&p).unwrap();
        assert_eq!(again.path(), p);
    }

    /// The holder's file is replaced (removed by a previous holder on its way out, or by
    /// hand) after another opener opened the old one: it must lock the file the path
    /// names now.
    #[test]
    fn a_replaced_file_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rustbalance.pid");
        let old = File::create(&p).unwrap();
        fs::remove_file(&p).unwrap();
        assert!(!names_file(&p, &old));
        let lock = PidLock::acquire(&p).unwrap();
        assert!(names_file(&p, &lock.file));
    }
}
