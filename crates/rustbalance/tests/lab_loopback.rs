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
//!   publishes without its instance tor's PoW parameters (issue 16).
//! * `lone_node_goes_single_node`: two nodes; the follower is SIGKILLed and the
//!   survivor, alone, makes its tor host the master key: tor publishes the master
//!   descriptor itself with `pow-params`, the lab client is served; the follower comes
//!   back: merged descriptors listing both, the master service removed (issue 16). The
//!   longest stretch without a successful request is printed for both switches.
//! * `eight_nodes_per_hsdir_descriptors`: eight nodes of three intro points each (24,
//!   over the 20 a client takes): one descriptor per HSDir clients fetch from, none over
//!   20 points or 49,999 bytes, the HSDirs hold several distinct descriptors, and the lab
//!   client on fresh circuits is served by every node (issue 16 item 2).
//! * `four_nodes_of_two_tors`: turbo mode, four nodes of two tors each (`[tor]
//!   instances = 2`): every tor advertises, no descriptor over 20 points or 49,999 bytes,
//!   every node serves the lab client and every extra tor builds rendezvous circuits
//!   (issue 16 item 3).
//! * `pow_under_flood` (only with `RB_LAB_FLOOD=1`, see `main`): a flood from extra lab client tors makes tor suggest
//!   PoW effort > 0; a tor holding its own key serves the solving lab client,
//!   main's old fallback (an instance's pow-params in the master descriptor)
//!   loses it, the fixed rule serves it (issue 16).
//!
//! * `fleet_pow_served_by_every_node`: three nodes with fleet PoW and an effort floor of
//!   25: every tor hosts the master key too, a publication's fleet descriptors list every
//!   node's tor (counters above 2^40), and the solving lab client is served by every node,
//!   each node's tor logging the PoW solutions it verified (issue 16 item 4).
//!
//! * `fleet_pow_under_flood` (only with `RB_LAB_FLOOD=1`): two fleet nodes flooded until
//!   both tors suggest effort > 0; the solving lab client is served by both.
//!
//! * `restricted_discovery`: a cluster node with `authorized_clients_dir`; the lab
//!   client without a key is refused (0xF4), with a key from `client-auth add` it is
//!   served, after `client-auth remove` and the republication it is refused (0xF5).
//!
//! * `publisher_only_cluster_for_onionbalance_backends` (issue 17): three plain tors
//!   configured as Onionbalance instances, `rustbalance onionbalance import` of their
//!   `config.yaml`, two publisher-only nodes: the master address is served by every
//!   backend; the publishing node is SIGKILLed and the other publishes; a backend is
//!   SIGKILLed and its intro points leave the master descriptor.
//!
//! * `restricted_backend` (issue 17): a plain tor backend with restricted discovery and
//!   a publisher-only node holding its client key (`cluster.backends_client_auth_dir`):
//!   the master address is served by it; its own address refuses a client without the
//!   key (0xF4).
//!
//! * `status_page`: headless Chromium opens the status page of a two-node cluster; the
//!   publisher is SIGKILLed and the page shows it down, the other node publishing, its
//!   descriptors and the failover event.
//!
//! * `a_skewed_node_does_not_publish`: the publisher of three nodes restarted with its
//!   clock ten minutes ahead, then behind (libfaketime): it says why it does not publish
//!   and never does; the other two keep one publisher whose descriptor the HSDirs hand
//!   out; clients are served; with the clock right it is listed again.
//! * `hsdir_restart_repaired`: a one-node cluster checks the HSDirs every 20 s; one lab
//!   relay responsible for its descriptor is restarted (empty cache, same fingerprint) and
//!   the node uploads the descriptor to it again; the lab client fetches it from that
//!   relay alone.
//!
//! Times are printed; how fast is for the benchmarks (docs/BENCHMARKS.md),
//! the timeouts here are generous liveness bounds.

#[path = "lab_loopback/cluster.rs"]
mod cluster;
#[path = "lab_loopback/fetch_backends.rs"]
mod fetch_backends;
#[path = "lab_loopback/fleet.rs"]
mod fleet;
#[path = "lab_loopback/hsdir_repair.rs"]
mod hsdir_repair;
#[path = "lab_loopback/instances.rs"]
mod instances;
#[path = "lab_loopback/onionbalance_auth.rs"]
mod onionbalance_auth;
#[path = "lab_loopback/per_hsdir.rs"]
mod per_hsdir;
#[path = "lab_loopback/pow.rs"]
mod pow;
#[path = "lab_loopback/restricted_backend.rs"]
mod restricted_backend;
#[path = "lab_loopback/single.rs"]
mod single;
#[path = "lab_loopback/skew.rs"]
mod skew;
#[path = "lab_loopback/solo.rs"]
mod solo;
#[path = "lab_loopback/status_page.rs"]
mod status_page;
#[path = "lab_loopback/turbo.rs"]
mod turbo;

use rustbalance_testbed::suite::{run_suite, Scenario};

/// `pow_under_flood` runs only with `RB_LAB_FLOOD=1`: it needs tor to raise its PoW
/// effort under a flood (tor decides every 300 s), which took 298 s in one run and did not
/// happen within 900 s in a full-suite run on a loaded 2-core machine (2026-12-05). Until
/// the flood is made to back tor's queue up whatever the load, it is not in the CI suite;
/// the rule it proves is unit-tested there (`cluster::pow`).
fn main() -> std::process::ExitCode {
    let mut scenarios = vec![
        // Order: CI runs every other scenario of those not in the lab tail in each of two
        // lanes (`--shard 1/2`, `2/2`, scripts/test.sh), so that both lanes take about as
        // long; seconds from one clean-clone run of scripts/test.sh (2026-12-07, with
        // fleet_pow_served_by_every_node then in shard 2): shard 1: 112 + 70 + 28 + 14 + 4
        // + 10 = 268; shard 2: 82 + 67 + 103 + 34 + 118 = 404. The fleet scenario now
        // comes last, in shard 1. It takes 90–220 s depending on where in the lab's 8-minute
        // period it starts (its fleet descriptors wait for the SRV): lanes of 489 and 264 s
        // in the clean-clone run of f9fbcdb.
        Scenario {
            name: "publisher_only_cluster_for_onionbalance_backends",
            run: |lab| {
                Box::pin(fetch_backends::publisher_only_cluster_for_onionbalance_backends(lab))
            },
        },
        Scenario {
            name: "three_nodes_fail_over",
            run: |lab| Box::pin(cluster::three_nodes_fail_over(lab)),
        },
        Scenario {
            name: "lone_node_goes_single_node",
            run: |lab| Box::pin(solo::lone_node_goes_single_node(lab)),
        },
        Scenario {
            name: "a_skewed_node_does_not_publish",
            run: |lab| Box::pin(skew::a_skewed_node_does_not_publish(lab)),
        },
        Scenario {
            name: "eight_nodes_per_hsdir_descriptors",
            run: |lab| Box::pin(per_hsdir::eight_nodes_per_hsdir_descriptors(lab)),
        },
        Scenario {
            name: "four_nodes_of_two_tors",
            run: |lab| Box::pin(turbo::four_nodes_of_two_tors(lab)),
        },
        Scenario {
            name: "restricted_discovery",
            run: |lab| Box::pin(onionbalance_auth::restricted_discovery(lab)),
        },
        Scenario {
            name: "master_address_served_by_both_instances",
            run: |lab| Box::pin(instances::master_address_served_by_both_instances(lab)),
        },
        Scenario {
            name: "hsdir_restart_repaired",
            run: |lab| Box::pin(hsdir_repair::hsdir_restart_repaired(lab)),
        },
        Scenario {
            name: "single_node_in_the_lab",
            run: |lab| Box::pin(single::single_node_in_the_lab(lab)),
        },
        Scenario {
            name: "status_page",
            run: |lab| Box::pin(status_page::status_page(lab)),
        },
        Scenario {
            name: "revision_counter_matches_c_tor",
            run: |lab| Box::pin(instances::revision_counter_matches_c_tor(lab)),
        },
        Scenario {
            name: "restricted_backend",
            run: |lab| Box::pin(restricted_backend::restricted_backend(lab)),
        },
        Scenario {
            name: "fleet_pow_served_by_every_node",
            run: |lab| Box::pin(fleet::fleet_pow_served_by_every_node(lab)),
        },
    ];
    if std::env::var_os("RB_LAB_FLOOD").is_some_and(|v| v == "1") {
        scenarios.push(Scenario {
            name: "pow_under_flood",
            run: |lab| Box::pin(pow::pow_under_flood(lab)),
        });
        scenarios.push(Scenario {
            name: "fleet_pow_under_flood",
            run: |lab| Box::pin(fleet::fleet_pow_under_flood(lab)),
        });
    }
    // `RB_LAB_RELAYS=N`: a lab of N relays (default 6) for the scenarios that run many
    // tors (scripts/test.sh's tail): with few relays their intro points share relays, and
    // a descriptor lists one point per relay (hs::descriptor::merge).
    let mut options = rustbalance_lab::LabOptions::default();
    if let Some(n) = std::env::var("RB_LAB_RELAYS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.relays = n;
    }
    run_suite("lab_loopback", options, &scenarios)
}
