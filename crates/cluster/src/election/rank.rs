//! Rank: who acquires first after a lapse (rule 4) and who wins a conflict (rule 6).
//! Lower `(priority, node id)` ranks better.

use super::Election;

impl Election {
    pub(super) fn rank(&self) -> (u32, &str) {
        (self.priority, &self.me)
    }

    /// Rule 4: how many live eligible nodes rank before this one.
    pub(super) fn rank_position(&self) -> u32 {
        let me = self.rank();
        let ahead = self
            .members
            .values()
            .filter(|k| k.member.live && k.member.eligible)
            .filter(|k| (k.member.priority, k.member.id.as_str()) < me)
            .count();
        u32::try_from(ahead).unwrap_or(u32::MAX)
    }
}
