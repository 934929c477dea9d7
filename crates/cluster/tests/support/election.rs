//! The election scenario harness, on fake time.
//!
//! It runs one pure [`Election`] per node and plays gossip itself: every 100 ms each live
//! node sees the state of the nodes it has a link to (as of the previous step, i.e. one
//! gossip round late), and a peer it has not heard from for one second is reported dead
//! (a stand-in for the phi-accrual detector). A node may be hostile: it runs no honest
//! election and gossips a forged lease. When a revision rule is set, every publishing
//! node publishes once per simulated second of its own clock, and every publication is
//! recorded with the revision time it used.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use rustbalance_cluster::{Action, Election, ElectionConfig, Input, LeaseAdvert, Member, Millis};

pub const STEP: Duration = Duration::from_millis(100);
pub const DETECT: Duration = Duration::from_secs(1);

/// What a node gossips, as another node last heard it.
#[derive(Clone)]
pub struct Heard {
    pub member: Member,
    pub at: Millis,
    pub last_revision: Option<u64>,
}

pub struct Node {
    pub id: String,
    pub priority: u32,
    pub eligible: bool,
    pub election: Election,
    pub alive: bool,
    pub publishing: bool,
    pub lease: Option<LeaseAdvert>,
    /// A hostile node gossips this instead of its own lease.
    pub forged: Option<LeaseAdvert>,
    pub incarnation: u64,
    /// This node's wall clock minus the true time, in ms.
    pub clock_offset_ms: i64,
    /// The latest revision time this node published with (gossiped).
    pub last_revision: Option<u64>,
    /// Its clock's second at its latest publication.
    pub last_built: Option<u64>,
    /// What this node knows of every other node.
    pub known: Vec<Option<Heard>>,
}

/// One publication: (node, revision time, true time).
pub type Publication = (usize, u64, Millis);

/// How a publisher picks its revision time from its clock (Unix-like seconds) and the
/// latest revision time it has seen.
pub type RevisionRule = fn(u64, Option<u64>) -> u64;

pub struct Cluster {
    pub cfg: ElectionConfig,
    pub nodes: Vec<Node>,
    pub now: Millis,
    pub cut: BTreeSet<(usize, usize)>,
    /// Largest number of simultaneous publishers seen since the last `reset_watch`.
    pub max_publishers: usize,
    pub revision: Option<RevisionRule>,
    pub publications: Vec<Publication>,
}

/// True time 0 in the simulated wall clock's seconds (any value well above the offsets).
const EPOCH_SECS: u64 = 1_000_000;

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, ElectionConfig::majority())
    }

    pub fn start_with(n: usize, cfg: ElectionConfig) -> Cluster {
        let mut cluster = Cluster {
            cfg,
            nodes: Vec::new(),
            now: Millis(0),
            cut: BTreeSet::new(),
            max_publishers: 0,
            revision: None,
            publications: Vec::new(),
        };
        for i in 0..n {
            let node = cluster.fresh_node(i, 1, n);
            cluster.nodes.push(node);
        }
        cluster
    }

    fn fresh_node(&self, i: usize, incarnation: u64, n: usize) -> Node {
        let id = format!("n{i}");
        let priority = u32::try_from(i).unwrap();
        Node {
            election: Election::new(id.clone(), priority, true, incarnation, self.cfg.clone())
                .unwrap(),
            id,
            priority,
            eligible: true,
            alive: true,
            publishing: false,
            lease: None,
            forged: None,
            incarnation,
            clock_offset_ms: 0,
            last_revision: None,
            last_built: None,
            known: vec![None; n],
        }
    }

    /// Adds a hostile member `id` (not eligible) that gossips `forged` as its lease;
    /// returns its index.
    pub fn add_hostile(&mut self, id: &str, priority: u32, forged: LeaseAdvert) -> usize {
        let n = self.nodes.len() + 1;
        for node in &mut self.nodes {
            node.known.resize(n, None);
        }
        self.nodes.push(Node {
            election: Election::new(id, priority, false, 1, self.cfg.clone()).unwrap(),
            id: id.into(),
            priority,
            eligible: false,
            alive: true,
            publishing: false,
            lease: None,
            forged: Some(forged),
            incarnation: 1,
            clock_offset_ms: 0,
            last_revision: None,
            last_built: None,
            known: vec![None; n],
        });
        n - 1
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    pub fn step(&mut self) {
        self.now = self.now.plus(STEP);
        let now = self.now;
        let n = self.nodes.len();
        // Gossip: what everyone advertised at the end of the previous step.
        let snapshot: Vec<(bool, Heard)> = self
            .nodes
            .iter()
            .map(|node| {
                let member = Member {
                    id: node.id.clone(),
                    priority: node.priority,
                    eligible: node.eligible,
                    live: true,
                    heartbeat: None,
                    lease: node.forged.clone().or_else(|| node.lease.clone()),
                };
                let heard = Heard {
                    member,
                    at: now,
                    last_revision: node.last_revision,
                };
                (node.alive, heard)
            })
            .collect();
        for i in 0..n {
            if !self.nodes[i].alive {
                continue;
            }
            for (j, (alive, heard)) in snapshot.iter().enumerate() {
                if j == i {
                    continue;
                }
                if *alive && self.linked(i, j) {
                    self.nodes[i].known[j] = Some(heard.clone());
                } else if let Some(h) = &mut self.nodes[i].known[j] {
                    h.member.live = now.since(h.at) < DETECT;
                }
            }
            let view: Vec<Member> = self.nodes[i]
                .known
                .iter()
                .flatten()
                .map(|h| h.member.clone())
                .collect();
            let actions = self.nodes[i].election.handle(now, Input::Membership(view));
            self.apply(i, actions);
            self.publish(i);
        }
        self.max_publishers = self.max_publishers.max(self.publishers().len());
    }

    /// With a revision rule, a publishing node publishes at each new second of its clock
    /// (the publisher never builds twice in one second).
    fn publish(&mut self, i: usize) {
        let Some(rule) = self.revision else { return };
        let now = self.now;
        let node = &mut self.nodes[i];
        if !node.publishing {
            return;
        }
        let clock_ms = i128::from(now.0) + i128::from(node.clock_offset_ms);
        let clock_secs = EPOCH_SECS + u64::try_from(clock_ms.max(0) / 1_000).unwrap();
        if node.last_built.is_some_and(|b| clock_secs <= b) {
            return;
        }
        let seen = node
            .known
            .iter()
            .flatten()
            .filter_map(|h| h.last_revision)
            .chain(node.last_revision)
            .max();
        let revision = rule(clock_secs, seen);
        node.last_built = Some(clock_secs);
        node.last_revision = Some(revision);
        self.publications.push((i, revision, now));
    }

    /// The first publication whose revision time is not above every earlier one.
    pub fn revision_went_back(&self) -> Option<(Publication, u64)> {
        let mut max: Option<u64> = None;
        for p in &self.publications {
            if let Some(m) = max.filter(|m| p.1 <= *m) {
                return Some((*p, m));
            }
            max = Some(max.map_or(p.1, |m| m.max(p.1)));
        }
        None
    }

    pub fn apply(&mut self, i: usize, actions: Vec<Action>) {
        let node = &mut self.nodes[i];
        for action in actions {
            match action {
                Action::StartPublishing => node.publishing = true,
                Action::StopPublishing => node.publishing = false,
                Action::AdvertiseLease(lease) => node.lease = Some(lease),
                Action::WithdrawLease => node.lease = None,
            }
        }
        assert_eq!(node.publishing, node.election.is_publishing());
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now.plus(d);
        while self.now < end {
            self.step();
        }
    }

    /// Runs until `done` holds; returns how long that took, or panics after `limit`.
    pub fn run_until(&mut self, limit: Duration, done: impl Fn(&Cluster) -> bool) -> Duration {
        let start = self.now;
        while !done(self) {
            assert!(
                self.now.since(start) <= limit,
                "condition not reached within {limit:?}; publishers: {:?}",
                self.publishers()
            );
            self.step();
        }
        self.now.since(start)
    }

    pub fn publishers(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].publishing)
            .collect()
    }

    /// The single publisher; panics on split brain.
    pub fn publisher(&self) -> Option<usize> {
        let p = self.publishers();
        assert!(p.len() <= 1, "more than one publisher: {p:?}");
        p.first().copied()
    }

    pub fn reset_watch(&mut self) {
        self.max_publishers = self.publishers().len();
    }

    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].publishing = false;
    }

    pub fn restart(&mut self, i: usize) {
        let incarnation = self.nodes[i].incarnation + 1;
        let n = self.nodes.len();
        let offset = self.nodes[i].clock_offset_ms;
        self.nodes[i] = self.fresh_node(i, incarnation, n);
        self.nodes[i].clock_offset_ms = offset;
    }

    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x.min(y), x.max(y)));
            }
        }
    }

    pub fn isolate(&mut self, i: usize) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&j| j != i).collect();
        self.partition(&[i], &others);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// The Tor witness tells every live node that `dead` are dead (`quorum = "witness"`).
    pub fn witness(&mut self, dead: &[usize]) {
        let ids: BTreeSet<String> = dead.iter().map(|&d| self.nodes[d].id.clone()).collect();
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].alive {
                let actions = self.nodes[i]
                    .election
                    .handle(now, Input::Witness(ids.clone()));
                self.apply(i, actions);
            }
        }
    }

    pub fn yield_lease(&mut self, i: usize) {
        let now = self.now;
        let actions = self.nodes[i].election.handle(now, Input::Yield);
        self.apply(i, actions);
    }
}
