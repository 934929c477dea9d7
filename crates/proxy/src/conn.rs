//! One client connection, from accept to close.
//!
//! ```text
//! accepted ─▶ [PROXY line from tor, if expected; circuit cap] ─▶ connect ─┬▶ Tcp mode:  [intercept look] ─▶ splice ─▶ closed
//!                                                                           └▶ Http mode: request head ─┬▶ rewritten head + body ⇄ rewritten response ─▶ closed
//!                                                                                                       └▶ unusable head: spliced untouched (the target answers it)
//! ```
//!
//! Every step is bounded: the PROXY line (from accept), the request head and the
//! intercept's look at the first bytes (from the target connection) by `head_timeout`, the
//! connect by `connect_timeout`, the
//! forwarding by the idle watchdog; a shutdown past its drain time drops the whole future.
//!
//! What a client sees of the proxy itself, in either mode: nothing it would not see from
//! tor and the target alone. A target that cannot be reached closes the stream with no byte
//! written (no error page), a request head the proxy cannot rewrite reaches the target
//! untouched, and an unusable response head closes the stream (see docs/SECURITY.md).

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
        match proxy_protocol::read_v1(&mut client, sh.cfg.head_timeout).await {
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
    if !sh.set_circuit(id, circuit) {
        ProxyStats::inc(&sh.stats.circuit_rejected);
        tracing::debug!(conn = id, circuit, "closed: the circuit's stream cap is reached");
        return;
    }
    tracing::trace!(conn = id, circuit, "accepted");
    let pp = match sh.cfg.send_proxy {
        Some(ProxyVersion::V1) => proxy_protocol::encode_v1(&addrs),
        Some(ProxyVersion::V2) => proxy_protocol::encode_v2(&addrs),
        None => Vec::new(),
    };
    // Connected first in both modes: a target that cannot be reached closes the stream
    // before any byte, as close as the proxy can come to tor's own refusal.
    let Some(target) = sh.connect(id).await else {
        return; // dropping `client` closes it at once
    };
    // The client's bytes wait in the socket meanwhile: the head's time starts now.
    let deadline = tokio::time::Instant::now() + sh.cfg.head_timeout;
    let conn = Conn {
        sh: &sh,
        client,
        target,
        id,
        circuit,
        deadline,
    };
    match sh.cfg.mode {
        Mode::Tcp => conn.tcp(pp, prefix).await,
        Mode::Http => conn.http(pp, prefix).await,
    }
}

/// One connection once the target is connected.
struct Conn<'a> {
    sh: &'a Shared,
    client: TcpStream,
    target: TcpStream,
    id: u64,
    circuit: Option<u32>,
    /// End of `head_timeout`, counted from the target connection.
    deadline: tokio::time::Instant,
}

/// What [`inspect`] found.
enum Inspected {
    Pass,
    Take,
}

/// Read the client's first bytes into `buf` until the intercept decides, the target speaks
/// first, the client stops sending, `MAX_INSPECT` bytes or `deadline` (the head timeout).
async fn inspect(
    ic: &dyn Intercept,
    client: &mut TcpStream,
    target: &TcpStream,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Inspected {
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

/// How reading the request head ended.
enum Head {
    /// A complete head of this many bytes.
    Complete(usize),
    /// Bytes the proxy cannot rewrite (malformed, over `max_header_bytes`, or the client
    /// half-closed before the head ended).
    Unusable,
    /// Nothing to forward: closed before any byte, a socket error, or `head_timeout`.
    Gone,
}

impl Conn<'_> {
    /// Tcp mode: splice both ways.
    async fn tcp(mut self, first: Vec<u8>, mut prefix: Vec<u8>) {
        if let Some(ic) = self.sh.cfg.intercept.clone() {
            let seen = inspect(
                ic.as_ref(),
                &mut self.client,
                &self.target,
                &mut prefix,
                self.deadline,
            );
            if let Inspected::Take = seen.await {
                return self.take(ic, prefix).await;
            }
        }
        self.splice(first, prefix).await
    }

    /// Hand the connection to the intercept (the target connection is dropped unused).
    async fn take(self, ic: Arc<dyn Intercept>, seen: Vec<u8>) {
        drop(self.target);
        ProxyStats::inc(&self.sh.stats.intercepted);
        ic.serve(self.client, seen, self.circuit).await
    }

    /// Send `first` then `seen` to the target and splice both ways untouched.
    async fn splice(self, mut first: Vec<u8>, seen: Vec<u8>) {
        let (sh, id) = (self.sh, self.id);
        let mut target = self.target;
        let counters = Counters::default();
        counters.up.fetch_add(seen.len() as u64, Relaxed);
        first.extend_from_slice(&seen);
        if !first.is_empty() && target.write_all(&first).await.is_err() {
            return;
        }
        let mut a = Counted {
            inner: self.client,
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

    /// Http mode: one rewritten request, one rewritten response, bodies spliced. A head the
    /// proxy cannot rewrite goes to the target untouched, which answers it as it would
    /// answer anyone (no page of the proxy's own).
    async fn http(mut self, mut first: Vec<u8>, mut buf: Vec<u8>) {
        let head = self.read_request_head(&mut buf).await;
        if let Some(ic) = self.sh.cfg.intercept.clone() {
            if !buf.is_empty() && ic.classify(&buf) == Verdict::Take {
                return self.take(ic, buf).await;
            }
        }
        let n = match head {
            Head::Complete(n) => n,
            Head::Unusable => return self.splice(first, buf).await,
            Head::Gone => return,
        };
        let sh = self.sh;
        let req = match sh.rewriter.request(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                self.unusable(&e);
                return self.splice(first, buf).await;
            }
        };
        let counters = Counters::default();
        counters.up.fetch_add(buf.len() as u64, Relaxed);
        first.extend_from_slice(&req.head);
        first.extend_from_slice(&buf[n..]);
        drop(buf);
        if self.target.write_all(&first).await.is_err() {
            return;
        }
        drop(first);
        relay(
            sh,
            self.client,
            self.target,
            req.public.as_deref(),
            &counters,
            self.id,
        )
        .await;
    }

    /// Reads the client's request head into `buf` until `head_timeout` (see `deadline`).
    async fn read_request_head(&mut self, buf: &mut Vec<u8>) -> Head {
        let max = self.sh.cfg.max_header_bytes;
        let head = tokio::time::timeout_at(
            self.deadline,
            http::read_head(&mut self.client, buf, max, Side::Request),
        );
        match head.await {
            Ok(Ok(n)) => Head::Complete(n),
            Ok(Err(HeadError::Closed(0))) => Head::Gone,
            Ok(Err(HeadError::Io(e))) => {
                tracing::debug!(conn = self.id, "request head: {e}");
                Head::Gone
            }
            Ok(Err(e)) => {
                self.unusable(&e);
                Head::Unusable
            }
            Err(_) => {
                ProxyStats::inc(&self.sh.stats.timeouts);
                tracing::debug!(
                    conn = self.id,
                    "no request head within {:?}",
                    self.sh.cfg.head_timeout
                );
                Head::Gone
            }
        }
    }

    fn unusable(&self, e: &HeadError) {
        ProxyStats::inc(&self.sh.stats.http_errors);
        tracing::debug!(
            conn = self.id,
            "request head passed on unrewritten: {}",
            e.reason()
        );
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

/// The target's response head was unusable (malformed or over `max_header_bytes`): close
/// without a word. Forwarding it unparsed could carry the target's address in headers the
/// proxy could not rewrite; a page of the proxy's own would tell RustBalance apart.
async fn bad_response<W: AsyncWrite + Unpin>(
    sh: &Shared,
    cw: &mut W,
    id: u64,
    e: HeadError,
) -> std::io::Result<()> {
    ProxyStats::inc(&sh.stats.http_errors);
    tracing::debug!(conn = id, "bad response from the target: {}", e.reason());
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
