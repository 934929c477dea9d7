//! HTTP GET through the lab client's SOCKS5 port, with a fresh circuit for
//! every request ([`Isolation::fresh`]: a random SOCKS username; tor
//! isolates streams by SOCKS credentials).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustbalance_tor::socks::{self, Isolation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let mut s = socks::connect_via(socks, &host, port, &Isolation::fresh())
            .await
            .map_err(|e| e.to_string())?;
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
                    let mut up = tokio::net::TcpStream::connect(target).await.unwrap();
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
