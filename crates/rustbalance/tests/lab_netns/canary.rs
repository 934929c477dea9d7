//! The end-to-end canary (issue 15, item 4), nodes `can1`…`can3`, each in its own network
//! namespace, default `cluster.quorum`: a silent node.
//!
//! One non-publisher's target is stopped (SIGSTOP) while its node and its tor run: its
//! proxy still accepts streams (the kernel completes the target's TCP handshakes), its
//! target health stays `up` and its gossip is fine, so nothing but the canary notices
//! that clients get no answer. Its intro points must leave the published descriptor
//! within 60 s of the first failed canary probe (the requirement; the margin is
//! printed), and come back after SIGCONT.
//!
//! "First failed canary": the earliest `cluster.canary.<silent>.failing_since` of its
//! peers' `/status` (when the first failed probe ended). "Left the descriptor": the
//! moment a publication without it was seen confirmed by HSDirs (an upper bound).

use anyhow::{ensure, Context, Result};
use rustbalance_lab::Lab;
use rustbalance_testbed::cluster::ns::start_ns_cluster;
use rustbalance_testbed::faults::signal_ns_target as signal_target;
use rustbalance_testbed::{wait_cluster_up, wait_published, NsNode};
use std::time::{Duration, SystemTime};

/// Liveness bound of each wait (a stuck cluster fails instead of hanging).
const LIVENESS: Duration = Duration::from_secs(180);
/// The requirement: out of the descriptor within this of the first failed canary.
const EJECT_WITHIN: Duration = Duration::from_secs(60);

pub async fn canary_ejects_a_silent_node(lab: Lab) -> Result<()> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    let (master, mut nodes) = start_ns_cluster(&lab, "can", 3, bin, true)?;
    let url = format!("http://{}/", master.address());
    let r = scenario(&lab, &nodes, &url).await;
    for n in nodes.iter_mut() {
        n.stop(&lab)?;
    }
    r
}

/// The earliest time a peer's canary started failing `silent` (`/status`
/// `cluster.canary.<silent>.failing_since`), over the nodes other than `silent`.
async fn first_failure(nodes: &[NsNode], silent: &str) -> Option<SystemTime> {
    let mut first: Option<SystemTime> = None;
    for n in nodes.iter().filter(|n| n.name != silent) {
        let Some(s) = n.status().await else { continue };
        let t = s["cluster"]["canary"][silent]["failing_since"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        if let Some(t) = t {
            first = Some(first.map_or(t, |f| f.min(t)));
        }
    }
    first
}

/// `silent` as the node `at` sees it: live, and its target `up` (nothing but the canary
/// can tell it is silent).
async fn looks_healthy(node: &NsNode, silent: &str) -> Result<()> {
    let s = node.status().await.context("no /status")?;
    let m = s["cluster"]["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == silent))
        .cloned()
        .with_context(|| format!("{silent} not among {}'s members", node.name))?;
    ensure!(
        m["live"] == true && m["target"] == "up",
        "{silent} should look healthy in gossip (live, target up), {} sees {m}",
        node.name
    );
    Ok(())
}

async fn scenario(lab: &Lab, nodes: &[NsNode], url: &str) -> Result<()> {
    let all: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let p = wait_cluster_up(lab, nodes, url, Duration::from_secs(240))
        .await?
        .node;
    let s = (0..nodes.len())
        .find(|i| *i != p)
        .context("a non-publisher")?;
    let silent = all[s].clone();
    let rest: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|n| *n != silent)
        .collect();

    let stopped_at = SystemTime::now();
    signal_target(lab, &silent, "-STOP")?;
    let out = wait_published(nodes, &[], stopped_at, &rest, LIVENESS).await;
    let seen_at = SystemTime::now();
    // Read before SIGCONT: the peers' runs of failures end with the next answer.
    let first = first_failure(nodes, &silent).await;
    let healthy = looks_healthy(&nodes[out.as_ref().map_or(p, |o| o.node)], &silent).await;
    let back_at = SystemTime::now();
    signal_target(lab, &silent, "-CONT")?;
    let out = out?;
    let first = first.context("no peer reports a failing canary although it was ejected")?;
    let after_first = seen_at.duration_since(first).unwrap_or_default();
    eprintln!(
        "silent {silent} (target stopped, node and tor running): {} published without it, \
         seen confirmed {:.1}s after the stop, {:.1}s after the first failed canary \
         (which ended {:.1}s after the stop); requirement {}s",
        all[out.node],
        out.waited.as_secs_f64(),
        after_first.as_secs_f64(),
        first
            .duration_since(stopped_at)
            .unwrap_or_default()
            .as_secs_f64(),
        EJECT_WITHIN.as_secs()
    );
    healthy?;
    ensure!(
        after_first <= EJECT_WITHIN,
        "{silent} left the descriptor {after_first:?} after its first failed canary, over {EJECT_WITHIN:?}"
    );

    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let back = wait_published(nodes, &[], back_at, &names, LIVENESS).await?;
    eprintln!(
        "{silent} answers again: listed again by {}, seen confirmed {:.1}s after SIGCONT",
        all[back.node],
        back.waited.as_secs_f64()
    );
    Ok(())
}
