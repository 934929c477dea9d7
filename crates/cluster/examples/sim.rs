//! Gossip simulation benchmark: convergence time, update propagation, failure detection
//! and per-node bandwidth for clusters of 3, 50 and 200 nodes on the in-process network
//! (real chitchat, real authenticated transport, 100 ms gossip interval, ~1 KB of intro
//! points per node).
//!
//! ```text
//! CARGO_TARGET_DIR=target-cluster cargo run --release -p rustbalance-cluster --example sim [-- [--virtual-time] [--signed | --compare] 3 50 200]
//! ```
//!
//! `--signed` gives every node an identity and a member certificate: every value is
//! signed and every received value checked (issue 13). `--compare` runs each size twice
//! in the same process, unsigned then signed, and prints the signed/unsigned ratios of CPU
//! and bandwidth per node. The CPU column is this process's CPU time (its
//! threads' run time, `/proc/self/task/*/schedstat`) per node per second of cluster time.
//!
//! `--virtual-time` runs every node on one thread with tokio's clock paused (it advances
//! only when all nodes are idle): the protocol's own figures, free of this machine's CPU
//! limits, which make 200 nodes in one process unmeasurable in real time.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use rustbalance_cluster::{
    keys, Authority, CertFields, CertRole, ClusterSecret, GossipAuth, Membership, MembershipConfig,
    NodeIdentity, SignatureMode, SimNet, Trust,
};
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

/// Signed-gossip credentials for node `i`, certified by `authority`.
fn credentials(authority: &Authority, name: &str, i: usize) -> GossipAuth {
    let identity = Arc::new(NodeIdentity::generate());
    let cert = authority
        .certify(CertFields {
            name: name.to_owned(),
            role: CertRole::Eligible,
            identity: identity.public(),
            wireguard: Some([7; 32]),
            onion: Some("a".repeat(56)),
            issued: 1_795_000_000,
            serial: i as u64,
        })
        .expect("certify");
    GossipAuth {
        identity,
        cert,
        trust: Arc::new(Trust::new(authority.public(), SignatureMode::Require)),
    }
}

/// This process's CPU time: the sum over its threads of the nanoseconds they ran
/// (`/proc/self/task/*/schedstat`, first field; the tokio threads live as long as the
/// process), or, without schedstat, user + system time from `/proc/self/stat` (clock
/// ticks of 10 ms, too coarse for 3 nodes).
fn cpu_time() -> Duration {
    let mut ns = 0u64;
    let mut found = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            if let Some(v) = stat
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
            {
                ns += v;
                found = true;
            }
        }
    }
    if found {
        return Duration::from_nanos(ns);
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file; after the command name, which is
    // field 2, they are the 12th and 13th (0-based 11 and 12).
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

/// One size's figures.
struct Row {
    n: usize,
    converge: Option<Duration>,
    propagate: Option<Duration>,
    detect: Option<Duration>,
    /// Steady-state bytes sent per node per second.
    bytes_per_node_s: f64,
    /// CPU milliseconds per node per second of cluster time.
    cpu_ms_per_node_s: f64,
    bad: u64,
    lost: u64,
    cluster_time: f64,
}

impl Row {
    fn line(&self, label: &str) -> String {
        format!(
            "| {:>5} | {label:>8} | {:>12} | {:>12} | {:>12} | {:>14.1} | {:>13.2} | {:>7} | {:>4} |  ({:.1} s of cluster time",
            self.n,
            fmt(self.converge),
            fmt(self.propagate),
            fmt(self.detect),
            self.bytes_per_node_s / 1024.0,
            self.cpu_ms_per_node_s,
            self.bad,
            self.lost,
            self.cluster_time,
        )
    }
}

async fn run(n: usize, signed: bool) -> Row {
    let net = SimNet::new();
    let authority = Authority::from_seed(&zeroize::Zeroizing::new([9; 32]));
    let cpu0 = cpu_time();
    let secret = ClusterSecret::new(b"simulation cluster secret 32 byt".to_vec()).expect("secret");
    let seeds: Vec<SocketAddr> = (0..n.min(3)).map(addr).collect();
    let start = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut cfg = MembershipConfig::new(format!("node-{i:03}"), addr(i));
        if signed {
            cfg.auth = Some(credentials(&authority, &format!("node-{i:03}"), i));
        }
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
    let bytes_per_node_s = total as f64 / n as f64 / STEADY.as_secs_f64();

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

    let bad: u64 = nodes
        .iter()
        .map(|m| m.counters().dropped() + m.counters().dropped_by_signature_check())
        .sum();
    if bad > 0 {
        eprintln!(
            "  {n} nodes: dropped by reason, all nodes: {:?}",
            dropped_by_reason(&nodes)
        );
    }
    let cluster_time = start.elapsed().as_secs_f64();
    let cpu_ms_per_node_s = (cpu_time() - cpu0).as_secs_f64() * 1000.0 / n as f64 / cluster_time;
    for m in nodes {
        let _ = m.shutdown().await;
    }
    Row {
        n,
        converge,
        propagate,
        detect,
        bytes_per_node_s,
        cpu_ms_per_node_s,
        bad,
        lost,
        cluster_time,
    }
}

/// Runs `n` nodes with `signed` and prints its row; returns it.
async fn measured(n: usize, signed: bool) -> Row {
    let wall = std::time::Instant::now();
    let row = run(n, signed).await;
    let label = if signed { "signed" } else { "unsigned" };
    println!(
        "{}, {:.1} s of machine time)",
        row.line(label),
        wall.elapsed().as_secs_f64()
    );
    row
}

/// The non-zero `dropped_*` counters summed over `nodes`.
fn dropped_by_reason(nodes: &[Membership]) -> std::collections::BTreeMap<String, u64> {
    let mut sum = std::collections::BTreeMap::new();
    for m in nodes {
        let c = m.counters();
        let reasons = [
            ("malformed", c.dropped_malformed),
            ("bad_mac", c.dropped_bad_mac),
            ("stale", c.dropped_stale),
            ("replayed", c.dropped_replayed),
            ("node_bound", c.dropped_node_bound),
            ("oversize", c.dropped_oversize),
            ("overcompressed", c.dropped_overcompressed),
            ("bad_max_version", c.dropped_bad_max_version),
            ("own_node", c.dropped_own_node),
            ("no_cert", c.dropped_no_cert),
            ("bad_cert", c.dropped_bad_cert),
            ("revoked", c.dropped_revoked),
            ("unsigned", c.dropped_unsigned),
            ("bad_signature", c.dropped_bad_signature),
        ];
        for (reason, v) in reasons {
            if v > 0 {
                *sum.entry(reason.to_string()).or_insert(0) += v;
            }
        }
    }
    sum
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let virtual_time = args.iter().any(|a| a == "--virtual-time");
    let compare = args.iter().any(|a| a == "--compare");
    let signed = args.iter().any(|a| a == "--signed");
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
             convergence checked on up to 11 sampled nodes every 100 ms, {} time, {}",
            if virtual_time { "virtual" } else { "real" },
            match (compare, signed) {
                (true, _) => "unsigned then signed values",
                (false, true) => "signed values",
                (false, false) => "unsigned values",
            }
        );
        println!(
            "| nodes | values   | convergence  | update prop. | dead seen in | KiB/s per node | CPU ms/node/s | dropped | lost |"
        );
        println!(
            "|------:|---------:|-------------:|-------------:|-------------:|---------------:|--------------:|--------:|-----:|"
        );
        let mut ratios = Vec::new();
        for n in sizes {
            if compare {
                let plain = measured(n, false).await;
                let with = measured(n, true).await;
                ratios.push((
                    n,
                    with.cpu_ms_per_node_s / plain.cpu_ms_per_node_s,
                    with.bytes_per_node_s / plain.bytes_per_node_s,
                ));
            } else {
                measured(n, signed).await;
            }
        }
        if !ratios.is_empty() {
            println!("\nsigned / unsigned, per node:");
            println!("| nodes | CPU ratio | bandwidth ratio |");
            println!("|------:|----------:|----------------:|");
            for (n, cpu, bytes) in ratios {
                println!("| {n:>5} | {cpu:>9.2} | {bytes:>15.2} |");
            }
        }
    });
}
