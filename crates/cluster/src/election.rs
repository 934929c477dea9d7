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
//!    returning member live before another, the holder, whose lease would then look lapsed.
//! 2. **Never steal.** While another node's lease is valid, a node follows, even when it
//!    is better ranked (stability over optimality). A better node takes over only at the
//!    next lapse, or when the holder yields voluntarily ([`Input::Yield`]).
//! 3. **Lapse.** A foreign lease lapses when it has not been renewed within its `ttl` (as
//!    observed locally), when its holder withdraws it, or, with
//!    [`ElectionConfig::takeover_on_holder_death`], as soon as the failure detector
//!    reports the holder dead.
//! 4. **Who acquires.** After a lapse the best-ranked live eligible node acquires first;
//!    rank is `(priority, node id)`, lower wins, so ties are broken by node id. The node at
//!    position `k` in that order acquires only if the lease is still lapsed
//!    `k × candidate_step` after it lapsed: a best node that is live but silent (stuck,
//!    or on the far side of a one-way cut) cannot block the cluster.
//! 5. **Quorum to acquire and renew.** A node acquires or renews only if it sees at least
//!    half of its last-known membership live (itself included). A dead member stays in
//!    the last-known membership for [`ElectionConfig::forget_after`]. So a node cut off
//!    from a strict majority cannot renew and stops publishing when its own lease ends.
//!    "At least half" rather than "more than half" keeps a two-node cluster failing over
//!    in seconds; the price is that an even split may publish on both halves, which is
//!    harmless (both publishers hold the master key and produce comparable revision
//!    counters, DESIGN.md "Descriptor facts") and is resolved by rule 6 after healing.
//! 6. **Conflict.** When a holder sees another *valid* lease held by a better-ranked node
//!    (split brain after a partition heals, or a simultaneous acquisition), it withdraws
//!    its own lease and stops publishing at once. Exactly one holder remains.
//! 7. **Yield.** [`Input::Yield`] withdraws the lease at once and keeps the node out of the
//!    race for one `lease` period, so another node takes over promptly (graceful
//!    shutdown, operator hand-over). Becoming ineligible does the same.
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
//! Entering `Holder` emits [`Action::AdvertiseLease`] then [`Action::StartPublishing`];
//! each renewal emits [`Action::AdvertiseLease`]; leaving emits [`Action::StopPublishing`]
//! then [`Action::WithdrawLease`].
//!
//! # Failover time
//!
//! With the default configuration (renew 2 s, lease 6 s) a publisher that dies is replaced
//! after `detection` (phi-accrual, ~1 s at a 100 ms gossip interval) when
//! `takeover_on_holder_death` is on, and at most `lease + gossip delay` after its last
//! renewal otherwise; plus one tick of the driver.
//!
//! # Modules
//!
//! The machine ([`Election`], its inputs and actions) and rule evaluation live here; the
//! pieces it is built from live next to it: `config` (tunables), `millis` (the clock
//! value), `member` (the membership view and how it is absorbed), `lease` (adverts,
//! own lease, observations, rules 3 and 7), `rank` (rule 4) and `quorum` (rule 5).

mod config;
mod lease;
mod member;
mod millis;
mod quorum;
mod rank;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use config::ElectionConfig;
pub use lease::LeaseAdvert;
use lease::{Observation, OwnLease};
use member::KnownMember;
pub use member::Member;
pub use millis::Millis;

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
#[derive(Clone, Debug)]
pub struct Election {
    cfg: ElectionConfig,
    me: NodeId,
    priority: u32,
    eligible: bool,
    incarnation: u64,
    started: Option<Millis>,
    members: BTreeMap<NodeId, KnownMember>,
    observed: BTreeMap<NodeId, Observation>,
    own: Option<OwnLease>,
    next_seq: u64,
    lapsed_since: Option<Millis>,
    yielded_until: Option<Millis>,
    /// Since when quorum has held without interruption (rule 1: settle again after a cut).
    quorum_since: Option<Millis>,
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
            observed: BTreeMap::new(),
            own: None,
            next_seq: 0,
            lapsed_since: None,
            yielded_until: None,
            quorum_since: None,
        })
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether this node holds the lease (and therefore publishes).
    pub fn is_publishing(&self) -> bool {
        self.own.is_some()
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
        }
        self.evaluate(now, &mut actions);
        actions
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
            if quorum && now >= own.renewed_at.plus(self.cfg.renew) {
                debug_assert!(own.seq < self.next_seq);
                let advert = self.advert(now);
                actions.push(Action::AdvertiseLease(advert));
            }
            return;
        }

        if !holders.is_empty() {
            self.lapsed_since = None;
            return;
        }
        let lapsed_since = *self.lapsed_since.get_or_insert(now);
        // Rule 1: listen `settle` after starting and after regaining quorum.
        let settled_at = self
            .started
            .unwrap_or(now)
            .max(self.quorum_since.unwrap_or(now))
            .plus(self.cfg.settle);
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
            actions.push(Action::StartPublishing);
        }
    }
}
