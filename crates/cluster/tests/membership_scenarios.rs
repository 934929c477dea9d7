//! Membership + election scenarios over the in-process network, on tokio's paused clock.
//!
//! Every node runs the real stack: chitchat gossip through the authenticated transport
//! over [`SimNet`], and the election driver. Gossip every 50 ms; lease 1.5 s.
//!
//! The runtime is single-threaded with its clock paused (`start_paused`): time moves only
//! when every task waits, straight to the next timer. Gossip rounds, the failure detector
//! (chitchat reads tokio's clock) and the election driver therefore see the same timeline
//! on every run, however busy the machine is, and the time bounds below are bounds on
//! that virtual timeline (protocol timing), not on the wall clock. A scenario takes a
//! fraction of a second of real time. (The datagram timestamps checked against the replay
//! window come from the system clock, which keeps running: they all fall well within it.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustbalance_cluster::simnet::Recorded;
use rustbalance_cluster::{
    keys, ClusterSecret, Election, ElectionConfig, Elector, Membership, MembershipConfig, SimNet,
};
use tokio::time::{sleep, Instant};

const SECRET: &str = "test cluster secret, 32 bytes ok";

fn election_config() -> ElectionConfig {
    ElectionConfig {
        renew: Duration::from_millis(500),
        lease: Duration::from_millis(1_500),
        settle: Duration::from_millis(500),
        candidate_step: Duration::from_millis(500),
        detection: Duration::from_millis(500),
        clock_tolerance: Duration::ZERO,
        ..ElectionConfig::majority()
    }
}

struct Node {
    membership: Arc<Membership>,
    elector: Elector,
}

struct Cluster {
    net: SimNet,
    addrs: Vec<SocketAddr>,
    nodes: Vec<Option<Node>>,
    generation: u64,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let mut cluster = Cluster {
            net: SimNet::new(),
            addrs: Vec::new(),
            nodes: Vec::new(),
            generation: 1,
        };
        for i in 0..n {
            let node = cluster.boot(i, "10.0.0.1:0".parse().unwrap(), SECRET).await;
            cluster.addrs.push(node.membership.local_addr());
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    async fn boot(&mut self, i: usize, listen: SocketAddr, secret: &str) -> Node {
        let mut cfg = MembershipConfig::new(format!("n{i}"), listen);
        cfg.gossip_interval = Duration::from_millis(50);
        cfg.seeds = self
            .addrs
            .iter()
            .copied()
            .filter(|a| *a != listen)
            .collect();
        cfg.generation = self.generation;
        self.generation += 1;
        let initial = vec![
            (keys::PRIORITY.to_owned(), i.to_string()),
            (keys::ELIGIBLE.to_owned(), "true".to_owned()),
        ];
        let secret = ClusterSecret::new(secret.as_bytes().to_vec()).unwrap();
        let membership = Arc::new(
            Membership::start(cfg, &secret, initial, &self.net)
                .await
                .unwrap(),
        );
        let election = Election::new(
            format!("n{i}"),
            i as u32,
            true,
            self.generation,
            election_config(),
        )
        .unwrap();
        let elector = Elector::spawn(membership.clone(), election, Duration::from_millis(50));
        Node {
            membership,
            elector,
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    async fn kill(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node is running");
        node.elector.stop().await;
        let membership = Arc::try_unwrap(node.membership)
            .ok()
            .expect("only the harness holds the membership");
        membership.shutdown().await.unwrap();
    }

    async fn restart(&mut self, i: usize) {
        let node = self.boot(i, self.addrs[i], SECRET).await;
        self.nodes[i] = Some(node);
    }

    fn partition(&self, left: &[usize], right: &[usize]) {
        let l: Vec<_> = left.iter().map(|&i| self.addrs[i]).collect();
        let r: Vec<_> = right.iter().map(|&i| self.addrs[i]).collect();
        self.net.partition(&l, &r);
    }

    fn isolate(&self, i: usize) {
        let others: Vec<usize> = (0..self.addrs.len()).filter(|&j| j != i).collect();
        self.partition(&[i], &others);
    }

    fn heal(&self) {
        self.net.heal();
    }

    fn publishers(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .as_ref()
                    .is_some_and(|n| n.elector.is_publishing())
            })
            .collect()
    }

    fn publisher(&self) -> Option<usize> {
        let p = self.publishers();
        assert!(p.len() <= 1, "more than one publisher: {p:?}");
        p.first().copied()
    }

    /// Live node ids as seen by node `i`.
    async fn seen_by(&self, i: usize) -> Vec<String> {
        self.node(i)
            .membership
            .live_nodes()
            .await
            .into_iter()
            .map(|v| v.node_id)
            .collect()
    }

    async fn everyone_sees(&self, ids: &[&str]) -> bool {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() && self.seen_by(i).await != ids {
                return false;
            }
        }
        true
    }
}

/// Polls `done` every 20 ms (virtual); returns the virtual time it took, and prints it,
/// or panics after `limit` of virtual time.
macro_rules! within {
    ($limit:expr, $done:expr) => {{
        let start = Instant::now();
        loop {
            if $done {
                let took = start.elapsed();
                let what = stringify!($done).split_whitespace().collect::<Vec<_>>();
                let test = std::thread::current().name().unwrap_or("?").to_owned();
                println!("{test}: {took:.1?} (virtual) until {}", what.join(" "));
                break took;
            }
            assert!(
                start.elapsed() < $limit,
                "not reached within {:?}: {}",
                $limit,
                stringify!($done)
            );
            sleep(Duration::from_millis(20)).await;
        }
    }};
}

#[tokio::test(start_paused = true)]
async fn three_nodes_converge_and_elect_one_publisher() {
    let cluster = Cluster::start(3).await;

    let converged = within!(
        Duration::from_secs(3),
        cluster.everyone_sees(&["n0", "n1", "n2"]).await
    );
    let elected = within!(Duration::from_secs(3), cluster.publisher().is_some());

    assert!(converged < Duration::from_secs(1), "{converged:?}");
    assert_eq!(cluster.publisher(), Some(0), "after {elected:?}");
    let lease = within!(Duration::from_secs(2), {
        let views = cluster.node(2).membership.live_nodes().await;
        views[0].lease().is_some()
    });
    assert!(lease < Duration::from_secs(1));
    // Not a wait for an event: the publisher must still be n0 after 2 s (4 renewals).
    sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.publisher(), Some(0));
    assert_eq!(cluster.node(1).membership.counters().dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn state_set_on_one_node_reaches_the_others() {
    let cluster = Cluster::start(3).await;
    let intro = "x".repeat(1_000);
    cluster
        .node(2)
        .membership
        .set(&keys::intro_points("inst0"), &intro)
        .await;

    within!(Duration::from_secs(2), {
        let views = cluster.node(0).membership.live_nodes().await;
        views
            .iter()
            .find(|v| v.node_id == "n2")
            .is_some_and(|v| v.intro_points().any(|(i, p)| i == "inst0" && p == intro))
    });
}

#[tokio::test(start_paused = true)]
async fn a_killed_publisher_is_replaced_within_seconds() {
    let mut cluster = Cluster::start(3).await;
    within!(Duration::from_secs(3), cluster.publisher() == Some(0));

    cluster.kill(0).await;
    let took = within!(Duration::from_secs(8), cluster.publisher() == Some(1));

    // Failure detection (~1 s at this interval), then the dead holder's (shadow) lease
    // plus the guard (1.5 s + 2 s), then n1, first in rank, publishes after the publish
    // delay (0.5 s): docs/ELECTION.md.
    assert!(took < Duration::from_secs(6), "{took:?}");
    within!(
        Duration::from_secs(3),
        cluster.everyone_sees(&["n1", "n2"]).await
    );
}

#[tokio::test(start_paused = true)]
async fn killing_a_non_publisher_leaves_the_publisher_alone() {
    let mut cluster = Cluster::start(3).await;
    within!(Duration::from_secs(3), cluster.publisher() == Some(0));

    cluster.kill(2).await;
    let detected = within!(
        Duration::from_secs(4),
        cluster.everyone_sees(&["n0", "n1"]).await
    );

    assert!(detected < Duration::from_secs(3), "{detected:?}");
    assert_eq!(cluster.publisher(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_partitioned_publisher_stops_and_healing_leaves_one_publisher() {
    let cluster = Cluster::start(3).await;
    within!(Duration::from_secs(3), cluster.publisher() == Some(0));

    cluster.isolate(0);
    let stopped = within!(
        Duration::from_secs(4),
        !cluster.node(0).elector.is_publishing()
    );
    // No majority: no renewal; it stops when its lease (1.5 s) ends.
    assert!(stopped <= Duration::from_millis(2_200), "{stopped:?}");
    within!(Duration::from_secs(4), cluster.publishers() == vec![1]);

    cluster.heal();
    within!(
        Duration::from_secs(3),
        cluster.everyone_sees(&["n0", "n1", "n2"]).await
    );
    // Not a wait for an event: n1 must still hold the lease 2 s after the heal.
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.publisher(),
        Some(1),
        "n0 does not steal a valid lease"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_rejoins() {
    let mut cluster = Cluster::start(3).await;
    within!(
        Duration::from_secs(3),
        cluster.everyone_sees(&["n0", "n1", "n2"]).await
    );

    cluster.kill(1).await;
    within!(
        Duration::from_secs(4),
        cluster.everyone_sees(&["n0", "n2"]).await
    );
    cluster.restart(1).await;

    let rejoined = within!(
        Duration::from_secs(3),
        cluster.everyone_sees(&["n0", "n1", "n2"]).await
    );
    assert!(rejoined < Duration::from_secs(2), "{rejoined:?}");
    // n0 publishes. Not checked at one instant: on the 2-core CI machine (run of
    // 2026-11-22 13:15, two scenario clusters at a time) n0 once missed a renewal right
    // here and was between leases. As the best-ranked node it takes the lease back at
    // once; had the rejoined n1 taken it, n1 would keep it and this would fail.
    within!(Duration::from_secs(3), cluster.publisher() == Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_node_with_another_secret_is_never_heard() {
    let mut cluster = Cluster::start(2).await;
    let outsider = cluster
        .boot(
            9,
            "10.0.0.9:0".parse().unwrap(),
            "some other secret, also long",
        )
        .await;

    // Not a wait for an event: one second (20 gossip rounds) in which the outsider must
    // stay unheard.
    sleep(Duration::from_secs(1)).await;

    assert_eq!(cluster.seen_by(0).await, vec!["n0", "n1"]);
    assert_eq!(
        outsider.membership.live_nodes().await.len(),
        1,
        "only itself"
    );
    let c = cluster.node(0).membership.counters();
    assert!(c.dropped_bad_mac > 0, "{c:?}");
    assert_eq!(outsider.membership.counters().datagrams_accepted, 0);
}

#[tokio::test(start_paused = true)]
async fn tampered_replayed_and_junk_datagrams_are_dropped_and_counted() {
    let cluster = Cluster::start(2).await;
    within!(
        Duration::from_secs(3),
        cluster.everyone_sees(&["n0", "n1"]).await
    );
    cluster.net.record();
    let to_n1 = || -> Vec<Recorded> {
        cluster
            .net
            .recorded()
            .into_iter()
            .filter(|r| r.from == cluster.addrs[0] && r.to == cluster.addrs[1])
            .collect()
    };
    within!(Duration::from_secs(1), !to_n1().is_empty());
    let sample = to_n1().last().expect("n0 gossiped to n1").clone();
    let before = cluster.node(1).membership.counters();

    // Replayed: the same bytes again.
    cluster
        .net
        .inject(sample.from, sample.to, sample.bytes.clone());
    // Tampered: one bit flipped in the payload.
    let mut tampered = sample.bytes.clone();
    tampered[40] ^= 0x80;
    cluster.net.inject(sample.from, sample.to, tampered);
    // Unauthenticated junk.
    cluster
        .net
        .inject(sample.from, sample.to, b"hello there".to_vec());
    // Wait until n1 has looked at all three; each must then have been counted once.
    within!(Duration::from_secs(1), {
        let c = cluster.node(1).membership.counters();
        c.dropped_replayed > before.dropped_replayed
            && c.dropped_bad_mac > before.dropped_bad_mac
            && c.dropped_malformed > before.dropped_malformed
    });

    let after = cluster.node(1).membership.counters();
    assert_eq!(
        after.dropped_replayed - before.dropped_replayed,
        1,
        "{after:?}"
    );
    assert_eq!(
        after.dropped_bad_mac - before.dropped_bad_mac,
        1,
        "{after:?}"
    );
    assert_eq!(
        after.dropped_malformed - before.dropped_malformed,
        1,
        "{after:?}"
    );
    assert!(cluster.everyone_sees(&["n0", "n1"]).await, "gossip goes on");
}
