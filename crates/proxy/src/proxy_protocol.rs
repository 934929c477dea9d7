//! The PROXY protocol (HAProxy's `proxy-protocol.txt`), as tor speaks it to us
//! and as we speak it to the target.
//!
//! With `HiddenServiceExportCircuitID haproxy`, tor writes before any client
//! byte (`connection_edge.c`, `export_hs_client_circuit_id`):
//!
//! ```text
//! PROXY TCP6 fc00:dead:beef:4dad::<id >> 16 in hex>:<id & 0xffff in hex> ::1 65535 <port>\r\n
//! ```
//!
//! so the circuit's global identifier is the low 32 bits of the source
//! address. Pure functions here; reading the line off a socket is
//! [`read_v1`].

use crate::err::{Error, Result};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Longest v1 line, CRLF included (spec section 2.1).
pub const V1_MAX_LEN: usize = 107;
/// The 12-byte v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The /96 prefix tor puts in front of the circuit id.
pub const TOR_CIRCUIT_PREFIX: [u16; 4] = [0xfc00, 0xdead, 0xbeef, 0x4dad];

/// The addresses a PROXY header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAddrs {
    /// A TCP connection from `src` to `dst` (same family).
    Tcp {
        /// The client side.
        src: SocketAddr,
        /// The server side.
        dst: SocketAddr,
    },
    /// `PROXY UNKNOWN`: the sender does not know the addresses.
    Unknown,
}

impl ProxyAddrs {
    /// Tor's circuit id, when the source is in tor's `fc00:dead:beef:4dad::/96`.
    pub fn circuit_id(&self) -> Option<u32> {
        match self {
            ProxyAddrs::Tcp {
                src: SocketAddr::V6(s),
                ..
            } => {
                let seg = s.ip().segments();
                (seg[..4] == TOR_CIRCUIT_PREFIX && seg[4] == 0 && seg[5] == 0)
                    .then(|| (u32::from(seg[6]) << 16) | u32::from(seg[7]))
            }
            _ => None,
        }
    }

    /// The addresses tor would write for `circuit_id` (for tests and fakes).
    pub fn tor_circuit(circuit_id: u32, virtual_port: u16) -> Self {
        let [a, b, c, d] = TOR_CIRCUIT_PREFIX;
        let src = Ipv6Addr::new(
            a,
            b,
            c,
            d,
            0,
            0,
            (circuit_id >> 16) as u16,
            circuit_id as u16,
        );
        ProxyAddrs::Tcp {
            src: SocketAddr::new(IpAddr::V6(src), 65535),
            dst: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), virtual_port),
        }
    }
}

/// Parse one v1 line (`PROXY ...`, with or without its CRLF).
pub fn parse_v1(line: &[u8]) -> Result<ProxyAddrs> {
    let bad = |why: &str| Error::ProxyHeader(why.to_string());
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    if line.len() + 2 > V1_MAX_LEN {
        return Err(bad("line longer than 107 bytes"));
    }
    let line = std::str::from_utf8(line).map_err(|_| bad("not ASCII"))?;
    let mut f = line.split(' ');
    if f.next() != Some("PROXY") {
        return Err(bad("does not start with `PROXY `"));
    }
    let v6 = match f.next() {
        Some("TCP4") => false,
        Some("TCP6") => true,
        Some("UNKNOWN") => return Ok(ProxyAddrs::Unknown),
        _ => return Err(bad("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(s), Some(d), Some(sp), Some(dp), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err(bad("expected 4 fields after the protocol"));
    };
    let ip = |t: &str| -> Result<IpAddr> {
        let ip: IpAddr = t.parse().map_err(|_| bad("unparsable address"))?;
        if ip.is_ipv6() != v6 {
            return Err(bad("address family does not match the protocol"));
        }
        Ok(ip)
    };
    let port = |t: &str| -> Result<u16> {
        if t.is_empty()
            || (t.len() > 1 && t.starts_with('0'))
            || !t.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("unparsable port"));
        }
        t.parse().map_err(|_| bad("port above 65535"))
    };
    Ok(ProxyAddrs::Tcp {
        src: SocketAddr::new(ip(s)?, port(sp)?),
        dst: SocketAddr::new(ip(d)?, port(dp)?),
    })
}

/// Encode a v1 line, CRLF included.
pub fn encode_v1(addrs: &ProxyAddrs) -> Vec<u8> {
    match addrs {
        ProxyAddrs::Tcp { src, dst } if src.is_ipv4() == dst.is_ipv4() => {
            let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        _ => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// Encode a v2 header: command PROXY, TCP over IPv4 or IPv6 (AF_UNSPEC for
/// unknown or mixed-family addresses), no TLVs.
pub fn encode_v2(addrs: &ProxyAddrs) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    match addrs {
        ProxyAddrs::Tcp {
            src: SocketAddr::V4(s),
            dst: SocketAddr::V4(d),
        } => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        ProxyAddrs::Tcp {
            src: SocketAddr::V6(s),
            dst: SocketAddr::V6(d),
        } => {
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => out.extend_from_slice(&[0x00, 0, 0]),
    }
    out
}

/// Read tor's v1 line from the start of a connection. Returns the addresses
/// and any bytes read past the line (client data, to forward).
pub(crate) async fn read_v1<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    timeout: Duration,
) -> Result<(ProxyAddrs, Vec<u8>)> {
    let mut buf = vec![0u8; V1_MAX_LEN + 4096];
    let mut len = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(end) = buf[..len].windows(2).position(|w| w == b"\r\n") {
            let addrs = parse_v1(&buf[..end])?;
            return Ok((addrs, buf[end + 2..len].to_vec()));
        }
        if len >= V1_MAX_LEN {
            return Err(Error::ProxyHeader(if buf.starts_with(&V2_SIGNATURE) {
                "got a v2 header; tor sends v1".into()
            } else {
                "no CRLF within 107 bytes".into()
            }));
        }
        let n = tokio::time::timeout_at(deadline, r.read(&mut buf[len..]))
            .await
            .map_err(|_| Error::ProxyHeader(format!("nothing within {timeout:?}")))??;
        if n == 0 {
            return Err(Error::ProxyHeader(
                "connection closed before the line ended".into(),
            ));
        }
        len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_lines() {
        // tor's format string: "PROXY TCP6 %s:%x:%x %s %d %d\r\n" with the
        // prefix "fc00:dead:beef:4dad:", the id split in two 16-bit halves.
        let a = parse_v1(b"PROXY TCP6 fc00:dead:beef:4dad::0:29 ::1 65535 42\r\n").unwrap();
        assert_eq!(a.circuit_id(), Some(41));
        assert_eq!(a, ProxyAddrs::tor_circuit(41, 42));
        let a = parse_v1(b"PROXY TCP6 fc00:dead:beef:4dad::ffff:ffff ::1 65535 42\r\n").unwrap();
        assert_eq!(a.circuit_id(), Some(u32::MAX));
        let a = parse_v1(b"PROXY TCP6 fc00:dead:beef:4dad::1:0 ::1 65535 80").unwrap();
        assert_eq!(a.circuit_id(), Some(0x1_0000));
        // Not tor's prefix: no circuit id.
        let a = parse_v1(b"PROXY TCP6 fc00:dead:beef:4dae::1:0 ::1 65535 80").unwrap();
        assert_eq!(a.circuit_id(), None);
        assert_eq!(
            parse_v1(b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2")
                .unwrap()
                .circuit_id(),
            None
        );
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b"PROXY TCP6 fc00:dead:beef:4dad::0:29 ::1 65535\r\n"[..],
            b"PROXY TCP6 fc00:dead:beef:4dad::0:29 ::1 65535 42 7\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP6 ::1 ::1 65536 2\r\n",
            b"PROXY TCP6 ::1 ::1 01 2\r\n",
            b"PROXY UDP6 ::1 ::1 1 2\r\n",
            b"proxy TCP6 ::1 ::1 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(parse_v1(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert!(parse_v1(long.as_bytes()).is_err());
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").unwrap(), ProxyAddrs::Unknown);
        assert_eq!(
            parse_v1(b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\n").unwrap(),
            ProxyAddrs::Unknown
        );
    }

    fn tcp(s: &str, d: &str) -> ProxyAddrs {
        ProxyAddrs::Tcp {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
        }
    }

    #[test]
    fn v1_spec_examples() {
        // proxy-protocol.txt, section 2.1: the longest lines and the examples.
        let max4 = tcp("255.255.255.255:65535", "255.255.255.255:65535");
        assert_eq!(
            encode_v1(&max4),
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        let f = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        let line = encode_v1(&tcp(f, f));
        assert_eq!(
            line,
            b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
        );
        assert_eq!(
            line.len(),
            104,
            "the spec's worst case (107 with `UNKNOWN`)"
        );
        assert_eq!(encode_v1(&ProxyAddrs::Unknown), b"PROXY UNKNOWN\r\n");
        let ex = tcp("192.168.0.1:56324", "192.168.0.11:443");
        assert_eq!(
            encode_v1(&ex),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
        assert_eq!(parse_v1(&encode_v1(&ex)).unwrap(), ex);
        // tor's addresses round-trip (Rust prints the compressed RFC 5952 form).
        let t = ProxyAddrs::tor_circuit(41, 42);
        assert_eq!(
            encode_v1(&t),
            b"PROXY TCP6 fc00:dead:beef:4dad::29 ::1 65535 42\r\n"
        );
        assert_eq!(parse_v1(&encode_v1(&t)).unwrap(), t);
    }

    #[test]
    fn v2_layout_from_the_spec() {
        // Section 2.2: 12-byte signature, 0x21 (v2, PROXY), family, length
        // (network order), then src addr, dst addr, src port, dst port.
        let sig = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        ];
        let mut want = sig.to_vec();
        want.extend_from_slice(&[
            0x21, 0x11, 0x00, 0x0C, 192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB,
        ]);
        assert_eq!(
            encode_v2(&tcp("192.168.0.1:56324", "192.168.0.11:443")),
            want
        );

        let mut want = sig.to_vec();
        want.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
        want.extend_from_slice(&[
            0xfc, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x4d, 0xad, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78,
        ]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0xff, 0xff, 0x00, 0x2a]);
        assert_eq!(encode_v2(&ProxyAddrs::tor_circuit(0x1234_5678, 42)), want);
        assert_eq!(want.len(), 16 + 36);

        let mut want = sig.to_vec();
        want.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(encode_v2(&ProxyAddrs::Unknown), want);
    }

    #[tokio::test]
    async fn read_line_keeps_following_bytes() {
        let mut input: &[u8] =
            b"PROXY TCP6 fc00:dead:beef:4dad::0:29 ::1 65535 42\r\nGET / HTTP/1.1\r\n";
        let (a, rest) = read_v1(&mut input, Duration::from_secs(1)).await.unwrap();
        assert_eq!(a.circuit_id(), Some(41));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let mut v2 = &encode_v2(&ProxyAddrs::tor_circuit(1, 2)).repeat(3)[..];
        assert!(read_v1(&mut v2, Duration::from_secs(1)).await.is_err());
        let mut short: &[u8] = b"PROXY TCP6";
        assert!(read_v1(&mut short, Duration::from_secs(1)).await.is_err());
    }
}
