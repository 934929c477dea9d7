//! Counters of the join endpoint (exported to Prometheus and `/status`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of the join endpoint (exported to Prometheus).
#[derive(Debug, Default)]
pub struct JoinCounters {
    /// Nodes admitted.
    pub accepted: AtomicU64,
    /// Requests on the join path with a path id or MAC that matches no live token: wrong,
    /// expired, spent, or of an old generation (the path-id ones were passed to the target
    /// like any request).
    pub bad_token: AtomicU64,
    /// Replayed requests (nonce already seen).
    pub replayed: AtomicU64,
    /// Bodies over the limit, or no length given.
    pub oversized: AtomicU64,
    /// Requests over the rate limit.
    pub rate_limited: AtomicU64,
    /// Requests whose time is too far from ours.
    pub stale: AtomicU64,
    /// Malformed requests (bad head, bad JSON, bad fields).
    pub malformed: AtomicU64,
    /// Valid requests from a WireGuard key removed from the cluster.
    pub removed: AtomicU64,
    /// Valid requests whose name or WireGuard key is already a member's.
    pub collision: AtomicU64,
    /// Requests with a live token that reached a worker (it cannot admit; the joiner asks
    /// again).
    pub not_eligible: AtomicU64,
    /// Valid requests the node failed to admit.
    pub failed: AtomicU64,
}

impl JoinCounters {
    /// `(reason, count)` of every rejection.
    pub fn rejections(&self) -> [(&'static str, u64); 10] {
        [
            ("bad_token", self.bad_token.load(Relaxed)),
            ("replayed", self.replayed.load(Relaxed)),
            ("oversized", self.oversized.load(Relaxed)),
            ("rate_limited", self.rate_limited.load(Relaxed)),
            ("stale", self.stale.load(Relaxed)),
            ("malformed", self.malformed.load(Relaxed)),
            ("removed", self.removed.load(Relaxed)),
            ("collision", self.collision.load(Relaxed)),
            ("not_eligible", self.not_eligible.load(Relaxed)),
            ("failed", self.failed.load(Relaxed)),
        ]
    }
}
