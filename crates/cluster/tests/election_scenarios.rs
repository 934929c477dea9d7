//! Election scenarios on fake time.
//!
//! The harness runs one pure [`Election`] per node and plays gossip itself: every 100 ms
//! each live node sees the state of the nodes it has a link to (as of the previous step,
//! i.e. one gossip round late), and a peer it has not heard from for one second is
//! reported dead (a stand-in for the phi-accrual detector).

use std::collections::BTreeSet;
use std::time::Duration;

use rustbalance_cluster::{Action, Election, ElectionConfig, Input, LeaseAdvert, Member, Millis};

const STEP: Duration = Duration::from_millis(100);
const DETECT: Duration = Duration::from_secs(1);

struct Node {
    id: String,
    priority: u32,
    election: Election,
    alive: bool,
    publishing: bool,
    lease: Option<LeaseAdvert>,
    incarnation: u64,
    /// What this node knows of every other node, and when it last heard from it.
    known: Vec<Option<(Member, Millis)>>,
}

struct Cluster {
    cfg: ElectionConfig,
    nodes: Vec<Node>,
    now: Millis,
    cut: BTreeSet<(usize, usize)>,
    /// Largest number of simultaneous publishers seen since the last `reset_watch`.
    max_publishers: usize,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, ElectionConfig::default())
    }

    fn start_with(n: usize, cfg: ElectionConfig) -> Cluster {
        let mut cluster = Cluster {
            cfg,
            nodes: Vec::new(),
            now: Millis(0),
            cut: BTreeSet::new(),
            max_publishers: 0,
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
            alive: true,
            publishing: false,
            lease: None,
            incarnation,
            known: vec![None; n],
        }
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn step(&mut self) {
        self.now = self.now.plus(STEP);
        let now = self.now;
        let n = self.nodes.len();
        // Gossip: what everyone advertised at the end of the previous step.
        let snapshot: Vec<(bool, Member)> = self
            .nodes
            .iter()
            .map(|node| {
                (
                    node.alive,
                    Member {
                        id: node.id.clone(),
                        priority: node.priority,
                        eligible: true,
                        live: true,
                        lease: node.lease.clone(),
                    },
                )
            })
            .collect();
        for i in 0..n {
            if !self.nodes[i].alive {
                continue;
            }
            for (j, (alive, member)) in snapshot.iter().enumerate() {
                if j == i {
                    continue;
                }
                if *alive && self.linked(i, j) {
                    self.nodes[i].known[j] = Some((member.clone(), now));
                } else if let Some((m, heard)) = &mut self.nodes[i].known[j] {
                    m.live = now.since(*heard) < DETECT;
                }
            }
            let view: Vec<Member> = self.nodes[i]
                .known
                .iter()
                .flatten()
                .map(|(m, _)| m.clone())
                .collect();
            let actions = self.nodes[i].election.handle(now, Input::Membership(view));
            self.apply(i, actions);
        }
        self.max_publishers = self.max_publishers.max(self.publishers().len());
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
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

    fn run_for(&mut self, d: Duration) {
        let end = self.now.plus(d);
        while self.now < end {
            self.step();
        }
    }

    /// Runs until `done` holds; returns how long that took, or panics after `limit`.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Cluster) -> bool) -> Duration {
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

    fn publishers(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].publishing)
            .collect()
    }

    /// The single publisher; panics on split brain.
    fn publisher(&self) -> Option<usize> {
        let p = self.publishers();
        assert!(p.len() <= 1, "more than one publisher: {p:?}");
        p.first().copied()
    }

    fn reset_watch(&mut self) {
        self.max_publishers = self.publishers().len();
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].publishing = false;
    }

    fn restart(&mut self, i: usize) {
        let incarnation = self.nodes[i].incarnation + 1;
        let n = self.nodes.len();
        self.nodes[i] = self.fresh_node(i, incarnation, n);
    }

    fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x.min(y), x.max(y)));
            }
        }
    }

    fn isolate(&mut self, i: usize) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&j| j != i).collect();
        self.partition(&[i], &others);
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn yield_lease(&mut self, i: usize) {
        let now = self.now;
        let actions = self.nodes[i].election.handle(now, Input::Yield);
        self.apply(i, actions);
    }
}

fn patient() -> ElectionConfig {
    ElectionConfig {
        takeover_on_holder_death: false,
        ..ElectionConfig::default()
    }
}

#[test]
fn three_nodes_elect_the_best_ranked_one_and_keep_it() {
    let mut cluster = Cluster::start(3);
    let took = cluster.run_until(Duration::from_secs(5), |c| c.publisher().is_some());
    assert_eq!(cluster.publisher(), Some(0));
    assert!(took <= Duration::from_millis(2_100), "{took:?}");
    cluster.reset_watch();
    cluster.run_for(Duration::from_secs(60));
    assert_eq!(cluster.publisher(), Some(0));
    assert_eq!(cluster.max_publishers, 1);
}

#[test]
fn a_killed_publisher_is_replaced_only_after_its_lease_lapses() {
    let mut cluster = Cluster::start_with(3, patient());
    cluster.run_for(Duration::from_secs(5));
    assert_eq!(cluster.publisher(), Some(0));

    cluster.kill(0);
    let took = cluster.run_until(Duration::from_secs(10), |c| c.publisher().is_some());

    assert_eq!(cluster.publisher(), Some(1));
    // The last renewal was at most `renew` before the kill, seen one round later.
    assert!(
        took >= Duration::from_secs(4),
        "took over too early: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(6_300),
        "took over too late: {took:?}"
    );
}

#[test]
fn a_killed_publisher_is_replaced_once_detected_dead_by_default() {
    let mut cluster = Cluster::start(3);
    cluster.run_for(Duration::from_secs(5));

    cluster.kill(0);
    let took = cluster.run_until(Duration::from_secs(10), |c| c.publisher().is_some());

    assert_eq!(cluster.publisher(), Some(1));
    assert!(took <= DETECT + 2 * STEP, "{took:?}");
}

#[test]
fn killing_a_non_publisher_changes_nothing() {
    let mut cluster = Cluster::start(3);
    cluster.run_for(Duration::from_secs(5));
    cluster.reset_watch();

    cluster.kill(2);
    cluster.run_for(Duration::from_secs(30));

    assert_eq!(cluster.publisher(), Some(0));
    assert_eq!(cluster.max_publishers, 1);
}

#[test]
fn a_partitioned_publisher_stops_when_its_lease_ends() {
    let mut cluster = Cluster::start_with(3, patient());
    cluster.run_for(Duration::from_secs(5));
    assert_eq!(cluster.publisher(), Some(0));

    cluster.isolate(0);
    let stopped = cluster.run_until(Duration::from_secs(10), |c| !c.nodes[0].publishing);

    // It cannot renew without a majority, so it stops at the end of its last renewal.
    assert!(stopped <= Duration::from_secs(6), "{stopped:?}");
    // The majority side takes over once it sees the lease lapse, never before it ends.
    cluster.run_until(Duration::from_secs(2), |c| c.nodes[1].publishing);
    assert_eq!(cluster.publishers(), vec![1]);
    cluster.run_for(Duration::from_secs(30));
    assert_eq!(
        cluster.publishers(),
        vec![1],
        "the isolated node stays quiet"
    );
}

#[test]
fn after_healing_the_current_holder_keeps_the_lease() {
    let mut cluster = Cluster::start(3);
    cluster.run_for(Duration::from_secs(5));
    cluster.isolate(0);
    cluster.run_for(Duration::from_secs(10));
    assert_eq!(cluster.publishers(), vec![1]);

    cluster.heal();
    cluster.reset_watch();
    cluster.run_for(Duration::from_secs(30));

    // n0 ranks better but does not steal a valid lease.
    assert_eq!(cluster.publisher(), Some(1));
    assert_eq!(cluster.max_publishers, 1);
}

#[test]
fn an_even_split_publishes_on_both_sides_then_heals_to_one_publisher() {
    let mut cluster = Cluster::start(4);
    cluster.run_for(Duration::from_secs(5));
    assert_eq!(cluster.publisher(), Some(0));

    cluster.partition(&[0, 1], &[2, 3]);
    cluster.run_for(Duration::from_secs(10));
    assert_eq!(cluster.publishers(), vec![0, 2], "harmless split brain");

    cluster.heal();
    let took = cluster.run_until(Duration::from_secs(2), |c| c.publishers().len() == 1);

    assert!(took <= Duration::from_millis(300), "{took:?}");
    assert_eq!(
        cluster.publisher(),
        Some(0),
        "the better-ranked holder wins"
    );
    cluster.reset_watch();
    cluster.run_for(Duration::from_secs(20));
    assert_eq!(cluster.max_publishers, 1);
}

#[test]
fn a_restarted_node_rejoins_as_a_follower() {
    let mut cluster = Cluster::start(3);
    cluster.run_for(Duration::from_secs(5));
    cluster.kill(0);
    cluster.run_for(Duration::from_secs(5));
    assert_eq!(cluster.publisher(), Some(1));

    cluster.restart(0);
    cluster.reset_watch();
    cluster.run_for(Duration::from_secs(30));

    assert_eq!(cluster.publisher(), Some(1));
    assert_eq!(cluster.max_publishers, 1);
    assert!(cluster.nodes[0].alive && !cluster.nodes[0].publishing);
}

#[test]
fn a_yielding_publisher_hands_over_within_one_candidate_step() {
    let mut cluster = Cluster::start(3);
    cluster.run_for(Duration::from_secs(5));

    cluster.yield_lease(0);
    let took = cluster.run_until(Duration::from_secs(5), |c| c.publisher().is_some());

    assert_eq!(cluster.publisher(), Some(1));
    assert!(took <= Duration::from_millis(2_200), "{took:?}");
}

#[test]
fn a_whole_cluster_restart_elects_again() {
    let mut cluster = Cluster::start(3);
    cluster.run_for(Duration::from_secs(5));
    for i in 0..3 {
        cluster.kill(i);
    }
    cluster.run_for(Duration::from_secs(2));
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.run_until(Duration::from_secs(5), |c| c.publisher().is_some());
    assert_eq!(cluster.publisher(), Some(0));
}
