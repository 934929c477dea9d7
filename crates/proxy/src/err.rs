//! The error type of the proxy.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything that can go wrong while starting the proxy or serving one
/// connection.
///
/// Per-connection errors never stop the proxy: they are counted in
/// [`ProxyStats`](crate::ProxyStats), logged at debug level (with the target
/// redacted, never client data beyond tor's circuit id) and end only that
/// connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration does not make sense.
    #[error("invalid proxy configuration: {0}")]
    Config(String),

    /// The listener could not be opened.
    #[error("cannot listen on {addr}: {source}; is another process using that port?")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },

    /// The target (or tor's SOCKS port) did not accept the connection.
    #[error("cannot connect to the target {target}: {source}; is it running?")]
    Connect {
        /// The target, redacted.
        target: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },

    /// Connecting to the target took longer than `connect_timeout`.
    #[error("connecting to the target {target} timed out after {timeout:?}; is it overloaded, or (onion targets) is tor bootstrapped?")]
    ConnectTimeout {
        /// The target, redacted.
        target: String,
        /// The configured connect timeout.
        timeout: Duration,
    },

    /// Tor's SOCKS port answered, but refused or failed the CONNECT.
    #[error("tor's SOCKS port {socks} could not reach {target}: {reason}")]
    Socks {
        /// tor's SOCKS port.
        socks: SocketAddr,
        /// The onion target, redacted.
        target: String,
        /// What tor said, as a sentence.
        reason: String,
    },

    /// The PROXY protocol line tor should have sent first was missing or
    /// malformed.
    #[error("bad PROXY protocol header from tor ({0}); set `expect_proxy_header` exactly when the torrc has `HiddenServiceExportCircuitID haproxy`")]
    ProxyHeader(String),

    /// An HTTP head (request from the client or response from the target)
    /// could not be used in Http mode.
    #[error("bad HTTP {side} head: {reason}")]
    Http {
        /// `request` or `response`.
        side: &'static str,
        /// What was wrong with it.
        reason: String,
    },

    /// Socket I/O failed while serving a connection.
    #[error("connection I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
