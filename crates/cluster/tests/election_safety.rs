//! Election safety across holders (issue 15): revision times that never go backwards,
//! and a configured cluster size that keeps a node restarted while cut off quiet.
//! Harness: `support/election.rs`.

#[path = "support/election.rs"]
mod harness;

use std::time::Duration;

use harness::{Cluster, RevisionRule};
use rustbalance_cluster::{revision_secs, ElectionConfig};

/// Today's rule before the fix: every publisher builds at its own clock.
fn own_clock(now: u64, _seen: Option<u64>) -> u64 {
    now
}

/// Clocks 2 s slow, 2 s fast and right (each within the tolerance of the median); the
/// lease moves by yields (the slow, best-ranked node takes over from the fast one at
/// once), a kill, and a cut of the holder.
fn hand_overs(rule: RevisionRule) -> Cluster {
    let mut cluster = Cluster::start(3);
    cluster.revision = Some(rule);
    cluster.nodes[0].clock_offset_ms = -2_000;
    cluster.nodes[1].clock_offset_ms = 2_000;
    cluster.run_for(Duration::from_secs(10));
    assert_eq!(cluster.publisher(), Some(0));
    // A hand-over to a faster clock.
    cluster.yield_lease(0);
    cluster.run_until(Duration::from_secs(5), |c| c.publisher() == Some(1));
    cluster.run_for(Duration::from_secs(10));
    // Back to the slow one at once, then it is cut off and the fast one takes over
    // without hearing of its last publications.
    cluster.yield_lease(1);
    cluster.run_until(Duration::from_secs(10), |c| c.publisher() == Some(0));
    cluster.run_for(Duration::from_secs(10));
    cluster.isolate(0);
    cluster.run_until(Duration::from_secs(25), |c| c.publishers() == vec![1]);
    cluster.run_for(Duration::from_secs(10));
    // Heal, kill the holder: the fast clock takes over again; it yields to the right one.
    cluster.heal();
    cluster.run_for(Duration::from_secs(10));
    cluster.kill(1);
    cluster.run_until(Duration::from_secs(25), |c| c.publisher() == Some(0));
    cluster.run_for(Duration::from_secs(10));
    cluster.yield_lease(0);
    cluster.run_until(Duration::from_secs(10), |c| c.publisher() == Some(2));
    cluster.run_for(Duration::from_secs(10));
    cluster
}

#[test]
fn revision_times_never_go_backwards_across_holders() {
    let cluster = hand_overs(revision_secs);
    let holders: std::collections::BTreeSet<usize> =
        cluster.publications.iter().map(|p| p.0).collect();
    assert_eq!(holders.len(), 3, "every node held the lease once");
    assert_eq!(cluster.revision_went_back(), None);
}

#[test]
fn publishers_on_their_own_clocks_do_go_backwards() {
    // The scenario above is not trivially safe: without rule 8 it fails.
    let cluster = hand_overs(own_clock);
    assert!(cluster.revision_went_back().is_some());
}

/// A node restarted while cut off knows nobody: without a configured size it is a
/// majority of one. With `cluster_size` it stays quiet.
fn restarted_while_cut_off(cluster_size: usize) -> bool {
    let cfg = ElectionConfig {
        cluster_size,
        ..ElectionConfig::majority()
    };
    let mut cluster = Cluster::start_with(3, cfg);
    cluster.run_for(Duration::from_secs(5));
    cluster.isolate(0);
    cluster.run_for(Duration::from_secs(10));
    cluster.restart(0);
    let end = cluster.now.plus(Duration::from_secs(600));
    while cluster.now < end {
        cluster.step();
        if cluster.nodes[0].publishing {
            return true;
        }
    }
    false
}

#[test]
fn a_configured_size_keeps_a_node_restarted_while_cut_off_quiet() {
    assert!(!restarted_while_cut_off(3));
    assert!(
        restarted_while_cut_off(1),
        "the scenario must need the setting"
    );
}
