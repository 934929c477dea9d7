//! The lab tests on one shared namespaced lab (real tor everywhere, every
//! node in its own network namespace, gossip over WireGuard; root only),
//! scenarios one after another, each with its own node names
//! (`harness = false`: see `rustbalance_testbed::suite`):
//!
//! * `cut_and_heal_a_publisher` (nodes `cut1`…`cut3`): see `lab_netns/cut_heal.rs`;
//!   once its cluster is up it also runs `lab_netns/ops.rs` (metrics of
//!   deploy/monitoring live, `rustbalance doctor` passing on every node).
//! * `fourth_node_joins_with_only_the_token` (nodes `node1`…`node4`): see
//!   `lab_netns/join.rs`.
//! * `outsiders_learn_nothing_and_one_circuit_cannot_hog` (nodes `probe1`, `probe2`): see
//!   `lab_netns/probe.rs`.
//! * `canary_ejects_a_silent_node` (nodes `can1`…`can3`): see `lab_netns/canary.rs`.
//! * `publisher_tor_dies_and_the_lease_moves` (nodes `tkill1`…`tkill3`): see
//!   `lab_netns/canary_tor_dies.rs`.
//! * `a_hostile_worker_cannot_take_the_address_down` (nodes `hos1`…`hos4`): see
//!   `lab_netns/hostile.rs`. Its hostile member is this binary run again inside a node's
//!   namespace (`--hostile-member`, `lab_netns/hostile_member.rs`).

#[path = "lab_netns/canary.rs"]
mod canary;
#[path = "lab_netns/canary_tor_dies.rs"]
mod canary_tor_dies;
#[path = "lab_netns/cut_heal.rs"]
mod cut_heal;
#[path = "lab_netns/hostile.rs"]
mod hostile;
#[path = "lab_netns/hostile_member.rs"]
mod hostile_member;
#[path = "lab_netns/join.rs"]
mod join;
#[path = "lab_netns/join_helpers.rs"]
mod join_helpers;
#[path = "lab_netns/ops.rs"]
mod ops;
#[path = "lab_netns/probe.rs"]
mod probe;

use rustbalance_lab::{LabOptions, Placement};
use rustbalance_testbed::suite::{run_suite, Scenario};

fn main() -> std::process::ExitCode {
    // The hostile member brings a userspace mesh up: its device process is this binary.
    if let Some(code) = rustbalance_mesh::device_process::main_if_requested() {
        return code;
    }
    if let Some((config, claim)) = hostile_member::requested() {
        return hostile_member::main(&config, &claim);
    }
    let options = LabOptions {
        placement: Placement::namespace(),
        ..Default::default()
    };
    run_suite(
        "lab_netns",
        options,
        &[
            Scenario {
                name: "cut_and_heal_a_publisher",
                run: |lab| Box::pin(cut_heal::cut_and_heal_a_publisher(lab)),
            },
            Scenario {
                name: "fourth_node_joins_with_only_the_token",
                run: |lab| Box::pin(join::fourth_node_joins_with_only_the_token(lab)),
            },
            Scenario {
                name: "outsiders_learn_nothing_and_one_circuit_cannot_hog",
                run: |lab| {
                    Box::pin(probe::outsiders_learn_nothing_and_one_circuit_cannot_hog(
                        lab,
                    ))
                },
            },
            Scenario {
                name: "canary_ejects_a_silent_node",
                run: |lab| Box::pin(canary::canary_ejects_a_silent_node(lab)),
            },
            Scenario {
                name: "publisher_tor_dies_and_the_lease_moves",
                run: |lab| Box::pin(canary_tor_dies::publisher_tor_dies_and_the_lease_moves(lab)),
            },
            Scenario {
                name: "a_hostile_worker_cannot_take_the_address_down",
                run: |lab| Box::pin(hostile::a_hostile_worker_cannot_take_the_address_down(lab)),
            },
        ],
    )
}
