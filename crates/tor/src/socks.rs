//! The SOCKS5 client of RustBalance (RFC 1928, with RFC 1929
//! username/password): CONNECT by host name through tor's `SocksPort`.
//!
//! [`Isolation`] chooses the circuit: tor isolates streams by SOCKS
//! credentials (`IsolateSOCKSAuth`, on by default), so
//! [`Isolation::fresh`] gets a circuit of its own and
//! [`Isolation::Shared`] (no authentication) shares tor's circuits.
//!
//! ```text
//! greeting ─▶ method chosen ─▶ [username/password ─▶ accepted] ─▶ CONNECT host:port ─▶ reply 0: stream open
//!                                                                                  └─▶ reply ≠ 0: Error::Socks (reply code)
//! ```
//!
//! Used by the proxy (onion targets), the join client and the lab client.

use crate::err::{Error, Result};
use rand::Rng as _;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Which circuits a stream may share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// No authentication: tor's ordinary circuit sharing.
    Shared,
    /// Authenticate with this user name (password `x`): streams with other
    /// credentials never share a circuit with this one.
    Credentials(String),
}

impl Isolation {
    /// Random credentials: a circuit nobody else uses.
    pub fn fresh() -> Isolation {
        let mut user = [0u8; 16];
        rand::rng().fill_bytes(&mut user);
        Isolation::Credentials(hex::encode(user))
    }
}

/// Connects to the SOCKS port `proxy` and opens a stream to `host:port`.
pub async fn connect_via(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    isolation: &Isolation,
) -> Result<TcpStream> {
    let mut s = TcpStream::connect(proxy).await.map_err(|e| Error::Socks {
        detail: format!("cannot reach the SOCKS port {proxy}: {e}"),
        reply: None,
    })?;
    connect(&mut s, host, port, isolation).await?;
    Ok(s)
}

fn broke(e: std::io::Error) -> Error {
    Error::Socks {
        detail: format!("the SOCKS conversation broke off ({e})"),
        reply: None,
    }
}

fn refused(detail: String) -> Error {
    Error::Socks {
        detail,
        reply: None,
    }
}

/// Runs the SOCKS5 handshake on `s` for `host:port`. On success the stream
/// carries the target's bytes.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    port: u16,
    isolation: &Isolation,
) -> Result<()> {
    let name = host.as_bytes();
    let len = u8::try_from(name.len())
        .map_err(|_| refused(format!("host name {host:?} is longer than 255 bytes")))?;
    // Greeting first, request after the answer: one loopback round trip,
    // nothing next to a circuit build, and no reliance on pipelining.
    let method = match isolation {
        Isolation::Shared => 0,
        Isolation::Credentials(_) => 2,
    };
    s.write_all(&[5, 1, method]).await.map_err(broke)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.map_err(broke)?;
    if choice != [5, method] {
        return Err(refused(format!(
            "the SOCKS server did not accept method {method} or is not SOCKS5 (answered {choice:02x?})"
        )));
    }
    if let Isolation::Credentials(user) = isolation {
        let ulen = u8::try_from(user.len())
            .map_err(|_| refused("SOCKS user name longer than 255 bytes".into()))?;
        let mut auth = vec![1, ulen];
        auth.extend_from_slice(user.as_bytes());
        auth.extend_from_slice(&[1, b'x']);
        s.write_all(&auth).await.map_err(broke)?;
        let mut st = [0u8; 2];
        s.read_exact(&mut st).await.map_err(broke)?;
        if st[1] != 0 {
            return Err(refused("SOCKS username/password refused".into()));
        }
    }
    let mut req = Vec::with_capacity(7 + name.len());
    req.extend_from_slice(&[5, 1, 0, 3, len]);
    req.extend_from_slice(name);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(broke)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(broke)?;
    if head[0] != 5 {
        return Err(refused("the SOCKS server's reply is not SOCKS5".into()));
    }
    if head[1] != 0 {
        return Err(Error::Socks {
            detail: format!("SOCKS error 0x{:02X}: {}", head[1], reply_text(head[1])),
            reply: Some(head[1]),
        });
    }
    let skip = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.map_err(broke)?;
            usize::from(l[0]) + 2
        }
        t => {
            return Err(refused(format!(
                "the SOCKS reply has an unknown address type {t}"
            )))
        }
    };
    let mut bound = [0u8; 257];
    s.read_exact(&mut bound[..skip]).await.map_err(broke)?;
    Ok(())
}

/// RFC 1928 reply codes and tor's extended ones (`ExtendedErrors`, `man tor`).
pub fn reply_text(code: u8) -> &'static str {
    match code {
        0x01 => "general failure",
        0x02 => "not allowed by the ruleset (exit policy)",
        0x03 => "network unreachable",
        0x04 => "host unreachable (the onion service did not answer)",
        0x05 => "connection refused by the onion service",
        0x06 => "TTL expired (the circuit timed out)",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        0xF0 => "onion service descriptor not found (not published yet, or not at the HSDirs this client asked)",
        0xF1 => "onion service descriptor is invalid",
        0xF2 => "onion service introduction failed",
        0xF3 => "onion service rendezvous failed",
        0xF4 => "onion service needs client authorization",
        0xF5 => "onion service client authorization was refused",
        0xF6 => "invalid onion address",
        0xF7 => "onion service introduction timed out",
        _ => "unknown SOCKS reply code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fake_socks::{FakeSocks, Route};

    /// The shared fake SOCKS port: echo on success, else refuse with `reply`.
    async fn fake(reply: u8) -> FakeSocks {
        FakeSocks::start(move |_, _| match reply {
            0 => Route::Echo,
            code => Route::Refuse(code),
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn fresh_isolation_uses_new_credentials_and_shared_none() {
        let proxy = fake(0).await;
        for iso in [Isolation::fresh(), Isolation::fresh(), Isolation::Shared] {
            let mut s = connect_via(proxy.addr(), "abc.onion", 80, &iso)
                .await
                .unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
        let users: Vec<_> = proxy.requests().into_iter().map(|r| r.user).collect();
        assert_eq!(users.len(), 3);
        assert_ne!(
            users[0], users[1],
            "every fresh stream gets its own circuit"
        );
        assert_eq!(users[0].as_ref().map(String::len), Some(32));
        assert_eq!(users[2], None);
    }

    #[tokio::test]
    async fn reply_codes_become_errors_with_the_code() {
        let proxy = fake(0xF2).await;
        let e = connect_via(proxy.addr(), "abc.onion", 80, &Isolation::Shared)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Socks {
                    reply: Some(0xF2),
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "SOCKS error 0xF2: onion service introduction failed"
        );
    }

    #[tokio::test]
    async fn long_names_and_unreachable_ports_fail_cleanly() {
        let mut sink = tokio::io::duplex(64).0;
        let e = connect(&mut sink, &"a".repeat(256), 80, &Isolation::Shared)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("longer than 255"), "{e}");
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = connect_via(free, "abc.onion", 80, &Isolation::Shared)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot reach the SOCKS port"), "{e}");
    }
}
