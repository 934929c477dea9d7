//! The admin endpoint: `GET /status` (JSON) and `GET /metrics`
//! (Prometheus), and — with the node's admin cookie (`DATA_DIR/admin.cookie`, 0600, new at
//! every start) as a bearer token — `GET /token` and `POST /token/rotate` for the cluster's
//! join token, and `POST /node/remove/NAME` (or `/node/remove/WG_PUBLIC_KEY`) to remove a
//! member for good. A deliberately tiny HTTP/1.0 server: one request per connection, bounded
//! head size and time.

use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Produces the `/status` document.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Shows (`false`) or rotates (`true`) the join token; `None` when this node has no join
/// endpoint.
pub type TokenFn = Arc<
    dyn Fn(bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>
        + Send
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
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (m, s, c) = (metrics.clone(), status.clone(), control.clone());
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), serve(sock, m, s, c)).await;
                });
            }
        });
        Ok(Admin { addr, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    metrics: Metrics,
    status: StatusFn,
    control: Control,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        if n == buf.len() {
            return respond(
                &mut sock,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            )
            .await;
        }
        let r = sock.read(&mut buf[n..]).await?;
        if r == 0 {
            return Ok(());
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/metrics") => {
            respond(
                &mut sock,
                "200 OK",
                "text/plain; version=0.0.4",
                &metrics.render(),
            )
            .await
        }
        ("GET", "/status") => {
            let body = serde_json::to_string_pretty(&status()).unwrap_or_default() + "\n";
            respond(&mut sock, "200 OK", "application/json", &body).await
        }
        ("GET", "/token") | ("POST", "/token/rotate") => {
            if !authorized(&head, &control) {
                return unauthorized(&mut sock).await;
            }
            let Some(token) = control.token else {
                return no_join_endpoint(&mut sock).await;
            };
            match token(method == "POST").await {
                Some(t) => respond(&mut sock, "200 OK", "text/plain", &format!("{t}\n")).await,
                None => {
                    respond(
                        &mut sock,
                        "503 Service Unavailable",
                        "text/plain",
                        "not ready\n",
                    )
                    .await
                }
            }
        }
        ("POST", p) if p.starts_with("/node/remove/") => {
            if !authorized(&head, &control) {
                return unauthorized(&mut sock).await;
            }
            let Some(remove) = control.remove else {
                return no_join_endpoint(&mut sock).await;
            };
            let who = p.trim_start_matches("/node/remove/").to_string();
            match remove(who).await {
                Ok(t) => respond(&mut sock, "200 OK", "text/plain", &format!("{t}\n")).await,
                Err(why) => {
                    respond(&mut sock, "409 Conflict", "text/plain", &format!("{why}\n")).await
                }
            }
        }
        _ => respond(&mut sock, "404 Not Found", "text/plain", "not found\n").await,
    }
}

/// The request head carries the admin cookie (compared in constant time).
fn authorized(head: &str, control: &Control) -> bool {
    let given = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.trim().strip_prefix("Bearer ").map(str::trim))
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
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let resp = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

/// `GET path` on an admin endpoint; returns the body (used by `rustbalance status`).
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "GET", path, None).await
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
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: admin\r\n{auth}\r\n").as_bytes())
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
mod tests {
    use super::*;

    async fn server(remove: Option<RemoveFn>) -> (Admin, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut control = new_cookie(&dir.path().join("admin.cookie")).unwrap();
        control.remove = remove;
        let cookie = control.cookie.to_string();
        let status: StatusFn = Arc::new(|| serde_json::json!({}));
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
