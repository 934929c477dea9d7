//! Errors of the file helpers. Each says which path is wrong and what to do about it.

use std::path::PathBuf;

/// What went wrong with a file or directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A private directory belongs to another (non-root) user, who could read or replace
    /// what we keep in it.
    #[error(
        "{path} belongs to uid {owner}, not to this user (uid {euid}) or root, so that user \
         could read or replace the keys kept in it; give it to this user \
         (chown -R {euid} {path}) or choose another directory"
    )]
    DirOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        euid: u32,
    },
    /// A private directory is open to group or others and we may not fix that ourselves.
    #[error(
        "{path} is open to group or others (mode {mode:03o}) and belongs to uid {owner}; \
         run: chmod 700 {path}"
    )]
    DirMode {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
    },
    /// Something other than a directory is where a private directory should be.
    #[error("{path} exists but is not a directory; move it away")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A secret file is readable by group or others.
    #[error("{path} is readable by group or others (mode {mode:03o}); run: chmod 600 {path}")]
    FileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another process holds the lock of a pid file.
    #[error("{path} is locked by another process ({}); stop it first", describe_pid(.pid))]
    Locked {
        /// The pid file.
        path: PathBuf,
        /// The pid written in it, if it could be read.
        pid: Option<u32>,
    },
    /// Every temporary name tried next to a file already exists.
    #[error(
        "cannot write {path}: {tried} temporary names next to it already exist \
         (left by crashed writers); remove the files {pattern} in its directory"
    )]
    TempNamesExhausted {
        /// The file to write.
        path: PathBuf,
        /// How many names were tried.
        tried: usize,
        /// The glob of the names.
        pattern: String,
    },
    /// A file-system call failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

fn describe_pid(pid: &Option<u32>) -> String {
    pid.map_or_else(|| "pid not yet written".to_string(), |p| format!("pid {p}"))
}

impl Error {
    /// This error as an `std::io::Error` of a fitting kind, for the `io::Result` helpers.
    pub fn into_io(self) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match &self {
            Error::DirOwner { .. } | Error::DirMode { .. } | Error::FileMode { .. } => {
                ErrorKind::PermissionDenied
            }
            Error::NotADirectory { .. } => ErrorKind::NotADirectory,
            Error::Locked { .. } => ErrorKind::WouldBlock,
            Error::TempNamesExhausted { .. } => ErrorKind::AlreadyExists,
            Error::Io { source, .. } => source.kind(),
        };
        std::io::Error::new(kind, self)
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
