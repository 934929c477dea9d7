//! Members as the election knows them, and how a membership view is absorbed.

use std::collections::BTreeMap;

use super::lease::{LeaseAdvert, Observation};
use super::{Election, Millis, NodeId};

/// What the membership says about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    /// Lower wins.
    pub priority: u32,
    pub eligible: bool,
    /// Whether the failure detector considers the node alive.
    pub live: bool,
    /// The lease the node advertises, if any.
    pub lease: Option<LeaseAdvert>,
}

/// A member with the last time it was seen live (for rule 5).
#[derive(Clone, Debug)]
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
            let last_live = match (member.live, self.members.get(&member.id)) {
                (true, _) => now,
                (false, Some(known)) => known.last_live,
                // First heard of while already dead: count it from now.
                (false, None) => now,
            };
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
            seen.insert(member.id.clone(), KnownMember { member, last_live });
        }
        self.observed.retain(|id, _| seen.contains_key(id));
        self.members = seen;
    }
}
