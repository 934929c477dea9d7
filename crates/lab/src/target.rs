//! The one demo HTTP target of the project: answers every request with a
//! fixed body (`served by NAME`, HTTP/1.0, connection closed after the
//! answer), or, as the proxy benchmark's target, keeps connections alive
//! and answers `/64k` with 64 KiB and anything else with 1 KiB.
//!
//! Used in process by the tests and the lab, as a process by
//! `rustbalance lab target`, and by `examples/bench_target` (testbed).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::err::{Error, Result};
use crate::NodeHost;

/// Longest request head read in closing mode before answering anyway.
const HEAD_LIMIT: usize = 8192;

/// What the target answers.
#[derive(Debug, Clone)]
enum Replies {
    /// One fixed response, then the connection is closed.
    Close(Arc<[u8]>),
    /// Keep-alive: the large response for `GET /64k`, else the small one.
    KeepAlive { small: Arc<[u8]>, large: Arc<[u8]> },
}

impl Replies {
    fn fixed(body: &str) -> Replies {
        Replies::Close(
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
            .into(),
        )
    }

    fn bench() -> Replies {
        let page = |len: usize| -> Arc<[u8]> {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n"
            )
            .into_bytes();
            r.extend((0..len).map(|i| b'a' + (i % 26) as u8));
            r.into()
        };
        Replies::KeepAlive {
            small: page(1024),
            large: page(64 * 1024),
        }
    }

    fn for_head(&self, head: &[u8]) -> &[u8] {
        match self {
            Replies::Close(r) => r,
            Replies::KeepAlive { large, .. } if head.starts_with(b"GET /64k") => large,
            Replies::KeepAlive { small, .. } => small,
        }
    }
}

/// An HTTP server (on the host, or in a node host's namespace) that answers
/// every request with `200 OK`. Stops when dropped.
#[derive(Debug)]
pub struct DemoTarget {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl DemoTarget {
    /// Starts a target on `127.0.0.1:0` whose responses carry `body`
    /// (e.g. `served by NAME`).
    pub async fn start(body: &str) -> Result<DemoTarget> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), body).await
    }

    /// [`Self::start`] on `addr` (e.g. the port of a target stopped before).
    pub async fn bind(addr: SocketAddr, body: &str) -> Result<DemoTarget> {
        Self::serve(bind(addr).await?, Replies::fixed(body))
    }

    /// A target on `127.0.0.1:0` inside `host`'s namespace (reachable only
    /// from there, e.g. from a tor the node runs). Drop it before
    /// [`crate::Lab::stop`]: an open socket keeps a namespace alive.
    pub async fn start_in(host: &NodeHost, body: &str) -> Result<DemoTarget> {
        let listener = host.bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Self::serve(listener, Replies::fixed(body))
    }

    /// The proxy benchmark's target on `addr`: keep-alive HTTP/1.1, 64 KiB
    /// for `GET /64k`, 1 KiB for anything else.
    pub async fn bench(addr: SocketAddr) -> Result<DemoTarget> {
        Self::serve(bind(addr).await?, Replies::bench())
    }

    fn serve(listener: TcpListener, replies: Replies) -> Result<DemoTarget> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Options(format!("demo target address: {e}")))?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                tokio::spawn(answer(sock, replies.clone(), Arc::clone(&counter)));
            }
        });
        Ok(DemoTarget {
            addr,
            requests,
            task,
        })
    }

    /// Its address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Serves until the process ends (`rustbalance lab target`).
    pub async fn run_forever(mut self) {
        let _ = (&mut self.task).await;
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Options(format!("cannot bind a demo target on {addr}: {e}")))
}

/// Answers the requests of one connection: each complete request head gets
/// its response; in closing mode the first one (or 8 KiB of head) ends it.
async fn answer(mut sock: TcpStream, replies: Replies, counter: Arc<AtomicU64>) {
    let close = matches!(replies, Replies::Close(_));
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        let head_end = buf[..len].windows(4).position(|w| w == b"\r\n\r\n");
        let end = match head_end {
            Some(end) => Some(end),
            None if close && len >= HEAD_LIMIT => Some(len.saturating_sub(4)),
            None => None,
        };
        if let Some(end) = end {
            counter.fetch_add(1, Ordering::Relaxed);
            if sock.write_all(replies.for_head(&buf[..end])).await.is_err() || close {
                let _ = sock.shutdown().await;
                return;
            }
            buf.copy_within(end + 4..len, 0);
            len -= end + 4;
            continue;
        }
        if len == buf.len() {
            return;
        }
        match sock.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    }
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn fixed_body_then_close() {
        let t = DemoTarget::start("served by t1\n").await.unwrap();
        let r = exchange(t.addr(), b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nserved by t1\n"), "{r}");
        assert_eq!(r.matches("HTTP/1.0").count(), 1, "one answer, then closed");
        assert_eq!(t.requests(), 1);
        let again = DemoTarget::bind(t.addr(), "x").await;
        assert!(again.is_err(), "the port is taken while it runs");
        let addr = t.addr();
        drop(t);
        tokio::task::yield_now().await;
        let back = DemoTarget::bind(addr, "back").await.unwrap();
        assert!(exchange(addr, b"GET / HTTP/1.0\r\n\r\n")
            .await
            .ends_with("back"));
        assert_eq!(back.requests(), 1);
    }

    #[tokio::test]
    async fn bench_pages_keep_alive() {
        let t = DemoTarget::bench(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let r = exchange(
            t.addr(),
            b"GET /1k HTTP/1.1\r\nHost: x\r\n\r\nGET /64k HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 2, "both answered");
        assert!(r.contains("Content-Length: 1024\r\n"));
        assert!(r.contains("Content-Length: 65536\r\n"));
        assert_eq!(t.requests(), 2);
    }
}
