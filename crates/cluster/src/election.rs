//! The publisher election: a pure lease state machine.
//!
//! Exactly one node of the cluster should upload the merged descriptor: the *publisher*.
//! Every node runs one [`Election`]. It is fed the membership view (what gossip says about
//! every node it knows) and clock ticks, and answers with [`Action`]s: start or stop
//! publishing, advertise or withdraw the node's lease. It never reads a clock, a socket or
//! a random number generator: `now` is passed in (milliseconds since an epoch the driver
//! chooses, see [`Millis`]), so every scenario can be replayed on fake time.
//!
//! # The lease
//!
//! A node publishes exactly while it holds a lease. A lease is advertised in the holder's
//! own gossip state as a [`LeaseAdvert`] `{incarnation, seq, ttl_ms, until_ms}` and renewed
//! every [`ElectionConfig::renew`] by bumping `seq`. Each renewal grants
//! [`ElectionConfig::lease`] of validity.
//!
//! Clocks of different machines are never compared. The holder counts its lease from the
//! moment it decided to renew; an observer counts it from the moment it *saw* that
//! renewal (a new `(incarnation, seq)`), which is always later. So the holder's lease
//! always ends before any observer believes it ended: the holder stops publishing first.
//!
//! # Rules
//!
//! 1. **Settle.** A freshly started node waits [`ElectionConfig::settle`] before it may
//!    acquire, so that it hears about an existing lease before it competes. A node that
//!    regains quorum (rule 5) after being cut off settles again: it missed every lease
//!    taken while it was away, and right after a heal the failure detector may report one
//!    returning member live before another, the holder, whose lease would then look
//!    lapsed. It also waits one [`ElectionConfig::candidate_step`] per live eligible
//!    member, so that a node that kept quorum acquires first.
//! 2. **Never steal.** While another node's lease is valid, a node follows, even when it
//!    is better ranked (stability over optimality). A better node takes over only at the
//!    next lapse, or when the holder yields voluntarily ([`Input::Yield`]).
//! 3. **Lapse.** Only a member the membership view calls eligible holds a lease; any other
//!    advert is ignored. A foreign lease lapses when it has not been renewed within its
//!    `ttl`, capped at our own [`ElectionConfig::lease`], plus [`ElectionConfig::guard`]
//!    (as observed locally); when its holder withdraws it; or, in
//!    [`QuorumMode::Live`] (unsafe under a partition), as soon as the failure detector
//!    reports the holder dead. The cap keeps
//!    a huge advertised TTL from stopping all publishing; the guard (clock tolerance plus
//!    one second) puts the old holder's last revision time behind the new holder's first.
//!    A member the failure detector reports dead may also hold a lease nobody saw (it
//!    acquired or renewed in the moments before it noticed it was cut off): until
//!    `lease + guard` after it was last seen live, nobody acquires (a *shadow lease*;
//!    found by the model checker).
//! 4. **Who acquires.** After a lapse the best-ranked live eligible node acquires first;
//!    rank is `(priority, node id)`, lower wins, so ties are broken by node id. The node at
//!    position `k` in that order acquires only if the lease is still lapsed
//!    `k × candidate_step` after it lapsed: a best node that is live but silent (stuck,
//!    or on the far side of a one-way cut) cannot block the cluster. A node that acquires
//!    advertises its lease at once but starts publishing only after
//!    [`ElectionConfig::publish_delay`] (a candidate step, at least the failure detection
//!    time), and only with quorum, if no better-ranked lease showed up meanwhile (rule 6):
//!    two nodes that acquire at the same moment (one never saw a lease that lived for a
//!    second, or a yielded node came back just as the next one's turn came, even with a
//!    cut right then) never both publish (found by the model checker).
//! 5. **Quorum to acquire and renew.** A node acquires or renews only if it sees a strict
//!    majority of the cluster's known size live (itself included): the larger of
//!    [`ElectionConfig::cluster_size`] and every member it has ever seen. The known size
//!    never shrinks by itself (only [`Input::Forget`], for a removed member, shrinks it),
//!    so a node cut off from a majority stops publishing when its own lease ends and
//!    never publishes again until it is back with a majority, however long the cut lasts.
//!    In an even split neither half publishes. This is [`QuorumMode::Majority`];
//!    [`QuorumMode::Live`] needs no quorum (a lone survivor publishes; so does a node
//!    cut off from the others).
//! 6. **Conflict.** When a holder sees another *valid* lease held by a better-ranked node
//!    (a simultaneous acquisition, or a holder that kept a lease it no longer had quorum
//!    for while a better node acquired), it withdraws its own lease and stops publishing
//!    at once. Exactly one holder remains.
//! 7. **Yield.** [`Input::Yield`] withdraws the lease at once and keeps the node out of the
//!    race for one `lease` period, so another node takes over promptly (graceful
//!    shutdown, operator hand-over). Becoming ineligible does the same: the driver makes
//!    a node ineligible while its publishing health is bad (clock off the cluster's,
//!    consensus stale, no confirmed upload for minutes) and eligible again when it is
//!    healthy.
//! 8. **Revision time.** A holder builds each descriptor at [`revision_secs`]`(now, last)`:
//!    its own clock, but at least one second after the last revision time any publisher
//!    gossiped, so revision counters never go backwards when the lease moves.
//!
//! # State diagram
//!
//! ```text
//!                 start
//!                   │
//!                   ▼
//!            ┌────────────┐  settle elapsed
//!            │  Settling  │─────────────────┐
//!            └────────────┘                 ▼
//!                                    ┌────────────┐
//!   a valid foreign lease exists ───▶│  Follower  │◀───────────────────────────┐
//!   (never steal, rule 2)            └────────────┘                            │
//!                                          │ lease lapsed (rule 3), my turn    │ own lease ran out
//!                                          │ (rule 4), quorum (rule 5),        │ without quorum,
//!                                          │ eligible, not yielded             │ conflict with a
//!                                          ▼                                   │ better holder (6),
//!                                    ┌────────────┐  renew every `renew`       │ Yield / ineligible (7)
//!                                    │   Holder   │──────────┐                 │
//!                                    │(publishing)│◀─────────┘ while quorum    │
//!                                    └────────────┘────────────────────────────┘
//! ```
//!
//! Entering `Holder` emits [`Action::AdvertiseLease`], and [`Action::StartPublishing`]
//! [`ElectionConfig::publish_delay`] later;
//! each renewal emits [`Action::AdvertiseLease`]; leaving emits [`Action::StopPublishing`]
//! then [`Action::WithdrawLease`].
//!
//! # Failover time
//!
//! A publisher that dies is replaced after `detection` (phi accrual, ~1 s at a 100 ms
//! gossip interval) plus the publish delay (one candidate step) in [`QuorumMode::Live`],
//! and after `lease + guard + publish delay` from its last renewal seen in
//! [`QuorumMode::Majority`] (~20 s: `docs/ELECTION.md` says which wait protects against
//! what).
//!
//! # Modules
//!
//! The machine ([`Election`], its inputs and actions) and rule evaluation live here; the
//! pieces it is built from live next to it: `config` (tunables), `millis` (the clock
//! value), `member` (the membership view and how it is absorbed), `lease` (adverts,
//! own lease, observations, rules 3 and 7), `rank` (rule 4), `quorum` (rule 5),
//! `revision` (rule 8) and `clock` (the clock offset that rule 7's health check uses).
//! `docs/ELECTION.md` states the properties and how the model checker verifies them.

mod clock;
mod config;
mod lease;
mod member;
mod millis;
mod quorum;
mod rank;
mod revision;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use clock::ClockOffsets;
pub use config::{ElectionConfig, QuorumMode};
pub use lease::LeaseAdvert;
use lease::{Observation, OwnLease};
use member::KnownMember;
pub use member::Member;
pub use millis::Millis;
pub use revision::revision_secs;

use crate::err::ClusterError;

/// Identifier of a node, unique in the cluster (stable across restarts).
pub type NodeId = String;

/// An event fed to the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The current membership view. Entries about this node itself are ignored; members
    /// that are absent are forgotten.
    Membership(Vec<Member>),
    /// Time passed.
    Tick,
    /// Give the lease up now and stay out of the race for one lease period.
    Yield,
    /// This node's eligibility changed (becoming ineligible acts like [`Input::Yield`]).
    SetEligible(bool),
    /// A member was removed from the cluster: it no longer counts in the known size.
    Forget(NodeId),
    /// The Tor witness ([`QuorumMode::Witness`]): the members that fail their canary
    /// from here. One that is also silent in gossip is dead, not cut off: it leaves the
    /// known size and its lease (and shadow lease) lapses at once.
    Witness(BTreeSet<NodeId>),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start uploading the merged descriptor.
    StartPublishing,
    /// Stop uploading.
    StopPublishing,
    /// Write this lease into this node's gossip state.
    AdvertiseLease(LeaseAdvert),
    /// Remove the lease from this node's gossip state.
    WithdrawLease,
}

/// Where the machine stands (for logs, metrics and the admin endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Settling,
    /// Following `holder` (None: no valid lease is known right now).
    Follower {
        holder: Option<NodeId>,
    },
    Holder,
}

/// One node's election state machine. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Election {
    cfg: ElectionConfig,
    me: NodeId,
    priority: u32,
    eligible: bool,
    incarnation: u64,
    started: Option<Millis>,
    members: BTreeMap<NodeId, KnownMember>,
    /// Every member ever seen (rule 5), this node excluded.
    known: BTreeSet<NodeId>,
    /// Members removed from the cluster ([`Input::Forget`]): never known again.
    removed: BTreeSet<NodeId>,
    observed: BTreeMap<NodeId, Observation>,
    own: Option<OwnLease>,
    next_seq: u64,
    lapsed_since: Option<Millis>,
    yielded_until: Option<Millis>,
    /// Since when quorum has held without interruption (rule 1: settle again after a cut).
    quorum_since: Option<Millis>,
    /// Members the Tor witness reports dead ([`Input::Witness`]).
    witness_dead: BTreeSet<NodeId>,
}

impl Election {
    /// A new machine for node `me`. `incarnation` must differ between runs of the same
    /// node (the driver uses the gossip generation, i.e. the start time).
    pub fn new(
        me: impl Into<NodeId>,
        priority: u32,
        eligible: bool,
        incarnation: u64,
        cfg: ElectionConfig,
    ) -> Result<Election, ClusterError> {
        cfg.validate()?;
        Ok(Election {
            cfg,
            me: me.into(),
            priority,
            eligible,
            incarnation,
            started: None,
            members: BTreeMap::new(),
            known: BTreeSet::new(),
            removed: BTreeSet::new(),
            observed: BTreeMap::new(),
            own: None,
            next_seq: 0,
            lapsed_since: None,
            yielded_until: None,
            quorum_since: None,
            witness_dead: BTreeSet::new(),
        })
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether this node holds the lease (and therefore publishes).
    pub fn is_publishing(&self) -> bool {
        self.own.as_ref().is_some_and(|own| own.publishing)
    }

    /// Whether this node's lease is still running at `now` (the driver stops publishing
    /// at the first tick after it ends; this is the exact answer).
    pub fn may_publish(&self, now: Millis) -> bool {
        self.own
            .as_ref()
            .is_some_and(|own| own.publishing && now < own.expires)
    }

    /// Whether this node may hold a lease (its own view of its eligibility).
    pub fn is_eligible(&self) -> bool {
        self.eligible
    }

    /// The configuration in use.
    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// Where the machine stands at `now`.
    pub fn role(&self, now: Millis) -> Role {
        if self.own.is_some() {
            return Role::Holder;
        }
        match self.started {
            Some(s) if now >= s.plus(self.cfg.settle) => Role::Follower {
                holder: self.best_foreign_holder(now),
            },
            _ => Role::Settling,
        }
    }

    /// Feeds one input; returns the actions to carry out, in order.
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Action> {
        let mut actions = Vec::new();
        self.started.get_or_insert(now);
        match input {
            Input::Membership(view) => self.absorb(now, view),
            Input::Tick => {}
            Input::Yield => self.give_up(now, &mut actions),
            Input::SetEligible(eligible) => {
                self.eligible = eligible;
                if !eligible {
                    self.give_up(now, &mut actions);
                }
            }
            Input::Witness(dead) => self.witness_dead = dead,
            Input::Forget(id) => {
                self.known.remove(&id);
                self.removed.insert(id);
            }
        }
        self.evaluate(now, &mut actions);
        actions
    }

    /// Rule 1: when this node may compete. `settle` after it started; after regaining
    /// quorum, also one candidate step per live eligible member, so that the nodes that
    /// kept quorum go first: a node returning from a cut that competed at its own rank
    /// would acquire at the very moment a worse-ranked node of the majority, which saw
    /// the returning node's lease withdrawn, acquires too (found while building the
    /// model; the publish delay of rule 4 now also keeps both from publishing).
    fn settled_at(&self, now: Millis) -> Millis {
        let started = self.started.unwrap_or(now);
        let regained = self.quorum_since.unwrap_or(now);
        if regained <= started {
            return started.plus(self.cfg.settle);
        }
        let others = self
            .members
            .values()
            .filter(|k| k.member.live && k.member.eligible)
            .count();
        let defer = self
            .cfg
            .candidate_step
            .saturating_mul(u32::try_from(others).unwrap_or(u32::MAX));
        regained.plus(self.cfg.settle.saturating_add(defer))
    }

    fn evaluate(&mut self, now: Millis, actions: &mut Vec<Action>) {
        // Own lease ran out (it was not renewed: no quorum).
        if self.own.as_ref().is_some_and(|own| now >= own.expires) {
            self.release(actions);
        }
        let quorum = self.has_quorum(now);
        self.quorum_since = if quorum {
            Some(self.quorum_since.unwrap_or(now))
        } else {
            None
        };
        let me = self.rank();
        let holders = self.valid_foreign_holders(now);

        if let Some(own) = &self.own {
            // Rule 6: a better-ranked valid holder wins the conflict.
            if holders.first().is_some_and(|best| *best < me) {
                self.release(actions);
                return;
            }
            let start =
                quorum && !own.publishing && now >= own.acquired_at.plus(self.cfg.publish_delay());
            if quorum && now >= own.renewed_at.plus(self.cfg.renew) {
                debug_assert!(own.seq < self.next_seq);
                let advert = self.advert(now);
                actions.push(Action::AdvertiseLease(advert));
            }
            if start {
                if let Some(own) = &mut self.own {
                    own.publishing = true;
                }
                actions.push(Action::StartPublishing);
            }
            return;
        }

        if !holders.is_empty() || self.shadow_lease(now) {
            self.lapsed_since = None;
            return;
        }
        let lapsed_since = *self.lapsed_since.get_or_insert(now);
        let settled_at = self.settled_at(now);
        let yielded = self.yielded_until.is_some_and(|until| now < until);
        if !self.eligible || !quorum || now < settled_at || yielded {
            return;
        }
        // Rank positions are counted from the later of the lapse and the end of settling,
        // so that nodes starting together do not all acquire when they finish settling.
        let wait = self.cfg.candidate_step.saturating_mul(self.rank_position());
        if now >= lapsed_since.max(settled_at).plus(wait) {
            let advert = self.advert(now);
            actions.push(Action::AdvertiseLease(advert));
        }
    }
}
