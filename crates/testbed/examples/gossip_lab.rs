//! Gossip on real lab nodes: a namespaced lab, 3 RustBalance nodes each in its own network
//! namespace with its own tor, gossiping over the WireGuard mesh. Measures
//!
//! * convergence: from starting the nodes until every node sees all 3 live;
//! * per-node gossip traffic (whole authenticated datagrams, from `/status`) and WireGuard
//!   traffic (the mesh's per-peer byte counters: everything the node exchanges over the
//!   mesh, encryption overhead included) over a steady window, after the first publication;
//! * per-node CPU of the `rustbalance run` process over the same window (all its threads'
//!   run time from `/proc/PID/task/*/schedstat`; the node's tor is another process). Idle
//!   but for gossip, WireGuard and timers, so it bounds the gossip's CPU from above.
//!
//! `--signatures off` runs the nodes with `cluster.gossip_signatures = "off"` (values
//! neither signed nor checked, as before signatures) to compare with the default
//! (`require`) in the same sitting.
//!
//! ```text
//! CARGO_TARGET_DIR=target-fbench cargo build --release -p rustbalance --bin rustbalance
//! CARGO_TARGET_DIR=target-fbench cargo build --release -p rustbalance-testbed --example gossip_lab
//! target-fbench/release/examples/gossip_lab --bin target-fbench/release/rustbalance [--window 60] [--signatures off]
//! ```
//! Driven by `bench/gossip_lab.sh`; figures in docs/BENCHMARKS.md.

use anyhow::{Context, Result};
use rustbalance_lab::{LabOptions, Placement};
use rustbalance_node::config::SignatureMode;
use rustbalance_testbed::bench::BenchArgs;
use rustbalance_testbed::cluster::ns::{start_ns_cluster_with, Knobs};
use rustbalance_testbed::{poll_until, wait_cluster_up, with_lab, NsNode};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One node's traffic counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    gossip_out: u64,
    gossip_in: u64,
    datagrams_out: u64,
    datagrams_in: u64,
    mesh_tx: u64,
    mesh_rx: u64,
    /// CPU time of the node process, ns.
    cpu_ns: u64,
}

fn sample(s: &Value, pid: Option<u32>) -> Option<Sample> {
    let g = &s["cluster"]["gossip"];
    let peers = s["mesh"]["peers"].as_array()?;
    let sum = |k: &str| peers.iter().filter_map(|p| p[k].as_u64()).sum();
    Some(Sample {
        at: Instant::now(),
        gossip_out: g["bytes_sent"].as_u64()?,
        gossip_in: g["bytes_received"].as_u64()?,
        datagrams_out: g["datagrams_sent"].as_u64()?,
        datagrams_in: g["datagrams_accepted"].as_u64()?,
        mesh_tx: sum("tx_bytes"),
        mesh_rx: sum("rx_bytes"),
        cpu_ns: (rustbalance_testbed::bench::cpu_secs(pid) * 1e9) as u64,
    })
}

fn live_members(s: &Value) -> usize {
    s["cluster"]["members"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["live"] == true).count())
        .unwrap_or(0)
}

async fn samples(nodes: &[NsNode]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for n in nodes {
        let s = n
            .status()
            .await
            .with_context(|| format!("{} does not answer", n.name))?;
        out.push(
            sample(&s, n.pid()).with_context(|| format!("{}: no gossip/mesh counters", n.name))?,
        );
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = BenchArgs::from_env();
    let bin = args.bin();
    let window = args.secs("--window", 60);
    let signatures =
        match args.value("--signatures") {
            None => None,
            Some(v) => Some(SignatureMode::parse(&v).with_context(|| {
                format!("--signatures {v}: give require, accept-unsigned or off")
            })?),
        };
    let dir = tempfile::Builder::new().prefix("rb-gsp").tempdir()?;
    let opts = LabOptions {
        placement: Placement::namespace(),
        ..Default::default()
    };
    let progress =
        |p: &rustbalance_lab::Progress| eprintln!("[{:5.1}s] {}", p.elapsed.as_secs_f64(), p.phase);
    with_lab(dir.path(), opts, progress, async |lab, _| {
        let t_start = Instant::now();
        let knobs = Knobs {
            gossip_signatures: signatures,
            ..Knobs::default()
        };
        let (master, nodes) = start_ns_cluster_with(lab, "node", 3, &bin, true, knobs)?;
        println!(
            "gossip signatures: {}",
            signatures.map_or("require (the default)", SignatureMode::as_str)
        );
        // Convergence: every node sees all three live.
        poll_until(
            "every node seeing all 3 live",
            Duration::from_secs(60),
            Duration::from_millis(200),
            async || {
                let mut all = true;
                for n in &nodes {
                    let live = n.status().await.map(|s| live_members(&s)).unwrap_or(0);
                    all &= live == nodes.len();
                }
                Ok(all.then_some(()))
            },
        )
        .await?;
        let converged = t_start.elapsed();
        println!(
            "convergence: all 3 nodes see 3 live members {:.2} s after the processes were started \
             (process start, WireGuard up, gossip)",
            converged.as_secs_f64()
        );
        let url = format!("http://{}/", master.address());
        let up = wait_cluster_up(lab, &nodes, &url, Duration::from_secs(240)).await?;
        let (p, took) = (up.node, up.waited);
        println!(
            "{} published all 3 nodes {:.1} s after start; the lab client reaches the service",
            nodes[p].name,
            took.as_secs_f64()
        );
        let a = samples(&nodes).await?;
        tokio::time::sleep(window).await;
        let b = samples(&nodes).await?;
        println!(
            "steady window {} s (node: gossip out / in KiB/s, datagrams out / in per s, \
             WireGuard tx / rx KiB/s)",
            window.as_secs()
        );
        let mut tot = [0f64; 5];
        for (i, n) in nodes.iter().enumerate() {
            let secs = b[i].at.duration_since(a[i].at).as_secs_f64();
            let rate = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / secs;
            let r = [
                rate(a[i].gossip_out, b[i].gossip_out) / 1024.0,
                rate(a[i].gossip_in, b[i].gossip_in) / 1024.0,
                rate(a[i].mesh_tx, b[i].mesh_tx) / 1024.0,
                rate(a[i].mesh_rx, b[i].mesh_rx) / 1024.0,
                rate(a[i].cpu_ns, b[i].cpu_ns) / 1e6,
            ];
            for k in 0..5 {
                tot[k] += r[k];
            }
            println!(
                "  {}{}: gossip {:.2} / {:.2} KiB/s, {:.1} / {:.1} datagrams/s, WireGuard {:.2} / {:.2} KiB/s, CPU {:.2} ms/s",
                n.name,
                if i == p { " (publisher)" } else { "" },
                r[0],
                r[1],
                rate(a[i].datagrams_out, b[i].datagrams_out),
                rate(a[i].datagrams_in, b[i].datagrams_in),
                r[2],
                r[3],
                r[4],
            );
        }
        let n = nodes.len() as f64;
        println!(
            "mean per node: gossip {:.2} KiB/s out, {:.2} KiB/s in; WireGuard {:.2} KiB/s out, {:.2} KiB/s in; CPU {:.2} ms/s",
            tot[0] / n,
            tot[1] / n,
            tot[2] / n,
            tot[3] / n,
            tot[4] / n
        );
        Ok(())
    })
    .await
}
