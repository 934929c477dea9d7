//! Polling shared by the proxy's test binaries (included with `#[path]`).

use std::time::{Duration, Instant};

/// Polls `done` every 10 ms until it holds; panics after `limit` naming `what`.
pub async fn poll_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
