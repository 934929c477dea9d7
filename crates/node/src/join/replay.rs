//! Nonces seen within the clock window, so that a replayed join request is refused. Pure:
//! the caller passes the Unix time.

use super::message::MAX_SKEW;
use std::collections::HashMap;

/// Nonces seen within the clock window (a replayed request is refused).
#[derive(Default)]
pub(crate) struct ReplayCache {
    seen: HashMap<String, u64>,
}

impl ReplayCache {
    /// Remember `nonce` at Unix time `now`; false if it was seen already.
    pub(crate) fn insert(&mut self, nonce: &str, now: u64) -> bool {
        let keep = 2 * MAX_SKEW.as_secs() + 60;
        self.seen.retain(|_, t| now.saturating_sub(*t) <= keep);
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_forgets_only_outside_the_window() {
        let mut c = ReplayCache::default();
        assert!(c.insert("n1", 1000));
        assert!(!c.insert("n1", 1500));
        assert!(c.insert("n1", 1000 + 2 * MAX_SKEW.as_secs() + 61));
    }
}
