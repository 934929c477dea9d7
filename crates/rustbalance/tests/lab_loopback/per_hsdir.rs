//! Issue 16 item 2: eight nodes of three intro points each (24, over the 20 a client takes
//! from one descriptor) on one master address, with per-HSDir descriptors (the default).
//!
//! ```text
//!  8 nodes up ─▶ a publication listing all 8 ─▶ per descriptor: period, intro points,
//!  size, HSDirs (none over 20 points or 49,999 bytes; more than one per period)
//!  ─▶ every responsible HSDir asked for its copy (HSFETCH SERVER=): how many distinct
//!  descriptors they hold ─▶ the lab client on fresh circuits, served by every node
//! ```

use anyhow::{ensure, Context, Result};
use rustbalance_lab::Lab;
use rustbalance_testbed::client_cache;
use rustbalance_testbed::clients::round_and_silent;
use rustbalance_testbed::faults::held_at_hsdirs;
use rustbalance_testbed::{start_all, wait_cluster_up, with_cluster, ClusterNodeProc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Nodes, each one tor with tor's default three intro points.
const NODES: usize = 8;
/// A liveness bound for the start (a busy 2-core machine must pass; times are printed).
const START: Duration = Duration::from_secs(420);
/// Largest descriptor an HSDir takes (`HSV3MaxDescriptorSize` default 50,000, exclusive).
const MAX_BYTES: u64 = rustbalance_hs::descriptor::MAX_DESCRIPTOR_SIZE as u64;

pub async fn eight_nodes_per_hsdir_descriptors(lab: Lab) -> Result<()> {
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
    start_all(lab, nodes, bin, &["solo = false"])?;
    let t0 = Instant::now();
    let url = format!("http://{}/", master.address());
    let up = wait_cluster_up(lab, nodes, &url, START).await?;
    eprintln!(
        "master reachable {:.1}s after the {NODES} nodes started",
        t0.elapsed().as_secs_f64()
    );
    let points: u64 = up.record["intro_points"]
        .as_object()
        .map(|o| o.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    ensure!(
        points > 20,
        "the nodes gossip {points} intro points, not over 20: {}",
        up.record
    );

    // The split, as the publisher recorded it: one report per descriptor.
    let slots = up.record["slots"].as_array().context("no slots")?;
    let mut per_period: BTreeMap<u64, usize> = BTreeMap::new();
    let mut hsdirs: BTreeSet<String> = BTreeSet::new();
    for s in slots {
        let period = s["period_num"].as_u64().unwrap_or(0);
        let listed = s["intro_points"].as_u64().unwrap_or(0);
        let size = s["size"].as_u64().unwrap_or(0);
        let dirs: Vec<String> = s["hsdirs"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        eprintln!(
            "  period {period}: {listed} intro points, {size} bytes, to {} HSDirs",
            dirs.len()
        );
        ensure!(listed <= 20, "a descriptor lists {listed} intro points");
        ensure!(size <= MAX_BYTES, "a descriptor is {size} bytes");
        *per_period.entry(period).or_default() += 1;
        hsdirs.extend(dirs);
    }
    eprintln!("descriptors per time period: {per_period:?}");
    ensure!(
        per_period.values().all(|n| *n > 1),
        "not one descriptor per HSDir: {per_period:?}"
    );

    // What the HSDirs hold for the lab client's current period.
    let addr = master.address().to_string();
    let (answered, distinct) = held_at_hsdirs(lab, &addr, &hsdirs, MAX_BYTES as usize).await?;
    eprintln!(
        "{answered} of {} responsible HSDirs hold a descriptor for the client's period; {distinct} distinct",
        hsdirs.len()
    );
    ensure!(
        distinct > 1,
        "the HSDirs hold {distinct} distinct descriptors"
    );

    // Every node serves the lab client on fresh circuits. Every descriptor lists every
    // node (2 or 3 of its points: a window of the round-robin order), so any HSDir's copy
    // does. Between rounds the client starts afresh (NEWNYM: a new descriptor, maybe from
    // another HSDir, and no intro-point failure cache).
    let ctl =
        rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let mut newnym = client_cache::Newnym::assume_recent();
    let mut s: BTreeMap<String, usize> = BTreeMap::new();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for _ in 1..=6 {
        let silent = round_and_silent(lab, &url, 40, &mut s, &names).await;
        if silent.is_empty() {
            break;
        }
        eprintln!(
            "not served yet by {silent:?}; {}",
            client_cache::describe(&ctl, &master.address()).await
        );
        newnym.send(&ctl).await?;
    }
    for n in nodes.iter() {
        ensure!(
            s.contains_key(&format!("served by {}", n.name)),
            "{} never served: {s:?}",
            n.name
        );
    }
    Ok(())
}
