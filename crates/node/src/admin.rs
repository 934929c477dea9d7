//! The admin endpoint. A deliberately tiny HTTP/1.0 server: one request per connection,
//! bounded head size and time.
//!
//! * `GET /health`: `ok`, and nothing else — for probes that hold no cookie.
//! * `GET /metrics` (Prometheus): counters and gauges, no addresses or keys in them.
//! * With the node's admin cookie (`DATA_DIR/admin.cookie`, 0600, new at every start) as
//!   `Authorization: Bearer`: `GET /status` (JSON: it names every node's WireGuard
//!   endpoint and the target, exactly what an onion service must hide),
//!   `POST /token/create/SECONDS` (a single-use join token), `POST /token/rotate` (voids
//!   every token made before), `GET /token` (the fingerprint of the current join key), and
//!   `POST /node/remove/NAME` (or `/node/remove/WG_PUBLIC_KEY`) to remove a member for good.
//! * The status page for a browser: `POST /page/login` (admin cookie) makes a single-use
//!   login link, `GET /page/login/CODE` turns it into a session cookie that opens
//!   `GET /page` and nothing else (`crate::daemon::status_page`).
//!
//! Every request must carry a `Host` header naming the endpoint itself — its IP address
//! (any loopback address when it listens on one, any address when it listens on all) or
//! `localhost`, with its port if a port is given — else `403`: a web page whose name
//! was re-pointed at 127.0.0.1 (DNS rebinding) cannot read it through a browser.

use crate::daemon::status_page::{self, login::PageAuth, Reply};
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Produces the `/status` document.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What is asked of the join tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAct {
    /// A new single-use token that lives this long.
    Create(Duration),
    /// Void every token made before (a new join generation).
    Rotate,
    /// The fingerprint of the current join key (it changes at every rotation).
    Fingerprint,
}

/// Acts on the join tokens; `Ok` carries the answer, `Err` says why not.
pub type TokenFn = Arc<
    dyn Fn(
            TokenAct,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = crate::err::Result<String>> + Send>,
        > + Send
        + Sync,
>;

/// Removes a member (name or WireGuard key); `Ok` carries the answer, `Err` says why not.
pub type RemoveFn = Arc<
    dyn Fn(
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = crate::err::Result<String>> + Send>,
        > + Send
        + Sync,
>;

/// The authenticated part of the admin endpoint.
#[derive(Clone)]
pub struct Control {
    /// The cookie every authenticated request carries (`Authorization: Bearer ...`).
    pub cookie: Arc<zeroize::Zeroizing<String>>,
    /// The join token, when this node serves the join endpoint.
    pub token: Option<TokenFn>,
    /// Member removal, when this node serves the join endpoint.
    pub remove: Option<RemoveFn>,
}

/// Create a fresh admin cookie in `path` (0600, atomically) and return it.
pub fn new_cookie(path: &std::path::Path) -> crate::err::Result<Control> {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngExt::fill(&mut rand::rng(), &mut raw[..]);
    let cookie = zeroize::Zeroizing::new(hex::encode(&raw[..]));
    crate::keystore::write_atomic(path, format!("{}\n", *cookie).as_bytes(), 0o600)?;
    Ok(Control {
        cookie: Arc::new(cookie),
        token: None,
        remove: None,
    })
}

/// A running admin server.
pub struct Admin {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// Fills the status page's recent events.
    events: JoinHandle<()>,
}

impl Admin {
    /// Bind and serve.
    pub async fn start(
        listen: SocketAddr,
        metrics: Metrics,
        status: StatusFn,
        control: Control,
    ) -> std::io::Result<Admin> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (status, events) = status_page::with_events(status);
        let ep = Endpoint {
            local: addr,
            metrics,
            status,
            control,
            page: Arc::new(PageAuth::default()),
        };
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let ep = ep.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), serve(sock, ep)).await;
                });
            }
        });
        Ok(Admin { addr, task, events })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving.
    pub fn stop(&self) {
        self.task.abort();
        self.events.abort();
    }
}

/// What one connection may reach.
#[derive(Clone)]
struct Endpoint {
    /// The bound address (what `Host` must name).
    local: SocketAddr,
    metrics: Metrics,
    status: StatusFn,
    control: Control,
    /// The status page's login links and sessions.
    page: Arc<PageAuth>,
}

/// Read one request head (up to 4 KiB); `None` when the client went away.
async fn read_head(sock: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        if n == buf.len() {
            respond(
                sock,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            )
            .await?;
            return Ok(None);
        }
        let r = sock.read(&mut buf[n..]).await?;
        if r == 0 {
            return Ok(None);
        }
        n += r;
    }
    Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned()))
}

async fn serve(mut sock: TcpStream, ep: Endpoint) -> std::io::Result<()> {
    let Some(head) = read_head(&mut sock).await? else {
        return Ok(());
    };
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    if !host_allowed(header(&head, "host"), ep.local) {
        return respond(
            &mut sock,
            "403 Forbidden",
            "text/plain",
            "the Host header must name this admin endpoint (its IP address or localhost)\n",
        )
        .await;
    }
    let authed = authorized(&head, &ep.control);
    let cookie = header(&head, "cookie");
    if let Some(r) = status_page::route(method, path, authed, cookie, &ep.page, &ep.status) {
        return send(&mut sock, r).await;
    }
    match (method, path) {
        ("GET", "/health") => respond(&mut sock, "200 OK", "text/plain", "ok\n").await,
        ("GET", "/metrics") => {
            let body = ep.metrics.render();
            respond(&mut sock, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        ("GET", "/status") if authed => {
            let body = serde_json::to_string_pretty(&(ep.status)()).unwrap_or_default() + "\n";
            respond(&mut sock, "200 OK", "application/json", &body).await
        }
        ("GET", "/token") | ("POST", "/token/rotate") if authed => {
            let Some(token) = ep.control.token else {
                return no_join_endpoint(&mut sock).await;
            };
            let act = if method == "GET" {
                TokenAct::Fingerprint
            } else {
                TokenAct::Rotate
            };
            answer(&mut sock, token(act).await).await
        }
        ("POST", p) if authed && p.starts_with("/token/create/") => {
            let Some(token) = ep.control.token else {
                return no_join_endpoint(&mut sock).await;
            };
            let Ok(secs) = p.trim_start_matches("/token/create/").parse::<u64>() else {
                return respond(&mut sock, "400 Bad Request", "text/plain", "bad lifetime\n").await;
            };
            let act = TokenAct::Create(Duration::from_secs(secs));
            answer(&mut sock, token(act).await).await
        }
        ("POST", p) if authed && p.starts_with("/node/remove/") => {
            let Some(remove) = ep.control.remove else {
                return no_join_endpoint(&mut sock).await;
            };
            let who = p.trim_start_matches("/node/remove/").to_string();
            answer(&mut sock, remove(who).await).await
        }
        ("GET", "/status") | ("GET", "/token") | ("POST", "/token/rotate") => {
            unauthorized(&mut sock).await
        }
        ("POST", p) if p.starts_with("/node/remove/") || p.starts_with("/token/create/") => {
            unauthorized(&mut sock).await
        }
        _ => respond(&mut sock, "404 Not Found", "text/plain", "not found\n").await,
    }
}

/// The value of the first header `name` (case-insensitive) in a request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Whether a `Host` header value names the endpoint bound at `local` (see the module
/// doc). A missing header is refused: every browser sends one, and so do our clients.
fn host_allowed(host: Option<&str>, local: SocketAddr) -> bool {
    let Some(host) = host else {
        return false;
    };
    // `name`, `name:port`, `[v6]`, `[v6]:port`.
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.is_empty() && (!n.contains(':') || n.ends_with(']')) => (n, Some(p)),
        _ => (host, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().ok() != Some(local.port())) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    let Ok(ip) = name.parse::<std::net::IpAddr>() else {
        return false;
    };
    let bound = local.ip();
    ip == bound || bound.is_unspecified() || (ip.is_loopback() && bound.is_loopback())
}

/// The request head carries the admin cookie (compared in constant time).
fn authorized(head: &str, control: &Control) -> bool {
    let given = header(head, "authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::trim))
        .unwrap_or("");
    bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        control.cookie.as_bytes(),
    ))
}

async fn unauthorized(sock: &mut TcpStream) -> std::io::Result<()> {
    respond(
        sock,
        "401 Unauthorized",
        "text/plain",
        "the admin cookie is missing or wrong\n",
    )
    .await
}

/// `200` with the text, or `409` with why not.
async fn answer(sock: &mut TcpStream, r: crate::err::Result<String>) -> std::io::Result<()> {
    match r {
        Ok(t) => respond(sock, "200 OK", "text/plain", &format!("{t}\n")).await,
        Err(why) => respond(sock, "409 Conflict", "text/plain", &format!("{why}\n")).await,
    }
}

async fn no_join_endpoint(sock: &mut TcpStream) -> std::io::Result<()> {
    respond(
        sock,
        "409 Conflict",
        "text/plain",
        "this node has no join endpoint (it needs [cluster], [mesh] and mesh.endpoint)\n",
    )
    .await
}

async fn respond(
    sock: &mut TcpStream,
    status: &'static str,
    ctype: &'static str,
    body: &str,
) -> std::io::Result<()> {
    let r = Reply {
        status,
        ctype,
        headers: Vec::new(),
        body: body.to_string(),
    };
    send(sock, r).await
}

/// Write `r` and close.
async fn send(sock: &mut TcpStream, r: Reply) -> std::io::Result<()> {
    let mut head = zeroize::Zeroizing::new(format!(
        "HTTP/1.0 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.ctype,
        r.body.len()
    ));
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {}\r\n", **v));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(r.body.as_bytes()).await?;
    sock.shutdown().await
}

/// `GET path` without the cookie (`/health`, `/metrics`); returns the body.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "GET", path, None).await
}

/// `GET /status` with the admin cookie read from `cookie_file` (the node's
/// `DATA_DIR/admin.cookie`; readable by the node's user and root); returns the JSON text.
/// Used by `rustbalance status` and the test labs.
pub async fn status(addr: SocketAddr, cookie_file: &std::path::Path) -> std::io::Result<String> {
    let cookie = read_cookie(cookie_file).await?;
    request(addr, "GET", "/status", Some(&cookie)).await
}

/// A single-use login URL of the status page (valid 60 s), made with the admin cookie read
/// from `cookie_file`. Used by `rustbalance status --page-link` and the test labs.
pub async fn page_link(
    addr: SocketAddr,
    cookie_file: &std::path::Path,
) -> std::io::Result<zeroize::Zeroizing<String>> {
    let cookie = read_cookie(cookie_file).await?;
    let path = zeroize::Zeroizing::new(request(addr, "POST", "/page/login", Some(&cookie)).await?);
    // An endpoint on every address is reached on loopback from the node itself.
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    Ok(zeroize::Zeroizing::new(format!(
        "http://{host}{}",
        path.trim()
    )))
}

/// The admin cookie in `cookie_file`.
async fn read_cookie(cookie_file: &std::path::Path) -> std::io::Result<zeroize::Zeroizing<String>> {
    let text = tokio::fs::read_to_string(cookie_file).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot read the admin cookie {}: {e} (run this as the node's user or root)",
                cookie_file.display()
            ),
        )
    })?;
    Ok(zeroize::Zeroizing::new(text))
}

/// One request on an admin endpoint, with the admin cookie when given; returns the body of
/// a 200 answer, else an error carrying the status line and body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> std::io::Result<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let auth = cookie
        .map(|c| format!("Authorization: Bearer {}\r\n", c.trim()))
        .unwrap_or_default();
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(format!(
            "{}: {}",
            head.lines().next().unwrap_or("bad response"),
            body.trim()
        )));
    }
    Ok(body.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SECRET_IP: &str = "192.0.2.7:51820";

    /// One request written as is; the whole answer.
    pub(crate) async fn raw(addr: SocketAddr, text: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(text.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `/status` names every node's public WireGuard endpoint and the target: without the
    /// admin cookie it is refused, and nothing of it leaks; `/health` answers anyone.
    #[tokio::test]
    async fn status_needs_the_cookie() {
        let (admin, cookie, dir) = server(None).await;
        let a = admin.addr();
        for bad in [None, Some("0000"), Some("")] {
            let e = request(a, "GET", "/status", bad)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("401"),
                "/status answered without the cookie: {e}"
            );
            assert!(!e.contains(SECRET_IP), "{e}");
        }
        let body = request(a, "GET", "/status", Some(&cookie)).await.unwrap();
        assert!(body.contains(SECRET_IP), "{body}");
        let body = status(a, &dir.path().join("admin.cookie")).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["mesh"]["peers"][0]["endpoint"], SECRET_IP);
        let e = status(a, &dir.path().join("no-cookie")).await.unwrap_err();
        assert!(
            e.to_string().contains("cannot read the admin cookie"),
            "{e}"
        );
        assert_eq!(get(a, "/health").await.unwrap(), "ok\n");
        admin.stop();
    }

    /// DNS rebinding: a page of attacker.example whose name was re-pointed at 127.0.0.1
    /// sends `Host: attacker.example:PORT`. Every path is refused unless `Host` names the
    /// endpoint itself.
    #[tokio::test]
    async fn a_foreign_host_is_refused() {
        let (admin, cookie, _dir) = server(None).await;
        let a = admin.addr();
        let port = a.port();
        let auth = format!("Authorization: Bearer {cookie}\r\n");
        let refused = [
            format!("Host: attacker.example:{port}\r\n"),
            "Host: attacker.example\r\n".to_string(),
            format!("Host: localhost.attacker.example:{port}\r\n"),
            format!("Host: 127.0.0.1:{}\r\n", port.wrapping_add(1)),
            format!("Host: 10.1.2.3:{port}\r\n"),
            String::new(),
        ];
        for host in &refused {
            for path in ["/status", "/metrics", "/health", "/token"] {
                let answer = raw(a, &format!("GET {path} HTTP/1.1\r\n{host}{auth}\r\n")).await;
                assert!(
                    answer.starts_with("HTTP/1.0 403"),
                    "{path} with {host:?} answered: {answer}"
                );
                assert!(!answer.contains(SECRET_IP), "{answer}");
            }
        }
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LocalHost:{port}"),
            "localhost".to_string(),
            format!("127.0.0.2:{port}"),
        ] {
            let answer = raw(
                a,
                &format!("GET /status HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n"),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.0 200"), "{host}: {answer}");
        }
        admin.stop();
    }

    #[test]
    fn host_names_are_judged() {
        let lo: SocketAddr = "127.0.0.1:9661".parse().unwrap();
        let v6: SocketAddr = "[::1]:9661".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9661".parse().unwrap();
        let private: SocketAddr = "10.0.0.5:9661".parse().unwrap();
        let ok = |h: &str, l: SocketAddr| host_allowed(Some(h), l);
        assert!(ok("127.0.0.1:9661", lo) && ok("localhost", lo) && ok("[::1]:9661", lo));
        assert!(ok("[::1]:9661", v6) && ok("[::1]", v6) && ok("::1", v6) && ok("127.0.0.1", v6));
        assert!(ok("10.0.0.5:9661", any) && ok("10.0.0.5:9661", private));
        assert!(!ok("10.0.0.6:9661", private) && !ok("127.0.0.1:9661", private));
        assert!(!ok("evil.example:9661", any) && !ok("[::1]:80", v6) && !ok("127.0.0.1:x", lo));
        assert!(!host_allowed(None, lo));
    }

    async fn server(remove: Option<RemoveFn>) -> (Admin, String, tempfile::TempDir) {
        // What a real /status holds and must not leak: a node's public WireGuard endpoint.
        let status: StatusFn =
            Arc::new(|| serde_json::json!({"mesh": {"peers": [{"endpoint": SECRET_IP}]}}));
        server_with(remove, status).await
    }

    /// An admin endpoint on a free loopback port answering `/status` with `status`; its
    /// cookie (hex) and the directory holding the cookie file (`admin.cookie`).
    pub(crate) async fn server_with(
        remove: Option<RemoveFn>,
        status: StatusFn,
    ) -> (Admin, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut control = new_cookie(&dir.path().join("admin.cookie")).unwrap();
        control.remove = remove;
        let cookie = control.cookie.to_string();
        let admin = Admin::start(
            "127.0.0.1:0".parse().unwrap(),
            Metrics::new(),
            status,
            control,
        )
        .await
        .unwrap();
        (admin, cookie, dir)
    }

    #[tokio::test]
    async fn node_remove_needs_the_cookie_and_reaches_the_cluster() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let s2 = seen.clone();
        let remove: RemoveFn = Arc::new(move |who: String| {
            s2.lock().unwrap().push(who.clone());
            Box::pin(async move {
                if who == "node9" {
                    Err(crate::Error::RemoveRefused(
                        "no member named \"node9\" is known here".to_string(),
                    ))
                } else {
                    Ok(format!("removed {who}"))
                }
            })
        });
        let (admin, cookie, _dir) = server(Some(remove)).await;
        let a = admin.addr();
        for bad in [None, Some("0000")] {
            let e = request(a, "POST", "/node/remove/node4", bad)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("401"), "{e}");
        }
        assert!(seen.lock().unwrap().is_empty(), "called without the cookie");
        let e = request(a, "GET", "/node/remove/node4", Some(&cookie))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let body = request(a, "POST", "/node/remove/node4", Some(&cookie))
            .await
            .unwrap();
        assert_eq!(body, "removed node4\n");
        let e = request(a, "POST", "/node/remove/node9", Some(&cookie))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("409") && e.contains("node9"), "{e}");
        assert_eq!(*seen.lock().unwrap(), ["node4", "node9"]);
        admin.stop();

        let (admin, cookie, _dir) = server(None).await;
        let e = request(admin.addr(), "POST", "/node/remove/node4", Some(&cookie))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("409") && e.contains("no join endpoint"), "{e}");
        admin.stop();
    }
}
