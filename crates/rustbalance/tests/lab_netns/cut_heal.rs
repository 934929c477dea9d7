//! Cut a node off and heal it, with every node in its own network
//! namespace: the cut publisher is replaced, the cut node does not crash
//! and stops publishing, and stays quiet for 90 s, past the 60 s after
//! which an earlier election forgot the others and took the lease alone,
//! while the majority side keeps exactly one publisher (the lease timeline
//! is printed); after healing there is exactly one publisher again and the
//! healed node's intro points are back in the published descriptor. Nodes
//! `cut1`…`cut3`.

use anyhow::{ensure, Result};
use rustbalance_lab::Lab;
use rustbalance_node::config::QuorumMode;
use rustbalance_testbed::cluster::ns::{start_ns_cluster_with, Knobs};
use rustbalance_testbed::{poll_until, publisher, wait_cluster_up, wait_published, NsNode};
use std::time::{Duration, SystemTime};

/// Liveness bound of each step (the cut/heal times are printed).
const LIVENESS: Duration = Duration::from_secs(120);

pub async fn cut_and_heal_a_publisher(lab: Lab) -> Result<()> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    // Partition safety is what `cluster.quorum = "majority"` buys (the default, "live",
    // lets a cut-off node publish too).
    let (master, mut nodes) = start_ns_cluster_with(
        &lab,
        "cut",
        3,
        bin,
        true,
        Knobs {
            quorum: Some(QuorumMode::Majority),
            ..Knobs::default()
        },
    )?;
    let url = format!("http://{}/", master.address());
    let r = cut_and_heal(&lab, &nodes, &url).await;
    for n in nodes.iter_mut() {
        n.stop(&lab)?;
    }
    r
}

async fn cut_and_heal(lab: &Lab, nodes: &[NsNode], url: &str) -> Result<()> {
    let all: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let p = wait_cluster_up(lab, nodes, url, Duration::from_secs(240))
        .await?
        .node;
    // Operator tooling on the live cluster (lab_netns/ops.rs).
    super::ops::monitoring_and_doctor(nodes).await?;

    // Cut the publisher off.
    let cut_at = SystemTime::now();
    lab.cut(&nodes[p].name)?;
    let rest: Vec<&str> = all
        .iter()
        .copied()
        .filter(|n| *n != nodes[p].name)
        .collect();
    let next = wait_published(nodes, &[p], cut_at, &rest, LIVENESS).await?;
    eprintln!(
        "{} cut off: {} published without it after {:.1}s",
        nodes[p].name,
        nodes[next.node].name,
        next.waited.as_secs_f64()
    );
    // The cut node keeps running and gives up publishing once its lease ends.
    let (_, took) = poll_until(
        "the cut node to stop publishing",
        LIVENESS,
        Duration::from_millis(500),
        async || {
            let s = nodes[p].status().await;
            ensure!(s.is_some(), "the cut node must keep running");
            Ok(s.is_some_and(|s| s["cluster"]["role"] == "follower")
                .then_some(()))
        },
    )
    .await?;
    eprintln!(
        "cut node stopped publishing {:.1}s after the cut",
        took.as_secs_f64() + next.waited.as_secs_f64()
    );
    stays_quiet_past_forget_after(nodes, p, cut_at).await?;
    // The lab client keeps its cached descriptor, which still lists the cut node's
    // intro points. A cut (unlike a kill) black-holes that node: its intro points
    // still accept introductions, and the client learns they are dead only when each
    // rendezvous times out (about 30 s each, up to 3 of them). CI run of 2026-11-22
    // 13:57 needed more than 60 s.
    lab.wait_http(url, "served by", Duration::from_secs(150))
        .await?;

    // Heal: one publisher again, and the healed node's intro points come back.
    let healed_at = SystemTime::now();
    lab.heal(&nodes[p].name)?;
    let back = wait_published(nodes, &[], healed_at, &all, LIVENESS).await?;
    eprintln!(
        "healed: {} published all 3 nodes again after {:.1}s",
        nodes[back.node].name,
        back.waited.as_secs_f64()
    );
    let mut publishers = Vec::new();
    let (_, took) = poll_until(
        "exactly one publisher after healing",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            publishers.clear();
            for n in nodes {
                if n.status()
                    .await
                    .is_some_and(|s| s["cluster"]["role"] == "publisher")
                {
                    publishers.push(n.name.clone());
                }
            }
            Ok((publishers.len() == 1).then_some(()))
        },
    )
    .await
    .map_err(|e| e.context(format!("publishers: {publishers:?}")))?;
    eprintln!(
        "exactly one publisher ({publishers:?}) {:.1}s after the healed publication",
        took.as_secs_f64()
    );
    ensure!(publisher(nodes, &[]).await.is_some());
    lab.wait_http(url, "served by", Duration::from_secs(60))
        .await?;
    Ok(())
}

/// How long the cut node is watched: past the 60 s after which an earlier election
/// forgot dead members and took the lease alone (issue 15). `RB_LAB_PARTITION_SECS`
/// sets another length (issue 15 asks for 5 minutes: `RB_LAB_PARTITION_SECS=300`, run
/// by hand and reported in docs/ELECTION.md; CI keeps 90 s).
fn quiet_window() -> Duration {
    let secs = std::env::var("RB_LAB_PARTITION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    Duration::from_secs(secs)
}

/// Watch every node until [`quiet_window`] after the cut: the cut node `p` never publishes
/// again and the majority side never has two publishers. Prints the lease timeline.
async fn stays_quiet_past_forget_after(
    nodes: &[NsNode],
    p: usize,
    cut_at: SystemTime,
) -> Result<()> {
    let since_cut = || cut_at.elapsed().unwrap_or_default();
    let publishes = |s: &serde_json::Value| s["cluster"]["publishes"].as_u64();
    let before = nodes[p].status().await.as_ref().and_then(publishes);
    let mut last: Option<Vec<String>> = None;
    let window = quiet_window();
    while since_cut() < window {
        let mut holders = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let Some(s) = n.status().await else { continue };
            if s["cluster"]["role"] == "publisher" {
                holders.push(n.name.clone());
            }
            if i == p {
                ensure!(
                    s["cluster"]["role"] == "follower" && publishes(&s) == before,
                    "the cut node published again {:.1}s after the cut: {}",
                    since_cut().as_secs_f64(),
                    s["cluster"]
                );
            }
        }
        ensure!(
            holders.len() <= 1,
            "two publishers on the majority side {:.1}s after the cut: {holders:?}",
            since_cut().as_secs_f64()
        );
        if last.as_ref() != Some(&holders) {
            eprintln!(
                "lease timeline: {:6.1}s after the cut, publisher: {holders:?}",
                since_cut().as_secs_f64()
            );
            last = Some(holders);
        }
        // An observation window, not a wait: one round of status reads per second.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    ensure!(
        last.is_some_and(|h| h.len() == 1),
        "no publisher on the majority side at the end of the window"
    );
    eprintln!(
        "{} stayed quiet for {:.0}s after the cut",
        nodes[p].name,
        window.as_secs_f64()
    );
    Ok(())
}
