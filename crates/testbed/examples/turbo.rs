//! Issue 16 item 3 figures: introductions per second one node completes with K = 1 and
//! K = 2 tors (`[tor] instances`), and the CPU time each costs, in the same private Tor
//! lab, one after the other. Driven by `bench/turbo.sh`.
//!
//! ```text
//! turbo --bin target/release/rustbalance [--relays 12] [--clients 4] [--rate 40]
//!       [--secs 60] [--in-flight 40] [--work DIR] [--json FILE]
//! ```
//!
//! For K = 1, then K = 2: a one-node cluster (it publishes its own merged descriptor)
//! with K tors; once the lab client is served, CLIENTS flood client tors send RATE
//! requests per second for SECS seconds, each on a fresh circuit (one introduction and
//! one rendezvous each; at most IN_FLIGHT at once). Reported: requests served per second,
//! the rendezvous circuits each tor built (`CIRC` events), and the CPU time of the node's
//! tors and of the rustbalance process per served request (`/proc/PID/task/*/schedstat`).
//! The clients and relays run on the same machine: with few cores they compete with the
//! node's tors, and the figures say what this machine does, not what the node could.

use anyhow::{Context, Result};
use rustbalance_lab::LabOptions;
use rustbalance_testbed::bench::{
    cores, cpu_model, cpu_secs, fresh_lab_dir, lab_progress, loadavg, log, save_json, secs,
    work_dir, BenchArgs,
};
use rustbalance_testbed::flood::{Flood, FloodClients, FloodPlan};
use rustbalance_testbed::rend_count::RendCounter;
use rustbalance_testbed::{prepare, wait_cluster_up, with_lab, ClusterNodeProc};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Liveness bound of each wait (a loaded 2-core machine must pass).
const LIVENESS: Duration = Duration::from_secs(420);

struct Args {
    bin: PathBuf,
    relays: usize,
    clients: usize,
    rate: f64,
    secs: u64,
    in_flight: usize,
    work: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let with_value = [
        "--bin",
        "--relays",
        "--clients",
        "--rate",
        "--secs",
        "--in-flight",
        "--work",
        "--json",
    ];
    let (b, bin) = BenchArgs::checked(&with_value, &[])?;
    Ok(Args {
        bin,
        relays: b.number("--relays", 12),
        clients: b.number("--clients", 4),
        rate: b.number("--rate", 40.0),
        secs: b.number("--secs", 60),
        in_flight: b.number("--in-flight", 40),
        work: b.path("--work"),
        json: b.path("--json"),
    })
}

/// CPU seconds of the node's tors (each) and of its rustbalance process.
fn cpu(n: &ClusterNodeProc, k: usize) -> (Vec<f64>, f64) {
    let tors = (0..k).map(|slot| cpu_secs(n.tor_pid_of(slot))).collect();
    (tors, cpu_secs(n.pid()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let (work, _tmp) = work_dir(a.work.clone(), "rb-turbo")?;
    let mut out = json!({
        "machine": {"cores": cores(), "cpu": cpu_model(), "load_start": loadavg()},
        "relays": a.relays, "clients": a.clients, "rate": a.rate, "secs": a.secs,
        "in_flight": a.in_flight,
    });
    let options = LabOptions {
        relays: a.relays,
        ..Default::default()
    };
    let dir = fresh_lab_dir(&work, "lab")?;
    let r = with_lab(&dir, options, lab_progress, async |lab, started| {
        out["lab_usable_s"] = json!(secs(started.report.total));
        let flood = FloodClients::start(lab, "turbo", a.clients, LIVENESS).await?;
        let r = async {
            for k in [1usize, 2] {
                out[format!("k{k}")] = one_k(&a, lab, &flood, k).await?;
            }
            anyhow::Ok(())
        }
        .await;
        flood.stop().await?;
        r
    })
    .await;
    out["machine"]["load_end"] = json!(loadavg());
    print_table(&out);
    save_json(a.json.as_deref(), &out)?;
    r
}

/// One node of `k` tors under the flood.
async fn one_k(
    a: &Args,
    lab: &rustbalance_lab::Lab,
    flood: &FloodClients,
    k: usize,
) -> Result<Value> {
    let (master, mut nodes) = prepare(lab, 1).await?;
    let n = &mut nodes[0];
    n.set_cluster_option("solo = false")?;
    n.set_option("tor", &format!("instances = {k}"))?;
    n.start(&a.bin, &lab.dir().join(format!("{}-k{k}.log", n.name)))?;
    let r = async {
        let url = format!("http://{}/", master.address());
        let t = Instant::now();
        wait_cluster_up(lab, &nodes, &url, LIVENESS).await?;
        log(format!(
            "K={k}: served {:.1}s after the start",
            t.elapsed().as_secs_f64()
        ));
        let n = &nodes[0];
        let mut tors = Vec::new();
        for slot in 0..k {
            tors.push((format!("tor{slot}"), n.tor_control_of(slot).await?));
        }
        let counter = RendCounter::watch(tors).await?;
        let (tor0, node0) = cpu(n, k);
        let count = (a.rate * a.secs as f64).ceil() as u64;
        let mut plan = FloodPlan::new(a.rate, count, Duration::from_secs(a.secs))?;
        plan.max_in_flight = a.in_flight;
        let f = Flood::spawn(flood.socks(), url.clone(), plan)?;
        // It ends by itself (count or duration); `finish` would stop it at once.
        while !f.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let report = f.finish().await.context("flood")?;
        let (tor1, node1) = cpu(n, k);
        let tor_cpu: f64 = tor1.iter().zip(&tor0).map(|(b, a)| b - a).sum();
        let served = report.served.max(1) as f64;
        let res = json!({
            "k": k,
            "sent": report.sent,
            "served": report.served,
            "seconds": report.seconds,
            "served_per_s": report.served as f64 / report.seconds.max(0.1),
            "rendezvous_per_tor": counter.counts(),
            "tor_cpu_s": tor1.iter().zip(&tor0).map(|(b, a)| b - a).collect::<Vec<_>>(),
            "tor_cpu_ms_per_served": 1000.0 * tor_cpu / served,
            "node_cpu_ms_per_served": 1000.0 * (node1 - node0) / served,
            "outcomes": report.outcomes,
        });
        log(format!("K={k}: {res}"));
        anyhow::Ok(res)
    }
    .await;
    for n in nodes.iter_mut() {
        n.stop();
    }
    r
}

fn print_table(out: &Value) {
    let f = |k: &str, key: &str| out[k][key].as_f64().unwrap_or(f64::NAN);
    let ratio = |key: &str| f("k2", key) / f("k1", key);
    println!("| | K = 1 | K = 2 | ratio K2/K1 |");
    println!("|---|---:|---:|---:|");
    for (label, key) in [
        ("requests served per second", "served_per_s"),
        (
            "tor CPU ms per served request (all tors)",
            "tor_cpu_ms_per_served",
        ),
        (
            "rustbalance CPU ms per served request",
            "node_cpu_ms_per_served",
        ),
    ] {
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} |",
            f("k1", key),
            f("k2", key),
            ratio(key)
        );
    }
    println!(
        "| served / sent | {}/{} | {}/{} | |",
        out["k1"]["served"], out["k1"]["sent"], out["k2"]["served"], out["k2"]["sent"]
    );
    println!(
        "| rendezvous circuits per tor | {} | {} | |",
        out["k1"]["rendezvous_per_tor"], out["k2"]["rendezvous_per_tor"]
    );
}
