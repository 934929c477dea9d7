//! Leases: the advert a holder gossips, the holder's own lease, what an observer saw of a
//! foreign one, and the rules about them (3: lapse, 7: yield).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::member::KnownMember;
use super::millis::duration_ms;
use super::{Action, Election, Millis, NodeId};
use crate::err::ClusterError;

/// A lease as advertised in the holder's gossip state (key [`crate::keys::LEASE`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseAdvert {
    /// Distinguishes the holder's successive runs (a restarted node starts `seq` again).
    pub incarnation: u64,
    /// Bumped at every renewal: a change is what observers count from.
    pub seq: u64,
    /// Validity granted by this renewal, in milliseconds.
    pub ttl_ms: u64,
    /// End of the lease on the holder's own clock. Informational only: observers never
    /// compare it with their clock.
    pub until_ms: u64,
}

impl LeaseAdvert {
    /// The gossip encoding (JSON).
    pub fn encode(&self) -> String {
        // Invariant: serializing a struct of integers to JSON cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the gossip encoding.
    pub fn decode(s: &str) -> Result<LeaseAdvert, ClusterError> {
        serde_json::from_str(s).map_err(|source| ClusterError::BadState {
            key: crate::keys::LEASE,
            source,
        })
    }
}

/// A foreign lease as observed locally: its validity counts from `seen_at`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Observation {
    pub(super) advert: LeaseAdvert,
    pub(super) seen_at: Millis,
}

/// This node's own lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct OwnLease {
    pub(super) seq: u64,
    pub(super) renewed_at: Millis,
    pub(super) expires: Millis,
    /// When this node acquired the lease (rule 4: it publishes one candidate step later).
    pub(super) acquired_at: Millis,
    /// Whether [`Action::StartPublishing`] was emitted.
    pub(super) publishing: bool,
}

impl Election {
    /// Whether `id`'s lease is valid from here at `now` (rule 3). Only a member the
    /// membership view calls eligible can hold one, and its advert's TTL counts for at
    /// most our own lease time: an advert with a huge `ttl_ms` from a worker (or from an
    /// eligible node gone rogue) cannot keep the cluster from publishing. The guard is
    /// added so that the holder has stopped, and its last revision time is behind us,
    /// before we take over.
    pub(super) fn foreign_valid(&self, now: Millis, known: &KnownMember) -> bool {
        if !known.member.eligible {
            return false;
        }
        if !known.member.live && self.cfg.quorum.takes_over_on_death() {
            return false;
        }
        if self.witnessed_dead(&known.member.id) {
            return false;
        }
        match (&known.member.lease, self.observed.get(&known.member.id)) {
            (Some(advert), Some(obs)) if &obs.advert == advert => {
                let ttl = Duration::from_millis(advert.ttl_ms).min(self.cfg.lease);
                now < obs.seen_at.plus(ttl).plus(self.cfg.guard())
            }
            _ => false,
        }
    }

    pub(super) fn valid_foreign_holders(&self, now: Millis) -> Vec<(u32, &str)> {
        let mut holders: Vec<(u32, &str)> = self
            .members
            .values()
            .filter(|k| self.foreign_valid(now, k))
            .map(|k| (k.member.priority, k.member.id.as_str()))
            .collect();
        holders.sort();
        holders
    }

    /// Rule 3: an eligible member reported dead within `lease + guard` of when it was last
    /// seen live may hold a lease nobody saw. (Off in [`super::QuorumMode::Live`], which
    /// trades this safety for speed.)
    pub(super) fn shadow_lease(&self, now: Millis) -> bool {
        if self.cfg.quorum.takes_over_on_death() {
            return false;
        }
        let span = self.cfg.lease + self.cfg.guard();
        self.members
            .values()
            .filter(|k| !self.removed.contains(&k.member.id))
            .filter(|k| !self.witnessed_dead(&k.member.id))
            .any(|k| !k.member.live && k.member.eligible && now < k.last_live.plus(span))
    }

    pub(super) fn best_foreign_holder(&self, now: Millis) -> Option<NodeId> {
        self.valid_foreign_holders(now)
            .first()
            .map(|(_, id)| (*id).to_owned())
    }

    pub(super) fn give_up(&mut self, now: Millis, actions: &mut Vec<Action>) {
        self.yielded_until = Some(now.plus(self.cfg.lease));
        self.release(actions);
    }

    pub(super) fn release(&mut self, actions: &mut Vec<Action>) {
        if let Some(own) = self.own.take() {
            if own.publishing {
                actions.push(Action::StopPublishing);
            }
            actions.push(Action::WithdrawLease);
        }
    }

    pub(super) fn advert(&mut self, now: Millis) -> LeaseAdvert {
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = now.plus(self.cfg.lease);
        let (acquired_at, publishing) = self
            .own
            .as_ref()
            .map_or((now, false), |o| (o.acquired_at, o.publishing));
        self.own = Some(OwnLease {
            seq,
            renewed_at: now,
            expires,
            acquired_at,
            publishing,
        });
        LeaseAdvert {
            incarnation: self.incarnation,
            seq,
            ttl_ms: duration_ms(self.cfg.lease),
            until_ms: expires.0,
        }
    }
}
