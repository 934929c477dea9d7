//! Issue 16 item 4, fleet PoW: three nodes with `cluster.fleet_pow = true` and
//! `fleet_pow_min_effort = 25`, so that every client solves (no flood needed to make
//! tor's suggestion rise; the flood version is `bench/flood.sh`).
//!
//! ```text
//!  3 nodes up (instance + master service on each tor) ─▶ every node advertises fleet_pow
//!  ─▶ a publication whose fleet descriptors list all three tors (revision ≥ 2^40)
//!  ─▶ the lab client on fresh descriptors (NEWNYM) until every node served it AND
//!     every node's tor logged "PoW INTRODUCE2 request successfully verified"
//!  ─▶ all restarted with fleet PoW off: the HSDirs hold counters above 2^40, the first
//!     publication is refused, the next (counters above tor's) is confirmed, client served
//! ```
//!
//! Fleet descriptors cover the slots whose period matches the tors' current descriptor:
//! from the SRV to the next period start (4 of every 8 minutes in the lab). Outside that
//! window the client gets the ordinary descriptor and is served without solving; the
//! loop goes on until the window comes, and prints which it got.

use anyhow::{ensure, Result};
use rustbalance_lab::Lab;
use rustbalance_testbed::client_cache;
use rustbalance_testbed::clients::split;
use rustbalance_testbed::poll::poll_until;
use rustbalance_testbed::pow_log::PowVerified;
use rustbalance_testbed::{
    start_all, stop_all, wait_cluster_up, wait_publication, wait_published, with_cluster,
    ClusterNodeProc,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const NODES: usize = 3;
/// The effort floor the descriptors suggest.
const MIN_EFFORT: u32 = 25;
/// Liveness bounds for a busy 2-core machine (times are printed): the start, and the
/// wait for every tor in a fleet publication and for every tor to verify a solution
/// (up to one lab time period, 8 minutes, for the window, plus the work).
const START: Duration = Duration::from_secs(420);
const FLEET: Duration = Duration::from_secs(1200);

pub async fn fleet_pow_served_by_every_node(lab: Lab) -> Result<()> {
    with_cluster(&lab, NODES, async |master, nodes| {
        run(&lab, master, nodes).await
    })
    .await
}

async fn run(
    lab: &Lab,
    master: &rustbalance_hs::IdentityKey,
    nodes: &mut [ClusterNodeProc],
) -> Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    let floor = format!("fleet_pow_min_effort = {MIN_EFFORT}");
    start_all(lab, nodes, bin, &["fleet_pow = true", &floor])?;
    let t0 = Instant::now();
    let url = format!("http://{}/", master.address());
    wait_cluster_up(lab, nodes, &url, START).await?;
    eprintln!(
        "master reachable {:.1}s after the {NODES} nodes started",
        t0.elapsed().as_secs_f64()
    );

    // A publication whose fleet descriptors hold every node's tor.
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let p = wait_publication(
        nodes,
        &[],
        SystemTime::UNIX_EPOCH,
        "a publication with fleet descriptors of every node's tor",
        FLEET,
        |r| fleet_of(r).values().any(|v| *v == names),
    )
    .await?;
    eprintln!(
        "fleet descriptors of {:?} (by period) {:.0}s after start; revisions {:?}",
        fleet_of(&p.record),
        t0.elapsed().as_secs_f64(),
        p.record["slots"]
            .as_array()
            .map(|s| s.iter().map(|x| x["revision"].clone()).collect::<Vec<_>>())
    );
    ensure!(
        p.record["pow"].as_bool() == Some(true),
        "the record says no pow-params: {}",
        p.record
    );
    for s in p.record["slots"].as_array().into_iter().flatten() {
        let rev = s["revision"].as_u64().unwrap_or(0);
        ensure!(
            rev > rustbalance_hs::descriptor::ABOVE_TOR_COUNTER_BASE,
            "a revision counter a node tor's own upload could beat: {rev}"
        );
    }

    // The lab client, a fresh descriptor (from a random HSDir) each round, until every
    // node has served it and every node's tor has verified a solution.
    let mark = PowVerified::mark(nodes);
    let ctl =
        rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let mut newnym = client_cache::Newnym::assume_recent();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let t1 = Instant::now();
    let (verified, _) = poll_until(
        "every node serving the solving lab client, its tor verifying the solution",
        FLEET,
        Duration::from_millis(100),
        async || {
            newnym.send(&ctl).await?;
            let round = split(lab, &url, 3).await;
            for (k, v) in &round {
                *tally.entry(k.clone()).or_insert(0) += v;
            }
            let verified = mark.since();
            eprintln!(
                "{:.0}s: round {round:?}; PoW solutions verified per node {verified:?}; {}",
                t1.elapsed().as_secs_f64(),
                client_cache::describe(&ctl, &master.address()).await
            );
            let all = names
                .iter()
                .all(|n| tally.contains_key(&format!("served by {n}")) && verified[n.as_str()] > 0);
            Ok(all.then_some(verified))
        },
    )
    .await?;
    eprintln!(
        "every node served the lab client ({tally:?}) and verified its PoW solutions \
         ({verified:?}) within {:.0}s",
        t1.elapsed().as_secs_f64()
    );

    // Fleet PoW turned off: the HSDirs still hold descriptors with counters above 2^40,
    // whose intro points die with the master services. The publisher must still get its
    // descriptors in (a refusal moves its counters above tor's) and the client served.
    stop_all(nodes);
    for n in nodes.iter_mut() {
        n.set_cluster_option("fleet_pow = false")?;
        n.set_cluster_option("fleet_pow_min_effort = 0")?;
        n.start(bin, &lab.dir().join(format!("{}-nofleet.log", n.name)))?;
    }
    let t2 = Instant::now();
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    let p = wait_published(nodes, &[], SystemTime::now(), &want, START).await?;
    let revisions: Vec<u64> = p.record["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["revision"].as_u64())
        .collect();
    eprintln!(
        "fleet PoW off: a confirmed publication of all {NODES} nodes {:.0}s after the restart, \
         revisions {revisions:?}, fleet {:?}",
        t2.elapsed().as_secs_f64(),
        fleet_of(&p.record)
    );
    ensure!(
        fleet_of(&p.record).is_empty(),
        "fleet descriptors with fleet PoW off"
    );
    newnym.send(&ctl).await?;
    let (_, took) = lab.wait_http(&url, "served by", START).await?;
    eprintln!("the lab client served again ({:.1}s)", took.as_secs_f64());
    Ok(())
}

/// The record's `fleet` map: period → node names.
fn fleet_of(record: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    serde_json::from_value(record["fleet"].clone()).unwrap_or_default()
}

/// Flood pace at the master address: four introductions a second against tors whose
/// queues dispatch one (`[pow] queue_rate = 1`).
const FLOOD_RATE: f64 = 4.0;
/// tor re-evaluates its effort every 300 s from the service's start; two chances, and the
/// fleet window (half of each 8-minute lab period).
const EFFORT: Duration = Duration::from_secs(1200);

/// Issue 16 item 4 under a flood (only with `RB_LAB_FLOOD=1`): two fleet nodes without an
/// effort floor, their tors' queues dispatching one introduction a second. A flood from
/// three client tors that refetch descriptors every 11 s (so it reaches both tors, and
/// solves once they ask) runs until both tors suggest effort > 0; then the lab client,
/// on fresh descriptors, must be served by both nodes while the descriptor it holds
/// suggests effort > 0 (so it solved) — reported per node with the solutions each tor
/// verified.
pub async fn fleet_pow_under_flood(lab: Lab) -> Result<()> {
    with_cluster(&lab, 2, async |master, nodes| {
        flooded(&lab, master, nodes).await
    })
    .await
}

async fn flooded(
    lab: &Lab,
    master: &rustbalance_hs::IdentityKey,
    nodes: &mut [ClusterNodeProc],
) -> Result<()> {
    use rustbalance_testbed::client_cache::NewnymLoop;
    use rustbalance_testbed::flood::{Flood, FloodClients, FloodPlan};
    for n in nodes.iter() {
        n.set_option("pow", "queue_rate = 1")?;
        n.set_option("pow", "queue_burst = 1")?;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    start_all(lab, nodes, bin, &["fleet_pow = true"])?;
    let t0 = Instant::now();
    let url = format!("http://{}/", master.address());
    wait_cluster_up(lab, nodes, &url, START).await?;
    let clients = FloodClients::start(lab, "fleetflood", 3, START).await?;
    let plan = FloodPlan::new(FLOOD_RATE, u64::MAX, EFFORT * 2)?;
    let flood = Flood::spawn(clients.socks(), url.clone(), plan)?;
    let refetch = NewnymLoop::spawn_for(clients.controls().await?);
    let r = async {
        let effort = |st: &serde_json::Value| {
            st["cluster"]["fleet_pow"]["suggested_effort"]
                .as_u64()
                .unwrap_or(0)
        };
        let (efforts, _) = poll_until(
            "both fleet tors suggesting effort > 0 under the flood",
            EFFORT,
            Duration::from_secs(2),
            async || {
                ensure!(!flood.is_finished(), "the flood ended");
                let mut all = BTreeMap::new();
                for n in nodes.iter() {
                    let e = n.status().await.map_or(0, |s| effort(&s));
                    all.insert(n.name.clone(), e);
                }
                Ok(all.values().all(|e| *e > 0).then_some(all))
            },
        )
        .await?;
        eprintln!(
            "fleet tors' efforts {efforts:?} {:.0}s after start",
            t0.elapsed().as_secs_f64()
        );
        let mark = PowVerified::mark(nodes);
        let ctl = rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr())
            .await?;
        let mut newnym = client_cache::Newnym::assume_recent();
        // Per node: requests served while the client's descriptor suggested effort > 0.
        let mut solved: BTreeMap<String, usize> = BTreeMap::new();
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let t1 = Instant::now();
        poll_until(
            "both nodes serving the lab client while its descriptor suggests effort",
            EFFORT,
            Duration::from_millis(100),
            async || {
                ensure!(!flood.is_finished(), "the flood ended");
                newnym.send(&ctl).await?;
                let round = split(lab, &url, 2).await;
                let held = client_cache::cached(&ctl, &master.address()).await?;
                let e = held
                    .as_ref()
                    .and_then(|d| d.pow_params.first())
                    .map_or(0, rustbalance_node::cluster::pow::suggested_effort);
                if e > 0 {
                    for (k, v) in &round {
                        if let Some(n) = k.strip_prefix("served by ") {
                            *solved.entry(n.trim().to_string()).or_insert(0) += v;
                        }
                    }
                }
                let verified = mark.since();
                eprintln!(
                    "{:.0}s: round {round:?} with effort {e} in the client's descriptor; \
                     served while solving {solved:?}; solutions verified {verified:?}",
                    t1.elapsed().as_secs_f64()
                );
                Ok(names
                    .iter()
                    .all(|n| solved.get(n).is_some_and(|s| *s > 0))
                    .then_some(()))
            },
        )
        .await?;
        eprintln!("under the flood, the solving lab client was served by every node: {solved:?}");
        Ok(())
    }
    .await;
    refetch.stop().await;
    let report = flood.finish().await?;
    eprintln!("flood: {}", serde_json::to_string(&report)?);
    clients.stop().await?;
    r
}
