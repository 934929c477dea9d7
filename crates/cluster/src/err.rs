//! The crate's error type.

use std::net::SocketAddr;

/// Everything that can go wrong in the cluster layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A configuration value is out of range; the message says which and what to use.
    #[error("invalid cluster configuration: {0}")]
    BadConfig(String),

    /// The cluster secret is too short to key the gossip MAC.
    #[error(
        "the cluster secret is {len} bytes long; it must be at least {min} bytes \
         (generate one with `rustbalance keygen` or 32 random bytes)"
    )]
    WeakSecret { len: usize, min: usize },

    /// The gossip socket could not be bound.
    #[error("cannot listen for gossip on {addr}: is another node or program using this address?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The gossip engine failed to start or stopped with an error.
    #[error("the gossip engine on {addr} failed: {message}")]
    Gossip { addr: SocketAddr, message: String },

    /// A value in a peer's gossip state could not be parsed.
    #[error("a peer advertised an unreadable value for key {key:?}")]
    BadState {
        key: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A node identity file (or public key) is unreadable.
    #[error(
        "the node identity is unreadable: {problem}; if the file is damaged, move it away \
         and run `rustbalance run` once to make a new identity (its certificate must then \
         be issued again)"
    )]
    BadIdentity { problem: &'static str },

    /// A member certificate is unreadable.
    #[error("the member certificate is unreadable: {problem}")]
    BadCert { problem: &'static str },

    /// An authority public key is unreadable.
    #[error(
        "the authority key is unreadable: {problem}; copy the file again from an \
         eligible node's data directory, or join the cluster again"
    )]
    BadAuthorityKey { problem: &'static str },

    /// A node was started with signed gossip but a certificate for another node or key.
    #[error("the member certificate does not fit this node: {problem}")]
    CertMismatch { problem: String },
}
