//! Issue 17 figures: two publisher-only RustBalance nodes against Onionbalance 0.2.2 on
//! the same three backends, in one private Tor lab, at the same time. Driven by
//! `bench/dropin.sh`.
//!
//! ```text
//! dropin --bin target/release/rustbalance [--concurrency 2] [--ob-cap 720]
//!        [--work DIR] [--json FILE]
//! ```
//!
//! The three backends are plain tors set up as Onionbalance's documentation says
//! (`HiddenServiceOnionbalanceInstance 1`, `ob_config`), instances of two master keys at
//! once (tor's `ob_config` takes several `MasterOnionAddress` lines): Onionbalance
//! publishes master A from its `config.yaml`, two RustBalance nodes publish master B
//! from `rustbalance onionbalance import` of the same file for B. The same backend
//! dies under both at the same moment.
//!
//! 1. The backends answer at their own addresses (bootstrapped, descriptors up).
//! 2. Onionbalance's tor bootstraps (Onionbalance crashes without a consensus; its
//!    bootstrap is left out of Onionbalance's time). Then Onionbalance and both nodes
//!    start together; each side's time from its start until its master answers the lab
//!    client (a GET on a fresh circuit, again 0.5 s after each failure). The nodes'
//!    time includes their own tor's bootstrap.
//! 3. Both sides list all 3 backends (Onionbalance's log, the nodes' `/status`); a
//!    client loop per master (CONCURRENCY GETs at a time, fresh circuits) runs until
//!    the end.
//! 4. One backend's tor is SIGKILLed: time until each side has uploaded a descriptor
//!    without it (RustBalance: a publication confirmed by the HSDirs in `/status`;
//!    Onionbalance: its log builds a descriptor from 2 instances, then uploads),
//!    Onionbalance capped at OB_CAP.
//! 5. The publishing node is SIGKILLed: time until the other node publishes.
//!    Onionbalance has one daemon: its master is not republished until someone
//!    restarts it (not measured; its descriptor lives until it expires).
//!
//! Times are polled (`/status` every 200 ms, Onionbalance's log every 200 ms), so they
//! are upper bounds by at most that much.

use anyhow::{Context, Result};
use rustbalance_lab::onionbalance::{ObBackends, ObDaemon};
use rustbalance_lab::Lab;
use rustbalance_testbed::bench::{
    bench_start, fmt_s, lab_progress, loadavg, log, save_json, secs, BenchArgs,
};
use rustbalance_testbed::clients::{window, ClientLoop, Req};
use rustbalance_testbed::dropin::{import, loopback, variant, wait_ob_built_from, watch_ob_drop};
use rustbalance_testbed::log_watch::LogWatch;
use rustbalance_testbed::{poll_until, wait_published, with_lab, ClusterNodeProc};
use rustbalance_tor::port::Proto;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

const SETUP: &str = "drop";
/// Liveness bound for the RustBalance side (a loaded 2-core machine must pass).
const LIVENESS: Duration = Duration::from_secs(300);

struct Args {
    bin: PathBuf,
    conc: usize,
    ob_cap: Duration,
    work: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let with_value = ["--bin", "--concurrency", "--ob-cap", "--work", "--json"];
    let (b, bin) = BenchArgs::checked(&with_value, &[])?;
    Ok(Args {
        bin,
        conc: b.number("--concurrency", 2),
        ob_cap: b.secs("--ob-cap", 720),
        work: b.path("--work"),
        json: b.path("--json"),
    })
}

/// What runs, for the cleanup.
#[derive(Default)]
struct Running {
    backends: Option<ObBackends>,
    ob: Option<ObDaemon>,
    nodes: Vec<ClusterNodeProc>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let (labdir, _tmp, mut out) = bench_start(a.work.clone(), "rb-dropin")?;
    out["concurrency"] = json!(a.conc);
    let res = with_lab(&labdir, Default::default(), lab_progress, async |lab, _| {
        let mut running = Running::default();
        let res = run(&a, lab, &mut running, &mut out).await;
        if let Err(e) = &res {
            log(format!("FAILED: {e:#}"));
            out["error"] = json!(format!("{e:#}"));
        }
        out["machine"]["load_end"] = json!(loadavg());
        for n in running.nodes.iter_mut() {
            n.stop();
        }
        let (ob, backends) = (running.ob.take(), running.backends.take());
        let _ = tokio::task::spawn_blocking(move || {
            ob.map(|o| o.stop());
            backends.map(|b| b.stop());
        })
        .await;
        res
    })
    .await;
    print_table(&out);
    save_json(a.json.as_deref(), &out)?;
    res
}

async fn run(a: &Args, lab: &Lab, r: &mut Running, out: &mut Value) -> Result<()> {
    let b = r
        .backends
        .insert(ObBackends::start_for(lab, SETUP, 3, 2).await?);
    backends_answer(lab, b).await?;
    let (ob, t_ob) = start_both(a, lab, b, &mut r.nodes, out).await?;
    let ob = r.ob.insert(ob);
    let b = r.backends.as_ref().context("backends")?;
    let master_b = b.more[0].master.clone();
    let (url_a, url_b) = (
        format!("http://{}/", b.master),
        format!("http://{master_b}/"),
    );
    let (reach_a, reach_b) =
        tokio::join!(reachable(lab, &url_a, t_ob), reachable(lab, &url_b, t_ob));
    let (reach_a, reach_b) = (reach_a?, reach_b?);
    log(format!(
        "master answered after start: Onionbalance {reach_a:.1}s, RustBalance {reach_b:.1}s"
    ));
    out["start_to_answer_s"] = json!({"onionbalance": reach_a, "rustbalance": reach_b});

    let names: Vec<String> = b.instances.iter().map(|i| i.tor.name().into()).collect();
    let mut watch = LogWatch::new(ob.daemon().log_file());
    all_listed(ob, &mut watch, &r.nodes, &names).await?;
    let t0 = Instant::now();
    let loops = [
        ClientLoop::spawn(lab, &url_a, a.conc, t0),
        ClientLoop::spawn(lab, &url_b, a.conc, t0),
    ];
    poll_until(
        "both client loops served",
        LIVENESS,
        Duration::from_millis(500),
        async || Ok(loops.iter().all(|l| l.served_since(0.0) >= 5).then_some(())),
    )
    .await?;
    let killed = backend_dies(a, b, ob, &mut watch, &r.nodes, &names, out).await?;
    let k = secs(killed - t0);
    publisher_dies(&mut r.nodes, &names, out).await?;
    let end = secs(t0.elapsed());
    // Both masters served once more after the last kill; a master that is not is what
    // the figures show (its requests are kept), not a reason to lose them.
    if let Err(e) = poll_until(
        "both loops served after the kills",
        LIVENESS,
        Duration::from_millis(500),
        async || Ok(loops.iter().all(|l| l.served_since(end) >= 1).then_some(())),
    )
    .await
    {
        log(format!("NOT SERVED after the kills: {e:#}"));
        out["not_served_after_kills"] = json!(format!("{e:#}"));
    }
    let [la, lb] = loops;
    let (ra, rb) = (la.finish().await, lb.finish().await);
    out["clients"] = json!({
        "kill_at_s": k,
        "onionbalance": windows(&ra, k),
        "rustbalance": windows(&rb, k),
    });
    out["requests"] = json!({"onionbalance": ra, "rustbalance": rb});
    Ok(())
}

/// Each backend answers at its own address.
async fn backends_answer(lab: &Lab, b: &ObBackends) -> Result<()> {
    for i in &b.instances {
        let t = Instant::now();
        let s = reachable(lab, &format!("http://{}/", i.address), t).await?;
        log(format!("backend {} answers ({s:.1}s)", i.tor.name()));
    }
    Ok(())
}

/// Onionbalance's tor bootstraps; then Onionbalance (master A) and the two
/// publisher-only nodes (master B) start together. Returns Onionbalance and the start.
async fn start_both(
    a: &Args,
    lab: &Lab,
    b: &ObBackends,
    nodes: &mut Vec<ClusterNodeProc>,
    out: &mut Value,
) -> Result<(ObDaemon, Instant)> {
    let (g1, g2) = (loopback(Proto::Udp)?, loopback(Proto::Udp)?);
    let more = &b.more[0];
    let imported = import(lab, &a.bin, SETUP, (&more.config, &more.master), g1)?;
    let configs = [
        variant(&imported, "droppub1", (g1, g2), 10, None)?,
        variant(&imported, "droppub2", (g2, g1), 20, None)?,
    ];
    // Onionbalance's tor first: it crashes without a consensus.
    let ob = ObDaemon::start(lab, SETUP, &b.config, LIVENESS).await?;
    let t = ob.started_at();
    // Publisher-only nodes have no target: the address is never used.
    let none = SocketAddr::from(([127, 0, 0, 1], 9));
    for c in &configs {
        let mut n = ClusterNodeProc::from_config(c, none)?;
        n.start(&a.bin, &lab.dir().join(format!("{}.log", n.name)))?;
        nodes.push(n);
    }
    let lag = secs(t.elapsed());
    log(format!(
        "Onionbalance (master A {}) and 2 RustBalance nodes (master B {}) started within {lag:.2}s",
        b.master, more.master
    ));
    out["masters"] = json!({"onionbalance": b.master, "rustbalance": more.master});
    out["start_skew_s"] = json!(lag);
    Ok((ob, t))
}

/// Seconds from `t0` until a GET of `url` on a fresh circuit is served.
async fn reachable(lab: &Lab, url: &str, t0: Instant) -> Result<f64> {
    loop {
        let last = match lab.http_get(url, Duration::from_secs(30)).await {
            Ok(r) if r.status == 200 && r.text().starts_with("served by ") => {
                return Ok(secs(t0.elapsed()))
            }
            Ok(r) => format!("HTTP {}", r.status),
            Err(e) => format!("{e}"),
        };
        anyhow::ensure!(
            t0.elapsed() < LIVENESS * 3,
            "{url} never answered; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn groups(names: &[String], skip: Option<&str>) -> Vec<String> {
    names
        .iter()
        .filter(|n| Some(n.as_str()) != skip)
        .map(|n| format!("backend/{n}"))
        .collect()
}

/// Both sides list all 3 backends.
async fn all_listed(
    ob: &ObDaemon,
    watch: &mut LogWatch,
    nodes: &[ClusterNodeProc],
    names: &[String],
) -> Result<()> {
    let all = groups(names, None);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let p = wait_published(nodes, &[], SystemTime::UNIX_EPOCH, &all, LIVENESS).await?;
    log(format!("{} published all 3 backends", nodes[p.node].name));
    wait_ob_built_from(ob.daemon(), watch, 3, LIVENESS * 2).await?;
    log("Onionbalance built a descriptor from all 3 instances");
    Ok(())
}

/// SIGKILL backend 1's tor; each side's time to a descriptor without it. Returns the
/// moment of the kill.
async fn backend_dies(
    a: &Args,
    b: &ObBackends,
    ob: &ObDaemon,
    watch: &mut LogWatch,
    nodes: &[ClusterNodeProc],
    names: &[String],
    out: &mut Value,
) -> Result<Instant> {
    let victim = &b.instances[0];
    let name = victim.tor.name().to_string();
    watch.poll();
    let mark = watch.mark();
    let killed_wall = SystemTime::now();
    let killed = Instant::now();
    victim.tor.process_id().kill()?;
    log(format!("backend {name}'s tor SIGKILLed"));
    let rest = groups(names, Some(&name));
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let (rb, obd) = tokio::join!(
        wait_published(nodes, &[], killed_wall, &rest, LIVENESS),
        watch_ob_drop(ob.daemon(), watch, (mark, 3), killed, a.ob_cap, |m| log(m)),
    );
    let rb_s = rb.as_ref().ok().map(|p| secs(p.waited));
    let ob_s = obd.uploaded.map(|t| secs(t - killed));
    log(format!(
        "{name} left: RustBalance {rb_s:?}s, Onionbalance {ob_s:?}s (cap {}s)",
        a.ob_cap.as_secs()
    ));
    out["backend_death_to_gone_s"] = json!({
        "killed": name,
        "rustbalance": rb_s,
        "rustbalance_error": rb.as_ref().err().map(|e| format!("{e:#}")),
        "onionbalance": ob_s,
        "onionbalance_built_s": obd.built.map(|t| secs(t - killed)),
        "onionbalance_cap_s": a.ob_cap.as_secs(),
    });
    Ok(killed)
}

/// SIGKILL the publishing node: time until the other publishes the 2 live backends.
async fn publisher_dies(
    nodes: &mut [ClusterNodeProc],
    names: &[String],
    out: &mut Value,
) -> Result<()> {
    let (dead, _) = rustbalance_testbed::publisher(nodes, &[])
        .await
        .context("no publishing node")?;
    let rest = groups(names, Some(&names[0]));
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let killed = SystemTime::now();
    nodes[dead].kill();
    let p = wait_published(nodes, &[dead], killed, &rest, LIVENESS).await?;
    log(format!(
        "publisher {} SIGKILLed: {} published after {:.1}s",
        nodes[dead].name,
        nodes[p.node].name,
        p.waited.as_secs_f64()
    ));
    out["publisher_death_to_publish_s"] = json!({
        "rustbalance": secs(p.waited),
        "onionbalance": Value::Null,
    });
    Ok(())
}

/// Requests before the backend's death and after it.
fn windows(reqs: &[Req], kill: f64) -> Value {
    json!({
        "before_kill": window(reqs, 0.0, kill),
        "after_kill": window(reqs, kill, f64::INFINITY),
    })
}

fn ratio(ob: &Value, rb: &Value) -> String {
    match (ob.as_f64(), rb.as_f64()) {
        (Some(o), Some(r)) if r > 0.0 => format!("{:.1}×", o / r),
        _ => "—".into(),
    }
}

fn print_table(o: &Value) {
    let row = |what: &str, v: &Value| {
        println!(
            "| {what} | {} | {} | {} |",
            fmt_s(&v["rustbalance"]),
            fmt_s(&v["onionbalance"]),
            ratio(&v["onionbalance"], &v["rustbalance"])
        );
    };
    println!("| step | RustBalance (2 publisher-only nodes) | Onionbalance 0.2.2 | Onionbalance / RustBalance |");
    println!("|---|---:|---:|---:|");
    row("publisher start → master answers", &o["start_to_answer_s"]);
    row(
        "backend tor SIGKILLed → descriptor without it uploaded",
        &o["backend_death_to_gone_s"],
    );
    row(
        "publisher SIGKILLed → next publication",
        &o["publisher_death_to_publish_s"],
    );
    for side in ["rustbalance", "onionbalance"] {
        for w in ["before_kill", "after_kill"] {
            let c = &o["clients"][side][w];
            let s = &c["summary"];
            println!(
                "| clients {side} {w}: {}/{} served, p50 {} p90 {} max {}, longest gap {} |",
                s["ok"],
                s["requests"],
                fmt_s(&s["p50_s"]),
                fmt_s(&c["p90_s"]),
                fmt_s(&s["max_s"]),
                fmt_s(&c["longest_gap_s"])
            );
        }
    }
}
