//! Issue 5 figures: failover of a 3-node RustBalance cluster against
//! Onionbalance 0.2.2 with 3 instances, in one private Tor lab, in one run.
//! Driven by `bench/failover.sh`.
//!
//! ```text
//! failover --bin target/release/rustbalance [--requests 200] [--concurrency 4]
//!          [--ob-cap 720] [--work DIR] [--json FILE] [--no-onionbalance]
//! ```
//!
//! 1. Lab; 3 `rustbalance run` nodes (`rustbalance_testbed::prepare`), wait for a
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
use rustbalance_lab::onionbalance::OnionbalanceSetup;
use rustbalance_lab::Lab;
use rustbalance_testbed::bench::{
    bench_start, fmt_s, lab_progress, loadavg, log, save_json, secs, unix, BenchArgs,
};
use rustbalance_testbed::clients::{spawn_batch, summarize};
use rustbalance_testbed::cluster::publication::{publisher, wait_published, Publication};
use rustbalance_testbed::dropin::{ob_instances, wait_ob_built_from, watch_ob_drop};
use rustbalance_testbed::log_watch::LogWatch;
use rustbalance_testbed::{prepare, with_lab, ClusterNodeProc};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const NAMES: [&str; 3] = ["node1", "node2", "node3"];

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
    let with_value = [
        "--bin",
        "--requests",
        "--concurrency",
        "--ob-cap",
        "--work",
        "--json",
    ];
    let (b, bin) = BenchArgs::checked(&with_value, &["--no-onionbalance"])?;
    Ok(Args {
        bin,
        requests: b.number("--requests", 200),
        conc: b.number("--concurrency", 4),
        ob_cap: b.secs("--ob-cap", 720),
        work: b.path("--work"),
        json: b.path("--json"),
        onionbalance: !b.flag("--no-onionbalance"),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let (labdir, _tmp, mut out) = bench_start(a.work.clone(), "rb-failover")?;
    let work = labdir.parent().context("work directory")?.to_path_buf();
    out["requests"] = json!(a.requests);
    out["concurrency"] = json!(a.conc);
    let res = with_lab(
        &labdir,
        Default::default(),
        lab_progress,
        async |lab, started| {
            out["lab_usable_s"] = json!(secs(started.report.total));
            let mut nodes: Vec<ClusterNodeProc> = Vec::new();
            let mut ob: Option<OnionbalanceSetup> = None;
            let res = run(&a, &work, lab, &mut nodes, &mut ob, &mut out).await;
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
            res
        },
    )
    .await;
    print_table(&out);
    save_json(a.json.as_deref(), &out)?;
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
    let url = cluster_up(a, work, lab, nodes, out).await?;
    let dead = publisher_dies(a, lab, nodes, &url, out).await?;
    let all_live = rejoin(a, work, nodes, dead, out).await?;
    non_publisher_dies(a, lab, nodes, &url, &all_live, out).await?;
    // The cluster is done: stop it so that it does not compete with Onionbalance.
    for n in nodes.iter_mut() {
        n.stop();
    }
    if !a.onionbalance {
        return Ok(());
    }
    let ob = ob_slot.insert(onionbalance_up(a, lab, out).await?);
    onionbalance_instance_dies(a, lab, ob, out).await
}

/// 3 nodes up: a publication listing all three, the master answering, a warm-up batch.
async fn cluster_up(
    a: &Args,
    work: &Path,
    lab: &Lab,
    nodes: &mut Vec<ClusterNodeProc>,
    out: &mut Value,
) -> Result<String> {
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
    Ok(url)
}

/// (a) SIGKILL the publisher; returns its index.
async fn publisher_dies(
    a: &Args,
    lab: &Lab,
    nodes: &mut [ClusterNodeProc],
    url: &str,
    out: &mut Value,
) -> Result<usize> {
    let (dead, _) = publisher(nodes, &[])
        .await
        .context("no publisher before the kill")?;
    let dead_name = nodes[dead].name.clone();
    let live: Vec<&str> = NAMES.into_iter().filter(|n| *n != dead_name).collect();
    log(format!("(a) SIGKILL publisher {dead_name} and its tor"));
    let killed_wall = SystemTime::now();
    let killed = Instant::now();
    nodes[dead].kill();
    let batch = spawn_batch(lab, url, a.requests, a.conc, killed);
    let pa = wait_published(nodes, &[dead], killed_wall, &live, Duration::from_secs(120)).await;
    let pa_s = pa.as_ref().ok().map(|_| secs(killed.elapsed()));
    let started_after = |p: &Publication| p.at_unix() as f64 - unix(killed_wall).floor();
    match &pa {
        Ok(p) => log(format!(
            "(a) {} published without {dead_name} {:.1}s after the kill (reason {:?}, publish started {}s after the kill)",
            nodes[p.node].name,
            killed.elapsed().as_secs_f64(),
            p.record["reason"],
            started_after(p)
        )),
        Err(e) => log(format!("(a) no takeover: {e:#}")),
    }
    let reqs = batch.await?;
    let sa = summarize(&reqs, pa_s);
    log(format!(
        "(a) clients: {}/{} OK, {:?}",
        sa.ok, sa.requests, sa.outcomes
    ));
    let ok = pa.as_ref().ok();
    out["a"] = json!({
        "killed": dead_name,
        "takeover_s": pa_s,
        "new_publisher": ok.map(|p| nodes[p.node].name.clone()),
        "reason": ok.map(|p| p.record["reason"].clone()),
        "publish_started_after_kill_s": ok.map(started_after),
        "publication": ok.map(|p| p.record.clone()),
        "clients": sa,
        "requests": reqs,
    });
    pa?;
    Ok(dead)
}

/// The dead publisher restarts and must re-enter the descriptor; returns
/// the nodes alive afterwards.
async fn rejoin(
    a: &Args,
    work: &Path,
    nodes: &mut [ClusterNodeProc],
    dead: usize,
    out: &mut Value,
) -> Result<Vec<usize>> {
    let dead_name = nodes[dead].name.clone();
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
    Ok(all_live)
}

/// (b) SIGKILL a non-publisher.
async fn non_publisher_dies(
    a: &Args,
    lab: &Lab,
    nodes: &mut [ClusterNodeProc],
    url: &str,
    all_live: &[usize],
    out: &mut Value,
) -> Result<()> {
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
    let batch = spawn_batch(lab, url, a.requests, a.conc, killed);
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
    Ok(())
}

/// (d) Onionbalance with 3 instances, reachable, with a descriptor from all 3.
async fn onionbalance_up(a: &Args, lab: &Lab, out: &mut Value) -> Result<OnionbalanceSetup> {
    log("Onionbalance: 3 instances");
    let t_ob = Instant::now();
    let ob = OnionbalanceSetup::start(lab, "obf", 3, Duration::from_secs(180)).await?;
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
    wait_ob_built_from(ob.daemon(), &mut watch, 3, Duration::from_secs(300)).await?;
    let warm = spawn_batch(lab, &ob.master_url(), 12, a.conc, Instant::now()).await?;
    let ws = summarize(&warm, None);
    log(format!("Onionbalance warm-up: {:?}", ws.outcomes));
    out["ob_warmup"] = json!(ws);
    Ok(ob)
}

/// Where the kill at `killed_wall` falls in the time period (lab client's view).
async fn period_position(lab: &Lab, killed_wall: SystemTime, out: &mut Value) {
    let tp = match lab.control("c1").await {
        Ok(ctl) => rustbalance_node::publisher::network_view(&ctl, true)
            .await
            .ok()
            .map(|v| v.time),
        Err(_) => None,
    };
    let Some(tp) = tp else { return };
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

/// (d) SIGKILL one Onionbalance instance's tor: time until Onionbalance
/// uploads a descriptor without it, and the client batch meanwhile.
async fn onionbalance_instance_dies(
    a: &Args,
    lab: &Lab,
    ob: &OnionbalanceSetup,
    out: &mut Value,
) -> Result<()> {
    let mut watch = LogWatch::new(ob.daemon().log_file());
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
    period_position(lab, killed_wall, out).await;
    let batch = spawn_batch(lab, &ob.master_url(), a.requests, a.conc, killed);
    // Wait for "We got N intros from 2 instances" then "Uploading ...".
    let drop = watch_ob_drop(ob.daemon(), &mut watch, (mark, 3), killed, a.ob_cap, |m| {
        log(format!("(d) {m}"))
    })
    .await;
    let d_s = drop.uploaded.map(|t| secs(t - killed));
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
        "built_from_2_s": drop.built.map(|t| secs(t - killed)),
        "cap_s": a.ob_cap.as_secs(),
        "log": offline_lines,
        "clients": sd,
        "requests": reqs,
    });
    Ok(())
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
