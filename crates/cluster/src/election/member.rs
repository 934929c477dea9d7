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
    /// The lease the node advertises, if any.
    pub lease: Option<LeaseAdvert>,
}

/// A member of the current view, with the last time it was seen live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct KnownMember {
    pub(super) member: Member,
    pub(super) last_live: Millis,
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
            seen.insert(member.id.clone(), KnownMember { member, last_live });
        }
        self.observed.retain(|id, _| seen.contains_key(id));
        // Rule 5: every member ever seen stays known, live or not, present or not.
        let removed = &self.removed;
        self.known
            .extend(seen.keys().filter(|id| !removed.contains(*id)).cloned());
        self.members = seen;
    }
}
