//! [`write_atomic`]: a temporary file in the same directory, created with its final
//! permissions (never briefly world-readable), written, fsynced, renamed over the target,
//! then the directory fsynced so the rename itself survives a crash. A reader sees the old
//! file or the new one, never half of either.
//!
//! The temporary name is `.NAME.tmp-PID-SEQ`, `SEQ` a counter of this process: no two
//! writes of one process, not even concurrent ones of the same file, share a name. A
//! name that exists already was left by a crashed process (one with our pid, before a
//! reboot or in a restarted container); it is skipped, never opened or deleted, and the
//! next sequence number tried.

use crate::err::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many temporary names one write tries before giving up.
const TEMP_ATTEMPTS: usize = 64;

/// Sequence numbers of temporary names, unique within this process.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Write `data` to `path` atomically, with Unix permissions `mode` (e.g. `0o600`).
///
/// On error the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path has no file name"))?
        .to_string_lossy();
    let (tmp, mut f) = create_temp(dir, &name, mode).map_err(|e| match e {
        TempError::Io(e) => e,
        TempError::Exhausted => Error::TempNamesExhausted {
            path: path.to_path_buf(),
            tried: TEMP_ATTEMPTS,
            pattern: format!(".{name}.tmp-*"),
        }
        .into_io(),
    })?;
    let result = (|| {
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

enum TempError {
    Io(io::Error),
    Exhausted,
}

/// Create a new temporary file next to the target, skipping names left by crashes.
fn create_temp(dir: &Path, name: &str, mode: u32) -> Result<(PathBuf, File), TempError> {
    for _ in 0..TEMP_ATTEMPTS {
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(TempError::Io(e)),
        }
    }
    Err(TempError::Exhausted)
}

#[cfg(test)]
mod test {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_with_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary file left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing-dir").join("f");
        assert!(write_atomic(&p, b"x", 0o600).is_err());
        // A directory in the way: the rename fails, the old entry stays, no temp file.
        let blocked = d.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"keep").unwrap();
        assert!(write_atomic(&blocked, b"x", 0o600).is_err());
        assert_eq!(fs::read(blocked.join("inside")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    /// A crash between creating the temporary file and renaming it leaves the file behind;
    /// after a reboot (or in a restarted container) the node often gets the same pid
    /// again. Such leftovers must not block the file (the admin cookie is rewritten at
    /// every start), and must be left alone rather than opened.
    #[test]
    fn temp_files_left_by_a_crash_do_not_block_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("admin.cookie");
        let pid = std::process::id();
        // What a crashed writer with our pid left: the name of any scheme that derives the
        // temporary name from the pid alone, and the first names of ours.
        let mut stale = vec![d.path().join(format!(".admin.cookie.tmp-{pid}"))];
        let next = NEXT_SEQ.load(Ordering::Relaxed);
        stale.extend(
            (next..next + 8).map(|s| d.path().join(format!(".admin.cookie.tmp-{pid}-{s}"))),
        );
        for s in &stale {
            fs::write(s, b"half a cookie").unwrap();
        }
        write_atomic(&p, b"cookie\n", 0o600).expect("a stale temporary file blocked the write");
        assert_eq!(fs::read(&p).unwrap(), b"cookie\n");
        for s in &stale {
            assert_eq!(fs::read(s).unwrap(), b"half a cookie", "{s:?} was touched");
        }
    }

    /// Concurrent writers of one file in one process never collide on the temporary name;
    /// the file always holds one complete version.
    #[test]
    fn concurrent_writes_of_one_file_all_succeed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.json");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(p, &[t; 4096], 0o600).unwrap();
                    }
                });
            }
        });
        let data = fs::read(&p).unwrap();
        assert_eq!(data.len(), 4096);
        assert!(data.iter().all(|b| *b == data[0]), "a torn file");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn too_many_leftovers_give_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let pid = std::process::id();
        let next = NEXT_SEQ.load(Ordering::Relaxed);
        // Enough leftovers to cover every name this write can try, even with other tests
        // taking sequence numbers meanwhile.
        for s in next..next + 5_000 {
            fs::write(d.path().join(format!(".f.tmp-{pid}-{s}")), b"").unwrap();
        }
        let e = write_atomic(&p, b"x", 0o600).unwrap_err();
        assert!(e.to_string().contains(".f.tmp-*"), "{e}");
        assert!(!p.exists());
    }
}
