//! Quorum (rule 5): a node acquires or renews only while it sees at least half of its
//! last-known membership live.

use super::{Election, Millis};

impl Election {
    /// Rule 5: at least half of the last-known membership (self included) is live.
    pub(super) fn has_quorum(&self, now: Millis) -> bool {
        let mut known = 1usize;
        let mut live = 1usize;
        for k in self.members.values() {
            if k.member.live {
                known += 1;
                live += 1;
            } else if now.since(k.last_live) < self.cfg.forget_after {
                known += 1;
            }
        }
        live * 2 >= known
    }
}
