//! One client connection, from accept to close.
//!
//! ```text
//! accepted ─▶ [PROXY line from tor, if expected] ─▶ Tcp mode:  connect ─▶ splice ─▶ closed
//!                                                 └▶ Http mode: request head ─▶ connect ─▶
//!                                                    rewritten head + body ⇄ rewritten response head + body ─▶ closed
//! ```
//!
//! Every step is bounded: the PROXY line and the request head by
//! `idle_timeout`, the connect by `connect_timeout`, the forwarding by the
//! idle watchdog; a shutdown past its drain time drops the whole future.

use crate::config::{Mode, ProxyVersion};
use crate::http::{self, HeadError, Side};
use crate::intercept::{Intercept, Verdict, MAX_INSPECT};
use crate::proxy::Shared;
use crate::proxy_protocol::{self, ProxyAddrs};
use crate::splice::{self, Counted, Counters, Outcome};
use crate::stats::ProxyStats;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Serve one accepted connection.
pub(crate) async fn serve(
    sh: Arc<Shared>,
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
) {
    let _ = client.set_nodelay(true);
    let (addrs, prefix) = if sh.cfg.expect_proxy_header {
        match proxy_protocol::read_v1(&mut client, sh.cfg.idle_timeout).await {
            Ok(v) => v,
            Err(e) => {
                ProxyStats::inc(&sh.stats.proxy_header_errors);
                tracing::debug!(conn = id, "{e}");
                return;
            }
        }
    } else {
        (
            ProxyAddrs::Tcp {
                src: peer,
                dst: local,
            },
            Vec::new(),
        )
    };
    let circuit = addrs.circuit_id();
    sh.set_circuit(id, circuit);
    tracing::trace!(conn = id, circuit, "accepted");
    let pp = match sh.cfg.send_proxy {
        Some(ProxyVersion::V1) => proxy_protocol::encode_v1(&addrs),
        Some(ProxyVersion::V2) => proxy_protocol::encode_v2(&addrs),
        None => Vec::new(),
    };
    match sh.cfg.mode {
        Mode::Tcp => tcp(&sh, client, pp, prefix, id, circuit).await,
        Mode::Http => http(&sh, client, pp, prefix, id, circuit).await,
    }
}

/// What [`inspect`] found.
enum Inspected {
    Pass,
    Take,
}

/// Read the client's first bytes into `buf` until the intercept decides, the target speaks
/// first, the client stops sending, `MAX_INSPECT` bytes or the idle timeout.
async fn inspect(
    sh: &Shared,
    ic: &dyn Intercept,
    client: &mut TcpStream,
    target: &TcpStream,
    buf: &mut Vec<u8>,
) -> Inspected {
    let deadline = tokio::time::Instant::now() + sh.cfg.idle_timeout;
    let mut chunk = [0u8; 1024];
    loop {
        match ic.classify(buf) {
            Verdict::Pass => return Inspected::Pass,
            Verdict::Take => return Inspected::Take,
            Verdict::Undecided if buf.len() >= MAX_INSPECT => return Inspected::Pass,
            Verdict::Undecided => {}
        }
        tokio::select! {
            r = client.read(&mut chunk) => match r {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                // Closed or broken: let the splice see it.
                _ => return Inspected::Pass,
            },
            // A server-first protocol: never hold its banner back.
            _ = target.readable() => return Inspected::Pass,
            _ = tokio::time::sleep_until(deadline) => return Inspected::Pass,
        }
    }
}

/// Tcp mode: splice both ways.
async fn tcp(
    sh: &Shared,
    mut client: TcpStream,
    mut first: Vec<u8>,
    mut prefix: Vec<u8>,
    id: u64,
    circuit: Option<u32>,
) {
    let Some(mut target) = sh.connect(id).await else {
        return; // dropping `client` closes it at once
    };
    if let Some(ic) = sh.cfg.intercept.clone() {
        if let Inspected::Take = inspect(sh, ic.as_ref(), &mut client, &target, &mut prefix).await {
            drop(target);
            ProxyStats::inc(&sh.stats.intercepted);
            return ic.serve(client, prefix, circuit).await;
        }
    }
    let counters = Counters::default();
    counters.up.fetch_add(prefix.len() as u64, Relaxed);
    first.extend_from_slice(&prefix);
    if !first.is_empty() && target.write_all(&first).await.is_err() {
        return;
    }
    let mut a = Counted {
        inner: client,
        bytes: &counters.up,
    };
    let mut b = Counted {
        inner: target,
        bytes: &counters.down,
    };
    let size = sh.cfg.buffer_size;
    let work = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, size, size);
    finish(
        sh,
        id,
        splice::watch(work, &counters, sh.cfg.idle_timeout, &sh.stats).await,
    );
}

/// Http mode: one rewritten request, one rewritten response, bodies spliced.
async fn http(
    sh: &Shared,
    mut client: TcpStream,
    mut first: Vec<u8>,
    mut buf: Vec<u8>,
    id: u64,
    circuit: Option<u32>,
) {
    let Some(n) = read_request_head(sh, &mut client, &mut buf, id).await else {
        return;
    };
    if let Some(ic) = sh.cfg.intercept.clone() {
        if ic.classify(&buf) == Verdict::Take {
            ProxyStats::inc(&sh.stats.intercepted);
            return ic.serve(client, buf, circuit).await;
        }
    }
    let req = match sh.rewriter.request(&buf[..n]) {
        Ok(r) => r,
        Err(e) => return reject_request(sh, &mut client, id, e).await,
    };
    let Some(mut target) = sh.connect(id).await else {
        let page = http::error_page(
            502,
            "Bad Gateway",
            "The onion service's backend cannot be reached right now.",
        );
        let _ = client.write_all(&page).await;
        let _ = client.shutdown().await;
        return;
    };
    let counters = Counters::default();
    counters.up.fetch_add(buf.len() as u64, Relaxed);
    first.extend_from_slice(&req.head);
    first.extend_from_slice(&buf[n..]);
    drop(buf);
    if target.write_all(&first).await.is_err() {
        return;
    }
    drop(first);
    relay(sh, client, target, req.public.as_deref(), &counters, id).await;
}

/// Reads the client's request head into `buf` within `idle_timeout`; returns its length,
/// or `None` when the connection is done (closed, refused with 400/431, or timed out).
async fn read_request_head(
    sh: &Shared,
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    id: u64,
) -> Option<usize> {
    let max = sh.cfg.max_header_bytes;
    let head = tokio::time::timeout(
        sh.cfg.idle_timeout,
        http::read_head(client, buf, max, Side::Request),
    );
    match head.await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(HeadError::Closed(0))) => None,
        Ok(Err(e)) => {
            reject_request(sh, client, id, e).await;
            None
        }
        Err(_) => {
            ProxyStats::inc(&sh.stats.timeouts);
            None
        }
    }
}

/// After the rewritten request head went out: the request body up, the rewritten response
/// head(s) and body down, under the idle watchdog.
async fn relay(
    sh: &Shared,
    mut client: TcpStream,
    mut target: TcpStream,
    public: Option<&str>,
    counters: &Counters,
    id: u64,
) {
    let max = sh.cfg.max_header_bytes;
    let (cr, mut cw) = client.split();
    let (tr, mut tw) = target.split();
    let up = async {
        let mut cr = Counted {
            inner: cr,
            bytes: &counters.up,
        };
        tokio::io::copy(&mut cr, &mut tw).await?;
        tw.shutdown().await
    };
    let down = async {
        let mut tr = Counted {
            inner: tr,
            bytes: &counters.down,
        };
        let mut rbuf = Vec::new();
        loop {
            let n = match http::read_head(&mut tr, &mut rbuf, max, Side::Response).await {
                Ok(n) => n,
                Err(e) => return bad_response(sh, &mut cw, id, e).await,
            };
            let res = match sh.rewriter.response(&rbuf[..n], public) {
                Ok(r) => r,
                Err(e) => return bad_response(sh, &mut cw, id, e).await,
            };
            let rest = rbuf.split_off(n);
            cw.write_all(&res.head).await?;
            rbuf = rest;
            if !res.interim {
                break;
            }
        }
        cw.write_all(&rbuf).await?;
        drop(rbuf);
        tokio::io::copy(&mut tr, &mut cw).await?;
        cw.shutdown().await
    };
    // The response ending ends the connection (Connection: close); the
    // request side ending first (a half-close) does not.
    let work = async {
        tokio::pin!(up, down);
        let mut up_done = false;
        loop {
            tokio::select! {
                r = &mut up, if !up_done => { up_done = true; r?; }
                r = &mut down => return r,
            }
        }
    };
    finish(
        sh,
        id,
        splice::watch(work, counters, sh.cfg.idle_timeout, &sh.stats).await,
    );
}

/// Answer a request head we cannot use (400 or 431) and close.
async fn reject_request(sh: &Shared, client: &mut TcpStream, id: u64, e: HeadError) {
    let page = match e {
        HeadError::TooLarge => http::error_page(
            431,
            "Request Header Fields Too Large",
            "Request head too large.",
        ),
        HeadError::Malformed(_) => {
            http::error_page(400, "Bad Request", "Malformed HTTP/1.x request.")
        }
        HeadError::Closed(_) | HeadError::Io(_) => return,
    };
    ProxyStats::inc(&sh.stats.http_errors);
    tracing::debug!(conn = id, "request refused: {}", e.reason());
    let _ = client.write_all(&page).await;
    let _ = client.shutdown().await;
}

/// The target's response head was unusable: 502, unless it merely closed
/// without answering (then close too).
async fn bad_response<W: AsyncWrite + Unpin>(
    sh: &Shared,
    cw: &mut W,
    id: u64,
    e: HeadError,
) -> std::io::Result<()> {
    ProxyStats::inc(&sh.stats.http_errors);
    tracing::debug!(conn = id, "bad response from the target: {}", e.reason());
    let page = http::error_page(
        502,
        "Bad Gateway",
        "The onion service's backend sent an invalid response.",
    );
    cw.write_all(&page).await?;
    cw.shutdown().await
}

fn finish(sh: &Shared, id: u64, outcome: Outcome<std::io::Result<impl Sized>>) {
    match outcome {
        Outcome::Done(Ok(_)) => tracing::trace!(conn = id, "closed"),
        Outcome::Done(Err(e)) => tracing::debug!(conn = id, "closed: {e}"),
        Outcome::Idle => {
            ProxyStats::inc(&sh.stats.timeouts);
            tracing::debug!(
                conn = id,
                "closed after {:?} without traffic",
                sh.cfg.idle_timeout
            );
        }
    }
}
