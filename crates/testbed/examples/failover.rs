//! Issue 5 figures: failover of a 3-node RustBalance cluster against
//! Onionbalance 0.2.2 with 3 instances, in one private Tor lab, in one run.
//! Driven by `bench/failover.sh`.
//!
//! ```text
//! failover --bin target/release/rustbalance [--requests 200] [--concurrency 4]
//!          [--ob-cap 720] [--work DIR] [--json FILE] [--no-onionbalance]
//! ```
//!
//! 1. Lab; 3 `rustbalance run` nodes (`cluster_lab::prepare`), wait for a
//!    publication listing all three, and for the master address to answer.
//! 2. (a) SIGKILL the publisher (node and its tor): time until another node
//!    has uploaded (≥ 1 HSDir per descriptor confirmed) a descriptor without
//!    the dead node's intro points. The dead node is then restarted and
//!    must re-enter the descriptor.
//! 3. (b) SIGKILL a non-publisher: time until the publisher has uploaded a
//!    descriptor without its intro points.
//! 4. (c) Right after each kill, REQUESTS GETs of the master address through
//!    the lab client, CONCURRENCY at a time, each on a fresh circuit
//!    (random SOCKS credentials), 30 s timeout each.
//! 5. (d) Onionbalance with 3 instances in the same lab (the RustBalance
//!    nodes are stopped first): SIGKILL one instance's tor; time until
//!    Onionbalance's log (info level) shows it building a master descriptor
//!    from 2 instances and uploading it, capped at OB_CAP seconds; the same
//!    client batch right after the kill.
//!
//! Times are measured by polling (`/status` every 200 ms, Onionbalance's log
//! every 200 ms), so they are upper bounds by at most that much.

use anyhow::{Context, Result};
use rustbalance::cluster_lab::{prepare, ClusterNodeProc};
use rustbalance_lab::onionbalance::OnionbalanceSetup;
use rustbalance_lab::{Lab, LabOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const NAMES: [&str; 3] = ["node1", "node2", "node3"];

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------- cluster

/// The node that currently publishes and its last publication.
async fn publisher(nodes: &[ClusterNodeProc], skip: &[usize]) -> Option<(usize, Value)> {
    for (i, n) in nodes.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        if let Some(s) = n.status().await {
            if s["cluster"]["role"] == "publisher" && !s["cluster"]["last_publish"].is_null() {
                return Some((i, s["cluster"]["last_publish"].clone()));
            }
        }
    }
    None
}

fn published_nodes(p: &Value) -> Vec<String> {
    p["intro_points"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn confirmed(p: &Value) -> bool {
    p["slots"].as_array().is_some_and(|s| {
        !s.is_empty()
            && s.iter().all(|s| {
                s["hsdirs"]
                    .as_object()
                    .is_some_and(|h| h.values().any(|v| v == "UPLOADED"))
            })
    })
}

fn at_unix(p: &Value) -> u64 {
    p["at"]
        .as_str()
        .and_then(|a| humantime::parse_rfc3339(a).ok())
        .map(rustbalance_hs::time::unix_secs)
        .unwrap_or(0)
}

struct Published {
    node: usize,
    record: Value,
}

/// Waits until a node not in `not` has uploaded (confirmed by ≥ 1 HSDir per
/// slot), at or after `since`, a publication listing exactly `want`.
async fn wait_published(
    nodes: &[ClusterNodeProc],
    not: &[usize],
    since: SystemTime,
    want: &[&str],
    timeout: Duration,
) -> Result<Published> {
    let t0 = Instant::now();
    let since_s = rustbalance_hs::time::unix_secs(since);
    let mut last = None;
    loop {
        if let Some((i, p)) = publisher(nodes, not).await {
            if at_unix(&p) >= since_s && published_nodes(&p) == want && confirmed(&p) {
                return Ok(Published { node: i, record: p });
            }
            last = Some((i, p));
        }
        if t0.elapsed() > timeout {
            anyhow::bail!("no publication listing {want:?} within {timeout:?}; last: {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- clients

#[derive(Debug, Clone, serde::Serialize)]
struct Req {
    /// Start, seconds after the kill.
    start: f64,
    /// End, seconds after the kill.
    end: f64,
    outcome: String,
}

/// `n` GETs, `conc` at a time, each on a fresh circuit, timed from `t0`.
fn spawn_batch(
    lab: &Lab,
    url: &str,
    n: usize,
    conc: usize,
    t0: Instant,
) -> tokio::task::JoinHandle<Vec<Req>> {
    let lab = lab.clone();
    let url = url.to_string();
    tokio::spawn(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..conc {
            let (lab, url, next) = (lab.clone(), url.clone(), next.clone());
            set.spawn(async move {
                let mut out = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < n {
                    let start = t0.elapsed();
                    let outcome = match lab.http_get(&url, Duration::from_secs(30)).await {
                        Ok(r) if r.status == 200 => r.text().trim().to_string(),
                        Ok(r) => format!("HTTP {}", r.status),
                        Err(e) => classify(&e.to_string()),
                    };
                    out.push(Req {
                        start: start.as_secs_f64(),
                        end: t0.elapsed().as_secs_f64(),
                        outcome,
                    });
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.unwrap_or_default());
        }
        all.sort_by(|a, b| a.start.partial_cmp(&b.start).unwrap());
        all
    })
}

fn classify(e: &str) -> String {
    let e = e.to_lowercase();
    if e.contains("no complete response within") {
        return "failed: no answer within the 30 s limit".into();
    }
    for k in [
        "descriptor not found",
        "introduction failed",
        "introduction timed out",
        "rendezvous failed",
        "timed out",
        "ttl expired",
        "general failure",
        "connection refused",
    ] {
        if e.contains(k) {
            return format!("failed: {k}");
        }
    }
    // The cause is at the end of the message (after the URL).
    let tail: String = e
        .chars()
        .rev()
        .take(100)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("failed: ...{tail}")
}

#[derive(Debug, Clone, serde::Serialize)]
struct BatchSummary {
    requests: usize,
    ok: usize,
    failed: usize,
    ok_pct: f64,
    outcomes: BTreeMap<String, usize>,
    /// Requests started before the fresh publication was seen, and how many of them failed.
    before_fix: usize,
    before_fix_failed: usize,
    duration_s: f64,
    p50_s: f64,
    max_s: f64,
}

fn summarize(reqs: &[Req], fix_after_kill: Option<f64>) -> BatchSummary {
    let mut outcomes = BTreeMap::new();
    for r in reqs {
        *outcomes.entry(r.outcome.clone()).or_insert(0) += 1;
    }
    let ok = reqs
        .iter()
        .filter(|r| r.outcome.starts_with("served by"))
        .count();
    let fix = fix_after_kill.unwrap_or(f64::INFINITY);
    let before: Vec<&Req> = reqs.iter().filter(|r| r.start < fix).collect();
    let mut lat: Vec<f64> = reqs.iter().map(|r| r.end - r.start).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    BatchSummary {
        requests: reqs.len(),
        ok,
        failed: reqs.len() - ok,
        ok_pct: if reqs.is_empty() {
            0.0
        } else {
            (1000.0 * ok as f64 / reqs.len() as f64).round() / 10.0
        },
        outcomes,
        before_fix: before.len(),
        before_fix_failed: before
            .iter()
            .filter(|r| !r.outcome.starts_with("served by"))
            .count(),
        duration_s: reqs.iter().map(|r| r.end).fold(0.0, f64::max),
        p50_s: lat.get(lat.len() / 2).copied().unwrap_or(0.0),
        max_s: lat.last().copied().unwrap_or(0.0),
    }
}

// ---------------------------------------------------------------- Onionbalance log

struct LogWatch {
    path: PathBuf,
    offset: usize,
    lines: Vec<(Instant, String)>,
}

impl LogWatch {
    fn new(path: &Path) -> Self {
        LogWatch {
            path: path.to_path_buf(),
            offset: 0,
            lines: Vec::new(),
        }
    }
    fn poll(&mut self) {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return;
        };
        if bytes.len() <= self.offset {
            return;
        }
        let now = Instant::now();
        let new = &bytes[self.offset..];
        let Some(end) = new.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        for l in String::from_utf8_lossy(&new[..end]).lines() {
            self.lines.push((now, l.to_string()));
        }
        self.offset += end + 1;
    }
    /// Index past the last line seen so far.
    fn mark(&self) -> usize {
        self.lines.len()
    }
}

/// "We got 6 intros from 3 instances. ..." → 3
fn ob_instances(line: &str) -> Option<usize> {
    let rest = line.split(" intros from ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------- main

struct Args {
    bin: PathBuf,
    requests: usize,
    conc: usize,
    ob_cap: Duration,
    work: Option<PathBuf>,
    json: Option<PathBuf>,
    onionbalance: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        bin: PathBuf::new(),
        requests: 200,
        conc: 4,
        ob_cap: Duration::from_secs(720),
        work: None,
        json: None,
        onionbalance: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--bin" => a.bin = it.next().context("--bin PATH")?.into(),
            "--requests" => a.requests = it.next().context("--requests N")?.parse()?,
            "--concurrency" => a.conc = it.next().context("--concurrency N")?.parse()?,
            "--ob-cap" => a.ob_cap = Duration::from_secs(it.next().context("--ob-cap S")?.parse()?),
            "--work" => a.work = Some(it.next().context("--work DIR")?.into()),
            "--json" => a.json = Some(it.next().context("--json FILE")?.into()),
            "--no-onionbalance" => a.onionbalance = false,
            o => anyhow::bail!("unknown argument {o:?}"),
        }
    }
    anyhow::ensure!(a.bin.is_file(), "--bin must name the rustbalance binary");
    a.bin = a.bin.canonicalize()?;
    Ok(a)
}

fn log(msg: impl AsRef<str>) {
    eprintln!(
        "[{}] {}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        msg.as_ref()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let tmp;
    let work = match &a.work {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            w.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("rb-failover").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let labdir = work.join("lab");
    if labdir.exists() {
        std::fs::remove_dir_all(&labdir)?;
    }
    log(format!("lab in {} (load {})", labdir.display(), loadavg()));
    let lab = Lab::create(&labdir, LabOptions::default()).await?;
    let mut out = json!({
        "machine": {"cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
                    "cpu": cpu_model(), "load_start": loadavg()},
        "requests": a.requests, "concurrency": a.conc,
    });
    let mut nodes: Vec<ClusterNodeProc> = Vec::new();
    let mut ob: Option<OnionbalanceSetup> = None;
    let res = run(&a, &work, &lab, &mut nodes, &mut ob, &mut out).await;
    if let Err(e) = &res {
        log(format!("FAILED: {e:#}"));
        out["error"] = json!(format!("{e:#}"));
    }
    out["machine"]["load_end"] = json!(loadavg());
    for n in nodes.iter_mut() {
        n.stop();
    }
    if let Some(ob) = ob.take() {
        let _ = tokio::task::spawn_blocking(move || ob.stop()).await;
    }
    let stop = lab.stop_and_verify().await;
    print_table(&out);
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&out)?)?;
    }
    stop?;
    res
}

async fn run(
    a: &Args,
    work: &Path,
    lab: &Lab,
    nodes: &mut Vec<ClusterNodeProc>,
    ob_slot: &mut Option<OnionbalanceSetup>,
    out: &mut Value,
) -> Result<()> {
    let report = lab
        .start(|p| {
            log(format!(
                "lab: {} ({:.1}s)",
                p.phase,
                p.elapsed.as_secs_f64()
            ))
        })
        .await?;
    out["lab_usable_s"] = json!(secs(report.total));

    // ------------------------------------------------------------ cluster up
    let (master, n) = prepare(lab, 3).await?;
    *nodes = n;
    let url = format!("http://{}/", master.address());
    let t0 = Instant::now();
    for n in nodes.iter_mut() {
        let log = work.join(format!("{}.log", n.name));
        n.start(&a.bin, &log)?;
    }
    let first = wait_published(
        nodes,
        &[],
        SystemTime::UNIX_EPOCH,
        &NAMES,
        Duration::from_secs(240),
    )
    .await?;
    out["cluster_first_publish_s"] = json!(secs(t0.elapsed()));
    log(format!(
        "first publication with all 3 nodes by {} after {:.1}s",
        nodes[first.node].name,
        t0.elapsed().as_secs_f64()
    ));
    lab.wait_http(&url, "served by", Duration::from_secs(180))
        .await?;
    out["cluster_reachable_s"] = json!(secs(t0.elapsed()));
    log(format!(
        "master reachable {:.1}s after the nodes started",
        t0.elapsed().as_secs_f64()
    ));
    let warm = spawn_batch(lab, &url, 12, a.conc, Instant::now()).await?;
    let ws = summarize(&warm, None);
    log(format!("warm-up: {:?}", ws.outcomes));
    out["cluster_warmup"] = json!(ws);

    // ------------------------------------------------------------ (a) publisher dies
    let (p, _) = publisher(nodes, &[])
        .await
        .context("no publisher before the kill")?;
    let dead = p;
    let dead_name = nodes[dead].name.clone();
    let live: Vec<&str> = NAMES.into_iter().filter(|n| *n != dead_name).collect();
    log(format!("(a) SIGKILL publisher {dead_name} and its tor"));
    let killed_wall = SystemTime::now();
    let killed = Instant::now();
    nodes[dead].kill();
    let batch = spawn_batch(lab, &url, a.requests, a.conc, killed);
    let pa = wait_published(nodes, &[dead], killed_wall, &live, Duration::from_secs(120)).await;
    let pa_s = pa.as_ref().ok().map(|_| secs(killed.elapsed()));
    match &pa {
        Ok(p) => log(format!(
            "(a) {} published without {dead_name} {:.1}s after the kill (reason {:?}, publish started {}s after the kill)",
            nodes[p.node].name,
            killed.elapsed().as_secs_f64(),
            p.record["reason"],
            at_unix(&p.record) as f64 - unix(killed_wall).floor()
        )),
        Err(e) => log(format!("(a) no takeover: {e:#}")),
    }
    let reqs = batch.await?;
    let sa = summarize(&reqs, pa_s);
    log(format!(
        "(a) clients: {}/{} OK, {:?}",
        sa.ok, sa.requests, sa.outcomes
    ));
    out["a"] = json!({
        "killed": dead_name,
        "takeover_s": pa_s,
        "new_publisher": pa.as_ref().ok().map(|p| nodes[p.node].name.clone()),
        "reason": pa.as_ref().ok().map(|p| p.record["reason"].clone()),
        "publish_started_after_kill_s": pa.as_ref().ok().map(|p| at_unix(&p.record) as f64 - unix(killed_wall).floor()),
        "publication": pa.as_ref().ok().map(|p| p.record.clone()),
        "clients": sa,
        "requests": reqs,
    });
    let p2 = pa?.node;

    // ------------------------------------------------------------ rejoin
    log(format!("restarting {dead_name}"));
    let t_re = Instant::now();
    let re_wall = SystemTime::now();
    let relog = work.join(format!("{dead_name}.restart.log"));
    nodes[dead].start(&a.bin, &relog)?;
    let mut all_live = vec![0usize, 1, 2];
    match wait_published(nodes, &[], re_wall, &NAMES, Duration::from_secs(150)).await {
        Ok(p) => {
            out["rejoin_s"] = json!(secs(t_re.elapsed()));
            log(format!(
                "{dead_name} back in the descriptor (published by {}) {:.1}s after its restart",
                nodes[p.node].name,
                t_re.elapsed().as_secs_f64()
            ));
        }
        Err(e) => {
            log(format!(
                "{dead_name} did not rejoin: {e:#}; continuing with 2 nodes"
            ));
            out["rejoin_s"] = Value::Null;
            out["rejoin_error"] = json!(format!("{e:#}"));
            nodes[dead].kill();
            all_live.retain(|i| *i != dead);
        }
    }
    // Let the roles settle (a restarted lower-priority node may take the lease back).
    tokio::time::sleep(Duration::from_secs(5)).await;

    // ------------------------------------------------------------ (b) non-publisher dies
    let skip: Vec<usize> = (0..3).filter(|i| !all_live.contains(i)).collect();
    let (pub_b, _) = publisher(nodes, &skip)
        .await
        .context("no publisher before (b)")?;
    let victim = *all_live
        .iter()
        .find(|i| **i != pub_b)
        .context("no non-publisher left")?;
    let victim_name = nodes[victim].name.clone();
    let mut gone = skip.clone();
    gone.push(victim);
    let left: Vec<&str> = NAMES
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(_, n)| n)
        .collect();
    log(format!(
        "(b) SIGKILL non-publisher {victim_name} (publisher: {})",
        nodes[pub_b].name
    ));
    let killed_wall = SystemTime::now();
    let killed = Instant::now();
    nodes[victim].kill();
    let batch = spawn_batch(lab, &url, a.requests, a.conc, killed);
    let pb = wait_published(nodes, &gone, killed_wall, &left, Duration::from_secs(120)).await;
    let pb_s = pb.as_ref().ok().map(|_| secs(killed.elapsed()));
    match &pb {
        Ok(p) => log(format!(
            "(b) {} published without {victim_name} {:.1}s after the kill (reason {:?})",
            nodes[p.node].name,
            killed.elapsed().as_secs_f64(),
            p.record["reason"]
        )),
        Err(e) => log(format!("(b) intro points never left: {e:#}")),
    }
    let reqs = batch.await?;
    let sb = summarize(&reqs, pb_s);
    log(format!(
        "(b) clients: {}/{} OK, {:?}",
        sb.ok, sb.requests, sb.outcomes
    ));
    out["b"] = json!({
        "killed": victim_name,
        "publisher": nodes[pub_b].name,
        "nodes_before": 3 - skip.len(),
        "drop_s": pb_s,
        "reason": pb.as_ref().ok().map(|p| p.record["reason"].clone()),
        "publication": pb.as_ref().ok().map(|p| p.record.clone()),
        "clients": sb,
        "requests": reqs,
    });
    let _ = p2;
    // The cluster is done: stop it so that it does not compete with Onionbalance.
    for n in nodes.iter_mut() {
        n.stop();
    }
    if !a.onionbalance {
        return Ok(());
    }

    // ------------------------------------------------------------ (d) Onionbalance
    log("Onionbalance: 3 instances");
    let t_ob = Instant::now();
    let ob = OnionbalanceSetup::start(lab, "obf", 3, Duration::from_secs(180)).await?;
    let ob = ob_slot.insert(ob);
    let took = ob
        .wait_master_reachable(lab, Duration::from_secs(360))
        .await?;
    out["ob_reachable_after_start_s"] = json!(secs(took));
    out["ob_reachable_after_spawn_s"] = json!(secs(t_ob.elapsed()));
    log(format!(
        "Onionbalance master reachable {:.1}s after its start",
        took.as_secs_f64()
    ));
    let mut watch = LogWatch::new(ob.daemon().log_file());
    // Precondition: Onionbalance has built a descriptor from all 3 instances.
    let pre = Instant::now();
    loop {
        watch.poll();
        if watch.lines.iter().any(|(_, l)| ob_instances(l) == Some(3)) {
            break;
        }
        anyhow::ensure!(
            pre.elapsed() < Duration::from_secs(300),
            "Onionbalance never built a descriptor from 3 instances"
        );
        ob.daemon().check_alive()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ob_url = ob.master_url();
    let warm = spawn_batch(lab, &ob_url, 12, a.conc, Instant::now()).await?;
    let ws = summarize(&warm, None);
    log(format!("Onionbalance warm-up: {:?}", ws.outcomes));
    out["ob_warmup"] = json!(ws);

    // Where the kill falls in the time period.
    let tp = match lab.control("c1").await {
        Ok(ctl) => rustbalance_node::publisher::network_view(&ctl, true)
            .await
            .ok()
            .map(|v| v.time),
        Err(_) => None,
    };
    let inst = &ob.instances()[0];
    let inst_name = inst.tor.name().to_string();
    log(format!(
        "(d) SIGKILL Onionbalance instance {inst_name}'s tor"
    ));
    watch.poll();
    let mark = watch.mark();
    let killed_wall = SystemTime::now();
    let killed = Instant::now();
    let id = inst.tor.process_id();
    tokio::task::spawn_blocking(move || id.kill()).await??;
    if let Some(tp) = tp {
        let now = unix(killed_wall) as u64;
        let (off, len) = (tp.period_offset_secs(), u64::from(tp.period_minutes) * 60);
        let next = ((now - off) / len + 1) * len + off;
        let srv = tp.srv_run_secs();
        let next_srv = (now / srv + 1) * srv;
        out["d_next_period_start_after_kill_s"] = json!(next - now);
        out["d_next_srv_after_kill_s"] = json!(next_srv - now);
        out["d_period_s"] = json!(len);
        log(format!(
            "(d) next time period starts {}s after the kill (period {len}s); next SR run {}s after",
            next - now,
            next_srv - now
        ));
    }
    let batch = spawn_batch(lab, &ob_url, a.requests, a.conc, killed);
    // Wait for "We got N intros from 2 instances" then "Uploading ...".
    let mut built = None;
    let mut uploaded = None;
    let mut last_report = Instant::now();
    while killed.elapsed() < a.ob_cap {
        watch.poll();
        for (t, l) in &watch.lines[mark..] {
            if built.is_none() && ob_instances(l).is_some_and(|n| n < 3) {
                built = Some(*t);
            }
            if let Some(b) = built {
                if uploaded.is_none() && *t >= b && l.contains("Uploading ") {
                    uploaded = Some(*t);
                }
            }
        }
        if uploaded.is_some() {
            break;
        }
        if ob.daemon().check_alive().is_err() {
            log("(d) Onionbalance died");
            break;
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            last_report = Instant::now();
            log(format!(
                "(d) {:.0}s since the kill, Onionbalance still lists 3 instances",
                killed.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d_s = uploaded.map(|t| secs(t - killed));
    let offline_lines: Vec<String> = watch.lines[mark..]
        .iter()
        .filter(|(_, l)| {
            l.contains("is offline")
                || l.contains("Entirely missing")
                || ob_instances(l).is_some_and(|n| n < 3)
        })
        .take(6)
        .map(|(t, l)| format!("+{:.1}s {l}", (*t - killed).as_secs_f64()))
        .collect();
    match d_s {
        Some(s) => log(format!(
            "(d) Onionbalance uploaded a descriptor without {inst_name} {s:.1}s after the kill"
        )),
        None => log(format!(
            "(d) Onionbalance still listed {inst_name} after {:.0}s",
            a.ob_cap.as_secs_f64()
        )),
    }
    let reqs = batch.await?;
    let sd = summarize(&reqs, d_s);
    log(format!(
        "(d) clients: {}/{} OK, {:?}",
        sd.ok, sd.requests, sd.outcomes
    ));
    out["d"] = json!({
        "killed": inst_name,
        "drop_s": d_s,
        "built_from_2_s": built.map(|t| secs(t - killed)),
        "cap_s": a.ob_cap.as_secs(),
        "log": offline_lines,
        "clients": sd,
        "requests": reqs,
    });
    Ok(())
}

fn fmt_s(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.1} s"),
        None => "—".into(),
    }
}

fn print_table(o: &Value) {
    let cap = o["d"]["cap_s"].as_u64().unwrap_or(720);
    let d = if o["d"].is_null() {
        "not run".to_string()
    } else if o["d"]["drop_s"].is_null() {
        format!("> {} min", cap / 60)
    } else {
        fmt_s(&o["d"]["drop_s"])
    };
    let cl = |k: &str| {
        let c = &o[k]["clients"];
        if c.is_null() {
            "—".to_string()
        } else {
            format!(
                "{}/{} ({}%), {:.0} s",
                c["ok"],
                c["requests"],
                c["ok_pct"],
                c["duration_s"].as_f64().unwrap_or(0.0)
            )
        }
    };
    println!(
        "\nmachine: {} cores, {}, load {} → {}",
        o["machine"]["cores"],
        o["machine"]["cpu"].as_str().unwrap_or(""),
        o["machine"]["load_start"].as_str().unwrap_or(""),
        o["machine"]["load_end"].as_str().unwrap_or("")
    );
    println!(
        "lab usable {}; cluster: first 3-node publication {}, master answering {}; Onionbalance answering {} after its start",
        fmt_s(&o["lab_usable_s"]),
        fmt_s(&o["cluster_first_publish_s"]),
        fmt_s(&o["cluster_reachable_s"]),
        fmt_s(&o["ob_reachable_after_start_s"])
    );
    println!("\n| event | dead intro points leave the published descriptor | client GETs OK right after the kill (ok/total, %, batch duration) |");
    println!("|---|---:|---|");
    println!(
        "| RustBalance (a): publisher {} SIGKILLed | {} (new publisher {}) | {} |",
        o["a"]["killed"].as_str().unwrap_or("?"),
        fmt_s(&o["a"]["takeover_s"]),
        o["a"]["new_publisher"].as_str().unwrap_or("—"),
        cl("a")
    );
    println!(
        "| RustBalance (b): non-publisher {} SIGKILLed | {} | {} |",
        o["b"]["killed"].as_str().unwrap_or("?"),
        fmt_s(&o["b"]["drop_s"]),
        cl("b")
    );
    println!(
        "| Onionbalance (d): instance {} tor SIGKILLed | {} | {} |",
        o["d"]["killed"].as_str().unwrap_or("?"),
        d,
        cl("d")
    );
    let ratio = |k: &str, key: &str| -> String {
        match (o["d"]["drop_s"].as_f64(), o[k][key].as_f64()) {
            (Some(d), Some(x)) if x > 0.0 => format!("{:.0}×", d / x),
            (None, Some(x)) if x > 0.0 && !o["d"].is_null() => format!("> {:.0}×", cap as f64 / x),
            _ => "—".into(),
        }
    };
    println!(
        "\nOnionbalance / RustBalance: vs (a) {}, vs (b) {}",
        ratio("a", "takeover_s"),
        ratio("b", "drop_s")
    );
    if !o["rejoin_s"].is_null() {
        println!(
            "restarted node back in the descriptor after {}",
            fmt_s(&o["rejoin_s"])
        );
    }
    for k in ["a", "b", "d"] {
        if !o[k].is_null() {
            println!("{k}: outcomes {}", o[k]["clients"]["outcomes"]);
        }
    }
    if let Some(l) = o["d"]["log"].as_array() {
        for x in l {
            println!("  onionbalance: {}", x.as_str().unwrap_or(""));
        }
    }
    if let Some(e) = o["error"].as_str() {
        println!("ERROR: {e}");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default()
}
