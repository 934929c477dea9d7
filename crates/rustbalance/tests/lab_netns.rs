//! The lab tests on one shared namespaced lab (real tor everywhere, every
//! node in its own network namespace, gossip over WireGuard; root only),
//! scenarios one after another, each with its own node names
//! (`harness = false`: see `rustbalance_testbed::suite`):
//!
//! * `cut_and_heal_a_publisher` (nodes `cut1`…`cut3`): see `lab_netns/cut_heal.rs`.
//! * `fourth_node_joins_with_only_the_token` (nodes `node1`…`node4`): see
//!   `lab_netns/join.rs`.
//! * `outsiders_learn_nothing_and_one_circuit_cannot_hog` (nodes `probe1`, `probe2`): see
//!   `lab_netns/probe.rs`.

#[path = "lab_netns/cut_heal.rs"]
mod cut_heal;
#[path = "lab_netns/join.rs"]
mod join;
#[path = "lab_netns/probe.rs"]
mod probe;

use rustbalance_lab::{LabOptions, Placement};
use rustbalance_testbed::suite::{run_suite, Scenario};

fn main() -> std::process::ExitCode {
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
                    Box::pin(probe::outsiders_learn_nothing_and_one_circuit_cannot_hog(lab))
                },
            },
        ],
    )
}
