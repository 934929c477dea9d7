//! Gossip simulation benchmark: convergence time, update propagation, failure detection
//! and per-node bandwidth for clusters of 3, 50 and 200 nodes on the in-process network
//! (real chitchat, real authenticated transport, 100 ms gossip interval, ~1 KB of intro
//! points per node).
//!
//! ```text
//! CARGO_TARGET_DIR=target-cluster cargo run --release -p rustbalance-cluster --example sim [-- [--virtual-time] 3 50 200]
//! ```
//!
//! `--virtual-time` runs every node on one thread with tokio's clock paused (it advances
//! only when all nodes are idle): the protocol's own figures, free of this machine's CPU
//! limits, which make 200 nodes in one process unmeasurable in real time.

use std::net::SocketAddr;
use std::time::Duration;

use rustbalance_cluster::{keys, ClusterSecret, Membership, MembershipConfig, SimNet};
use tokio::time::{sleep, Instant};

const INTRO_BYTES: usize = 1_000;
const STEADY: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(90);

/// ~1 KB of text with base64-like entropy (6 bits per character), like serialized intro
/// points (keys and link specifiers), so compression cannot cheat.
fn intro_points(seed: u64, version: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version ^ 0xDEAD_BEEF;
    (0..INTRO_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 7000))
}

/// Whether every sampled node sees `n` live nodes whose state passes `check`. Sampling
/// (up to 10 nodes spread over the cluster, the last one started included) keeps the
/// observer from eating the CPU the gossip needs at 200 nodes.
async fn converged(nodes: &[Membership], n: usize, check: impl Fn(&str, &str) -> bool) -> bool {
    let step = nodes.len().div_ceil(10).max(1);
    let sample = nodes
        .iter()
        .step_by(step)
        .chain(nodes.last().filter(|_| nodes.len() > 1));
    for m in sample {
        let live = m.live_nodes().await;
        if live.len() != n {
            return false;
        }
        for v in &live {
            let intro = v.get(&keys::intro_points("inst0")).unwrap_or("");
            if !check(&v.node_id, intro) {
                return false;
            }
        }
    }
    true
}

async fn wait(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return Some(start.elapsed());
        }
        sleep(POLL).await;
    }
    None
}

fn fmt(d: Option<Duration>) -> String {
    d.map_or("timeout".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

async fn run(n: usize) -> String {
    let net = SimNet::new();
    let secret = ClusterSecret::new(b"simulation cluster secret 32 byt".to_vec()).expect("secret");
    let seeds: Vec<SocketAddr> = (0..n.min(3)).map(addr).collect();
    let start = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut cfg = MembershipConfig::new(format!("node-{i:03}"), addr(i));
        cfg.seeds = seeds.iter().copied().filter(|s| *s != addr(i)).collect();
        let initial = vec![
            (keys::ROLE.to_owned(), "publisher".to_owned()),
            (keys::PRIORITY.to_owned(), i.to_string()),
            (keys::ELIGIBLE.to_owned(), "true".to_owned()),
            (keys::TARGET_HEALTH.to_owned(), "ok".to_owned()),
            (keys::intro_points("inst0"), intro_points(i as u64, 0)),
        ];
        nodes.push(
            Membership::start(cfg, &secret, initial, &net)
                .await
                .expect("start"),
        );
    }
    let limit = LIMIT;
    let converge = wait(limit, async || {
        converged(&nodes, n, |_, intro| intro.len() == INTRO_BYTES).await
    })
    .await
    .map(|_| start.elapsed());

    // Steady-state bandwidth (heartbeats and digests only).
    net.reset_traffic();
    sleep(STEADY).await;
    let total: u64 = (0..n).map(|i| net.traffic(addr(i)).bytes_sent).sum();
    // Datagrams the in-process network lost in the steady window (full receive queue).
    let lost: u64 = (0..n).map(|i| net.traffic(addr(i)).dropped).sum();
    let per_node = total as f64 / n as f64 / STEADY.as_secs_f64();

    // One node changes its intro points: how long until everyone has them?
    let last = format!("node-{:03}", n - 1);
    let fresh = intro_points((n - 1) as u64, 1);
    nodes[n - 1].set(&keys::intro_points("inst0"), &fresh).await;
    let propagate = wait(limit, async || {
        converged(&nodes[..n - 1], n, |id, intro| id != last || intro == fresh).await
    })
    .await;

    // Kill one node: how long until everyone else reports it dead?
    let victim = nodes.pop().expect("n > 0");
    victim.shutdown().await.expect("shutdown");
    let detect = wait(limit, async || {
        let mut all = true;
        for m in nodes.iter().step_by(n.div_ceil(10).max(1)) {
            all &= m.live_nodes().await.len() == n - 1;
        }
        all
    })
    .await;

    let bad: u64 = nodes.iter().map(|m| m.counters().dropped()).sum();
    for m in nodes {
        let _ = m.shutdown().await;
    }
    format!(
        "| {n:>5} | {:>12} | {:>12} | {:>12} | {:>14.1} | {bad:>7} | {lost:>4} |  ({:.1} s of cluster time",
        fmt(converge),
        fmt(propagate),
        fmt(detect),
        per_node / 1024.0,
        start.elapsed().as_secs_f64(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let virtual_time = args.iter().any(|a| a == "--virtual-time");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![3, 50, 200]
    } else {
        sizes
    };
    // Virtual time: one thread, tokio's clock paused and advanced only when every node is
    // idle, so each gossip round is fully processed before the clock moves: the figures
    // are the protocol's (as on machines that keep up), not this machine's CPU. Real time:
    // everything on 2 worker threads, as fast as this machine goes.
    let rt = if virtual_time {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    rt.block_on(async {
        println!(
            "gossip interval 100 ms, ~1 KB intro points per node, in-process network, \
             convergence checked on up to 11 sampled nodes every 100 ms, {} time",
            if virtual_time { "virtual" } else { "real" }
        );
        println!(
            "| nodes | convergence  | update prop. | dead seen in | KiB/s per node | dropped | lost |"
        );
        println!(
            "|------:|-------------:|-------------:|-------------:|---------------:|--------:|-----:|"
        );
        for n in sizes {
            let wall = std::time::Instant::now();
            let row = run(n).await;
            println!(
                "{row}, {:.1} s of machine time)",
                wall.elapsed().as_secs_f64()
            );
        }
    });
}
