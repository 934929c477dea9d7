//! HSDir anti-entropy with real tor: a one-node cluster (`rustbalance run`, merged mode,
//! `cluster.hsdir_check_secs = 20`) publishes; one lab relay responsible for the slot of
//! the current time period is restarted (same keys and state: same fingerprint and flags,
//! an empty descriptor cache); the node finds it missing our descriptor at its next check
//! and uploads it again. Proven twice: by the node's `/status` (`hsdir_reuploads` up, the
//! slot's coverage back to all-holding) and by the lab client fetching from that HSDir
//! alone (`HSFETCH SERVER=`: its `HS_DESC_CONTENT` carries our revision).
//!
//! A publication between the restart and the check (a new time period every 8 min in the
//! lab, or a ring change because the relay was down during a vote) repairs the HSDir
//! too, without the anti-entropy: then the relay is restarted again (at most 5 times;
//! each restart waits for a publication 30 s old, after the intro points settled).

use anyhow::{bail, ensure, Context, Result};
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{DemoTarget, Lab};
use rustbalance_testbed::faults::{self, relay_fingerprints, HsDirFetch};
use rustbalance_testbed::node_config::lone_cluster_node;
use rustbalance_testbed::{poll_until, wait_published, ClusterNodeProc};
use rustbalance_tor::control::relay_fingerprint;
use rustbalance_tor::ControlClient;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const NAME: &str = "ae1";
/// `cluster.hsdir_check_secs` of the node.
const CHECK_SECS: u64 = 20;
/// Restarts before giving up when each time a publication reaches the relay first.
const ATTEMPTS: usize = 5;
/// A publication this old (seconds) has settled intro points.
const SETTLED_SECS: u64 = 30;
/// Liveness bound only (a loaded 2-core machine must pass).
const LIVENESS: Duration = Duration::from_secs(300);

pub async fn hsdir_restart_repaired(lab: Lab) -> Result<()> {
    let master = IdentityKey::generate(&mut rand::rng());
    let target = DemoTarget::start(&format!("served by {NAME}\n")).await?;
    let config = write_config(&lab, &master, target.addr())?;
    let mut node = ClusterNodeProc::from_config(&config, target.addr())?;
    node.target = Some(target);
    let r = scenario(&lab, &master, &mut node).await;
    node.stop();
    r
}

/// A one-node cluster config (the node publishes the master descriptor itself) that
/// checks the HSDirs every [`CHECK_SECS`].
fn write_config(lab: &Lab, master: &IdentityKey, target: SocketAddr) -> Result<PathBuf> {
    let base = lab.dir().join("cluster-ae");
    lone_cluster_node(lab, NAME, master, target, &base, |text| {
        ensure!(
            text.contains("[cluster]\n"),
            "the template has a [cluster] section"
        );
        Ok(text.replacen(
            "[cluster]\n",
            // A one-node cluster: without `solo = false` it would go single-node and leave
            // publishing to its tor (no merged descriptors, nothing for anti-entropy to check).
            &format!("[cluster]\nhsdir_check_secs = {CHECK_SECS}\nsolo = false\n"),
            1,
        ))
    })
}

/// The node's coverage of the checked slot, with the total of re-uploads.
#[derive(Debug, Clone)]
struct Coverage {
    period: u64,
    holding: u64,
    responsible: u64,
    reuploads: u64,
    last_check: u64,
    /// When the last publication started (Unix seconds).
    published_at: u64,
    /// The checked slot's HSDirs and revision in the last publication.
    hsdirs: Vec<String>,
    revision: u64,
    /// Why it was published.
    reason: String,
    /// Each HSDir at the last check (`latest`, `missing, re-uploaded`, ...).
    states: std::collections::BTreeMap<String, String>,
}

fn coverage(status: &Value) -> Option<Coverage> {
    let c = &status["cluster"];
    let slot = c["hsdir_coverage"]
        .as_array()?
        .iter()
        .find(|s| s["checked"] == true)?;
    let period = slot["period_num"].as_u64()?;
    let published = c["last_publish"]["slots"]
        .as_array()?
        .iter()
        .find(|s| s["period_num"].as_u64() == Some(period))?;
    let secs = |v: &Value| {
        v.as_str()
            .and_then(|a| humantime::parse_rfc3339(a).ok())
            .map(rustbalance_hs::time::unix_secs)
    };
    Some(Coverage {
        period,
        holding: slot["holding_latest"].as_u64()?,
        responsible: slot["responsible"].as_u64()?,
        reuploads: c["hsdir_reuploads"].as_u64()?,
        last_check: secs(&slot["last_check"])?,
        published_at: secs(&c["last_publish"]["at"])?,
        hsdirs: published["hsdirs"].as_object()?.keys().cloned().collect(),
        revision: published["revision"].as_u64()?,
        reason: c["last_publish"]["reason"].as_str()?.to_string(),
        states: slot["hsdirs"]
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    })
}

async fn scenario(lab: &Lab, master: &IdentityKey, node: &mut ClusterNodeProc) -> Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    node.start(bin, &lab.dir().join(format!("{NAME}.log")))?;
    let first = wait_published(
        std::slice::from_ref(&*node),
        &[],
        SystemTime::UNIX_EPOCH,
        &[NAME],
        LIVENESS,
    )
    .await?;
    eprintln!("published after {:.1}s", first.waited.as_secs_f64());
    let relays = relay_fingerprints(lab).await?;
    for attempt in 1..=ATTEMPTS {
        // A check with every HSDir holding our descriptor, and the intro points settled
        // (the instance's change in the first minute after its start: a publication
        // would reach the restarted relay before the check does).
        let (before, _) = poll_until(
            "a check with every responsible HSDir holding a settled descriptor",
            LIVENESS,
            Duration::from_millis(500),
            async || {
                let now = rustbalance_hs::time::unix_secs(SystemTime::now());
                Ok(node.status().await.as_ref().and_then(coverage).filter(|c| {
                    c.holding == c.responsible
                        && c.responsible > 0
                        && c.published_at + SETTLED_SECS <= now
                }))
            },
        )
        .await?;
        // Preferably a relay on none of the instance's intro circuits: restarting one of
        // those changes the established intro points, and the publication that follows
        // reaches the restarted relay before the check does.
        let busy = service_circuit_relays(node).await;
        let responsible: Vec<&(String, String)> = before
            .hsdirs
            .iter()
            .filter_map(|fp| relays.iter().find(|(_, f)| f == fp))
            .collect();
        let (name, fp) = responsible
            .iter()
            .find(|(_, f)| !busy.contains(f))
            .or(responsible.first())
            .map(|r| (*r).clone())
            .with_context(|| format!("no lab relay among the HSDirs {:?}", before.hsdirs))?;
        eprintln!(
            "attempt {attempt}: period {} held by {}/{} HSDirs; restarting relay {name} ({fp}; \
             on the node's onion-service circuits: {})",
            before.period,
            before.holding,
            before.responsible,
            busy.contains(&fp)
        );
        let t0 = Instant::now();
        let pid = lab.restart_node(&name).await?;
        let restarted = rustbalance_hs::time::unix_secs(SystemTime::now());
        eprintln!(
            "  relay {name} restarted (pid {pid}) and bootstrapped in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        let t1 = Instant::now();
        // The first check after the restart finds the relay `missing` and re-uploads
        // (`missing, re-uploaded`); if the poll misses that check, a later one finds it
        // `latest` with the re-upload counted.
        let (after, took) = poll_until(
            &format!("a check after the restart finding {name} holding our descriptor again"),
            LIVENESS,
            Duration::from_millis(500),
            async || {
                Ok(node.status().await.as_ref().and_then(coverage).filter(|c| {
                    c.last_check > restarted
                        && c.states
                            .get(&fp)
                            .is_some_and(|s| s == "missing, re-uploaded" || s == "latest")
                }))
            },
        )
        .await?;
        eprintln!("  {name} at the check: {}", after.states[&fp]);
        if after.published_at >= restarted || after.period != before.period {
            eprintln!(
                "  a publication ({}, period {}) reached the relay first; again",
                after.reason, after.period
            );
            continue;
        }
        if after.reuploads <= before.reuploads {
            // Seen once in CI (2026-12-07, attempt 1 of a run of 8e1a644): the restarted
            // relay answered the first check after its restart with our descriptor, with
            // no re-upload and no publication counted. Not explained yet (the restart,
            // or a repair that went uncounted); this attempt proves nothing either way,
            // so it is said loudly and another relay is tried. Only a counted re-upload
            // passes.
            eprintln!(
                "  UNEXPLAINED: {name} came back holding our descriptor without a counted \
                 re-upload or a publication: {after:?}; again"
            );
            continue;
        }
        eprintln!(
            "  anti-entropy re-uploaded to {name} {:.1}s after it was back ({:.1}s after the \
             restart began; check interval {CHECK_SECS}s); coverage {}/{}, re-uploads {} -> {}",
            took.as_secs_f64(),
            t1.duration_since(t0).as_secs_f64() + took.as_secs_f64(),
            after.holding,
            after.responsible,
            before.reuploads,
            after.reuploads
        );
        let revision = fetch_revision(lab, master, node, &fp).await?;
        eprintln!(
            "  the lab client fetched revision {revision} from {name} alone (HSFETCH SERVER=; \
             the checked slot's is {})",
            after.revision
        );
        if let Some(st) = node.status().await {
            for slot in st["cluster"]["hsdir_coverage"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if slot["checked"] == false {
                    eprintln!(
                        "  unchecked slot (period {}): {name} {}",
                        slot["period_num"],
                        slot["hsdirs"][&fp]
                            .as_str()
                            .unwrap_or("not responsible or not emptied")
                    );
                }
            }
        }
        print_repairs(lab);
        return Ok(());
    }
    bail!(
        "{ATTEMPTS} restarts, and none was repaired by a counted re-upload (a publication \
         reached the relay before the check, or it came back holding the descriptor)"
    )
}

/// The revision counter of the descriptor HSDir `fp` serves for `master`, fetched by the
/// lab client from that HSDir alone, once it is one the node's latest publication lists:
/// the client asks for the descriptor of *its* current time period, which can be the
/// node's other slot for a few seconds around a period change (asked again until then).
async fn fetch_revision(
    lab: &Lab,
    master: &IdentityKey,
    node: &ClusterNodeProc,
    fp: &str,
) -> Result<u64> {
    let mut hsdir = HsDirFetch::connect(lab).await?;
    let addr = master.address().without_suffix();
    let (revision, _) = poll_until(
        &format!("{fp} serving a descriptor of the node's latest publication"),
        LIVENESS,
        Duration::from_secs(1),
        async || {
            let text = hsdir.fetch(&addr, fp, Duration::from_secs(30)).await?;
            let revision = faults::revision(&text);
            let published = published_revisions(node).await;
            match revision {
                Some(r) if published.contains(&r) => Ok(Some(r)),
                other => {
                    eprintln!(
                        "  (the lab client got revision {other:?} from {fp}; the node published {published:?})"
                    );
                    Ok(None)
                }
            }
        },
    )
    .await?;
    Ok(revision)
}

/// The revisions of every slot of the node's latest publication.
async fn published_revisions(node: &ClusterNodeProc) -> Vec<u64> {
    let Some(st) = node.status().await else {
        return Vec::new();
    };
    st["cluster"]["last_publish"]["slots"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["revision"].as_u64()).collect())
        .unwrap_or_default()
}

/// The relays (fingerprints) on the node tor's onion-service circuits, any hop; empty
/// when its control port cannot be read.
async fn service_circuit_relays(node: &ClusterNodeProc) -> Vec<String> {
    let file = rustbalance_node::layout::Layout::new(&node.data).control_port_file();
    let Some(addr) = std::fs::read_to_string(&file).ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.trim().strip_prefix("PORT="))
            .and_then(|a| a.parse::<SocketAddr>().ok())
    }) else {
        return Vec::new();
    };
    let Ok(ctl) = ControlClient::connect_authenticated(addr).await else {
        return Vec::new();
    };
    let circuits = ctl.circuit_status().await.unwrap_or_default();
    circuits
        .iter()
        .filter(|c| {
            c.purpose
                .as_deref()
                .is_some_and(|p| p.starts_with("HS_SERVICE"))
        })
        .flat_map(|c| c.path.iter().map(|h| relay_fingerprint(h)))
        .collect()
}

/// The node's log lines about re-uploads (info) and refusals (warn).
fn print_repairs(lab: &Lab) {
    let log = std::fs::read_to_string(lab.dir().join(format!("{NAME}.log"))).unwrap_or_default();
    for l in log.lines().filter(|l| {
        l.contains("uploaded it again")
            || l.contains("again too")
            || l.contains("refused our descriptor")
    }) {
        eprintln!("  node log: {l}");
    }
}
