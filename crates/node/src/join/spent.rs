//! Spent join tokens: every member keeps the ids of tokens spent anywhere in the cluster
//! until they expire, gossips them in [`SPENT_KEY`] (the union of what it knows, so a
//! spending survives its admitting node) and saves them in `join-spent.json`. Pure: the
//! caller passes the Unix time.
//!
//! Two members taking the same token within one gossip round (seconds) both admit: the
//! window is the gossip delay, and each admission is recorded.

use super::token::{MAX_TTL, PATH_ID_HEX};
use std::collections::BTreeMap;

/// The gossip key: one `"<token id hex> <expires unix s>"` per line.
pub const SPENT_KEY: &str = "join_spent";
/// The most spent ids a member keeps; beyond, new ones are refused until old ones expire
/// (a forged flood must not grow memory; 10,000 joins within one token lifetime is far
/// beyond any cluster).
pub const MAX_SPENT: usize = 10_000;

/// Spent token ids (hex) with their expiry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SpentTokens {
    by_id: BTreeMap<String, u64>,
}

/// Whether `id` looks like a token id (32 lowercase hex digits).
fn valid_id(id: &str) -> bool {
    id.len() == PATH_ID_HEX
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl SpentTokens {
    /// Whether token `id` was spent.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Record `id` (expiring at `expires`) as spent at `now`; false if it was already (or
    /// if it is malformed, expired, expires implausibly late, or the list is full).
    pub fn insert(&mut self, id: &str, expires: u64, now: u64) -> bool {
        self.prune(now);
        self.add(id, expires, now)
    }

    fn add(&mut self, id: &str, expires: u64, now: u64) -> bool {
        let latest = now.saturating_add(MAX_TTL.as_secs() + 3600);
        if !valid_id(id) || expires <= now || expires > latest || self.by_id.len() >= MAX_SPENT {
            return false;
        }
        self.by_id.insert(id.to_string(), expires).is_none()
    }

    /// Take `id` back (its admission failed, the joiner may try again).
    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// Forget expired ids.
    pub fn prune(&mut self, now: u64) {
        self.by_id.retain(|_, e| *e > now);
    }

    /// Learn a member's gossip value at `now`; returns how many ids were new.
    pub fn learn(&mut self, text: &str, now: u64) -> usize {
        self.prune(now);
        text.lines()
            .take(MAX_SPENT)
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(id, e)| Some((id, e.parse::<u64>().ok()?)))
            .filter(|(id, e)| self.add(id, *e, now))
            .count()
    }

    /// The gossip value.
    pub fn text(&self) -> String {
        self.by_id
            .iter()
            .map(|(id, e)| format!("{id} {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many ids are kept.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_790_000_000;

    fn id(n: u8) -> String {
        hex::encode([n; 16])
    }

    #[test]
    fn a_token_is_spent_once_until_it_expires() {
        let mut s = SpentTokens::default();
        assert!(s.insert(&id(1), NOW + 60, NOW));
        assert!(!s.insert(&id(1), NOW + 60, NOW), "spent once");
        assert!(s.contains(&id(1)));
        s.remove(&id(1));
        assert!(
            s.insert(&id(1), NOW + 60, NOW),
            "taken back after a failed admission"
        );
        s.prune(NOW + 60);
        assert!(s.is_empty(), "forgotten once expired");
        for (bad, e) in [
            ("nothex".to_string(), NOW + 60),
            (id(0xab).to_uppercase(), NOW + 60),
            (id(2), NOW),
            (id(2), u64::MAX),
        ] {
            assert!(!s.insert(&bad, e, NOW), "{bad} {e}");
        }
    }

    #[test]
    fn gossip_round_trips_and_floods_are_bounded() {
        let mut a = SpentTokens::default();
        a.insert(&id(1), NOW + 60, NOW);
        a.insert(&id(2), NOW + 90, NOW);
        let mut b = SpentTokens::default();
        let text = format!("{}\ngarbage\n{} x\n{} {}", a.text(), id(3), id(4), u64::MAX);
        assert_eq!(b.learn(&text, NOW), 2);
        assert_eq!(b, a);
        assert_eq!(b.learn(&a.text(), NOW), 0, "nothing new");
        let flood: String = (0..MAX_SPENT as u64 + 50)
            .map(|i| format!("{:032x} {}\n", i, NOW + 100 + i))
            .collect();
        let mut c = SpentTokens::default();
        c.learn(&flood, NOW);
        assert_eq!(c.len(), MAX_SPENT);
        assert!(!c.insert(&id(9), NOW + 60, NOW), "full");
        assert!(
            c.insert(&id(9), NOW + 1000, NOW + 101),
            "room once some expired"
        );
    }
}
