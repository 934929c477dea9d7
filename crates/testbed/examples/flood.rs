//! Issue 16 figures: a legitimate client during an introduction flood, against plain tor
//! (one service, tor's PoW), a RustBalance cluster and Onionbalance, side by side in one
//! private Tor lab under the same flood. Driven by `bench/flood.sh`.
//!
//! ```text
//! flood --bin target/release/rustbalance [--relays 12] [--rate 4] [--queue-rate 1]
//!       [--secs 420] [--flood-clients 3] [--work DIR] [--json FILE]
//! ```
//!
//! Three services, each with tor's PoW defences on every tor behind it
//! (`HiddenServicePoWDefensesEnabled 1`, `HiddenServicePoWQueueRate`/`Burst` = QUEUE_RATE:
//! each tor dispatches QUEUE_RATE introductions a second from its queue, a stand-in for a
//! tor whose CPU is the limit, which this 2-core machine cannot reach with real clients):
//!
//! * `plain`: one tor holding its own key (what an operator without a balancer runs);
//! * `rustbalance`: two `rustbalance run` nodes, merged descriptor (its tors are
//!   instances, so it carries no `pow-params`: clients do not solve);
//! * `onionbalance`: Onionbalance with two backends (Debian's 0.2.2; its descriptor
//!   carries no `pow-params` either);
//! * `fleet`: two `rustbalance run` nodes with fleet PoW (`cluster.fleet_pow = true`, no
//!   effort floor): each node's tor also hosts the master key, and each fleet descriptor
//!   lists one tor's intro points with its `pow-params`, its effort tor's own. Fleet
//!   descriptors cover only the half of each lab period from the SRV to the next period
//!   start; the report says how many of the client's requests found each node.
//!
//! Once all three answer, each gets RATE introductions a second from FLOOD_CLIENTS extra
//! client tors (`testbed::flood`, a fresh circuit per request, 30 s limit), and a
//! legitimate client — the lab client, one GET at a time on fresh circuits; it solves
//! when a descriptor suggests effort, as every tor client does — asks each of them, for
//! SECS seconds. The lab client forgets its descriptors every 11 s (NEWNYM, tor's limit),
//! as clients arriving over time fetch fresh ones; the flood's client tors do too for the
//! first 150 s (a flood from one cached descriptor per client tor would hit only the tors
//! of a few fleet descriptors), and then keep descriptors fetched at effort 0. tor re-evaluates its suggested effort
//! every 300 s from the service's start; the plain tor's own descriptor is read every 5 s,
//! and the report splits where its effort first rose above 0: before, and after.
//!
//! Reported per service and window: the legitimate client's requests served, p50 and p90
//! latency, the longest stretch without an answer; the flood's requests served; the effort
//! the descriptor the client held at the end suggested; the plain tor's effort over time.

use anyhow::{Context, Result};
use rustbalance_hs::descriptor::ParsedDescriptor;
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_lab::onionbalance::{ObBackends, ObDaemon};
use rustbalance_lab::{DemoTarget, Lab, LabOptions, LabTor, Torrc};
use rustbalance_node::cluster::pow::suggested_effort;
use rustbalance_node::keystore::KeyFiles;
use rustbalance_testbed::bench::{
    cores, cpu_model, fresh_lab_dir, lab_progress, loadavg, log, save_json, secs, work_dir,
    BenchArgs,
};
use rustbalance_testbed::client_cache::{cached, NewnymLoop};
use rustbalance_testbed::clients::{window, ClientLoop, Req};
use rustbalance_testbed::flood::{Flood, FloodClients, FloodPlan};
use rustbalance_testbed::pow_log::PowVerified;
use rustbalance_testbed::{
    prepare_named, published_nodes, wait_published, with_lab, ClusterNodeProc,
};
use rustbalance_tor::control::ControlClient;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Liveness bound of each wait (a loaded 2-core machine must pass).
const LIVENESS: Duration = Duration::from_secs(420);
/// How long the flood's clients refetch descriptors (see `measure`).
const FLOOD_REFETCH: Duration = Duration::from_secs(150);
/// tor's `HS_UPDATE_PERIOD`: the suggested effort changes at most this often.
const EFFORT_PERIOD: f64 = 300.0;

struct Args {
    bin: PathBuf,
    relays: usize,
    rate: f64,
    queue_rate: u32,
    secs: Duration,
    flood_clients: usize,
    work: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let with_value = [
        "--bin",
        "--relays",
        "--rate",
        "--queue-rate",
        "--secs",
        "--flood-clients",
        "--work",
        "--json",
    ];
    let (b, bin) = BenchArgs::checked(&with_value, &[])?;
    let secs = b.secs("--secs", 420);
    anyhow::ensure!(
        secs.as_secs_f64() > EFFORT_PERIOD + 60.0,
        "--secs must exceed 360: tor changes its effort every 300 s, and the second window needs a minute"
    );
    Ok(Args {
        bin,
        relays: b.number("--relays", 12),
        rate: b.number("--rate", 4.0),
        queue_rate: b.number("--queue-rate", 1),
        secs,
        flood_clients: b.number("--flood-clients", 3),
        work: b.path("--work"),
        json: b.path("--json"),
    })
}

/// tor's PoW defences with a queue that dispatches `rate` introductions a second.
fn pow_options(rate: u32) -> Vec<(String, String)> {
    vec![
        ("HiddenServicePoWDefensesEnabled".into(), "1".into()),
        ("HiddenServicePoWQueueRate".into(), rate.to_string()),
        ("HiddenServicePoWQueueBurst".into(), rate.to_string()),
    ]
}

/// The plain service: one tor with its own key.
struct Plain {
    address: OnionAddress,
    tor: LabTor,
    _target: DemoTarget,
}

impl Plain {
    async fn start(lab: &Lab, rate: u32) -> Result<Plain> {
        let key = IdentityKey::generate(&mut rand::rng());
        let hs = lab.dir().join("rustbalance").join("plain").join("hs");
        key.write_tor_dir(&hs)?;
        let target = DemoTarget::start("served by plain\n").await?;
        let mut t = Torrc::new();
        t.push("HiddenServiceDir", hs.display())?;
        t.push("HiddenServicePort", format!("80 {}", target.addr()))?;
        for (k, v) in pow_options(rate) {
            t.push(&k, v)?;
        }
        let tor = lab.spawn_tor("plain", &t).await?;
        Ok(Plain {
            address: key.address(),
            tor,
            _target: target,
        })
    }
}

/// Start a two-node cluster `prefix1`, `prefix2` with `[pow]` at the bench's queue rate
/// and `cluster_options`.
async fn start_cluster(
    lab: &Lab,
    bin: &std::path::Path,
    prefix: &str,
    rate: u32,
    cluster_options: &[&str],
) -> Result<(IdentityKey, Vec<ClusterNodeProc>)> {
    let (master, mut nodes) = prepare_named(lab, prefix, 2).await?;
    for n in nodes.iter_mut() {
        for o in cluster_options {
            n.set_cluster_option(o)?;
        }
        node_pow(n, rate)?;
        let log = lab.dir().join(format!("{}.log", n.name));
        n.start(bin, &log)?;
    }
    Ok((master, nodes))
}

/// Each node's `[pow]`: on, with the bench's queue rate.
fn node_pow(n: &ClusterNodeProc, rate: u32) -> Result<()> {
    n.set_option("pow", "enabled = true")?;
    n.set_option("pow", &format!("queue_rate = {rate}"))?;
    n.set_option("pow", &format!("queue_burst = {rate}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let (work, _tmp) = work_dir(a.work.clone(), "rb-flood")?;
    let mut out = json!({
        "machine": {"cores": cores(), "cpu": cpu_model(), "load_start": loadavg()},
        "relays": a.relays, "rate_per_service": a.rate, "queue_rate_per_tor": a.queue_rate,
        "secs": a.secs.as_secs(), "flood_clients": a.flood_clients,
    });
    let options = LabOptions {
        relays: a.relays,
        ..Default::default()
    };
    let dir = fresh_lab_dir(&work, "lab")?;
    let r = with_lab(&dir, options, lab_progress, async |lab, started| {
        out["lab_usable_s"] = json!(secs(started.report.total));
        let plain = Plain::start(lab, a.queue_rate).await?;
        let (master, mut nodes) =
            start_cluster(lab, &a.bin, "node", a.queue_rate, &["solo = false"]).await?;
        let (fleet_master, mut fleet) =
            start_cluster(lab, &a.bin, "fleet", a.queue_rate, &["fleet_pow = true"]).await?;
        let ob =
            ObBackends::start_with_options(lab, "obflood", 2, 1, &[], &pow_options(a.queue_rate))
                .await?;
        let r = async {
            let obd = ObDaemon::start(lab, "obflood", &ob.config, LIVENESS).await?;
            let clusters = [(&master, &nodes[..]), (&fleet_master, &fleet[..])];
            let r = measure(&a, lab, &plain, clusters, &ob.master).await;
            obd.stop()?;
            r
        }
        .await;
        for n in nodes.iter_mut().chain(fleet.iter_mut()) {
            n.stop();
        }
        ob.stop()?;
        let tor = plain.tor;
        tokio::task::spawn_blocking(move || tor.stop()).await??;
        out["services"] = r?;
        anyhow::Ok(())
    })
    .await;
    out["machine"]["load_end"] = json!(loadavg());
    print_table(&out);
    save_json(a.json.as_deref(), &out)?;
    r
}

/// The three services answering, then the flood and the legitimate client on each.
async fn measure(
    a: &Args,
    lab: &Lab,
    plain: &Plain,
    clusters: [(&IdentityKey, &[ClusterNodeProc]); 2],
    ob_master: &str,
) -> Result<Value> {
    for (_, nodes) in clusters {
        let all: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let up = wait_published(nodes, &[], SystemTime::UNIX_EPOCH, &all, LIVENESS).await?;
        log(format!(
            "a publication lists {:?}",
            published_nodes(&up.record)
        ));
    }
    let [(master, _), (fleet_master, fleet)] = clusters;
    let verified = PowVerified::mark(fleet);
    let services = [
        ("plain", format!("http://{}/", plain.address)),
        ("rustbalance", format!("http://{}/", master.address())),
        ("onionbalance", format!("http://{ob_master}/")),
        ("fleet", format!("http://{}/", fleet_master.address())),
    ];
    for (name, url) in &services {
        let t = Instant::now();
        lab.wait_http(url, "served by", LIVENESS)
            .await
            .with_context(|| format!("{name} never answered"))?;
        log(format!(
            "{name} answers ({:.1}s)",
            t.elapsed().as_secs_f64()
        ));
    }
    let clients = FloodClients::start(lab, "flood", a.flood_clients, LIVENESS).await?;
    let plan = FloodPlan::new(a.rate, u64::MAX, a.secs)?;
    let t0 = Instant::now();
    let wall0 = SystemTime::now();
    let mut running = Vec::new();
    for (name, url) in &services {
        let flood = Flood::spawn(clients.socks(), url.clone(), plan)?;
        let legit = ClientLoop::spawn(lab, url, 1, t0);
        running.push((*name, url.clone(), flood, legit));
    }
    let refetch = NewnymLoop::spawn(lab).await?;
    // The flood's clients forget their descriptors too for the first FLOOD_REFETCH: a
    // real flood comes from many clients, whose fetches land on every HSDir (with fleet
    // descriptors, on every tor). Then they keep what they hold: every tor suggests
    // effort 0 until its first update (300 s after its service started), so the flood
    // does not solve, as in a flood from clients that do not.
    let flood_refetch = NewnymLoop::spawn_for(clients.controls().await?);
    let flood_refetch = tokio::spawn(async move {
        tokio::time::sleep(FLOOD_REFETCH).await;
        flood_refetch.stop().await
    });
    log(format!(
        "flooding each service at {}/s for {} s; the legitimate client asks each one at a time",
        a.rate,
        a.secs.as_secs()
    ));
    // The observation window, with the plain tor's effort read every 5 s meanwhile.
    let efforts = effort_timeline(plain, t0, a.secs).await;
    let raised = efforts
        .iter()
        .find(|(_, e)| *e > 0)
        .map(|(t, _)| *t)
        .unwrap_or(a.secs.as_secs_f64());
    log(format!("plain tor's effort: {efforts:?}"));
    let newnyms = refetch.stop().await;
    let flood_newnyms = flood_refetch.await.unwrap_or(0);
    let ctl = ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let mut report = serde_json::Map::new();
    for (name, url, flood, legit) in running {
        let reqs = legit.finish().await;
        let flood = flood.finish().await?;
        let address: OnionAddress = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .context("service address")?;
        let held = cached(&ctl, &address).await.ok().flatten();
        let v = summary(&reqs, raised, a.secs.as_secs_f64(), held.as_ref());
        log(format!("{name}: {}", brief(&v)));
        let mut v = v;
        v["flood"] =
            json!({"sent": flood.sent, "served": flood.served, "outcomes": flood.outcomes});
        report.insert(name.to_string(), v);
    }
    clients.stop().await?;
    // Per fleet node: the legitimate client's requests it served after the split, and the
    // PoW solutions its tor verified during the run (the flood's and the client's).
    let mut per_node = serde_json::Map::new();
    let solutions = verified.since();
    for n in fleet {
        let served_after = report["fleet"]["requests"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|q| {
                        let s = q["start"].as_f64().unwrap_or(0.0);
                        s >= raised && s < a.secs.as_secs_f64()
                    })
                    .filter(|q| q["outcome"].as_str() == Some(&format!("served by {}", n.name)))
                    .count()
            })
            .unwrap_or(0);
        per_node.insert(
            n.name.clone(),
            json!({"legitimate_served_after": served_after,
                   "pow_solutions_verified": solutions[&n.name]}),
        );
    }
    log(format!("fleet nodes: {per_node:?}"));
    report.insert(
        "fleet_by_phase".into(),
        by_phase(&report["fleet"]["requests"], wall0, a.secs.as_secs_f64()),
    );
    log(format!("fleet by phase: {}", report["fleet_by_phase"]));
    report.insert("fleet_nodes".into(), Value::Object(per_node));
    report.insert("plain_effort_timeline".into(), json!(efforts));
    report.insert("split_s".into(), json!(raised));
    report.insert("newnyms".into(), json!(newnyms));
    report.insert("flood_newnyms".into(), json!(flood_newnyms));
    Ok(Value::Object(report))
}

/// The legitimate client's requests to the fleet cluster (started before `end`), split by
/// where they fell in the lab's time period: from the SRV to the next period start (fleet
/// descriptors, with PoW) or from the period start to the SRV (ordinary descriptors).
/// Phase boundaries by the wall clock; tor switches with the consensus, up to one voting
/// interval (20 s) later.
fn by_phase(reqs: &Value, wall0: SystemTime, end: f64) -> Value {
    let tp = rustbalance_hs::TimeParams::testing(20);
    let len = u64::from(tp.period_minutes) * 60;
    let start_unix = rustbalance_hs::time::unix_secs(wall0) as f64;
    let mut out = json!({"srv_to_period_start": {"requests": 0, "served": 0},
                         "period_start_to_srv": {"requests": 0, "served": 0}});
    for r in reqs.as_array().into_iter().flatten() {
        let s = r["start"].as_f64().unwrap_or(0.0);
        if s >= end {
            continue;
        }
        let phase = ((start_unix + s) as u64 - tp.period_offset_secs()) % len;
        // The SRV comes half a period after the period start.
        let key = if phase >= len / 2 {
            "srv_to_period_start"
        } else {
            "period_start_to_srv"
        };
        out[key]["requests"] = json!(out[key]["requests"].as_u64().unwrap_or(0) + 1);
        if r["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("served by"))
        {
            out[key]["served"] = json!(out[key]["served"].as_u64().unwrap_or(0) + 1);
        }
    }
    out
}

/// The plain tor's suggested effort (from its own descriptor) every 5 s for `span`, as
/// (seconds after `t0`, effort) at each change.
async fn effort_timeline(plain: &Plain, t0: Instant, span: Duration) -> Vec<(f64, u32)> {
    let mut out: Vec<(f64, u32)> = Vec::new();
    while t0.elapsed() < span {
        if let Some(e) = plain_effort(plain).await {
            if out.last().is_none_or(|(_, last)| *last != e) {
                out.push((t0.elapsed().as_secs_f64(), e));
            }
        }
        tokio::time::sleep(Duration::from_secs(5).min(span.saturating_sub(t0.elapsed()))).await;
    }
    out
}

/// The effort the plain tor's own descriptor suggests (None while it cannot be read).
async fn plain_effort(plain: &Plain) -> Option<u32> {
    let ctl = plain.tor.control().await.ok()?;
    let view = rustbalance_node::publisher::network_view(&ctl, true)
        .await
        .ok()?;
    let d = rustbalance_node::publisher::instance_descriptor(
        &ctl,
        &plain.address,
        &view.time,
        SystemTime::now(),
    )
    .await
    .ok()?;
    Some(d.pow_params.first().map_or(0, suggested_effort))
}

/// The legitimate client's requests before and after `split` (when the plain tor's effort
/// rose), and what its descriptor said at the end.
fn summary(reqs: &[Req], split: f64, end: f64, held: Option<&ParsedDescriptor>) -> Value {
    let early = window(reqs, 0.0, split);
    let late = window(reqs, split, end);
    let effort = held.map(|d| d.pow_params.first().map_or(0, suggested_effort));
    json!({
        "before": early,
        "after": late,
        "effort_in_client_descriptor": effort,
        "requests": reqs,
    })
}

fn brief(v: &Value) -> String {
    let w = |k: &str| {
        format!(
            "{}/{} served",
            v[k]["summary"]["ok"], v[k]["summary"]["requests"]
        )
    };
    format!(
        "before the plain tor's effort rose {}, after {}; effort in its descriptor {}",
        w("before"),
        w("after"),
        v["effort_in_client_descriptor"]
    )
}

fn print_table(out: &Value) {
    if out["services"].is_null() {
        return;
    }
    let names = ["plain", "rustbalance", "onionbalance", "fleet"];
    println!(
        "| | plain tor (1 tor, PoW) | RustBalance (2 nodes) | Onionbalance (2 backends) | RustBalance, fleet PoW (2 nodes) |"
    );
    println!("|---|---:|---:|---:|---:|");
    let row = |label: &str, f: &dyn Fn(&Value) -> String| {
        let cells: Vec<String> = names.iter().map(|n| f(&out["services"][n])).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    println!(
        "(the plain tor's effort first rose {} s into the flood: {})",
        out["services"]["split_s"], out["services"]["plain_effort_timeline"]
    );
    for (key, label) in [("before", "before"), ("after", "after")] {
        row(&format!("{label}: legitimate requests served"), &|s| {
            format!(
                "{}/{}",
                s[key]["summary"]["ok"], s[key]["summary"]["requests"]
            )
        });
        row(&format!("{label}: p50 / p90 of all (s)"), &|s| {
            format!(
                "{:.1} / {:.1}",
                s[key]["summary"]["p50_s"].as_f64().unwrap_or(f64::NAN),
                s[key]["p90_s"].as_f64().unwrap_or(f64::NAN)
            )
        });
        row(&format!("{label}: longest stretch unanswered (s)"), &|s| {
            format!(
                "{:.0}",
                s[key]["longest_gap_s"].as_f64().unwrap_or(f64::NAN)
            )
        });
    }
    row("flood requests served", &|s| {
        format!("{}/{}", s["flood"]["served"], s["flood"]["sent"])
    });
    row("effort in the client's descriptor at the end", &|s| {
        s["effort_in_client_descriptor"].to_string()
    });
    println!("(fleet nodes: {})", out["services"]["fleet_nodes"]);
    println!("(fleet by phase: {})", out["services"]["fleet_by_phase"]);
}
