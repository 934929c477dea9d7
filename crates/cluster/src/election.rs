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

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::err::ClusterError;

/// Milliseconds since an epoch chosen by the driver (for instance the start of the
/// process, read from a monotonic clock). Only differences matter.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_ms(d)))
    }

    /// Time elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Identifier of a node, unique in the cluster (stable across restarts).
pub type NodeId = String;

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

/// Tunables of the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// How often the holder renews its lease.
    pub renew: Duration,
    /// How long one renewal is valid. Must exceed `renew` (3× is a good ratio).
    pub lease: Duration,
    /// How long a new node listens before it may acquire.
    pub settle: Duration,
    /// Extra wait per rank position after a lapse (rule 4).
    pub candidate_step: Duration,
    /// How long a dead member still counts in the last-known membership (rule 5).
    pub forget_after: Duration,
    /// Treat a holder that the failure detector reports dead as lapsed (rule 3).
    pub takeover_on_holder_death: bool,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            renew: Duration::from_secs(2),
            lease: Duration::from_secs(6),
            settle: Duration::from_secs(2),
            candidate_step: Duration::from_secs(2),
            forget_after: Duration::from_secs(60),
            takeover_on_holder_death: true,
        }
    }
}

impl ElectionConfig {
    /// Checks the relations between the durations.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.renew.is_zero() || self.lease <= self.renew {
            return Err(ClusterError::BadConfig(format!(
                "the lease ({:?}) must be longer than the renew interval ({:?}) and the renew \
                 interval must not be zero; use for instance renew 2s and lease 6s",
                self.lease, self.renew
            )));
        }
        Ok(())
    }
}

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

#[derive(Clone, Debug)]
struct Observation {
    advert: LeaseAdvert,
    seen_at: Millis,
}

#[derive(Clone, Debug)]
struct KnownMember {
    member: Member,
    last_live: Millis,
}

#[derive(Clone, Debug)]
struct OwnLease {
    seq: u64,
    renewed_at: Millis,
    expires: Millis,
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

    fn rank(&self) -> (u32, &str) {
        (self.priority, &self.me)
    }

    fn absorb(&mut self, now: Millis, view: Vec<Member>) {
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

    /// Whether `id`'s lease is valid from here at `now`.
    fn foreign_valid(&self, now: Millis, known: &KnownMember) -> bool {
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

    fn valid_foreign_holders(&self, now: Millis) -> Vec<(u32, &str)> {
        let mut holders: Vec<(u32, &str)> = self
            .members
            .values()
            .filter(|k| self.foreign_valid(now, k))
            .map(|k| (k.member.priority, k.member.id.as_str()))
            .collect();
        holders.sort();
        holders
    }

    fn best_foreign_holder(&self, now: Millis) -> Option<NodeId> {
        self.valid_foreign_holders(now)
            .first()
            .map(|(_, id)| (*id).to_owned())
    }

    /// Rule 5: at least half of the last-known membership (self included) is live.
    fn has_quorum(&self, now: Millis) -> bool {
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

    /// Rule 4: how many live eligible nodes rank before this one.
    fn rank_position(&self) -> u32 {
        let me = self.rank();
        let ahead = self
            .members
            .values()
            .filter(|k| k.member.live && k.member.eligible)
            .filter(|k| (k.member.priority, k.member.id.as_str()) < me)
            .count();
        u32::try_from(ahead).unwrap_or(u32::MAX)
    }

    fn give_up(&mut self, now: Millis, actions: &mut Vec<Action>) {
        self.yielded_until = Some(now.plus(self.cfg.lease));
        self.release(actions);
    }

    fn release(&mut self, actions: &mut Vec<Action>) {
        if self.own.take().is_some() {
            actions.push(Action::StopPublishing);
            actions.push(Action::WithdrawLease);
        }
    }

    fn advert(&mut self, now: Millis) -> LeaseAdvert {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ElectionConfig {
        ElectionConfig::default()
    }

    fn member(id: &str, priority: u32, lease: Option<LeaseAdvert>) -> Member {
        Member {
            id: id.into(),
            priority,
            eligible: true,
            live: true,
            lease,
        }
    }

    fn lease(seq: u64) -> LeaseAdvert {
        LeaseAdvert {
            incarnation: 1,
            seq,
            ttl_ms: 6_000,
            until_ms: 0,
        }
    }

    #[test]
    fn rejects_a_lease_shorter_than_the_renew_interval() {
        let bad = ElectionConfig {
            lease: Duration::from_secs(1),
            ..cfg()
        };
        assert!(Election::new("a", 0, true, 1, bad).is_err());
    }

    #[test]
    fn a_lone_node_acquires_after_settling_and_renews() {
        let mut e = Election::new("a", 0, true, 7, cfg()).unwrap();
        assert!(e.handle(Millis(0), Input::Membership(vec![])).is_empty());
        assert_eq!(e.role(Millis(0)), Role::Settling);
        assert!(e.handle(Millis(1_999), Input::Tick).is_empty());
        let acts = e.handle(Millis(2_000), Input::Tick);
        assert!(
            matches!(&acts[..], [Action::AdvertiseLease(l), Action::StartPublishing]
            if l.incarnation == 7 && l.seq == 0 && l.until_ms == 8_000)
        );
        assert!(e.handle(Millis(3_000), Input::Tick).is_empty());
        let acts = e.handle(Millis(4_000), Input::Tick);
        assert!(matches!(&acts[..], [Action::AdvertiseLease(l)] if l.seq == 1));
    }

    #[test]
    fn a_better_node_does_not_steal_a_valid_lease() {
        let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
        for t in (0..20_000).step_by(100) {
            // "b" is worse ranked but renews its lease every 2 s.
            let view = vec![member("b", 5, Some(lease(t / 2_000)))];
            assert!(e.handle(Millis(t), Input::Membership(view)).is_empty());
        }
        assert_eq!(
            e.role(Millis(20_000)),
            Role::Follower {
                holder: Some("b".into())
            }
        );
    }

    #[test]
    fn an_unrenewed_lease_lapses_after_its_ttl_as_observed_locally() {
        let c = ElectionConfig {
            takeover_on_holder_death: false,
            ..cfg()
        };
        let mut e = Election::new("a", 0, true, 1, c).unwrap();
        e.handle(
            Millis(0),
            Input::Membership(vec![member("b", 5, Some(lease(3)))]),
        );
        // The same advert keeps coming (the holder froze): valid until seen_at + ttl.
        for t in (100..6_000).step_by(100) {
            let view = vec![member("b", 5, Some(lease(3)))];
            assert!(
                e.handle(Millis(t), Input::Membership(view)).is_empty(),
                "{t}"
            );
        }
        let acts = e.handle(Millis(6_000), Input::Tick);
        assert!(acts.contains(&Action::StartPublishing));
    }

    #[test]
    fn a_worse_candidate_waits_its_turn() {
        let mut e = Election::new("c", 0, true, 1, cfg()).unwrap();
        // "a" and "b" rank before "c" (same priority, smaller ids); nobody holds a lease.
        let view = || vec![member("a", 0, None), member("b", 0, None)];
        e.handle(Millis(0), Input::Membership(view()));
        // settled at 2 s, position 2 → waits 4 s more.
        for t in (100..6_000).step_by(100) {
            assert!(
                e.handle(Millis(t), Input::Membership(view())).is_empty(),
                "{t}"
            );
        }
        assert!(e
            .handle(Millis(6_000), Input::Membership(view()))
            .contains(&Action::StartPublishing));
    }

    #[test]
    fn a_holder_yields_to_a_better_valid_holder() {
        let mut e = Election::new("b", 0, true, 1, cfg()).unwrap();
        e.handle(Millis(0), Input::Membership(vec![]));
        assert!(e
            .handle(Millis(2_000), Input::Tick)
            .contains(&Action::StartPublishing));
        let acts = e.handle(
            Millis(2_100),
            Input::Membership(vec![member("a", 0, Some(lease(0)))]),
        );
        assert_eq!(acts, vec![Action::StopPublishing, Action::WithdrawLease]);
    }

    #[test]
    fn without_quorum_the_holder_stops_when_its_lease_ends() {
        let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
        let peers = |live| {
            vec![
                Member {
                    live,
                    ..member("b", 1, None)
                },
                Member {
                    live,
                    ..member("c", 2, None)
                },
            ]
        };
        e.handle(Millis(0), Input::Membership(peers(true)));
        assert!(e
            .handle(Millis(2_000), Input::Membership(peers(true)))
            .contains(&Action::StartPublishing));
        // Cut off at 3 s: the last renewal was at 2 s, so the lease ends at 8 s.
        for t in (3_000..8_000).step_by(100) {
            let acts = e.handle(Millis(t), Input::Membership(peers(false)));
            assert!(!acts.contains(&Action::StopPublishing), "{t}");
        }
        let acts = e.handle(Millis(8_000), Input::Membership(peers(false)));
        assert_eq!(acts, vec![Action::StopPublishing, Action::WithdrawLease]);
        assert!(!e.is_publishing());
    }

    #[test]
    fn after_regaining_quorum_a_node_settles_before_it_acquires() {
        // "a" ranks best; "b" took the lease while "a" was cut off. After the heal the
        // failure detector reports "c" live first, and "b" (the holder) only later.
        let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
        let view = |b_live, c_live, b_lease: Option<LeaseAdvert>| {
            vec![
                Member {
                    live: b_live,
                    ..member("b", 1, b_lease)
                },
                Member {
                    live: c_live,
                    ..member("c", 2, None)
                },
            ]
        };
        e.handle(Millis(0), Input::Membership(view(true, true, None)));
        assert!(e
            .handle(Millis(2_000), Input::Membership(view(true, true, None)))
            .contains(&Action::StartPublishing));
        // Cut off at 3 s; its own lease ends at 8 s.
        for t in (3_000..=8_000).step_by(100) {
            e.handle(Millis(t), Input::Membership(view(false, false, None)));
        }
        assert!(!e.is_publishing());
        // Healed at 20 s: "c" is live at once, "b" (holding lease 4) 600 ms later.
        for t in (20_000..20_600).step_by(100) {
            let acts = e.handle(
                Millis(t),
                Input::Membership(view(false, true, Some(lease(4)))),
            );
            assert!(
                acts.is_empty(),
                "acquired at {t} while the holder looked dead"
            );
        }
        for t in (20_600..40_000).step_by(100) {
            let acts = e.handle(
                Millis(t),
                Input::Membership(view(true, true, Some(lease(4 + t / 2_000)))),
            );
            assert!(acts.is_empty(), "stole a valid lease at {t}");
        }
        assert_eq!(
            e.role(Millis(40_000)),
            Role::Follower {
                holder: Some("b".into())
            }
        );
    }

    #[test]
    fn yield_hands_over_and_stays_out_for_one_lease() {
        let mut e = Election::new("a", 0, true, 1, cfg()).unwrap();
        e.handle(Millis(0), Input::Tick);
        e.handle(Millis(2_000), Input::Tick);
        assert!(e.is_publishing());
        assert_eq!(
            e.handle(Millis(2_500), Input::Yield),
            vec![Action::StopPublishing, Action::WithdrawLease]
        );
        assert!(e.handle(Millis(8_400), Input::Tick).is_empty());
        assert!(e
            .handle(Millis(8_500), Input::Tick)
            .contains(&Action::StartPublishing));
    }

    #[test]
    fn an_ineligible_node_never_acquires() {
        let mut e = Election::new("a", 0, false, 1, cfg()).unwrap();
        for t in (0..30_000).step_by(500) {
            assert!(e.handle(Millis(t), Input::Tick).is_empty());
        }
    }

    #[test]
    fn the_lease_advert_round_trips() {
        let l = lease(9);
        assert_eq!(LeaseAdvert::decode(&l.encode()).unwrap(), l);
        assert!(LeaseAdvert::decode("{").is_err());
    }
}
