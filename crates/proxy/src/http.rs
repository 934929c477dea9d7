//! Http mode: one request per connection, heads rewritten, bodies spliced.
//!
//! Choice: `Connection: close` is forced both ways (except for protocol
//! upgrades such as WebSocket, whose `Connection: upgrade` is kept). The
//! proxy therefore parses exactly one request head and one response head
//! (plus any `1xx` interim heads) and splices everything after them, with no
//! body framing to get wrong (no request smuggling through us, by
//! construction). The cost: a client makes one connection per request, which
//! over tor is one stream (a RELAY_BEGIN round trip on an existing circuit).
//!
//! Rewrites, all on heads only:
//! * request: `Host` ← the target's authority; `Origin`/`Referer` whose host is
//!   the public host ← the target's authority; `Connection`, `Keep-Alive`,
//!   `Proxy-Connection` dropped, `Connection: close` added.
//! * response: `Location`/`Content-Location` whose host is the target ← the
//!   public host; `Set-Cookie` `Domain=<target>` ← the public host (port
//!   dropped); `Connection`/`Keep-Alive` replaced by `Connection: close`.
//!
//! The public host is `ProxyConfig::public_host`, else the `Host` the client
//! sent (it is the address the client used: the master address).

use crate::config::is_authority_byte;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most header lines in one head.
const MAX_HEADERS: usize = 128;

/// Why a head could not be used.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// Larger than `max_header_bytes`, or more than `MAX_HEADERS` lines.
    TooLarge,
    /// Not HTTP/1.x.
    Malformed(String),
    /// The peer closed before the head ended (with this many bytes read).
    Closed(usize),
    /// Socket error.
    Io(std::io::Error),
}

impl HeadError {
    pub(crate) fn reason(&self) -> String {
        match self {
            HeadError::TooLarge => "head too large".into(),
            HeadError::Malformed(m) => m.clone(),
            HeadError::Closed(n) => format!("closed after {n} bytes of head"),
            HeadError::Io(e) => e.to_string(),
        }
    }
}

/// Which head a buffer holds.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Request,
    Response,
}

/// Length of the complete head at the start of `buf`, if there is one.
fn head_len(buf: &[u8], side: Side) -> Result<Option<usize>, HeadError> {
    let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let r = match side {
        Side::Request => httparse::Request::new(&mut h).parse(buf),
        Side::Response => httparse::Response::new(&mut h).parse(buf),
    };
    match r {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// Read until `buf` starts with a complete head; returns its length. Bytes
/// after it (a body's start) stay in `buf`.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    side: Side,
) -> Result<usize, HeadError> {
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() {
            if let Some(n) = head_len(buf, side)? {
                return Ok(n);
            }
        }
        if buf.len() >= max {
            return Err(HeadError::TooLarge);
        }
        let want = chunk.len().min(max - buf.len());
        let n = r.read(&mut chunk[..want]).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed(buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The rewriting rules of one proxy.
#[derive(Debug, Clone)]
pub(crate) struct Rewriter {
    /// `Host` sent to the target.
    pub target_authority: String,
    /// The target's host (lower case), matched in responses.
    pub target_host: String,
    /// Fixed public host, else the client's `Host`.
    pub public_host: Option<String>,
}

/// A rewritten request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub head: Vec<u8>,
    /// The host to rewrite responses to (`host[:port]`), if known.
    pub public: Option<String>,
}

/// A rewritten response head.
#[derive(Debug)]
pub(crate) struct Response {
    pub head: Vec<u8>,
    /// 1xx other than 101: another head follows.
    pub interim: bool,
}

fn name_is(h: &httparse::Header<'_>, name: &str) -> bool {
    h.name.eq_ignore_ascii_case(name)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl Rewriter {
    /// Rewrite the request head `raw` (exactly one complete head).
    pub(crate) fn request(&self, raw: &[u8]) -> Result<Request, HeadError> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut h);
        match req.parse(raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HeadError::Malformed("incomplete request head".into()))
            }
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            return Err(HeadError::Malformed("incomplete request line".into()));
        };
        let client_host = req
            .headers
            .iter()
            .find(|x| name_is(x, "host"))
            .map(|x| x.value.trim_ascii())
            .filter(|v| !v.is_empty() && v.iter().all(|&b| is_authority_byte(b)))
            .and_then(|v| std::str::from_utf8(v).ok());
        let public = self
            .public_host
            .clone()
            .or_else(|| client_host.map(str::to_string));
        let upgrade = req.headers.iter().any(|x| name_is(x, "upgrade"))
            && req
                .headers
                .iter()
                .any(|x| name_is(x, "connection") && has_token(x.value, "upgrade"));

        let mut out = Vec::with_capacity(raw.len() + 64);
        out.extend_from_slice(format!("{method} {path} HTTP/1.{version}\r\n").as_bytes());
        push_header(&mut out, "Host", self.target_authority.as_bytes());
        for x in req.headers.iter() {
            if name_is(x, "host") || name_is(x, "keep-alive") || name_is(x, "proxy-connection") {
                continue;
            }
            if name_is(x, "connection") && !upgrade {
                continue;
            }
            if name_is(x, "origin") || name_is(x, "referer") {
                if let Some(v) = public
                    .as_deref()
                    .and_then(|p| rewrite_url(x.value, host_of(p), &self.target_authority))
                {
                    push_header(&mut out, x.name, &v);
                    continue;
                }
            }
            push_header(&mut out, x.name, x.value);
        }
        if !upgrade {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(Request { head: out, public })
    }

    /// Rewrite the response head `raw` for a client that reached us as `public`.
    pub(crate) fn response(&self, raw: &[u8], public: Option<&str>) -> Result<Response, HeadError> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut h);
        match res.parse(raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HeadError::Malformed("incomplete response head".into()))
            }
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
        let (Some(version), Some(code)) = (res.version, res.code) else {
            return Err(HeadError::Malformed("incomplete status line".into()));
        };
        let interim = (100..200).contains(&code) && code != 101;
        let keep_connection = interim || code == 101;
        let mut out = Vec::with_capacity(raw.len() + 32);
        out.extend_from_slice(
            format!("HTTP/1.{version} {code} {}\r\n", res.reason.unwrap_or("")).as_bytes(),
        );
        for x in res.headers.iter() {
            if !keep_connection && (name_is(x, "connection") || name_is(x, "keep-alive")) {
                continue;
            }
            let rewritten = match public {
                Some(p) if name_is(x, "location") || name_is(x, "content-location") => {
                    rewrite_url(x.value, &self.target_host, p)
                }
                Some(p) if name_is(x, "set-cookie") => {
                    rewrite_cookie_domain(x.value, &self.target_host, host_of(p))
                }
                _ => None,
            };
            push_header(&mut out, x.name, rewritten.as_deref().unwrap_or(x.value));
        }
        if !keep_connection {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(Response { head: out, interim })
    }
}

/// `host` of `host[:port]` (brackets of an IPv6 literal kept).
fn host_of(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

/// Replace the authority of an absolute (`scheme://host/...`) or
/// scheme-relative (`//host/...`) URL whose host is `from` (any case, any
/// port, any userinfo dropped) by `to`. `None`: nothing to change.
pub(crate) fn rewrite_url(value: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let v = std::str::from_utf8(value).ok()?;
    let start = if v.starts_with("//") {
        2
    } else {
        let i = v.find("://")?;
        let scheme = &v[..i];
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        i + 3
    };
    let end = v[start..]
        .find(['/', '?', '#'])
        .map_or(v.len(), |i| start + i);
    let authority = &v[start..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if !host_of(hostport).eq_ignore_ascii_case(from) {
        return None;
    }
    Some(format!("{}{to}{}", &v[..start], &v[end..]).into_bytes())
}

/// Replace a cookie's `Domain=<from>` (leading dot kept) by `to`.
pub(crate) fn rewrite_cookie_domain(value: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let v = std::str::from_utf8(value).ok()?;
    let mut changed = false;
    let parts: Vec<String> = v
        .split(';')
        .enumerate()
        .map(|(i, part)| {
            let trimmed = part.trim_start();
            let lead = &part[..part.len() - trimmed.len()];
            match trimmed.split_once('=') {
                Some((k, d)) if i > 0 && k.trim_end().eq_ignore_ascii_case("domain") => {
                    let d = d.trim();
                    let (dot, bare) = d.strip_prefix('.').map_or(("", d), |b| (".", b));
                    if bare.eq_ignore_ascii_case(from) {
                        changed = true;
                        format!("{lead}{}={dot}{to}", k.trim_end())
                    } else {
                        part.to_string()
                    }
                }
                _ => part.to_string(),
            }
        })
        .collect();
    changed.then(|| parts.join(";").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion";

    fn rw(public: Option<&str>) -> Rewriter {
        Rewriter {
            target_authority: T.into(),
            target_host: T.into(),
            public_host: public.map(str::to_string),
        }
    }

    #[test]
    fn request_host_connection_origin() {
        let raw = b"POST /x?y HTTP/1.1\r\nHost: master.onion\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nOrigin: http://master.onion\r\nReferer: http://master.onion:80/a\r\nX-A: b\r\n\r\n";
        let r = rw(None).request(raw).unwrap();
        let s = String::from_utf8(r.head).unwrap();
        assert_eq!(
            s,
            format!("POST /x?y HTTP/1.1\r\nHost: {T}\r\nOrigin: http://{T}\r\nReferer: http://{T}/a\r\nX-A: b\r\nConnection: close\r\n\r\n")
        );
        assert_eq!(r.public.as_deref(), Some("master.onion"));
    }

    #[test]
    fn request_without_host_gets_one_and_upgrade_keeps_connection() {
        let r = rw(Some("m.onion"))
            .request(b"GET / HTTP/1.0\r\n\r\n")
            .unwrap();
        assert_eq!(
            r.head,
            format!("GET / HTTP/1.0\r\nHost: {T}\r\nConnection: close\r\n\r\n").into_bytes()
        );
        assert_eq!(r.public.as_deref(), Some("m.onion"));
        let r = rw(None)
            .request(b"GET /ws HTTP/1.1\r\nHost: m.onion\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .unwrap();
        assert!(String::from_utf8(r.head)
            .unwrap()
            .ends_with("Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"));
    }

    #[test]
    fn response_location_cookie_connection() {
        let raw = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{}:8080/login?a=b\r\nSet-Cookie: s=1; Path=/; domain=.{T}; HttpOnly\r\nSet-Cookie: o=2; Domain=other.onion\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            T.to_uppercase()
        );
        let r = rw(None)
            .response(raw.as_bytes(), Some("master.onion:80"))
            .unwrap();
        assert!(!r.interim);
        assert_eq!(
            String::from_utf8(r.head).unwrap(),
            "HTTP/1.1 302 Found\r\nLocation: http://master.onion:80/login?a=b\r\nSet-Cookie: s=1; Path=/; domain=.master.onion; HttpOnly\r\nSet-Cookie: o=2; Domain=other.onion\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn interim_and_relative() {
        let r = rw(None)
            .response(b"HTTP/1.1 100 Continue\r\n\r\n", Some("m.onion"))
            .unwrap();
        assert!(r.interim);
        assert_eq!(r.head, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(rewrite_url(b"/relative", T, "m.onion"), None);
        assert_eq!(
            rewrite_url(format!("//{T}/x").as_bytes(), T, "m.onion").unwrap(),
            b"//m.onion/x"
        );
        assert_eq!(
            rewrite_url(format!("https://u@{T}#f").as_bytes(), T, "m.onion").unwrap(),
            b"https://m.onion#f"
        );
        assert_eq!(rewrite_url(b"http://evil.onion/", T, "m.onion"), None);
        assert_eq!(
            rewrite_cookie_domain(format!("domain={T}").as_bytes(), T, "m"),
            None,
            "the first pair is the cookie"
        );
    }

    #[test]
    fn malformed_and_limits() {
        assert!(matches!(
            rw(None).request(b"NOT HTTP\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            head_len(raw.as_bytes(), Side::Request),
            Err(HeadError::TooLarge)
        ));
        assert_eq!(
            head_len(b"GET / HTTP/1.1\r\nHost: a\r\n", Side::Request).unwrap(),
            None
        );
    }
}
