//! Members as the election knows them, and how a membership view is absorbed.

use std::collections::BTreeMap;

use super::lease::Observation;
use super::{Election, Millis, NodeId};
use crate::election::LeaseAdvert;

/// What the membership says about one node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub id: NodeId,
    /// Lower wins.
    pub priority: u32,
    /// Whether the node may hold a lease. The election takes this from the membership
    /// view as it is; the view decides what makes a node eligible.
    pub eligible: bool,
    /// Whether the failure detector considers the node alive.
    pub live: bool,
    /// The node's gossip heartbeat as this node last heard it (chitchat's counter, which
    /// the node increments every gossip round). Rule 5 counts a member only while its
    /// heartbeat advanced within [`super::ElectionConfig::detection`]: the phi-accrual
    /// detector behind `live` can take far longer to report a cut-off peer (30 s in the
    /// lab), and a holder that renews on stale liveness overlaps the lease its observers
    /// give the next holder. `None`: no heartbeat known (a driver without one); `live`
    /// alone counts.
    pub heartbeat: Option<u64>,
    /// The lease the node advertises, if any.
    pub lease: Option<LeaseAdvert>,
}

/// A member of the current view, with the last time it was seen live and the last time
/// its heartbeat advanced.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct KnownMember {
    pub(super) member: Member,
    pub(super) last_live: Millis,
    pub(super) heard_at: Millis,
}

impl Election {
    pub(super) fn absorb(&mut self, now: Millis, view: Vec<Member>) {
        let mut seen = BTreeMap::new();
        for member in view {
            if member.id == self.me {
                continue;
            }
            match &member.lease {
                Some(advert) => {
                    let fresh = self
                        .observed
                        .get(&member.id)
                        .is_none_or(|o| &o.advert != advert);
                    if fresh {
                        self.observed.insert(
                            member.id.clone(),
                            Observation {
                                advert: advert.clone(),
                                seen_at: now,
                            },
                        );
                    }
                }
                None => {
                    self.observed.remove(&member.id);
                }
            }
            let last_live = match (member.live, self.members.get(&member.id)) {
                (true, _) => now,
                (false, Some(known)) => known.last_live,
                // First heard of while already dead: count it from now.
                (false, None) => now,
            };
            let heard_at = match self.members.get(&member.id) {
                Some(known) if member.heartbeat <= known.member.heartbeat => known.heard_at,
                _ => now,
            };
            seen.insert(
                member.id.clone(),
                KnownMember {
                    member,
                    last_live,
                    heard_at,
                },
            );
        }
        self.observed.retain(|id, _| seen.contains_key(id));
        // Rule 5: every member ever seen stays known, live or not, present or not.
        let removed = &self.removed;
        self.known
            .extend(seen.keys().filter(|id| !removed.contains(*id)).cloned());
        self.members = seen;
    }
}
