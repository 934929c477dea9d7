//! Quorum (rule 5): a node acquires or renews only while it sees a strict majority of
//! the cluster's known size live, itself included.
//!
//! The known size is the larger of [`super::ElectionConfig::cluster_size`] and the number
//! of distinct members this node has ever seen (itself included). It never shrinks on its
//! own: a member that died, or that is only on the other side of a partition, looks the
//! same from here, so forgetting it would let a cut-off minority count itself a majority
//! (which an earlier version did after 60 s). Only [`super::Input::Forget`] (a member
//! removed from the cluster) makes it smaller. A majority is strict: in an even split
//! neither half publishes, and a cluster of two fails over only with a third member (any
//! node, eligible or not, counts).

use super::Election;

impl Election {
    /// The cluster's known size (at least 1: this node).
    pub fn known_size(&self) -> usize {
        let seen = 1 + self.known.iter().filter(|id| **id != self.me).count();
        // Witness mode: a member silent in gossip and dead through Tor does not count
        // (nor in a configured size: it is one of those the configured size counts).
        let dead = self
            .known
            .iter()
            .filter(|id| self.witnessed_dead(id))
            .count();
        seen.max(self.cfg.cluster_size).saturating_sub(dead).max(1)
    }

    /// Rule 5: a strict majority of the known size is live (this node included).
    /// Witness mode: `id` is silent in gossip (or absent from the view) and the Tor
    /// witness reports it dead.
    pub(super) fn witnessed_dead(&self, id: &str) -> bool {
        self.cfg.quorum == super::QuorumMode::Witness
            && self.witness_dead.contains(id)
            && self.members.get(id).is_none_or(|k| !k.member.live)
    }

    /// In [`super::QuorumMode::Live`] there is no quorum: always true. A member counts
    /// while the failure detector reports it live *and* its heartbeat advanced within
    /// less than [`super::ElectionConfig::detection`] ago (or it has no heartbeat): a holder cut off
    /// from the majority stops renewing at most `detection` after the cut, as the guard
    /// its observers add to its lease assumes, however slow the phi-accrual detector is.
    pub(super) fn has_quorum(&self, now: super::Millis) -> bool {
        if self.cfg.quorum == super::QuorumMode::Live {
            return true;
        }
        let heard = |k: &&super::member::KnownMember| {
            k.member.live
                && (k.member.heartbeat.is_none() || now.since(k.heard_at) < self.cfg.detection)
        };
        let live = 1 + self.members.values().filter(heard).count();
        live * 2 > self.known_size()
    }
}
