//! Counters the daemon exports to Prometheus. No addresses, no client data.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Atomic counters of one proxy. Cheap to read at any time; see
/// [`ProxyStats::snapshot`].
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) circuit_rejected: AtomicU64,
    pub(crate) bytes_to_target: AtomicU64,
    pub(crate) bytes_to_client: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) proxy_header_errors: AtomicU64,
    pub(crate) http_errors: AtomicU64,
    pub(crate) intercepted: AtomicU64,
}

/// One consistent-enough reading of [`ProxyStats`] (each counter is read
/// atomically, the set is not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Connections accepted from tor, the rejected ones included.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections closed at once because `max_connections` were open.
    pub rejected: u64,
    /// Connections closed at once because their tor circuit already held
    /// `max_streams_per_circuit` connections.
    pub circuit_rejected: u64,
    /// Payload bytes read from clients and forwarded to the target (PROXY
    /// headers and rewritten HTTP heads count at their original size).
    pub bytes_to_target: u64,
    /// Payload bytes read from the target and forwarded to clients.
    pub bytes_to_client: u64,
    /// Connections to the target that failed (refused, SOCKS error or timeout).
    pub connect_errors: u64,
    /// Connections closed by a timeout: idle, connect, or waiting for a head
    /// (`head_timeout`).
    pub timeouts: u64,
    /// Missing or malformed PROXY lines from tor.
    pub proxy_header_errors: u64,
    /// Http mode: request heads the proxy could not rewrite (malformed, oversized, cut
    /// short; passed to the target untouched so that it answers them itself) and unusable
    /// response heads (the connection is closed).
    pub http_errors: u64,
    /// Connections answered by RustBalance itself (the join endpoint), not the target.
    pub intercepted: u64,
}

impl ProxyStats {
    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Relaxed),
            active: self.active.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            circuit_rejected: self.circuit_rejected.load(Relaxed),
            bytes_to_target: self.bytes_to_target.load(Relaxed),
            bytes_to_client: self.bytes_to_client.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            proxy_header_errors: self.proxy_header_errors.load(Relaxed),
            http_errors: self.http_errors.load(Relaxed),
            intercepted: self.intercepted.load(Relaxed),
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
