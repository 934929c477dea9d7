//! Service continuity across tor's descriptor rotation: a 3-node cluster in the lab, one
//! GET of the master address every 2 s (fresh circuit, 20 s timeout) for DURATION seconds
//! (default 1.5 lab time periods, so that a period start and an SRV both pass), through one
//! lab client that keeps its cached master descriptor as every tor client does. Prints
//! each failure with its phase in the time period, the longest run of failures, and the
//! totals. Driven by `bench/rotation.sh`.
//!
//! ```text
//! rotation --bin target/release/rustbalance [--duration 720] [--tor-line "Option value"]...
//!          [--cluster-option "key = value"]...
//! ```
//!
//! `--cluster-option` (repeatable) sets a `[cluster]` key on every node, e.g.
//! `--cluster-option "fleet_pow = true"` for fleet PoW across the rotations.
//!
//! With the environment variable `RUSTBALANCE_DIAG_CURRENT_DESC_ONLY=1` the nodes keep
//! advertising the intro points of tor's *current* descriptor after a period starts (the
//! behaviour before the fix), for a side-by-side figure.

use anyhow::Result;
use rustbalance_testbed::bench::BenchArgs;
use rustbalance_testbed::{prepare, wait_cluster_up, with_lab};
use std::time::{Duration, Instant, SystemTime};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = BenchArgs::from_env();
    let bin = args.bin();
    let duration = args.secs("--duration", 720);
    let dir = tempfile::Builder::new().prefix("rb-rot").tempdir()?;
    with_lab(
        dir.path(),
        Default::default(),
        |_| {},
        async |lab, _| {
            let (master, mut nodes) = prepare(lab, 3).await?;
            // `--tor-line LINE` (repeatable): appended to every node's tor.extra_torrc, after
            // RustBalance's own lines, so it overrides them (tor keeps the last value).
            let extra: Vec<String> = args
                .values("--tor-line")
                .iter()
                .map(|l| format!("{l:?}, "))
                .collect();
            if !extra.is_empty() {
                for n in &nodes {
                    let text = std::fs::read_to_string(&n.config)?;
                    anyhow::ensure!(
                        text.contains("extra_torrc = ["),
                        "no extra_torrc in {:?}",
                        n.config
                    );
                    let text = text.replacen(
                        "extra_torrc = [",
                        &format!("extra_torrc = [{}", extra.concat()),
                        1,
                    );
                    std::fs::write(&n.config, text)?;
                }
                eprintln!("tor lines added to every node: {}", extra.concat());
            }
            for line in args.values("--cluster-option") {
                for n in &nodes {
                    n.set_cluster_option(&line)?;
                }
                eprintln!("[cluster] {line} on every node");
            }
            for n in nodes.iter_mut() {
                let log = dir.path().join(format!("{}.log", n.name));
                n.start(&bin, &log)?;
            }
            let url = format!("http://{}/", master.address());
            wait_cluster_up(lab, &nodes, &url, Duration::from_secs(240)).await?;
            probe(lab, &url, duration).await;
            for n in nodes.iter_mut() {
                n.stop();
            }
            Ok(())
        },
    )
    .await
}

/// One GET every 2 s for `duration`; prints failures with their phase and the totals.
async fn probe(lab: &rustbalance_lab::Lab, url: &str, duration: Duration) {
    let tp = rustbalance_hs::TimeParams::testing(20);
    let period = 24 * 20;
    let phase = |t: SystemTime| {
        let u = rustbalance_hs::time::unix_secs(t);
        (u - tp.period_offset_secs()) % period
    };
    eprintln!(
        "period {period} s; period start at phase 0, SRV at phase {}",
        period - tp.period_offset_secs() % period
    );
    let t0 = Instant::now();
    let (mut ok, mut failed, mut run, mut worst) = (0u32, 0u32, 0u32, (0u32, 0u64, 0u64));
    let mut run_start = 0;
    while t0.elapsed() < duration {
        let at = SystemTime::now();
        let r = lab.http_get(url, Duration::from_secs(20)).await;
        match r {
            Ok(r) if r.status == 200 => {
                ok += 1;
                run = 0;
            }
            other => {
                failed += 1;
                if run == 0 {
                    run_start = phase(at);
                }
                run += 1;
                if run > worst.0 {
                    worst = (run, run_start, phase(at));
                }
                eprintln!(
                    "  t={:5.0}s phase {:3}: failed ({})",
                    t0.elapsed().as_secs_f64(),
                    phase(at),
                    match other {
                        Ok(r) => format!("HTTP {}", r.status),
                        Err(e) => e.to_string().chars().take(80).collect(),
                    }
                );
            }
        }
        let spent = at.elapsed().unwrap_or_default();
        if spent < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_secs(2) - spent).await;
        }
    }
    println!(
        "requests {} ok {ok} failed {failed}; longest failure run {} requests (phase {} to {})",
        ok + failed,
        worst.0,
        worst.1,
        worst.2
    );
}
