//! Leases: the advert a holder gossips, the holder's own lease, what an observer saw of a
//! foreign one, and the rules about them (3: lapse, 7: yield).

use serde::{Deserialize, Serialize};

use super::member::KnownMember;
use super::millis::duration_ms;
use super::{Action, Election, Millis, NodeId};
use crate::err::ClusterError;

/// A lease as advertised in the holder's gossip state (key [`crate::keys::LEASE`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug)]
pub(super) struct Observation {
    pub(super) advert: LeaseAdvert,
    pub(super) seen_at: Millis,
}

/// This node's own lease.
#[derive(Clone, Debug)]
pub(super) struct OwnLease {
    pub(super) seq: u64,
    pub(super) renewed_at: Millis,
    pub(super) expires: Millis,
}

impl Election {
    /// Whether `id`'s lease is valid from here at `now`.
    pub(super) fn foreign_valid(&self, now: Millis, known: &KnownMember) -> bool {
        if !known.member.live && self.cfg.takeover_on_holder_death {
            return false;
        }
        match (&known.member.lease, self.observed.get(&known.member.id)) {
            (Some(advert), Some(obs)) if &obs.advert == advert => {
                now < Millis(obs.seen_at.0.saturating_add(advert.ttl_ms))
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
        if self.own.take().is_some() {
            actions.push(Action::StopPublishing);
            actions.push(Action::WithdrawLease);
        }
    }

    pub(super) fn advert(&mut self, now: Millis) -> LeaseAdvert {
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = now.plus(self.cfg.lease);
        self.own = Some(OwnLease {
            seq,
            renewed_at: now,
            expires,
        });
        LeaseAdvert {
            incarnation: self.incarnation,
            seq,
            ttl_ms: duration_ms(self.cfg.lease),
            until_ms: expires.0,
        }
    }
}
