//! Moving bytes: a counting stream wrapper and the idle watchdog around any
//! forwarding future.
//!
//! The hot path stays cheap: each read adds its length to a per-connection,
//! uncontended atomic; the watchdog wakes every `idle_timeout / 8`, moves
//! the byte deltas into the shared [`ProxyStats`] and closes the connection
//! once neither counter moved for `idle_timeout` (detected within
//! `idle_timeout * 1.125`).

use crate::stats::ProxyStats;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Bytes read from each side of one connection.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Read from the client (forwarded to the target).
    pub up: AtomicU64,
    /// Read from the target (forwarded to the client).
    pub down: AtomicU64,
}

/// A stream that counts the bytes read from it.
pub(crate) struct Counted<'a, S> {
    pub inner: S,
    pub bytes: &'a AtomicU64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.bytes.fetch_add(n as u64, Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How a watched forwarding ended.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    /// The work finished (both directions closed, or an error).
    Done(T),
    /// No byte either way for the idle timeout.
    Idle,
}

/// Run `work` (which reads through [`Counted`] wrappers over `counters`)
/// until it ends or the connection is idle for `idle`; keep `stats`' byte
/// counters current meanwhile.
pub(crate) async fn watch<F: Future>(
    work: F,
    counters: &Counters,
    idle: Duration,
    stats: &ProxyStats,
) -> Outcome<F::Output> {
    let tick = (idle / 8).max(Duration::from_millis(5));
    let mut flushed = (0u64, 0u64);
    let mut flush = |stats: &ProxyStats| {
        let now = (counters.up.load(Relaxed), counters.down.load(Relaxed));
        stats.bytes_to_target.fetch_add(now.0 - flushed.0, Relaxed);
        stats.bytes_to_client.fetch_add(now.1 - flushed.1, Relaxed);
        flushed = now;
        now.0 + now.1
    };
    let mut last_total = 0;
    let mut last_change = Instant::now();
    tokio::pin!(work);
    let sleep = tokio::time::sleep(tick);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            out = &mut work => {
                flush(stats);
                return Outcome::Done(out);
            }
            _ = &mut sleep => {
                let now = Instant::now();
                let total = flush(stats);
                if total != last_total {
                    last_total = total;
                    last_change = now;
                } else if now.duration_since(last_change) >= idle {
                    return Outcome::Idle;
                }
                sleep.as_mut().reset(now + tick.min(idle.saturating_sub(now.duration_since(last_change))).max(Duration::from_millis(1)));
            }
        }
    }
}
