//! Issue 3 figures: how long the lab takes from cold to usable, and how
//! long a master address takes to answer, RustBalance against Onionbalance
//! 0.2.2 in the same lab, in the same run. Driven by `bench/lab_startup.sh`.
//!
//! ```text
//! lab_startup [--runs N] [--instances K] [--work DIR] [--json FILE]
//! ```
//!
//! Every run: a fresh lab directory, `Lab::create` (authority keys, not
//! timed as "start"), `Lab::start` until usable (client bootstrapped); then
//!
//! * RustBalance: K instance tors (`HiddenServiceOnionbalanceInstance 1`,
//!   `PublishHidServDescriptors 0`), read their descriptors over the control
//!   port, one merged publication by RustBalance, GET the master address
//!   through the lab client until it answers. Timed from the instance tors'
//!   spawn and from the moment every instance descriptor existed.
//! * Onionbalance: `OnionbalanceSetup::start` (K instance tors + its own tor
//!   and `onionbalance --is-testnet`), GET its master address until it
//!   answers. Timed from Onionbalance's start (its own figure), from the
//!   instance tors' spawn, and from the moment its log says it has a
//!   descriptor of every instance.
//!
//! Then everything is stopped by pid and the lab is checked to listen nowhere.

use anyhow::{Context, Result};
use rustbalance_lab::onionbalance::OnionbalanceSetup;
use rustbalance_lab::Lab;
use rustbalance_testbed::bench::{cores, cpu_model, loadavg, median, secs, work_dir, BenchArgs};
use rustbalance_testbed::instances::MasterSetup;
use rustbalance_testbed::log_watch::LogWatch;
use rustbalance_testbed::with_lab;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Default, Debug, Clone, serde::Serialize)]
struct Run {
    create_s: f64,
    usable_s: f64,
    phases: Vec<(String, f64)>,
    ours_desc_s: f64,
    ours_after_desc_s: f64,
    ours_publish_s: f64,
    ours_after_spawn_s: f64,
    ob_after_start_s: f64,
    ob_after_spawn_s: f64,
    ob_all_desc_after_start_s: f64,
    ob_after_desc_s: f64,
    ob_first_upload_after_start_s: f64,
    error: Option<String>,
}

async fn one_run(work: &Path, i: usize, instances: usize, run: &mut Run) -> Result<()> {
    let dir = work.join(format!("lab{i}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let progress = |p: &rustbalance_lab::Progress| {
        eprintln!(
            "  [run {i}] [{:5.1}s] {} ({})",
            p.elapsed.as_secs_f64(),
            p.phase,
            p.detail
        )
    };
    with_lab(&dir, Default::default(), progress, async |lab, started| {
        run.create_s = secs(started.created);
        run.usable_s = secs(started.report.total);
        run.phases = started
            .report
            .phases
            .iter()
            .map(|p| (p.phase.to_string(), secs(p.elapsed)))
            .collect();
        eprintln!("  [run {i}] lab usable after {:.1}s", run.usable_s);
        rustbalance_side(lab, i, instances, run).await?;
        onionbalance_side(lab, i, instances, run).await
    })
    .await
}

/// K instance tors, one merged publication, the master answering.
async fn rustbalance_side(lab: &Lab, i: usize, instances: usize, run: &mut Run) -> Result<()> {
    let t_spawn = Instant::now();
    let setup = MasterSetup::start(lab, "rbi", instances).await?;
    let descs = setup.instance_descriptors(Duration::from_secs(180)).await?;
    let t_desc = Instant::now();
    run.ours_desc_s = secs(t_desc - t_spawn);
    let mut publisher = setup.publisher().await?;
    setup.publish(&mut publisher, &descs).await?;
    run.ours_publish_s = secs(t_desc.elapsed());
    lab.wait_http(&setup.url(), "served by", Duration::from_secs(180))
        .await
        .context("RustBalance's master address")?;
    run.ours_after_desc_s = secs(t_desc.elapsed());
    run.ours_after_spawn_s = secs(t_spawn.elapsed());
    eprintln!(
        "  [run {i}] RustBalance: instance descriptors {:.1}s after spawn; published {:.1}s and answering {:.1}s after they existed",
        run.ours_desc_s, run.ours_publish_s, run.ours_after_desc_s
    );
    drop(publisher);
    setup.stop().await
}

/// Onionbalance in the same lab: until its master answers, with its log watched.
async fn onionbalance_side(lab: &Lab, i: usize, instances: usize, run: &mut Run) -> Result<()> {
    let t_spawn = Instant::now();
    let ob = OnionbalanceSetup::start(lab, "ob", instances, Duration::from_secs(180)).await?;
    let res = watch_onionbalance(lab, &ob, i, instances, t_spawn, run).await;
    tokio::task::spawn_blocking(move || ob.stop()).await??;
    res
}

async fn watch_onionbalance(
    lab: &Lab,
    ob: &OnionbalanceSetup,
    i: usize,
    instances: usize,
    t_spawn: Instant,
    run: &mut Run,
) -> Result<()> {
    let mut watch = LogWatch::new(ob.daemon().log_file());
    let url = ob.master_url();
    let deadline = ob.started_at() + Duration::from_secs(300);
    // Same client loop as wait_master_reachable, with the log watched.
    let t_answer = loop {
        ob.daemon().check_alive()?;
        watch.poll();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!(
                "Onionbalance's master did not answer within 300 s; log tail:\n{}",
                watch.tail(20)
            );
        }
        let get = lab.http_get(&url, left.min(Duration::from_secs(30)));
        // Keep watching the log while a request is in flight.
        tokio::pin!(get);
        let r = loop {
            tokio::select! {
                r = &mut get => break r,
                _ = tokio::time::sleep(Duration::from_millis(200)) => watch.poll(),
            }
        };
        if let Ok(r) = r {
            if r.status == 200 && r.text().starts_with("served by ") {
                break Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    watch.poll();
    let started = ob.started_at();
    run.ob_after_start_s = secs(t_answer - started);
    run.ob_after_spawn_s = secs(t_answer - t_spawn);
    // "This is the first time we see a descriptor for instance X!"
    let mut seen = Vec::new();
    let mut all_desc = None;
    for (t, l) in &watch.lines {
        if let Some(rest) = l
            .split("first time we see a descriptor for instance ")
            .nth(1)
        {
            let a = rest.trim_end_matches('!').to_string();
            if !seen.contains(&a) {
                seen.push(a);
                if seen.len() == instances {
                    all_desc = Some(*t);
                }
            }
        }
    }
    if let Some(t) = all_desc {
        run.ob_all_desc_after_start_s = secs(t.saturating_duration_since(started));
        run.ob_after_desc_s = secs(t_answer.saturating_duration_since(t));
    } else {
        run.ob_all_desc_after_start_s = f64::NAN;
        run.ob_after_desc_s = f64::NAN;
    }
    run.ob_first_upload_after_start_s = watch
        .first(|l| l.contains("Uploading ") && l.contains(" descriptor for "))
        .map(|t| secs(t.saturating_duration_since(started)))
        .unwrap_or(f64::NAN);
    eprintln!(
        "  [run {i}] Onionbalance: answering {:.1}s after its start ({:.1}s after its instances' spawn); all instance descriptors {:.1}s after its start, first upload {:.1}s",
        run.ob_after_start_s,
        run.ob_after_spawn_s,
        run.ob_all_desc_after_start_s,
        run.ob_first_upload_after_start_s
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = BenchArgs::from_env();
    let unknown = args.unknown(&["--runs", "--instances", "--work", "--json"], &[]);
    anyhow::ensure!(unknown.is_empty(), "unknown argument {:?}", unknown[0]);
    let runs: usize = args.number("--runs", 3);
    let instances: usize = args.number("--instances", 2);
    let json_out = args.path("--json");
    let (work, _tmp) = work_dir(args.path("--work"), "rb-startup")?;
    let mut all = Vec::new();
    for i in 1..=runs {
        eprintln!("== run {i}/{runs} (load {})", loadavg());
        let mut run = Run::default();
        if let Err(e) = one_run(&work, i, instances, &mut run).await {
            eprintln!("  [run {i}] FAILED: {e:#}");
            run.error = Some(format!("{e:#}"));
        }
        all.push(run);
    }

    print_table(&all, instances, runs);
    if let Some(p) = json_out {
        std::fs::write(
            &p,
            serde_json::to_string_pretty(&json!({"instances": instances, "runs": all}))?,
        )?;
    }
    if all.iter().all(|r| r.error.is_some()) {
        anyhow::bail!("every run failed");
    }
    Ok(())
}

/// The median table and the ratios, on stdout.
fn print_table(all: &[Run], instances: usize, runs: usize) {
    let col = |f: fn(&Run) -> f64| -> Vec<f64> {
        all.iter()
            .filter(|r| r.error.is_none())
            .map(f)
            .collect::<Vec<_>>()
    };
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let rows: Vec<(&str, Vec<f64>)> = vec![
        ("lab create (keys, torrcs)", col(|r| r.create_s)),
        ("lab cold start → usable", col(|r| r.usable_s)),
        (
            "ours: instance tors spawned → instance descriptors exist",
            col(|r| r.ours_desc_s),
        ),
        (
            "ours: instance descriptors exist → merged descriptor uploaded",
            col(|r| r.ours_publish_s),
        ),
        (
            "ours: instance descriptors exist → master answers",
            col(|r| r.ours_after_desc_s),
        ),
        (
            "ours: instance tors spawned → master answers",
            col(|r| r.ours_after_spawn_s),
        ),
        (
            "Onionbalance: its start → master answers",
            col(|r| r.ob_after_start_s),
        ),
        (
            "Onionbalance: instance tors spawned → master answers",
            col(|r| r.ob_after_spawn_s),
        ),
        (
            "Onionbalance: its start → has every instance descriptor (log)",
            col(|r| r.ob_all_desc_after_start_s),
        ),
        (
            "Onionbalance: its start → first master upload (log)",
            col(|r| r.ob_first_upload_after_start_s),
        ),
        (
            "Onionbalance: has every instance descriptor → master answers",
            col(|r| r.ob_after_desc_s),
        ),
    ];
    println!(
        "\nmachine: {} cores, {}, load {}",
        cores(),
        cpu_model(),
        loadavg()
    );
    println!(
        "{instances} instances on each side; {} of {runs} runs completed\n",
        col(|r| r.usable_s).len()
    );
    println!("| measure | median (s) | runs (s) |");
    println!("|---|---:|---|");
    for (name, v) in &rows {
        println!("| {name} | {:.1} | {} |", median(v), fmt(v));
    }
    let m = |name: &str| median(&rows.iter().find(|r| r.0 == name).unwrap().1);
    let ours_desc = m("ours: instance descriptors exist → master answers");
    let ours_spawn = m("ours: instance tors spawned → master answers");
    let ob_start = m("Onionbalance: its start → master answers");
    let ob_spawn = m("Onionbalance: instance tors spawned → master answers");
    let ob_desc = m("Onionbalance: has every instance descriptor → master answers");
    println!("\nratios of medians (Onionbalance / ours):");
    println!(
        "  OB its start → answers  /  ours descriptors exist → answers: {:.1}×",
        ob_start / ours_desc
    );
    println!(
        "  OB has all descriptors → answers / ours descriptors exist → answers: {:.1}×",
        ob_desc / ours_desc
    );
    println!(
        "  instance tors spawned → answers (like for like): {:.1}×",
        ob_spawn / ours_spawn
    );
    for r in all.iter().filter(|r| r.error.is_some()) {
        println!("failed run: {}", r.error.as_deref().unwrap_or(""));
    }
}
