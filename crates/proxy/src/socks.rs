//! A SOCKS5 client for one thing: CONNECT to an onion service by hostname
//! through tor's `SocksPort` (RFC 1928, no authentication).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why the SOCKS handshake failed, as a sentence.
pub type Reason = String;

/// Run the SOCKS5 handshake on `s` for `host:port`. On success the stream
/// carries the target's bytes.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    port: u16,
) -> Result<(), Reason> {
    let io = |e: std::io::Error| format!("the SOCKS conversation broke off ({e})");
    let name = host.as_bytes();
    let len =
        u8::try_from(name.len()).map_err(|_| "host name longer than 255 bytes".to_string())?;
    // Greeting first, request after the answer: one loopback round trip,
    // nothing next to a circuit build, and no reliance on pipelining.
    s.write_all(&[5, 1, 0]).await.map_err(io)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.map_err(io)?;
    if choice != [5, 0] {
        return Err(format!(
            "the SOCKS server wants authentication or is not SOCKS5 (answered {choice:02x?})"
        ));
    }
    let mut req = Vec::with_capacity(7 + name.len());
    req.extend_from_slice(&[5, 1, 0, 3, len]);
    req.extend_from_slice(name);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(io)?;
    if head[0] != 5 {
        return Err("the SOCKS server's reply is not SOCKS5".into());
    }
    if head[1] != 0 {
        return Err(reply_reason(head[1]));
    }
    let skip = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.map_err(io)?;
            usize::from(l[0]) + 2
        }
        t => return Err(format!("the SOCKS reply has an unknown address type {t}")),
    };
    let mut bound = [0u8; 257];
    s.read_exact(&mut bound[..skip]).await.map_err(io)?;
    Ok(())
}

/// RFC 1928 reply codes and tor's extended ones (`ExtendedErrors`, `man tor`).
fn reply_reason(code: u8) -> String {
    let r = match code {
        1 => "general failure",
        2 => "not allowed by the ruleset",
        3 => "network unreachable",
        4 => "host unreachable (the onion service did not answer)",
        5 => "connection refused by the onion service",
        6 => "TTL expired (the circuit timed out)",
        7 => "command not supported",
        8 => "address type not supported",
        0xf0 => "onion service descriptor not found (is the target published?)",
        0xf1 => "onion service descriptor is invalid",
        0xf2 => "introduction to the onion service failed",
        0xf3 => "rendezvous with the onion service failed",
        0xf4 => "the onion service needs client authorization",
        0xf5 => "client authorization was refused",
        0xf6 => "the onion address is invalid",
        0xf7 => "introduction timed out",
        _ => "unknown reply code",
    };
    format!("{r} (SOCKS reply {code:#04x})")
}
