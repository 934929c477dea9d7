#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
//!
//! # The model
//!
//! Time advances in ticks of one second ([`Step::Tick`]). At each tick every live node
//! first hears what every node it is linked to gossiped at the end of the previous tick
//! (one tick of delay; a [`Step::Tick`] may hold back one directed delivery for one more
//! tick, within a budget), then feeds its view to its own [`Election`] with the time, and
//! carries out the actions. A node that has not heard from a peer for
//! [`ElectionModel::detect_ticks`] reports it dead. A holder whose lease is still running
//! publishes once per second of its own clock, at the revision time the node code uses
//! ([`revision_secs`] over the revision times it has heard of). Between ticks the
//! environment may isolate a node, heal, crash a node or make the holder yield, each
//! within a budget. Every node's clock is off the true time by a fixed offset.

use std::collections::BTreeSet;

use rustbalance_cluster::{
    revision_secs, Action, Election, ElectionConfig, Input, LeaseAdvert, Member, Millis, QuorumMode,
};
use stateright::{Model, Property};

/// The wall clock's second at true time 0 (any value above the offsets).
const EPOCH_SECS: u64 = 1_000_000;

/// The model's parameters.
#[derive(Clone, Debug)]
pub struct ElectionModel {
    /// The election's configuration, as the nodes run it.
    pub cfg: ElectionConfig,
    /// One clock offset (seconds) per node; the model has as many nodes.
    pub clock_offsets: Vec<i64>,
    /// The model stops at this tick.
    pub horizon: u32,
    /// Ticks without hearing from a peer before it is reported dead.
    pub detect_ticks: u32,
    /// Budgets of environment events per run.
    pub max_isolations: u8,
    pub max_crashes: u8,
    pub max_yields: u8,
    /// Deliveries that may each be held back one extra tick.
    pub max_delays: u8,
}

/// What a node heard of another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Heard {
    member: Member,
    at: u32,
    last_revision: Option<u64>,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeState {
    election: Election,
    alive: bool,
    lease: Option<LeaseAdvert>,
    publishing: bool,
    last_revision: Option<u64>,
    last_built: Option<u64>,
    /// Started publishing and has not built yet (the first build takes the margin).
    fresh: bool,
    view: Vec<Option<Heard>>,
    /// Since when this node has been on a side without a strict majority.
    minority_since: Option<u32>,
    /// Nodes the Tor witness has reported dead to this node.
    witnessed: BTreeSet<String>,
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub tick: u32,
    pub nodes: Vec<NodeState>,
    /// Partition side of each node: two nodes are linked when on the same side.
    side: Vec<u8>,
    isolations: u8,
    crashes: u8,
    yields: u8,
    delays: u8,
    /// Highest revision time published so far.
    max_revision: Option<u64>,
    /// A publication did not go above every earlier one.
    pub went_back: bool,
    /// A node published while cut off from a majority for longer than one lease.
    pub minority_published: bool,
    /// Tick of the last environment event.
    changed_at: u32,
}

/// A transition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// One second passes; `delay` holds back the delivery from `.0` to `.1` this tick.
    Tick { delay: Option<(u8, u8)> },
    /// Cut one node off from all the others.
    Isolate(u8),
    /// Heal every cut.
    Heal,
    /// A node dies for good.
    Crash(u8),
    /// The holder gives its lease up.
    Yield(u8),
    /// The Tor witness tells node `.0` that crashed node `.1` is dead (a correct
    /// witness: it never reports a node that is only cut off; any delay after the crash).
    Witness(u8, u8),
}

fn now(tick: u32) -> Millis {
    Millis(u64::from(tick) * 1_000)
}

impl ElectionModel {
    /// The default bounded model: 3 nodes with clocks 2 s fast, 2 s slow and right, and
    /// `cluster_size` configured (without it, a node cut off before it ever heard of the
    /// others is a majority of one: the checker finds that at once).
    pub fn new(horizon: u32) -> ElectionModel {
        ElectionModel {
            cfg: ElectionConfig {
                cluster_size: 3,
                ..ElectionConfig::majority()
            },
            clock_offsets: vec![2, -2, 0],
            horizon,
            detect_ticks: 2,
            max_isolations: 1,
            max_crashes: 0,
            max_yields: 0,
            max_delays: 0,
        }
    }

    fn n(&self) -> usize {
        self.clock_offsets.len()
    }

    /// How long a stable connected majority may go without a publisher: settle, the
    /// old lease plus the guard, one candidate step per better-ranked node that is gone,
    /// failure detection, and a tick each for gossip and evaluation.
    pub fn liveness_bound(&self) -> u32 {
        let c = &self.cfg;
        let n = u32::try_from(self.n()).unwrap_or(u32::MAX);
        let secs = c.settle + c.lease + c.guard() + c.candidate_step * n.saturating_sub(1);
        u32::try_from(secs.as_secs()).unwrap_or(u32::MAX) + self.detect_ticks + 2
    }

    fn linked(s: &State, a: usize, b: usize) -> bool {
        s.side[a] == s.side[b]
    }

    /// Whether node `i` is on a side with a strict majority of the cluster, alive. In
    /// witness mode the cluster no longer counts the crashed nodes every live node has
    /// been told about by the witness.
    fn in_majority(&self, s: &State, i: usize) -> bool {
        let with = (0..self.n())
            .filter(|&j| s.nodes[j].alive && Self::linked(s, i, j))
            .count();
        with * 2 > self.n() - self.gone(s)
    }

    /// Witness mode: crashed nodes that every live node knows dead.
    fn gone(&self, s: &State) -> usize {
        if self.cfg.quorum != QuorumMode::Witness {
            return 0;
        }
        (0..self.n())
            .filter(|&j| {
                !s.nodes[j].alive
                    && s.nodes
                        .iter()
                        .filter(|n| n.alive)
                        .all(|n| n.witnessed.contains(&format!("n{j}")))
            })
            .count()
    }

    /// Node `i` as heard at tick `t` (its heartbeat is the tick: it advances while heard).
    fn member(i: usize, node: &NodeState, t: u32) -> Member {
        Member {
            id: format!("n{i}"),
            priority: u32::try_from(i).unwrap_or(u32::MAX),
            eligible: true,
            live: true,
            heartbeat: Some(u64::from(t)),
            lease: node.lease.clone(),
        }
    }

    fn tick(&self, last: &State, delay: Option<(u8, u8)>) -> State {
        let mut s = last.clone();
        s.tick += 1;
        if delay.is_some() {
            s.delays += 1;
        }
        let t = s.tick;
        for i in 0..self.n() {
            if !s.nodes[i].alive {
                continue;
            }
            for j in 0..self.n() {
                if j == i {
                    continue;
                }
                let held = delay == Some((j as u8, i as u8));
                if last.nodes[j].alive && Self::linked(&s, i, j) && !held {
                    s.nodes[i].view[j] = Some(Heard {
                        member: Self::member(j, &last.nodes[j], t),
                        at: t,
                        last_revision: last.nodes[j].last_revision,
                    });
                } else if let Some(h) = &mut s.nodes[i].view[j] {
                    h.member.live = t - h.at < self.detect_ticks;
                }
            }
            let view: Vec<Member> = s.nodes[i]
                .view
                .iter()
                .flatten()
                .map(|h| h.member.clone())
                .collect();
            let actions = s.nodes[i].election.handle(now(t), Input::Membership(view));
            apply(&mut s.nodes[i], actions);
            self.publish(&mut s, i);
        }
        for i in 0..self.n() {
            let minority = !self.in_majority(&s, i);
            let node = &mut s.nodes[i];
            node.minority_since = match (minority, node.minority_since) {
                (false, _) => None,
                (true, since) => Some(since.unwrap_or(t)),
            };
        }
        s
    }

    fn publish(&self, s: &mut State, i: usize) {
        let t = s.tick;
        let node = &s.nodes[i];
        if !node.publishing || !node.election.may_publish(now(t)) {
            return;
        }
        let clock =
            u64::try_from((i64::from(t) + self.clock_offsets[i]).max(0)).unwrap_or(0) + EPOCH_SECS;
        if node.last_built.is_some_and(|b| clock <= b) {
            return;
        }
        let seen = node
            .view
            .iter()
            .flatten()
            .filter_map(|h| h.last_revision)
            .chain(node.last_revision)
            .max();
        // The node code's rule: the first build takes the margin when an eligible
        // member is reported dead (all are eligible here).
        let a_holder_died = node.view.iter().flatten().any(|h| !h.member.live);
        let base = if node.fresh && a_holder_died {
            clock + self.cfg.takeover_margin().as_secs()
        } else {
            clock
        };
        let revision = revision_secs(base, seen);
        let lease_ticks = u32::try_from(self.cfg.lease.as_secs()).unwrap_or(u32::MAX);
        let cut_off_too_long = node.minority_since.is_some_and(|m| t > m + lease_ticks);
        if s.max_revision.is_some_and(|m| revision <= m) {
            s.went_back = true;
        }
        if cut_off_too_long {
            s.minority_published = true;
        }
        s.max_revision = Some(s.max_revision.map_or(revision, |m| m.max(revision)));
        let node = &mut s.nodes[i];
        node.last_built = Some(clock);
        node.fresh = false;
        node.last_revision = Some(revision);
    }

    /// Nodes whose lease runs at this tick.
    pub fn holders(s: &State) -> usize {
        s.nodes
            .iter()
            .filter(|n| n.alive && n.election.may_publish(now(s.tick)))
            .count()
    }

    /// A stable connected majority (with an eligible node: all are) has waited longer
    /// than the bound without a publisher.
    fn starved(&self, s: &State) -> bool {
        let majority = (0..self.n()).any(|i| s.nodes[i].alive && self.in_majority(s, i));
        majority && s.tick > s.changed_at + self.liveness_bound() && Self::holders(s) == 0
    }
}

fn apply(node: &mut NodeState, actions: Vec<Action>) {
    for action in actions {
        match action {
            Action::StartPublishing => {
                node.publishing = true;
                node.fresh = true;
            }
            Action::StopPublishing => node.publishing = false,
            Action::AdvertiseLease(l) => node.lease = Some(l),
            Action::WithdrawLease => node.lease = None,
        }
    }
}

impl Model for ElectionModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let n = self.n();
        let nodes = (0..n)
            .map(|i| {
                let id = format!("n{i}");
                let priority = u32::try_from(i).unwrap_or(u32::MAX);
                // Invariant: the model's configurations are valid (the tests build them
                // from the defaults).
                let election = Election::new(id, priority, true, 1, self.cfg.clone())
                    .expect("the model's configuration is valid");
                NodeState {
                    election,
                    alive: true,
                    lease: None,
                    publishing: false,
                    last_revision: None,
                    last_built: None,
                    fresh: false,
                    view: vec![None; n],
                    minority_since: None,
                    witnessed: BTreeSet::new(),
                }
            })
            .collect();
        vec![State {
            tick: 0,
            nodes,
            side: vec![0; n],
            isolations: 0,
            crashes: 0,
            yields: 0,
            delays: 0,
            max_revision: None,
            went_back: false,
            minority_published: false,
            changed_at: 0,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Step>) {
        if s.tick >= self.horizon {
            return;
        }
        actions.push(Step::Tick { delay: None });
        let n = self.n();
        if s.delays < self.max_delays {
            for a in 0..n {
                for b in 0..n {
                    if a != b && Self::linked(s, a, b) && s.nodes[a].alive && s.nodes[b].alive {
                        actions.push(Step::Tick {
                            delay: Some((a as u8, b as u8)),
                        });
                    }
                }
            }
        }
        let cut = s.side.iter().any(|&x| x != 0);
        if cut {
            actions.push(Step::Heal);
        } else if s.isolations < self.max_isolations {
            actions.extend((0..n).map(|i| Step::Isolate(i as u8)));
        }
        if s.crashes < self.max_crashes {
            actions.extend(
                (0..n)
                    .filter(|&i| s.nodes[i].alive)
                    .map(|i| Step::Crash(i as u8)),
            );
        }
        if self.cfg.quorum == QuorumMode::Witness {
            for dead in (0..n).filter(|&j| !s.nodes[j].alive) {
                for to in (0..n).filter(|&i| s.nodes[i].alive) {
                    if !s.nodes[to].witnessed.contains(&format!("n{dead}")) {
                        actions.push(Step::Witness(to as u8, dead as u8));
                    }
                }
            }
        }
        if s.yields < self.max_yields {
            actions.extend(
                (0..n)
                    .filter(|&i| s.nodes[i].alive && s.nodes[i].publishing)
                    .map(|i| Step::Yield(i as u8)),
            );
        }
    }

    fn next_state(&self, last: &State, step: Step) -> Option<State> {
        let mut s = match step {
            Step::Tick { delay } => return Some(self.tick(last, delay)),
            _ => last.clone(),
        };
        s.changed_at = s.tick;
        match step {
            Step::Tick { .. } => {}
            Step::Isolate(i) => {
                s.side[usize::from(i)] = 1;
                s.isolations += 1;
            }
            Step::Heal => s.side.iter_mut().for_each(|x| *x = 0),
            Step::Crash(i) => {
                let node = &mut s.nodes[usize::from(i)];
                node.alive = false;
                node.publishing = false;
                s.crashes += 1;
            }
            Step::Witness(to, dead) => {
                let node = &mut s.nodes[usize::from(to)];
                node.witnessed.insert(format!("n{dead}"));
                let input = Input::Witness(node.witnessed.clone());
                let actions = node.election.handle(now(s.tick), input);
                apply(node, actions);
            }
            Step::Yield(i) => {
                let node = &mut s.nodes[usize::from(i)];
                let actions = node.election.handle(now(s.tick), Input::Yield);
                apply(node, actions);
                s.yields += 1;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("never two running leases", |_, s: &State| {
                ElectionModel::holders(s) <= 1
            }),
            Property::always("a cut-off minority never publishes", |_, s: &State| {
                !s.minority_published
            }),
            Property::always("revision times never go backwards", |_, s: &State| {
                !s.went_back
            }),
            Property::always(
                "a connected majority has a publisher within the bound",
                |m: &ElectionModel, s: &State| !m.starved(s),
            ),
        ];
        if self.cfg.quorum == QuorumMode::Witness && self.max_crashes >= 2 {
            // Not vacuous: a lone survivor of two crashes publishes.
            properties.push(Property::sometimes(
                "a lone survivor publishes",
                |_, s: &State| {
                    s.nodes.iter().filter(|n| n.alive).count() == 1
                        && ElectionModel::holders(s) == 1
                },
            ));
        }
        if self.max_isolations + self.max_crashes + self.max_yields > 0 {
            // Not vacuous: some run hands the lease over.
            properties.push(Property::sometimes("the lease moves", |_, s: &State| {
                s.nodes.iter().filter(|n| n.last_revision.is_some()).count() >= 2
            }));
        }
        properties
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.tick <= self.horizon
    }
}
