//! The lab tests on one shared host-loopback lab (real tor everywhere),
//! scenarios one after another, each with its own service and node names
//! (`harness = false`: see `rustbalance_testbed::suite`):
//!
//! * `master_address_served_by_both_instances`: two onion-service instances
//!   in Onionbalance-instance mode; RustBalance reads their descriptors over
//!   the control port, merges them, computes the responsible HSDirs from the
//!   lab consensus and uploads both live master descriptors; the lab client
//!   reaches the MASTER address and both instances answer.
//! * `revision_counter_matches_c_tor`: tor's own revision counter is our OPE.
//! * `single_node_in_the_lab`: one node (`rustbalance run`): reachable; tor
//!   SIGKILLed → restarted by the watchdog and reachable again; target down
//!   → prompt failure, node alive, target back → served; SIGTERM → node and
//!   tor gone within 10 s, nothing listening.
//! * `three_nodes_fail_over`: three nodes serve one master address; the
//!   publisher is SIGKILLed and another node publishes without its intro
//!   points; a non-publisher is SIGKILLed and its intro points leave the
//!   descriptor; clients keep being served. The last node standing
//!   publishes its own PoW parameters (single-node fallback) and drops them
//!   when the others come back.
//!
//! Times are printed; how fast is for the benchmarks (docs/BENCHMARKS.md),
//! the timeouts here are generous liveness bounds.

#[path = "lab_loopback/cluster.rs"]
mod cluster;
#[path = "lab_loopback/instances.rs"]
mod instances;
#[path = "lab_loopback/single.rs"]
mod single;

use rustbalance_testbed::suite::{run_suite, Scenario};

fn main() -> std::process::ExitCode {
    run_suite(
        "lab_loopback",
        Default::default(),
        &[
            Scenario {
                name: "single_node_in_the_lab",
                run: |lab| Box::pin(single::single_node_in_the_lab(lab)),
            },
            Scenario {
                name: "master_address_served_by_both_instances",
                run: |lab| Box::pin(instances::master_address_served_by_both_instances(lab)),
            },
            Scenario {
                name: "revision_counter_matches_c_tor",
                run: |lab| Box::pin(instances::revision_counter_matches_c_tor(lab)),
            },
            Scenario {
                name: "three_nodes_fail_over",
                run: |lab| Box::pin(cluster::three_nodes_fail_over(lab)),
            },
        ],
    )
}
