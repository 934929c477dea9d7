//! Issue 16 item 2 figures: one node of eight killed, per-HSDir descriptors against one
//! merged descriptor, in the same private Tor lab. Driven by `bench/per_hsdir.sh`.
//!
//! ```text
//! per_hsdir --bin target/release/rustbalance [--relays 20] [--nodes 8]
//!           [--concurrency 2] [--before 30] [--tail 30] [--work DIR] [--json FILE]
//! ```
//!
//! A host-loopback lab with RELAYS relays (more than the default 6, so that the nodes'
//! intro points land on distinct relays as they do on the real network), NODES
//! `rustbalance run` nodes of three intro points each, one master address. Twice, first
//! with per-HSDir descriptors (the default), then with `per_hsdir_descriptors = false`
//! (every node restarted with it, one at a time):
//!
//! 1. wait for a confirmed publication listing every node; the lab client fetches it;
//! 2. a client loop (CONCURRENCY GETs at a time, each on a fresh circuit, 30 s limit)
//!    starts, and beside it the lab client is made to forget its descriptors (NEWNYM)
//!    every 11 s, tor's own limit, so that it fetches again from a random responsible
//!    HSDir: in per-HSDir mode the loop samples every descriptor, not the one it
//!    fetched first;
//! 3. settle: the loop runs until every node the publication lists has served it (the
//!    cluster is whole, as seen by a client), then BEFORE seconds more;
//! 4. the last node is SIGKILLed (node and tor: a machine dying), and the loop runs
//!    until TAIL seconds after a confirmed publication without it;
//! 5. the node is started again.
//!
//! Reported per mode: descriptors per period and intro points per descriptor, how many
//! nodes the publication listed; clients before the kill and from the kill to TAIL
//! after the recovery (served, p50/p90, the longest stretch with no successful
//! request), which nodes served; the time to the first publication without the dead
//! node, and to the first listing every survivor (a descriptor lists one point per
//! relay, so a survivor whose points all share relays with others' can be left out of
//! one publication and listed in the next).

use anyhow::Result;
use rustbalance_lab::{Lab, LabOptions};
use rustbalance_testbed::bench::{
    cores, cpu_model, fresh_lab_dir, lab_progress, loadavg, log, save_json, secs, work_dir,
    BenchArgs,
};
use rustbalance_testbed::client_cache::{refetch_publication, NewnymLoop};
use rustbalance_testbed::clients::{window, ClientLoop};
use rustbalance_testbed::cluster::publication::wait_publication;
use rustbalance_testbed::{prepare, published_nodes, wait_published, with_lab, ClusterNodeProc};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Liveness bound of each wait (a loaded 2-core machine must pass).
const LIVENESS: Duration = Duration::from_secs(420);

struct Args {
    bin: PathBuf,
    relays: usize,
    nodes: usize,
    conc: usize,
    before: Duration,
    tail: Duration,
    work: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let with_value = [
        "--bin",
        "--relays",
        "--nodes",
        "--concurrency",
        "--before",
        "--tail",
        "--work",
        "--json",
    ];
    let (b, bin) = BenchArgs::checked(&with_value, &[])?;
    let nodes = b.number("--nodes", 8);
    anyhow::ensure!(nodes >= 2, "--nodes must be at least 2");
    Ok(Args {
        bin,
        relays: b.number("--relays", 20),
        nodes,
        conc: b.number("--concurrency", 2),
        before: b.secs("--before", 30),
        tail: b.secs("--tail", 30),
        work: b.path("--work"),
        json: b.path("--json"),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let (work, _tmp) = work_dir(a.work.clone(), "rb-per-hsdir")?;
    let mut out = json!({
        "machine": {"cores": cores(), "cpu": cpu_model(), "load_start": loadavg()},
        "relays": a.relays, "nodes": a.nodes, "concurrency": a.conc,
        "before_s": a.before.as_secs(), "tail_s": a.tail.as_secs(),
    });
    let options = LabOptions {
        relays: a.relays,
        ..Default::default()
    };
    let dir = fresh_lab_dir(&work, "lab")?;
    let r = with_lab(&dir, options, lab_progress, async |lab, started| {
        out["lab_usable_s"] = json!(secs(started.report.total));
        let (master, mut nodes) = prepare(lab, a.nodes).await?;
        for n in nodes.iter_mut() {
            n.set_cluster_option("solo = false")?;
            start(&a, lab, n)?;
        }
        let url = format!("http://{}/", master.address());
        let r = async {
            out["per_hsdir"] = one_mode(&a, lab, &master, &mut nodes, &url).await?;
            log("restarting every node with per_hsdir_descriptors = false, one at a time");
            for n in nodes.iter_mut() {
                n.stop();
                n.set_cluster_option("per_hsdir_descriptors = false")?;
                start(&a, lab, n)?;
            }
            out["merged"] = one_mode(&a, lab, &master, &mut nodes, &url).await?;
            anyhow::Ok(())
        }
        .await;
        for n in nodes.iter_mut() {
            n.stop();
        }
        r
    })
    .await;
    out["machine"]["load_end"] = json!(loadavg());
    print_table(&out);
    save_json(a.json.as_deref(), &out)?;
    r
}

fn start(a: &Args, lab: &Lab, n: &mut ClusterNodeProc) -> Result<()> {
    let log = lab.dir().join(format!("{}.log", n.name));
    n.start(&a.bin, &log)
}

/// One mode: every node listed, the last one killed, the publication without it; the
/// node started again at the end.
async fn one_mode(
    a: &Args,
    lab: &Lab,
    master: &rustbalance_hs::IdentityKey,
    nodes: &mut [ClusterNodeProc],
    url: &str,
) -> Result<Value> {
    let mut owned: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    owned.sort_unstable();
    let all: Vec<&str> = owned.iter().map(String::as_str).collect();
    let t = Instant::now();
    let up = wait_published(nodes, &[], SystemTime::now(), &all, LIVENESS).await?;
    log(format!(
        "a publication lists all {} nodes after {:.1}s",
        all.len(),
        t.elapsed().as_secs_f64()
    ));
    refetch_publication(lab, &master.address(), &up.record, LIVENESS).await?;
    let split = descriptors(&up.record);
    log(format!("descriptors: {split}"));

    let listed = published_nodes(&up.record);
    let per_node = up.record["intro_points"].clone();
    let t0 = Instant::now();
    let lp = ClientLoop::spawn(lab, url, a.conc, t0);
    let refetch = NewnymLoop::spawn(lab).await?;
    let settled = settle(&lp, &listed).await;
    let settled_s = t0.elapsed().as_secs_f64();
    if !settled {
        refetch.stop().await;
        lp.finish().await;
        anyhow::bail!("the client loop was never served by every listed node");
    }
    log(format!(
        "every listed node ({}) served the loop {settled_s:.1}s after it started",
        listed.len()
    ));
    // An observation window, not a wait for a condition.
    tokio::time::sleep(a.before).await;
    let victim = nodes.len() - 1;
    let name = nodes[victim].name.clone();
    let fault = t0.elapsed().as_secs_f64();
    nodes[victim].kill();
    log(format!("{name} SIGKILLed (node and tor)"));
    let rest: Vec<&str> = all.iter().copied().filter(|n| *n != name).collect();
    let since = SystemTime::now();
    let what = format!("a publication without {name}");
    wait_publication(nodes, &[victim], since, &what, LIVENESS, |p| {
        !published_nodes(p).contains(&name)
    })
    .await?;
    let recovered = t0.elapsed().as_secs_f64();
    log(format!(
        "publication without {name} {:.1}s after the kill",
        recovered - fault
    ));
    let gone = wait_published(nodes, &[victim], since, &rest, LIVENESS).await?;
    let all_rest = t0.elapsed().as_secs_f64();
    log(format!(
        "a publication listing every survivor {:.1}s after the kill",
        all_rest - fault
    ));
    tokio::time::sleep(a.tail).await;
    let reqs = lp.finish().await;
    let newnyms = refetch.stop().await;
    let before = window(&reqs, fault - a.before.as_secs_f64(), fault);
    let during = window(&reqs, fault, recovered + a.tail.as_secs_f64());
    log(format!(
        "  clients before: {}/{} served; kill to recovery+{}s: {}/{} served, longest gap {:.1}s",
        before.summary.ok,
        before.summary.requests,
        a.tail.as_secs(),
        during.summary.ok,
        during.summary.requests,
        during.longest_gap_s
    ));
    start(a, lab, &mut nodes[victim])?;
    Ok(json!({
        "listed_nodes": listed.len(),
        "listed_points_per_node": per_node,
        "settled_s": secs(Duration::from_secs_f64(settled_s)),
        "newnyms": newnyms,
        "served_by_before": served_by(&before.summary),
        "served_by_during": served_by(&during.summary),
        "descriptors": split,
        "descriptors_after_kill": descriptors(&gone.record),
        "dead_node_out_s": secs(Duration::from_secs_f64(recovered - fault)),
        "every_survivor_listed_s": secs(Duration::from_secs_f64(all_rest - fault)),
        "before": before,
        "during": during,
        "requests": reqs,
    }))
}

/// Polls until every node in `listed` has served a request of the loop. Returns
/// whether it happened within [`LIVENESS`].
async fn settle(lp: &ClientLoop, listed: &[String]) -> bool {
    let t = Instant::now();
    loop {
        let seen = lp.nodes_served_since(0.0);
        if listed.iter().all(|n| seen.contains(n)) {
            return true;
        }
        if t.elapsed() > LIVENESS {
            let missing: Vec<&String> = listed.iter().filter(|n| !seen.contains(*n)).collect();
            log(format!("never served by {missing:?} in {LIVENESS:?}"));
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Requests served per node in a window's summary.
fn served_by(s: &rustbalance_testbed::clients::BatchSummary) -> Value {
    let m: serde_json::Map<String, Value> = s
        .outcomes
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("served by ")?.trim().to_string(), json!(v))))
        .collect();
    Value::Object(m)
}

/// Per period: how many descriptors and their intro point counts.
fn descriptors(record: &Value) -> Value {
    let mut per: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for s in record["slots"].as_array().into_iter().flatten() {
        per.entry(s["period_num"].to_string())
            .or_default()
            .push(s["intro_points"].as_u64().unwrap_or(0));
    }
    json!(per)
}

fn print_table(out: &Value) {
    println!("| | per-HSDir descriptors | one merged descriptor |");
    println!("|---|---:|---:|");
    let row = |label: &str, f: &dyn Fn(&Value) -> String| {
        println!(
            "| {label} | {} | {} |",
            f(&out["per_hsdir"]),
            f(&out["merged"])
        );
    };
    row("intro points per descriptor (one period)", &|m| {
        m["descriptors"]
            .as_object()
            .and_then(|o| o.values().next())
            .map(|v| v.to_string())
            .unwrap_or_default()
    });
    row("nodes listed", &|m| m["listed_nodes"].to_string());
    row("dead node out of the publication", &|m| {
        format!("{} s", m["dead_node_out_s"])
    });
    row("a publication listing every survivor", &|m| {
        format!("{} s", m["every_survivor_listed_s"])
    });
    row("clients before the kill: served", &|m| {
        format!(
            "{}/{}",
            m["before"]["summary"]["ok"], m["before"]["summary"]["requests"]
        )
    });
    row("kill → recovery + tail: served", &|m| {
        format!(
            "{}/{}",
            m["during"]["summary"]["ok"], m["during"]["summary"]["requests"]
        )
    });
    row("kill → recovery + tail: p50 / p90", &|m| {
        format!(
            "{:.2} / {:.2} s",
            m["during"]["summary"]["p50_s"].as_f64().unwrap_or(f64::NAN),
            m["during"]["p90_s"].as_f64().unwrap_or(f64::NAN)
        )
    });
    row("longest stretch with no successful request", &|m| {
        format!(
            "{:.1} s",
            m["during"]["longest_gap_s"].as_f64().unwrap_or(f64::NAN)
        )
    });
    row("every listed node served, after", &|m| {
        format!("{} s", m["settled_s"])
    });
    row("nodes that answered before the kill", &|m| {
        m["served_by_before"]
            .as_object()
            .map(|o| o.len())
            .unwrap_or(0)
            .to_string()
    });
    row("nodes that answered from the kill on", &|m| {
        m["served_by_during"]
            .as_object()
            .map(|o| o.len())
            .unwrap_or(0)
            .to_string()
    });
    row("NEWNYMs (descriptor refetches)", &|m| {
        m["newnyms"].to_string()
    });
}
