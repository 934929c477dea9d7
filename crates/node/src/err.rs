//! Errors of a node.

use std::path::PathBuf;

/// What can go wrong running a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown/mistyped keys.
    #[error("config {path}: {message}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// toml's message (names the key, line and column).
        message: String,
    },
    /// A config value is not allowed.
    #[error("config key {key}: {problem}")]
    Config {
        /// Dotted key.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// Onion-service core error (keys, descriptors).
    #[error(transparent)]
    Hs(#[from] rustbalance_hs::Error),
    /// Tor adapter error.
    #[error(transparent)]
    Tor(#[from] rustbalance_tor::Error),
    /// File-system error.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// This node was removed from its cluster (`rustbalance node remove`): it stops and
    /// does not start again. `rustbalance run` exits with [`EXIT_REMOVED`].
    #[error("{0}")]
    Removed(String),
    /// Joining, the join endpoint, node removal.
    #[error(transparent)]
    Join(#[from] crate::join::JoinError),
    /// Anything else the daemon reports.
    #[error("{0}")]
    Other(String),
}

/// Exit status of `rustbalance run` on a removed node (sysexits' EX_NOPERM); the systemd
/// unit lists it in `RestartPreventExitStatus=`, so a removed node is not restarted.
pub const EXIT_REMOVED: u8 = 77;

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
