//! Rule 8: revision times across publishers.
//!
//! A descriptor's revision counter is computed from the time it is built (seconds,
//! order-preserving), and HSDirs keep only a higher counter. A new publisher whose clock
//! is a little behind its predecessor's would have its uploads refused; one whose clock
//! is ahead would win against every later publisher. So every holder builds at
//! `max(now, last revision time seen in gossip + 1)`, and publishes the time it used.

/// The time (Unix seconds) to build a descriptor at: `now_secs`, but never at or before
/// `last_seen`, the latest revision time this node has seen any publisher use (itself
/// included).
pub fn revision_secs(now_secs: u64, last_seen: Option<u64>) -> u64 {
    match last_seen {
        Some(last) => now_secs.max(last.saturating_add(1)),
        None => now_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::revision_secs;

    #[test]
    fn never_at_or_before_the_last_seen_revision() {
        assert_eq!(revision_secs(100, None), 100);
        assert_eq!(revision_secs(100, Some(50)), 100);
        assert_eq!(revision_secs(100, Some(100)), 101);
        assert_eq!(revision_secs(100, Some(130)), 131);
        assert_eq!(revision_secs(5, Some(u64::MAX)), u64::MAX);
    }
}
