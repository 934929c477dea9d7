//! Flood limits of the join endpoint: sliding one-minute windows per source (a tor circuit,
//! or a peer address) and in total. Pure: the caller passes `now`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Join requests accepted per minute per tor circuit (or per peer address).
pub(crate) const PER_SOURCE_PER_MIN: usize = 10;
/// Join requests accepted per minute in total.
const GLOBAL_PER_MIN: usize = 60;

/// Sliding one-minute windows per source and in total.
#[derive(Default)]
pub(crate) struct RateLimiter {
    per_source: HashMap<String, VecDeque<Instant>>,
    global: VecDeque<Instant>,
}

impl RateLimiter {
    /// Count a request from `source` at `now`; false if it is over a limit (then it is not
    /// counted).
    pub(crate) fn allow(&mut self, source: &str, now: Instant) -> bool {
        let minute = Duration::from_secs(60);
        let prune = |q: &mut VecDeque<Instant>| {
            while q.front().is_some_and(|t| now.duration_since(*t) >= minute) {
                q.pop_front();
            }
        };
        prune(&mut self.global);
        self.per_source.retain(|_, q| {
            prune(q);
            !q.is_empty()
        });
        let q = self.per_source.entry(source.to_string()).or_default();
        if q.len() >= PER_SOURCE_PER_MIN || self.global.len() >= GLOBAL_PER_MIN {
            return false;
        }
        q.push_back(now);
        self.global.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_windows() {
        let mut r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..PER_SOURCE_PER_MIN {
            assert!(r.allow("a", t0));
        }
        assert!(!r.allow("a", t0));
        assert!(r.allow("b", t0));
        assert!(r.allow("a", t0 + Duration::from_secs(61)));
    }
}
