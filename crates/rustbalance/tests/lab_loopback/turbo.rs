//! Issue 16 item 3, turbo mode: four nodes of two tors each (`[tor] instances = 2`) of ten
//! intro points each, every tor its own instance behind its node's one proxy.
//!
//! ```text
//!  4 nodes × 2 tors up ─▶ every node advertises both (/status cluster.instances)
//!  ─▶ a publication listing all 4 (each descriptor ≤ 20 points, ≤ 49,999 bytes; the
//!     split printed) ─▶ what the responsible HSDirs hold (distinct descriptors)
//!  ─▶ every tor's CIRC events counted (rendezvous circuits: one per introduction served)
//!  ─▶ the lab client on fresh circuits until every node served it and every extra tor
//!     built rendezvous circuits (the canary probes only first tors: an extra tor's count
//!     is clients only)
//! ```

use anyhow::{ensure, Context, Result};
use rustbalance_lab::Lab;
use rustbalance_testbed::client_cache;
use rustbalance_testbed::clients::round_and_silent;
use rustbalance_testbed::poll::poll_until;
use rustbalance_testbed::rend_count::RendCounter;
use rustbalance_testbed::{start_all, wait_cluster_up, with_cluster, ClusterNodeProc};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const NODES: usize = 4;
const TORS: usize = 2;
/// Intro points per tor (`HiddenServiceNumIntroductionPoints`, via `tor.extra_torrc`).
const POINTS: usize = 10;
/// Liveness bounds for a busy 2-core machine (times are printed).
const START: Duration = Duration::from_secs(420);
const MAX_BYTES: u64 = rustbalance_hs::descriptor::MAX_DESCRIPTOR_SIZE as u64;

pub async fn four_nodes_of_two_tors(lab: Lab) -> Result<()> {
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
    for n in nodes.iter() {
        n.set_option("tor", &format!("instances = {TORS}"))?;
        let text = std::fs::read_to_string(&n.config)?;
        let text = text.replacen(
            "extra_torrc = [\n",
            &format!("extra_torrc = [\n\"HiddenServiceNumIntroductionPoints {POINTS}\",\n"),
            1,
        );
        // Rewritten in place: the file keeps its 0600.
        std::fs::write(&n.config, text)?;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    start_all(lab, nodes, bin, &["solo = false"])?;
    let t0 = Instant::now();
    let url = format!("http://{}/", master.address());
    wait_cluster_up(lab, nodes, &url, START).await?;
    eprintln!(
        "master reachable {:.1}s after the {NODES} nodes of {TORS} tors started",
        t0.elapsed().as_secs_f64()
    );
    let adverts = every_tor_advertises(nodes).await?;
    eprintln!("every tor advertises: {adverts:?}");
    check_descriptors(lab, master, nodes).await?;

    // Every tor, counted from its own CIRC events from now on.
    let mut tors = Vec::new();
    for n in nodes.iter() {
        for slot in 0..TORS {
            tors.push((
                format!("{}/tor{slot}", n.name),
                n.tor_control_of(slot).await?,
            ));
        }
    }
    let counter = RendCounter::watch(tors).await?;
    let ctl =
        rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let mut newnym = client_cache::Newnym::assume_recent();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let quiet = |c: &BTreeMap<String, usize>| -> Vec<String> {
        c.iter()
            .filter(|(k, v)| !k.ends_with("/tor0") && **v == 0)
            .map(|(k, _)| k.clone())
            .collect()
    };
    for _ in 1..=8 {
        let silent = round_and_silent(lab, &url, 30, &mut tally, &names).await;
        let counts = counter.counts();
        eprintln!("rendezvous circuits per tor: {counts:?}");
        if silent.is_empty() && quiet(&counts).is_empty() {
            break;
        }
        eprintln!(
            "not served yet by {silent:?}, extra tors without a rendezvous {:?}; {}",
            quiet(&counts),
            client_cache::describe(&ctl, &master.address()).await
        );
        newnym.send(&ctl).await?;
    }
    let counts = counter.counts();
    for n in &names {
        ensure!(
            tally.contains_key(&format!("served by {n}")),
            "{n} never served: {tally:?}"
        );
    }
    ensure!(
        quiet(&counts).is_empty(),
        "extra tors that served nobody: {:?} ({counts:?})",
        quiet(&counts)
    );
    Ok(())
}

/// Wait until every node's `/status` shows each of its tors advertising intro points;
/// returns per tor how many.
async fn every_tor_advertises(nodes: &[ClusterNodeProc]) -> Result<BTreeMap<String, u64>> {
    let (adverts, _) = poll_until(
        "every tor of every node advertising intro points",
        START,
        Duration::from_millis(500),
        async || {
            let mut all = BTreeMap::new();
            for n in nodes {
                let Some(st) = n.status().await else {
                    return Ok(None);
                };
                let Some(inst) = st["cluster"]["instances"].as_object() else {
                    return Ok(None);
                };
                for (k, v) in inst {
                    all.insert(k.clone(), v["intro_points"].as_u64().unwrap_or(0));
                }
            }
            let complete = all.len() == NODES * TORS && all.values().all(|v| *v > 0);
            Ok(complete.then_some(all))
        },
    )
    .await?;
    Ok(adverts)
}

/// The publisher's last publication: per descriptor at most 20 points and 49,999 bytes;
/// the split per node and per descriptor printed; what the responsible HSDirs hold.
async fn check_descriptors(
    lab: &Lab,
    master: &rustbalance_hs::IdentityKey,
    nodes: &[ClusterNodeProc],
) -> Result<()> {
    let (_, record) = rustbalance_testbed::cluster::publication::publisher(nodes, &[])
        .await
        .context("no publisher")?;
    eprintln!(
        "intro points per node in the publication: {}",
        record["intro_points"]
    );
    let slots = record["slots"].as_array().context("no slots")?;
    let mut per_period: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut hsdirs = std::collections::BTreeSet::new();
    for s in slots {
        let listed = s["intro_points"].as_u64().unwrap_or(0);
        let size = s["size"].as_u64().unwrap_or(0);
        ensure!(listed <= 20, "a descriptor lists {listed} intro points");
        ensure!(size <= MAX_BYTES, "a descriptor is {size} bytes");
        per_period
            .entry(s["period_num"].as_u64().unwrap_or(0))
            .or_default()
            .push(listed);
        if let Some(o) = s["hsdirs"].as_object() {
            hsdirs.extend(o.keys().cloned());
        }
    }
    eprintln!("intro points per descriptor, per time period: {per_period:?}");
    let (answered, distinct) = rustbalance_testbed::faults::held_at_hsdirs(
        lab,
        &master.address().to_string(),
        &hsdirs,
        MAX_BYTES as usize,
    )
    .await?;
    eprintln!(
        "{answered} of {} responsible HSDirs hold a descriptor for the client's period; {distinct} distinct",
        hsdirs.len()
    );
    Ok(())
}
