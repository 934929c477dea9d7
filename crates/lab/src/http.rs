//! HTTP GET through the lab client's SOCKS5 port, with a fresh circuit for
//! every request: each request authenticates with a random SOCKS username,
//! and tor isolates streams by SOCKS credentials (`IsolateSOCKSAuth`, on by
//! default).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::err::{Error, Result};
use crate::Lab;

/// Largest response body we read.
const MAX_RESPONSE: u64 = 8 * 1024 * 1024;

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What tor's SOCKS reply code means (tor's extended codes included).
fn socks_reply_text(code: u8) -> &'static str {
    match code {
        0x01 => "general failure",
        0x02 => "not allowed by the exit policy",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired (timeout)",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        0xF0 => "onion service descriptor not found (not published yet, or not at the HSDirs this client asked)",
        0xF1 => "onion service descriptor is invalid",
        0xF2 => "onion service introduction failed",
        0xF3 => "onion service rendezvous failed",
        0xF4 => "onion service needs client authorization",
        0xF5 => "wrong onion service client authorization",
        0xF6 => "invalid onion address",
        0xF7 => "onion service introduction timed out",
        _ => "unknown SOCKS error",
    }
}

/// Splits `http://host[:port][/path]` into host, port, path.
fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    (!host.is_empty() && host.len() <= 255).then(|| (host.to_string(), port, path.to_string()))
}

async fn socks_connect(
    socks: SocketAddr,
    host: &str,
    port: u16,
) -> std::result::Result<TcpStream, String> {
    let mut s = TcpStream::connect(socks)
        .await
        .map_err(|e| format!("cannot reach SOCKS port {socks}: {e}"))?;
    let io = |e: std::io::Error| format!("SOCKS exchange with {socks}: {e}");
    // Greeting: version 5, one method: username/password.
    s.write_all(&[5, 1, 2]).await.map_err(io)?;
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).await.map_err(io)?;
    if sel != [5, 2] {
        return Err(format!(
            "SOCKS server chose method {sel:?}, not username/password"
        ));
    }
    let mut user = [0u8; 16];
    rand::rng().fill_bytes(&mut user);
    let user = hex::encode(user);
    let mut auth = vec![1, user.len() as u8];
    auth.extend_from_slice(user.as_bytes());
    auth.extend_from_slice(&[1, b'x']);
    s.write_all(&auth).await.map_err(io)?;
    let mut st = [0u8; 2];
    s.read_exact(&mut st).await.map_err(io)?;
    if st[1] != 0 {
        return Err("SOCKS username/password refused".into());
    }
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(io)?;
    if head[1] != 0 {
        return Err(format!(
            "SOCKS error 0x{:02X}: {}",
            head[1],
            socks_reply_text(head[1])
        ));
    }
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.map_err(io)?;
            l[0] as usize
        }
        other => return Err(format!("SOCKS reply with address type {other}")),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).await.map_err(io)?;
    Ok(s)
}

fn parse_response(raw: &[u8]) -> std::result::Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete HTTP header in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// One `GET url` (HTTP/1.0, `Connection: close`) through the SOCKS5 proxy
/// at `socks`, on a fresh circuit, bounded by `timeout`.
pub async fn http_get_via(socks: SocketAddr, url: &str, timeout: Duration) -> Result<HttpResponse> {
    let fail = |detail: String| Error::Http {
        url: url.to_string(),
        detail,
    };
    let (host, port, path) = parse_url(url)
        .ok_or_else(|| fail("only http://host[:port]/path URLs are supported".into()))?;
    let work = async {
        let mut s = socks_connect(socks, &host, port).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        parse_response(&raw)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| fail(format!("no complete response within {timeout:?}")))?
        .map_err(fail)
}

impl Lab {
    /// One `GET url` through the lab client, on a fresh circuit (in a
    /// namespaced lab, through the portal to the client's SOCKS port).
    pub async fn http_get(&self, url: &str, timeout: Duration) -> Result<HttpResponse> {
        self.ensure_portal()?;
        http_get_via(self.socks_addr(), url, timeout).await
    }

    /// Repeats [`Self::http_get`] (each try with a fresh circuit, at most
    /// `per_try` each) until a 200 response whose body contains `expect`,
    /// within `timeout`. Returns the response and the time it took.
    pub async fn wait_http(
        &self,
        url: &str,
        expect: &str,
        timeout: Duration,
    ) -> Result<(HttpResponse, Duration)> {
        let per_try = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut last = String::from("no attempt yet");
        while t0.elapsed() < timeout {
            let left = timeout.saturating_sub(t0.elapsed());
            match self.http_get(url, per_try.min(left)).await {
                Ok(r) if r.status == 200 && r.text().contains(expect) => {
                    return Ok((r, t0.elapsed()))
                }
                Ok(r) => last = format!("HTTP {} with body {:?}", r.status, r.text()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Timeout {
            what: format!("GET {url} to answer 200 containing {expect:?}"),
            waited: timeout,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://abc.onion/x?y"),
            Some(("abc.onion".into(), 80, "/x?y".into()))
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8080"),
            Some(("127.0.0.1".into(), 8080, "/".into()))
        );
        assert_eq!(parse_url("https://a/"), None);
        assert_eq!(parse_url("http://:80/"), None);
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hi"));
        assert_eq!(r.headers[0], ("Content-Length".into(), "2".into()));
        assert!(parse_response(b"garbage").is_err());
    }

    /// A fake SOCKS5 server that checks the username/password step and
    /// forwards to `target`; records the usernames it saw.
    async fn fake_socks(
        target: SocketAddr,
    ) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let users = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = users.clone();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut g = [0u8; 3];
                    c.read_exact(&mut g).await.unwrap();
                    assert_eq!(g, [5, 1, 2]);
                    c.write_all(&[5, 2]).await.unwrap();
                    let mut h = [0u8; 2];
                    c.read_exact(&mut h).await.unwrap();
                    let mut u = vec![0u8; h[1] as usize];
                    c.read_exact(&mut u).await.unwrap();
                    let mut pl = [0u8; 1];
                    c.read_exact(&mut pl).await.unwrap();
                    let mut p = vec![0u8; pl[0] as usize];
                    c.read_exact(&mut p).await.unwrap();
                    seen.lock().unwrap().push(String::from_utf8(u).unwrap());
                    c.write_all(&[1, 0]).await.unwrap();
                    let mut r = [0u8; 5];
                    c.read_exact(&mut r).await.unwrap();
                    let mut host = vec![0u8; r[4] as usize + 2];
                    c.read_exact(&mut host).await.unwrap();
                    c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
                    let mut up = TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
                });
            }
        });
        (addr, users)
    }

    #[tokio::test]
    async fn get_through_socks_uses_fresh_usernames() {
        let target = crate::DemoTarget::start("served by t1").await.unwrap();
        let (socks, users) = fake_socks(target.addr()).await;
        let url = format!("http://{}/", target.addr());
        for _ in 0..2 {
            let r = http_get_via(socks, &url, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "served by t1");
        }
        let users = users.lock().unwrap();
        assert_eq!(users.len(), 2);
        assert_ne!(users[0], users[1], "every request gets its own circuit");
    }
}
