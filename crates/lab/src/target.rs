//! A tiny HTTP target for tests: answers every request with a fixed body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::err::{Error, Result};
use crate::NodeHost;

/// An HTTP server on `127.0.0.1:0` (of the host, or of a node host's
/// namespace) that answers every request with `200 OK` and its body. Stops
/// when dropped.
#[derive(Debug)]
pub struct DemoTarget {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl DemoTarget {
    /// Starts a target whose responses carry `body` (e.g. `served by NAME`).
    pub async fn start(body: &str) -> Result<DemoTarget> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::Options(format!("cannot bind a demo target on 127.0.0.1: {e}")))?;
        Self::serve(listener, body)
    }

    /// A target on `127.0.0.1:0` inside `host`'s namespace (reachable only
    /// from there, e.g. from a tor the node runs). Drop it before
    /// [`crate::Lab::stop`]: an open socket keeps a namespace alive.
    pub async fn start_in(host: &NodeHost, body: &str) -> Result<DemoTarget> {
        let listener = host.bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Self::serve(listener, body)
    }

    fn serve(listener: TcpListener, body: &str) -> Result<DemoTarget> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Options(format!("demo target address: {e}")))?;
        let response: Arc<[u8]> = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let response = Arc::clone(&response);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    // Read until the end of the request head (or 8 KiB).
                    let mut buf = Vec::with_capacity(1024);
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
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
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}
