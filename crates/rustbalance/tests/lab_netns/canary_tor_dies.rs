//! Publishing health in the lab (issue 15): the publisher's tor alone is SIGKILLed, its
//! daemon stays (nodes `tkill1`…`tkill3`, each in its own namespace, default
//! `cluster.quorum`). The daemon's supervisor restarts tor; while tor is not running the
//! node refuses to publish and yields, so the lease must move to another node within
//! the lease time (6 s, the requirement; the margin is printed) and that node
//! publishes. Once the old publisher's tor runs again it does not take the lease back
//! (rule 2: a valid lease is never stolen).
//!
//! "The lease moved": a node other than the old publisher sees itself as the only lease
//! holder in its own `/status` (`cluster.lease_holders`), polled; the time is an upper
//! bound (one poll of three `rustbalance status` calls).

use anyhow::{ensure, Context, Result};
use rustbalance_lab::Lab;
use rustbalance_testbed::cluster::ns::start_ns_cluster;
use rustbalance_testbed::cluster::publication::{at_unix, confirmed, publisher};
use rustbalance_testbed::faults::{ns_tor_pid, signal};
use rustbalance_testbed::{poll_until, wait_cluster_up, NsNode};
use std::time::{Duration, SystemTime};

/// Liveness bound of each wait (a stuck cluster fails instead of hanging).
const LIVENESS: Duration = Duration::from_secs(180);
/// The requirement: the lease moves within the lease time (the default lease).
const LEASE: Duration = Duration::from_secs(6);

pub async fn publisher_tor_dies_and_the_lease_moves(lab: Lab) -> Result<()> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    let (master, mut nodes) = start_ns_cluster(&lab, "tkill", 3, bin, true)?;
    let url = format!("http://{}/", master.address());
    let r = scenario(&lab, &nodes, &url).await;
    for n in nodes.iter_mut() {
        n.stop(&lab)?;
    }
    r
}

/// The lease holders node `n` sees (`/status` `cluster.lease_holders`).
async fn holders(n: &NsNode) -> Option<Vec<String>> {
    let s = n.status().await?;
    let h = s["cluster"]["lease_holders"].as_array()?;
    Some(
        h.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

async fn scenario(lab: &Lab, nodes: &[NsNode], url: &str) -> Result<()> {
    let p = wait_cluster_up(lab, nodes, url, Duration::from_secs(240))
        .await?
        .node;
    let old = nodes[p].name.clone();
    let pid = ns_tor_pid(lab, &old)?;

    let killed_at = SystemTime::now();
    signal(pid, "-KILL").with_context(|| format!("{old}'s tor"))?;

    // The lease moves: another node holds it alone, by its own view.
    let (q, moved) = poll_until(
        &format!("a node other than {old} holding the lease alone"),
        LIVENESS,
        Duration::from_millis(100),
        async || {
            for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != p) {
                if holders(n).await.is_some_and(|h| h == [n.name.clone()]) {
                    return Ok(Some(i));
                }
            }
            Ok(None)
        },
    )
    .await?;
    let new = nodes[q].name.clone();
    let why = nodes[p]
        .status()
        .await
        .map(|s| s["cluster"]["not_publishing_because"].clone());
    eprintln!(
        "{old}'s tor SIGKILLed (daemon running): {new} holds the lease {:.1}s later \
         (requirement {}s); {old} says why it does not publish: {why:?}",
        moved.as_secs_f64(),
        LEASE.as_secs()
    );
    ensure!(
        moved <= LEASE,
        "the lease moved {moved:?} after {old}'s tor died, over the lease time {LEASE:?}"
    );

    // The new holder publishes, confirmed by HSDirs.
    let since = rustbalance_hs::time::unix_secs(killed_at);
    let (_, published) = poll_until(
        &format!("a confirmed publication by {new}"),
        LIVENESS,
        Duration::from_millis(200),
        async || {
            Ok(publisher(nodes, &[p])
                .await
                .filter(|(i, r)| *i == q && at_unix(r) >= since && confirmed(r)))
        },
    )
    .await?;
    eprintln!(
        "{new} published, confirmed, {:.1}s after the kill",
        published.as_secs_f64()
    );

    // The old publisher's tor runs again (restarted by its daemon) and it may publish
    // again; it leaves the lease where it is.
    poll_until(
        &format!("{old} eligible again with its tor running"),
        LIVENESS,
        Duration::from_millis(500),
        async || {
            let Some(s) = nodes[p].status().await else {
                return Ok(None);
            };
            let back =
                s["tor"]["phase"] == "running" && s["cluster"]["not_publishing_because"].is_null();
            Ok(back.then_some(()))
        },
    )
    .await?;
    let h = holders(&nodes[q]).await.context("no /status")?;
    ensure!(
        h == [new.clone()],
        "{old} came back and the lease holders are {h:?}, expected {new} alone"
    );
    eprintln!("{old}'s tor runs again; {new} keeps the lease");
    Ok(())
}
