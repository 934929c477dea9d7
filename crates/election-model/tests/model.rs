//! Model checks of the publisher election (`docs/ELECTION.md`). Each test explores every
//! reachable state of a bounded model and fails with a counterexample path when a
//! property breaks.

use std::time::Instant;

use rustbalance_cluster::{ElectionConfig, QuorumMode};
use rustbalance_election_model::ElectionModel;
use stateright::{Checker, Model};

/// A horizon (seconds) from the environment, for longer runs than the suite's
/// (`ELECTION_MODEL_HORIZON=34 cargo test --release -p rustbalance-election-model`).
fn horizon(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the checker to completion; returns the number of unique states.
fn check(name: &str, model: ElectionModel) -> usize {
    let started = Instant::now();
    let checker = model.checker().spawn_bfs().join();
    eprintln!(
        "{name}: {} states generated, {} unique, max depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    checker.assert_properties();
    checker.unique_state_count()
}

#[test]
fn a_partition_and_a_heal_at_any_time() {
    let states = check("isolate + heal", ElectionModel::new(40));
    assert!(states > 1_000, "{states}");
}

/// The failure detector takes far longer than `detection` to report a cut-off peer (the
/// lab measured ~30 s for phi accrual): safety must rest on heartbeats, not on `live`
/// (rule 5 counts a member only while its heartbeat advanced within `detection`). Without
/// that rule this model finds two publishers at once.
#[test]
fn a_partition_with_a_slow_failure_detector() {
    let model = ElectionModel {
        detect_ticks: 30,
        ..ElectionModel::new(30)
    };
    check("isolate + heal, detector 30 s", model);
}

#[test]
fn a_crash_and_a_yield_at_any_time() {
    let model = ElectionModel {
        max_isolations: 0,
        max_crashes: 1,
        max_yields: 1,
        ..ElectionModel::new(36)
    };
    check("crash + yield", model);
}

#[test]
fn delayed_gossip_while_the_lease_moves() {
    let model = ElectionModel {
        max_isolations: 0,
        max_yields: 1,
        max_delays: 1,
        ..ElectionModel::new(24)
    };
    check("yield + 1 delayed delivery", model);
}

#[test]
fn gossip_held_back_two_seconds_while_the_lease_moves() {
    let model = ElectionModel {
        max_isolations: 0,
        max_yields: 1,
        max_delays: 2,
        ..ElectionModel::new(20)
    };
    check("yield + 2 delayed deliveries", model);
}

#[test]
fn a_partition_a_crash_and_a_yield_together() {
    let model = ElectionModel {
        max_crashes: 1,
        max_yields: 1,
        ..ElectionModel::new(horizon("ELECTION_MODEL_HORIZON", 20))
    };
    check("isolate + heal + crash + yield", model);
}

/// The checker finds real bugs: with takeover on a holder's detected death (the old
/// default), a cut-off holder and its successor both hold running leases.
#[test]
fn takeover_on_death_overlaps_leases_under_a_partition() {
    let model = ElectionModel {
        cfg: ElectionConfig {
            quorum: QuorumMode::Live,
            ..ElectionModel::new(0).cfg
        },
        ..ElectionModel::new(20)
    };
    let checker = model.checker().spawn_bfs().join();
    let path = checker
        .discovery("never two running leases")
        .expect("the checker must find the overlap");
    eprintln!("counterexample: {:?}", path.into_actions());
}

/// Without `cluster.size`, a node cut off before it heard of anybody is a majority of one.
#[test]
fn without_a_configured_size_a_node_cut_off_from_the_start_publishes() {
    let model = ElectionModel {
        cfg: ElectionConfig::majority(),
        ..ElectionModel::new(12)
    };
    let checker = model.checker().spawn_bfs().join();
    let path = checker
        .discovery("a cut-off minority never publishes")
        .expect("the checker must find the lone node");
    eprintln!("counterexample: {:?}", path.into_actions());
}

/// `cluster.quorum = "live"` (the default): no protection against partitions, so no
/// isolation here; crashes (a dead holder loses its lease at once), yields and gossip
/// held back. Never two running leases and revision times never go back: the publish
/// delay (one candidate step) is what keeps two simultaneous acquirers apart.
#[test]
fn live_mode_crash_yield_and_delayed_gossip() {
    let model = ElectionModel {
        cfg: ElectionConfig {
            quorum: QuorumMode::Live,
            ..ElectionModel::new(0).cfg
        },
        max_isolations: 0,
        max_crashes: 1,
        max_yields: 1,
        max_delays: 1,
        ..ElectionModel::new(horizon("ELECTION_MODEL_HORIZON", 20))
    };
    check("live: crash + yield + 1 delayed delivery", model);
}
