//! Crash-safe file writes ([`rustbalance_fsutil`]) with this crate's errors, which name
//! the file.

use crate::err::{Error, Result};
use std::path::Path;

/// Write `data` to `path` atomically, with Unix permissions `mode` (e.g. `0o600`); see
/// [`rustbalance_fsutil::write_atomic`].
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    rustbalance_fsutil::write_atomic(path, data, mode).map_err(|source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Create `dir` (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    rustbalance_fsutil::create_private_dir(dir).map_err(|source| Error::WriteFile {
        path: dir.to_path_buf(),
        source,
    })
}
