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

/// Why bytes read from a server are not an HTTP/1 response.
#[derive(Debug, thiserror::Error)]
enum BadResponse {
    /// The header never ended.
    #[error("no complete HTTP header in {0} bytes")]
    NoHeader(usize),
    /// The first line is not `HTTP/1.x NNN ...`.
    #[error("bad status line {0:?}")]
    StatusLine(String),
}

fn parse_response(raw: &[u8]) -> std::result::Result<HttpResponse, BadResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(BadResponse::NoHeader(raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| BadResponse::StatusLine(status_line.to_string()))?;
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
        parse_response(&raw).map_err(|e| e.to_string())
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
    use rustbalance_tor::fake_socks::{FakeSocks, Route};

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

    #[tokio::test]
    async fn get_through_socks_uses_fresh_usernames() {
        let target = crate::DemoTarget::start("served by t1").await.unwrap();
        let to = target.addr();
        let socks = FakeSocks::start(move |_, _| Route::To(to)).await.unwrap();
        let url = format!("http://{}/", target.addr());
        for _ in 0..2 {
            let r = http_get_via(socks.addr(), &url, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "served by t1");
        }
        let seen = socks.requests();
        assert_eq!(seen.len(), 2);
        assert!(
            seen.iter().all(|r| r.methods == [2] && r.user.is_some()),
            "only username/password (isolation) offered: {seen:?}"
        );
        assert_ne!(
            seen[0].user, seen[1].user,
            "every request gets its own circuit"
        );
    }
}
