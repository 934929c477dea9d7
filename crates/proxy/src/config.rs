//! What the proxy listens on, where it forwards to, and its limits.

use crate::err::{Error, Result};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Default `connect_timeout` for a [`Target::Tcp`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `connect_timeout` for a [`Target::Onion`]: a SOCKS CONNECT to an
/// onion service builds a rendezvous circuit, which takes seconds.
pub const DEFAULT_ONION_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `head_timeout`: tor's PROXY line, the HTTP request head (Http mode) and the
/// intercept's look at the first bytes (Tcp mode) must all arrive within it.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `max_streams_per_circuit` (tor's `HiddenServiceMaxStreams` default in RustBalance).
pub const DEFAULT_MAX_STREAMS_PER_CIRCUIT: usize = 128;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default `max_header_bytes` (one HTTP head, Http mode).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default `buffer_size` (per direction, per connection).
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;

/// Where connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local application at `host:port` (an IP address is used as is, a
    /// name is resolved on each connection).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Another onion service, reached through tor's SOCKS5 port (CONNECT with
    /// the hostname; no authentication, no username isolation).
    Onion {
        /// Its address, with or without the `.onion` suffix.
        address: String,
        /// Its virtual port.
        port: u16,
        /// tor's `SocksPort`.
        socks: SocketAddr,
    },
}

impl Target {
    /// The target's authority (`host` or `host:port`, port left out when it is
    /// 80) as it goes into the `Host` header in Http mode.
    pub fn authority(&self) -> String {
        let (host, port) = match self {
            Target::Tcp { host, port } => (host.clone(), *port),
            Target::Onion { address, port, .. } => (onion_with_suffix(address), *port),
        };
        let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{host}]")
        } else {
            host
        };
        if port == 80 {
            host
        } else {
            format!("{host}:{port}")
        }
    }

    /// The target's host name alone (lower case, `.onion` suffix included).
    pub(crate) fn host(&self) -> String {
        match self {
            Target::Tcp { host, .. } => host.to_ascii_lowercase(),
            Target::Onion { address, .. } => onion_with_suffix(address).to_ascii_lowercase(),
        }
    }

    /// For logs and errors: an onion address shortened to its first 6
    /// characters (instances' and backends' addresses are not logged).
    pub fn redacted(&self) -> String {
        match self {
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Onion {
                address,
                port,
                socks,
            } => {
                let short: String = address.chars().take(6).collect();
                format!("{short}….onion:{port} via SOCKS {socks}")
            }
        }
    }
}

fn onion_with_suffix(address: &str) -> String {
    if address.ends_with(".onion") {
        address.to_string()
    } else {
        format!("{address}.onion")
    }
}

/// How bytes are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Splice bytes both ways untouched: any protocol.
    #[default]
    Tcp,
    /// HTTP/1.x, one request per connection (`Connection: close` is forced
    /// both ways): rewrite `Host` (and `Origin`/`Referer`) to the target,
    /// and `Location`/`Content-Location` and cookie `Domain=` from the target
    /// to the public host. Meant for `.onion` targets.
    Http,
}

/// PROXY protocol version sent to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// Text: `PROXY TCP6 <src> <dst> <sport> <dport>\r\n`.
    V1,
    /// Binary, 16-byte header + addresses.
    V2,
}

/// The proxy's configuration. Build it with [`ProxyConfig::new`] and change
/// the public fields; [`Proxy::start`](crate::Proxy::start) validates it.
#[derive(Clone)]
pub struct ProxyConfig {
    /// Listener address (tor's `HiddenServicePort` points here); port 0 picks
    /// a free port, see [`ProxyHandle::local_addr`](crate::ProxyHandle::local_addr).
    pub listen: SocketAddr,
    /// Where to forward.
    pub target: Target,
    /// Byte splicing or HTTP rewriting.
    pub mode: Mode,
    /// Time allowed to connect to the target (for onion targets: including
    /// the SOCKS handshake and circuit build).
    pub connect_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed
    /// on both sides.
    pub idle_timeout: Duration,
    /// Time allowed, from accept, for tor's PROXY line, the request head (Http mode) and
    /// the first bytes the intercept looks at (Tcp mode); a slow client is then closed
    /// (Http mode) or passed on to the target (Tcp mode). Much shorter than `idle_timeout`:
    /// a client trickling bytes must not hold a connection slot for minutes.
    pub head_timeout: Duration,
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections open at once on one tor circuit (known only with
    /// `expect_proxy_header`); more are closed at once. 0: no cap.
    pub max_streams_per_circuit: usize,
    /// Read tor's `PROXY TCP6 ...` line first (torrc
    /// `HiddenServiceExportCircuitID haproxy`) and take the circuit id from it.
    pub expect_proxy_header: bool,
    /// Send a PROXY protocol header to the target, carrying tor's circuit id
    /// when `expect_proxy_header` is set (else the loopback peer address).
    pub send_proxy: Option<ProxyVersion>,
    /// Http mode: the public (master) address that `Location` headers and
    /// cookie domains are rewritten to. `None`: the `Host` the client sent.
    pub public_host: Option<String>,
    /// Http mode: largest request or response head accepted.
    pub max_header_bytes: usize,
    /// Copy buffer per direction per connection (Tcp mode and bodies).
    pub buffer_size: usize,
    /// Probe the target with a connection this often and report it in
    /// [`health`](crate::ProxyHandle::health); `None`: only real traffic.
    pub health_check_interval: Option<Duration>,
    /// Connections RustBalance answers itself (the join endpoint); see
    /// [`Intercept`](crate::Intercept). `None`: every connection goes to the target.
    pub intercept: Option<std::sync::Arc<dyn crate::Intercept>>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("listen", &self.listen)
            .field("target", &self.target.redacted())
            .field("mode", &self.mode)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_streams_per_circuit", &self.max_streams_per_circuit)
            .field("expect_proxy_header", &self.expect_proxy_header)
            .field("send_proxy", &self.send_proxy)
            .field("intercept", &self.intercept.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyConfig {
    /// A configuration with the defaults: Tcp mode, no PROXY protocol, the
    /// `DEFAULT_*` limits of this module.
    pub fn new(listen: SocketAddr, target: Target) -> Self {
        let connect_timeout = match target {
            Target::Tcp { .. } => DEFAULT_CONNECT_TIMEOUT,
            Target::Onion { .. } => DEFAULT_ONION_CONNECT_TIMEOUT,
        };
        ProxyConfig {
            listen,
            target,
            mode: Mode::Tcp,
            connect_timeout,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams_per_circuit: DEFAULT_MAX_STREAMS_PER_CIRCUIT,
            expect_proxy_header: false,
            send_proxy: None,
            public_host: None,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            buffer_size: DEFAULT_BUFFER_SIZE,
            health_check_interval: None,
            intercept: None,
        }
    }

    /// Check the values; every error says which field to fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must be above zero");
        }
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout must be above zero");
        }
        if self.head_timeout.is_zero() {
            return bad("head_timeout must be above zero");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.max_header_bytes < 1024 {
            return bad("max_header_bytes must be at least 1024");
        }
        if self.buffer_size < 1024 {
            return bad("buffer_size must be at least 1024");
        }
        if self.health_check_interval.is_some_and(|d| d.is_zero()) {
            return bad("health_check_interval must be above zero (or unset)");
        }
        match &self.target {
            Target::Tcp { host, port } => {
                if host.is_empty() || *port == 0 {
                    return bad("the TCP target needs a host and a non-zero port");
                }
            }
            Target::Onion { address, port, .. } => {
                let a = address.strip_suffix(".onion").unwrap_or(address);
                if a.len() != 56
                    || !a
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
                {
                    return bad("the onion target must be a v3 address (56 base32 characters, optionally with .onion)");
                }
                if *port == 0 {
                    return bad("the onion target needs a non-zero port");
                }
            }
        }
        if let Some(h) = &self.public_host {
            if h.is_empty() || !h.bytes().all(is_authority_byte) {
                return bad("public_host must be a host name with an optional :port");
            }
        }
        Ok(())
    }

    /// The target's socket address when it is an IP literal (no resolution
    /// per connection).
    pub(crate) fn target_addr(&self) -> Option<SocketAddr> {
        match &self.target {
            Target::Tcp { host, port } => {
                let h = host.trim_start_matches('[').trim_end_matches(']');
                h.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, *port))
            }
            Target::Onion { .. } => None,
        }
    }
}

/// Bytes allowed in a `host[:port]` authority we generate or accept as a
/// public host.
pub(crate) fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
}
