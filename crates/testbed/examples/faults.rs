//! Issue 15 figures: what clients see across each fault, for a 3-node RustBalance
//! cluster and, where the fault applies, Onionbalance 0.2.2 with 3 instances. Driven by
//! `bench/faults.sh`.
//!
//! ```text
//! faults --bin target/release/rustbalance [--concurrency 2] [--before 45] [--tail 30]
//!        [--cut-secs 120] [--ob-cap 300] [--faults tor,silent,hsdir,cut,frozen]
//!        [--work DIR] [--json FILE] [--no-onionbalance]
//! ```
//!
//! Two private Tor labs, one after the other:
//!
//! 1. A namespaced lab (every node in its own network namespace, so that one can be cut
//!    off): 3 `rustbalance run` nodes, default settings. Faults, each with the cluster
//!    whole again before the next:
//!    * `tor`: the publisher's tor SIGKILLed, its daemon running. Reaction: a confirmed
//!      publication by another node; recovery: a confirmed publication listing all 3
//!      (the daemon restarted its tor).
//!    * `silent`: a non-publisher's target SIGSTOPped (node and tor fine, nothing
//!      answers). Reaction and recovery: a confirmed publication without it. SIGCONT
//!      after the window.
//!    * `hsdir`: a lab relay that hands out the master descriptor restarted (empty
//!      cache, same fingerprint). Reaction: the relay bootstrapped again; recovery: the
//!      lab client fetches the master descriptor from that relay alone again.
//!    * `frozen`: a non-publisher's tor SIGSTOPped (what Onionbalance's silent instance
//!      gets). Reaction and recovery: a confirmed publication without it. SIGCONT after.
//!    * `cut`: the publisher cut off the network for CUT_SECS, then healed. Reaction: a
//!      confirmed publication without it by another node; recovery: a confirmed
//!      publication listing all 3 after the heal.
//! 2. A host-loopback lab (Onionbalance's instances serve in-process targets on the
//!    host): Onionbalance with 3 instances. `hsdir` as above, then `silent`: one
//!    instance's tor SIGSTOPped (its descriptor stays at the HSDirs, its intro circuits
//!    stay open, nothing answers); reaction and recovery: Onionbalance's log shows a
//!    descriptor built from 2 instances, then an upload. Onionbalance waits are capped
//!    at OB_CAP. `tor` and `cut` do not apply: Onionbalance has one daemon and no
//!    lease, nothing takes over from it.
//!
//! For each fault a client loop (CONCURRENCY GETs at a time through the lab client,
//! each on a fresh circuit, 30 s limit) runs from BEFORE seconds before the fault until
//! TAIL seconds after the recovery (or after the cap when there was none). Two windows
//! by request start: BEFORE seconds before the fault, and from the fault to TAIL after
//! the recovery: requests, served, p50/p90 latency, the longest stretch with no
//! successful request. Times are polled (`/status` every 200 ms plus the time of the
//! status calls; Onionbalance's log every 200 ms; the HSDir every 2 s): upper bounds.

use anyhow::{Context, Result};
use rustbalance_lab::onionbalance::OnionbalanceSetup;
use rustbalance_lab::{Lab, LabOptions, Placement};
use rustbalance_testbed::bench::{
    cores, cpu_model, loadavg, log, save_json, secs, work_dir, BenchArgs,
};
use rustbalance_testbed::client_cache::{refetch_publication, refetch_until};
use rustbalance_testbed::clients::{window, ClientLoop};
use rustbalance_testbed::cluster::ns::start_ns_cluster;
use rustbalance_testbed::dropin::{ob_instances, wait_ob_built_from, watch_ob_drop};
use rustbalance_testbed::faults::{
    ns_tor_pid, relay_fingerprints, revision, signal, signal_ns_target, HsDirFetch,
};
use rustbalance_testbed::log_watch::LogWatch;
use rustbalance_testbed::{
    poll_until, published_nodes, publisher, wait_cluster_up, wait_publication, wait_published,
    with_lab, NsNode,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[path = "faults/onionbalance.rs"]
mod onionbalance;
#[path = "faults/table.rs"]
mod table;
use onionbalance::onionbalance_part;
use table::print_table;

/// Node names `flt1`…`flt3`.
const PREFIX: &str = "flt";
/// Liveness bound of each RustBalance wait (a loaded 2-core machine must pass).
const LIVENESS: Duration = Duration::from_secs(300);
/// Every fault, in the order they run.
const ALL: [&str; 5] = ["tor", "silent", "hsdir", "cut", "frozen"];

struct Args {
    bin: PathBuf,
    conc: usize,
    before: Duration,
    tail: Duration,
    cut: Duration,
    ob_cap: Duration,
    faults: Vec<String>,
    work: Option<PathBuf>,
    json: Option<PathBuf>,
    onionbalance: bool,
}

fn args() -> Result<Args> {
    let with_value = [
        "--bin",
        "--concurrency",
        "--before",
        "--tail",
        "--cut-secs",
        "--ob-cap",
        "--faults",
        "--work",
        "--json",
    ];
    let (b, bin) = BenchArgs::checked(&with_value, &["--no-onionbalance"])?;
    let faults: Vec<String> = b
        .value("--faults")
        .unwrap_or_else(|| ALL.join(","))
        .split(',')
        .map(str::to_string)
        .collect();
    if let Some(f) = faults.iter().find(|f| !ALL.contains(&f.as_str())) {
        anyhow::bail!("unknown fault {f:?} (known: {ALL:?})");
    }
    Ok(Args {
        bin,
        conc: b.number("--concurrency", 2),
        before: b.secs("--before", 45),
        tail: b.secs("--tail", 30),
        cut: b.secs("--cut-secs", 120),
        ob_cap: b.secs("--ob-cap", 300),
        faults,
        work: b.path("--work"),
        json: b.path("--json"),
        onionbalance: !b.flag("--no-onionbalance"),
    })
}

impl Args {
    fn runs(&self, fault: &str) -> bool {
        self.faults.iter().any(|f| f == fault)
    }
}

fn progress(p: &rustbalance_lab::Progress) {
    log(format!(
        "lab: {} ({:.1}s)",
        p.phase,
        p.elapsed.as_secs_f64()
    ))
}

/// A fault's moments, in seconds on the client loop's clock.
struct Reaction {
    /// When the fault began.
    fault: f64,
    /// When the system's own reaction was seen, if it was.
    reacted: Option<f64>,
    /// When it had recovered, if it did; the fault window ends TAIL after it.
    recovered: Option<f64>,
    /// What happened, for the JSON.
    detail: Value,
}

/// A client loop around one fault.
struct Clients {
    t0: Instant,
    lp: ClientLoop,
}

impl Clients {
    /// Starts the loop and lets it run for the before window.
    async fn start(a: &Args, lab: &Lab, url: &str) -> Clients {
        let t0 = Instant::now();
        let lp = ClientLoop::spawn(lab, url, a.conc, t0);
        // An observation window, not a wait for a condition.
        tokio::time::sleep(a.before).await;
        Clients { t0, lp }
    }

    /// Now, on the loop's clock.
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Runs the loop until TAIL after the recovery (or after now), stops it and sums
    /// up both windows.
    async fn end(self, a: &Args, r: Reaction) -> Value {
        let end = r.recovered.unwrap_or_else(|| self.now()) + a.tail.as_secs_f64();
        tokio::time::sleep(Duration::from_secs_f64((end - self.now()).max(0.0))).await;
        let reqs = self.lp.finish().await;
        let before = window(&reqs, r.fault - a.before.as_secs_f64(), r.fault);
        let during = window(&reqs, r.fault, end);
        log(format!(
            "  clients before: {}/{} served; fault to recovery+{}s: {}/{} served, longest gap {:.1}s",
            before.summary.ok,
            before.summary.requests,
            a.tail.as_secs(),
            during.summary.ok,
            during.summary.requests,
            during.longest_gap_s
        ));
        json!({
            "fault_at_s": secs(Duration::from_secs_f64(r.fault)),
            "reaction_s": r.reacted.map(|x| secs(Duration::from_secs_f64(x - r.fault))),
            "recovery_s": r.recovered.map(|x| secs(Duration::from_secs_f64(x - r.fault))),
            "detail": r.detail,
            "before": before,
            "during": during,
            "requests": reqs,
        })
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let (work, _tmp) = work_dir(a.work.clone(), "rb-faults")?;
    let mut out = json!({
        "machine": {"cores": cores(), "cpu": cpu_model(), "load_start": loadavg()},
        "concurrency": a.conc, "before_s": a.before.as_secs(), "tail_s": a.tail.as_secs(),
        "cut_s": a.cut.as_secs(), "ob_cap_s": a.ob_cap.as_secs(),
        "rustbalance": {}, "onionbalance": {},
    });
    let rb = rustbalance_part(&a, &work, &mut out).await;
    let ob = if a.onionbalance {
        onionbalance_part(&a, &work, &mut out).await
    } else {
        Ok(())
    };
    out["machine"]["load_end"] = json!(loadavg());
    print_table(&out);
    save_json(a.json.as_deref(), &out)?;
    rb.and(ob)
}

/// A fresh lab directory under the work directory.
fn lab_dir(work: &Path, name: &str) -> Result<PathBuf> {
    let dir = rustbalance_testbed::bench::fresh_lab_dir(work, name)?;
    log(format!("lab in {} (load {})", dir.display(), loadavg()));
    Ok(dir)
}

/// Records a fault's result (or its error) under `out[side][fault]`.
fn record(out: &mut Value, side: &str, fault: &str, r: Result<Value>) -> Result<()> {
    match r {
        Ok(v) => {
            out[side][fault] = v;
            Ok(())
        }
        Err(e) => {
            log(format!("{side} {fault} FAILED: {e:#}"));
            out[side][fault] = json!({"error": format!("{e:#}")});
            Err(e)
        }
    }
}

async fn rustbalance_part(a: &Args, work: &Path, out: &mut Value) -> Result<()> {
    let options = LabOptions {
        placement: Placement::namespace(),
        ..Default::default()
    };
    let dir = lab_dir(work, "lab-ns")?;
    with_lab(&dir, options, progress, async |lab, started| {
        out["rustbalance"]["lab_usable_s"] = json!(secs(started.report.total));
        let (master, mut nodes) = start_ns_cluster(lab, PREFIX, 3, &a.bin, true)?;
        let url = format!("http://{}/", master.address());
        let r = rustbalance_faults(a, lab, &nodes, &url, out).await;
        for n in nodes.iter_mut() {
            let _ = n.stop(lab);
        }
        r
    })
    .await
}

async fn rustbalance_faults(
    a: &Args,
    lab: &Lab,
    nodes: &[NsNode],
    url: &str,
    out: &mut Value,
) -> Result<()> {
    let t = Instant::now();
    wait_cluster_up(lab, nodes, url, LIVENESS).await?;
    out["rustbalance"]["cluster_up_s"] = json!(secs(t.elapsed()));
    let side = "rustbalance";
    for fault in ALL.iter().filter(|f| a.runs(f)) {
        log(format!("RustBalance: fault {fault}"));
        let r = match *fault {
            "tor" => tor_dies(a, lab, nodes, url).await,
            "silent" => silent_node(a, lab, nodes, url, false).await,
            "frozen" => silent_node(a, lab, nodes, url, true).await,
            "hsdir" => match client_holds_newest(lab, nodes, url).await {
                Ok(()) => hsdir_restart(a, lab, url, None).await,
                Err(e) => Err(e),
            },
            _ => cut_and_heal(a, lab, nodes, url).await,
        };
        record(out, side, fault, r)?;
    }
    Ok(())
}

fn names(nodes: &[NsNode]) -> Vec<&str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}

fn err(r: &Result<impl Sized>) -> Value {
    r.as_ref()
        .err()
        .map_or(Value::Null, |e| json!(format!("{e:#}")))
}

/// The cluster is whole: the publication lists every node and every node's canary
/// passes every peer (a node ejected by an earlier fault would make the next fault's
/// victim absent from the descriptor before the fault).
async fn cluster_whole(nodes: &[NsNode]) -> Result<()> {
    let all = names(nodes);
    let (_, took) = poll_until(
        "every node listed and every canary passing",
        LIVENESS,
        Duration::from_secs(1),
        async || {
            let Some((_, record)) = publisher(nodes, &[]).await else {
                return Ok(None);
            };
            if published_nodes(&record) != all {
                return Ok(None);
            }
            for n in nodes {
                let Some(s) = n.status().await else {
                    return Ok(None);
                };
                let passing = s["cluster"]["canary"]
                    .as_object()
                    .is_some_and(|m| m.values().all(|v| v["verdict"] == "pass"));
                if !passing {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    log(format!(
        "  cluster whole (all listed, canaries passing) after {:.1}s",
        took.as_secs_f64()
    ));
    Ok(())
}

/// The lab client holds the cluster's newest publication (NEWNYM and fetch again): a
/// client holding an older descriptor may never be introduced to a node, and a fault
/// of that node would go unseen.
async fn client_holds_newest(lab: &Lab, nodes: &[NsNode], url: &str) -> Result<()> {
    cluster_whole(nodes).await?;
    let (_, record) = publisher(nodes, &[]).await.context("no publisher")?;
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let master = rustbalance_hs::OnionAddress::parse(host)?;
    refetch_publication(lab, &master, &record, LIVENESS).await?;
    Ok(())
}

/// The publisher's tor SIGKILLed, its daemon running.
async fn tor_dies(a: &Args, lab: &Lab, nodes: &[NsNode], url: &str) -> Result<Value> {
    let all = names(nodes);
    client_holds_newest(lab, nodes, url).await?;
    let c = Clients::start(a, lab, url).await;
    let (p, _) = publisher(nodes, &[]).await.context("no publisher")?;
    let old = nodes[p].name.clone();
    let pid = ns_tor_pid(lab, &old)?;
    let at = SystemTime::now();
    let fault = c.now();
    signal(pid, "-KILL")?;
    log(format!("  {old}'s tor (pid {pid}) SIGKILLed"));
    let what = "a publication by another node";
    let took = wait_publication(nodes, &[p], at, what, LIVENESS, |_| true).await;
    let reacted = took.as_ref().ok().map(|_| c.now());
    let back = wait_published(nodes, &[], at, &all, LIVENESS).await;
    let recovered = back.as_ref().ok().map(|_| c.now());
    log(format!(
        "  another node published at +{:?}s, all 3 listed at +{:?}s",
        reacted.map(|x| x - fault),
        recovered.map(|x| x - fault)
    ));
    let detail = json!({
        "killed_tor_of": old,
        "new_publisher": took.as_ref().ok().map(|p| nodes[p.node].name.clone()),
        "takeover_lists": took.as_ref().ok().map(|p| published_nodes(&p.record)),
        "error": [err(&took), err(&back)],
    });
    let v = c
        .end(
            a,
            Reaction {
                fault,
                reacted,
                recovered,
                detail,
            },
        )
        .await;
    back?;
    Ok(v)
}

/// A non-publisher's target SIGSTOPped: alive and listed, not answering.
/// `frozen`: its tor SIGSTOPped instead (the fault Onionbalance's silent instance gets).
async fn silent_node(
    a: &Args,
    lab: &Lab,
    nodes: &[NsNode],
    url: &str,
    frozen: bool,
) -> Result<Value> {
    let all = names(nodes);
    let (p, _) = publisher(nodes, &[]).await.context("no publisher")?;
    let s = (0..nodes.len())
        .find(|i| *i != p)
        .context("no non-publisher")?;
    let silent = nodes[s].name.clone();
    let rest: Vec<&str> = all.iter().copied().filter(|n| *n != silent).collect();
    client_holds_newest(lab, nodes, url).await?;
    let tor = ns_tor_pid(lab, &silent)?;
    let stop = |sig: &str| match frozen {
        true => signal(tor, sig),
        false => signal_ns_target(lab, &silent, sig),
    };
    let c = Clients::start(a, lab, url).await;
    let at = SystemTime::now();
    let fault = c.now();
    stop("-STOP")?;
    let what = if frozen { "tor" } else { "target" };
    log(format!("  {silent}'s {what} SIGSTOPped"));
    let out = wait_published(nodes, &[], at, &rest, LIVENESS).await;
    let recovered = out.as_ref().ok().map(|_| c.now());
    log(format!(
        "  published without {silent} at +{:?}s",
        recovered.map(|x| x - fault)
    ));
    let detail = json!({"silent": silent, "stopped": what, "error": err(&out)});
    let mut v = c
        .end(
            a,
            Reaction {
                fault,
                reacted: recovered,
                recovered,
                detail,
            },
        )
        .await;
    let cont = SystemTime::now();
    stop("-CONT")?;
    let back = wait_published(nodes, &[], cont, &all, LIVENESS).await?;
    log(format!(
        "  {silent} listed again {:.1}s after SIGCONT",
        back.waited.as_secs_f64()
    ));
    v["detail"]["relisted_after_cont_s"] = json!(secs(back.waited));
    out?;
    Ok(v)
}

/// The publisher cut off for CUT_SECS, then healed.
async fn cut_and_heal(a: &Args, lab: &Lab, nodes: &[NsNode], url: &str) -> Result<Value> {
    let all = names(nodes);
    client_holds_newest(lab, nodes, url).await?;
    let c = Clients::start(a, lab, url).await;
    let (p, _) = publisher(nodes, &[]).await.context("no publisher")?;
    let cut = nodes[p].name.clone();
    let rest: Vec<&str> = all.iter().copied().filter(|n| *n != cut).collect();
    let at = SystemTime::now();
    let fault = c.now();
    lab.cut(&cut)?;
    log(format!("  {cut} cut off for {}s", a.cut.as_secs()));
    let took = tokio::time::timeout(a.cut, wait_published(nodes, &[p], at, &rest, LIVENESS)).await;
    let took = took.unwrap_or_else(|_| Err(anyhow::anyhow!("no takeover while cut off")));
    let reacted = took.as_ref().ok().map(|_| c.now());
    log(format!(
        "  published without {cut} at +{:?}s",
        reacted.map(|x| x - fault)
    ));
    // The cut lasts CUT_SECS whatever happened meanwhile.
    let left = (a.cut.as_secs_f64() - (c.now() - fault)).max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(left)).await;
    let healed_at = SystemTime::now();
    let healed = c.now();
    lab.heal(&cut)?;
    let back = wait_published(nodes, &[], healed_at, &all, LIVENESS).await;
    let recovered = back.as_ref().ok().map(|_| c.now());
    log(format!(
        "  healed at +{:.1}s; all 3 listed at +{:?}s",
        healed - fault,
        recovered.map(|x| x - fault)
    ));
    let detail = json!({
        "cut": cut,
        "healed_at_s": secs(Duration::from_secs_f64(healed - fault)),
        "relisted_after_heal_s": recovered.map(|x| secs(Duration::from_secs_f64(x - healed))),
        "new_publisher": took.as_ref().ok().map(|p| nodes[p.node].name.clone()),
        "error": [err(&took), err(&back)],
    });
    let v = c
        .end(
            a,
            Reaction {
                fault,
                reacted,
                recovered,
                detail,
            },
        )
        .await;
    back?;
    Ok(v)
}

/// The first lab relay that hands out `address`'s descriptor, `(name, fingerprint)`.
async fn holding_relay(
    lab: &Lab,
    fetch: &mut HsDirFetch,
    address: &str,
) -> Result<(String, String)> {
    let relays = relay_fingerprints(lab).await?;
    let (found, _) = poll_until(
        "a lab relay handing out the master descriptor",
        LIVENESS,
        Duration::from_secs(2),
        async || {
            for (name, fp) in &relays {
                let text = fetch.fetch(address, fp, Duration::from_secs(10)).await?;
                if revision(&text).is_some() {
                    return Ok(Some((name.clone(), fp.clone())));
                }
            }
            Ok(None)
        },
    )
    .await?;
    Ok(found)
}

/// A relay that hands out the master descriptor restarted with an empty cache; the
/// window runs until it hands it out again (or `ob`'s cap: Onionbalance, whose log is
/// read for uploads).
async fn hsdir_restart(
    a: &Args,
    lab: &Lab,
    url: &str,
    ob: Option<&OnionbalanceSetup>,
) -> Result<Value> {
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut fetch = HsDirFetch::connect(lab).await?;
    let (name, fp) = holding_relay(lab, &mut fetch, address).await?;
    let mut watch = ob.map(|o| LogWatch::new(o.daemon().log_file()));
    let mark = watch.as_mut().map(|w| {
        w.poll();
        w.mark()
    });
    let c = Clients::start(a, lab, url).await;
    let fault = c.now();
    let pid = lab.restart_node(&name).await?;
    let reacted = Some(c.now());
    log(format!(
        "  relay {name} ({fp}) restarted (pid {pid}), bootstrapped at +{:.1}s",
        c.now() - fault
    ));
    let cap = if ob.is_some() { a.ob_cap } else { LIVENESS };
    let back = poll_until(
        &format!("{name} handing out the master descriptor again"),
        cap.saturating_sub(Duration::from_secs_f64(c.now() - fault)),
        Duration::from_secs(2),
        async || {
            let text = fetch.fetch(address, &fp, Duration::from_secs(10)).await?;
            Ok(revision(&text))
        },
    )
    .await;
    let recovered = back.as_ref().ok().map(|_| c.now());
    log(format!(
        "  {name} hands it out again at +{:?}s",
        recovered.map(|x| x - fault)
    ));
    let uploads: Vec<String> = match (watch.as_mut(), mark) {
        (Some(w), Some(m)) => {
            w.poll();
            w.lines[m..]
                .iter()
                .filter(|(_, l)| l.contains("Uploading "))
                .take(4)
                // The log's own timestamps: the poll reads many lines at once.
                .map(|(_, l)| l.clone())
                .collect()
        }
        _ => Vec::new(),
    };
    let detail = json!({
        "relay": name, "fingerprint": fp,
        "revision_after": back.as_ref().ok().map(|(r, _)| *r),
        "onionbalance_uploads": uploads,
        "error": err(&back),
    });
    let reaction = Reaction {
        fault,
        reacted,
        recovered,
        detail,
    };
    Ok(c.end(a, reaction).await)
}
