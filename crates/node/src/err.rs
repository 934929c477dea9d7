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
    /// Anything else the daemon reports.
    #[error("{0}")]
    Other(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
