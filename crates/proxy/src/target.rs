//! Opening a connection to the target: direct TCP, or tor's SOCKS port for
//! an onion target; bounded by `connect_timeout`.

use crate::config::{ProxyConfig, Target};
use crate::err::{Error, Result};
use rustbalance_tor::socks::{self, Isolation};
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Connect to `cfg.target`; `addr` is its pre-parsed address when the host
/// is an IP literal.
pub(crate) async fn connect(cfg: &ProxyConfig, addr: Option<SocketAddr>) -> Result<TcpStream> {
    let attempt = async {
        let redacted = || cfg.target.redacted();
        let s = match (&cfg.target, addr) {
            (_, Some(a)) => TcpStream::connect(a).await,
            (Target::Tcp { host, port }, None) => TcpStream::connect((host.as_str(), *port)).await,
            (Target::Onion { socks, .. }, None) => TcpStream::connect(socks).await,
        };
        let mut s = s.map_err(|source| Error::Connect {
            target: redacted(),
            source,
        })?;
        if let Target::Onion {
            address,
            port,
            socks,
        } = &cfg.target
        {
            let host = if address.ends_with(".onion") {
                address.clone()
            } else {
                format!("{address}.onion")
            };
            socks::connect(&mut s, &host, *port, &Isolation::Shared)
                .await
                .map_err(|e| Error::Socks {
                    socks: *socks,
                    target: redacted(),
                    reason: e.to_string(),
                })?;
        }
        // Small writes (request heads, interactive protocols) must not wait
        // for Nagle; bulk transfers are unaffected.
        let _ = s.set_nodelay(true);
        Ok(s)
    };
    tokio::time::timeout(cfg.connect_timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Error::ConnectTimeout {
                target: cfg.target.redacted(),
                timeout: cfg.connect_timeout,
            })
        })
}
