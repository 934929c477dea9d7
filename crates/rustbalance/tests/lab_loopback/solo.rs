//! The single-node switch (issue 16 item 1): two nodes; the follower dies (daemon and
//! tor SIGKILLed); the survivor, alone for `cluster.solo_after_secs` (10 s in the lab),
//! makes its own tor host the master key, and tor publishes the master descriptor
//! itself, `pow-params` included; a lab client keeps being served. The follower comes
//! back: merged descriptors listing both nodes again, the master service removed from
//! the survivor's tor. In between, the survivor's tor is SIGKILLed while single-node: the
//! restarted tor gets the master service again. The longest stretch without a successful request is printed for
//! both switches (a client loop of four concurrent requests on fresh circuits, printed with their
//! latency: a request stuck on a dead node's intro point counts in the gap).

use anyhow::{ensure, Context, Result};
use rustbalance_hs::descriptor::{parse_descriptor, ParsedDescriptor};
use rustbalance_hs::{OnionAddress, TimeParams};
use rustbalance_lab::Lab;
use rustbalance_testbed::client_cache;
use rustbalance_testbed::clients::{longest_gap, served_after, split, summarize, ClientLoop};
use rustbalance_testbed::{
    confirmed, poll_until, prepare, published_nodes, publisher, start_all, stop_all,
    wait_cluster_up, wait_published, ClusterNodeProc,
};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Liveness bound for each wait (a loaded 2-core machine must pass; times are printed).
const LIVENESS: Duration = Duration::from_secs(180);

/// Concurrent requests of the client loop (the failover benchmark's default).
const CONC: usize = 4;

pub async fn lone_node_goes_single_node(lab: Lab) -> Result<()> {
    let (master, mut nodes) = prepare(&lab, 2).await?;
    let r = switch_and_back(&lab, &master.address(), &mut nodes).await;
    stop_all(&mut nodes);
    r
}

/// The survivor's `/status` descriptor mode (`cluster.mode`).
async fn mode(n: &ClusterNodeProc) -> Option<String> {
    let st = n.status().await?;
    st["cluster"]["mode"].as_str().map(str::to_string)
}

/// The master descriptor the survivor's own tor holds (`GETINFO hs/service/desc/id`):
/// `Some` while it hosts the master service.
async fn tors_own(n: &ClusterNodeProc, master: &OnionAddress) -> Result<Option<ParsedDescriptor>> {
    let ctl = n.tor_control().await?;
    let Ok(text) = ctl
        .getinfo(&format!("hs/service/desc/id/{}", master.without_suffix()))
        .await
    else {
        return Ok(None);
    };
    let d = parse_descriptor(&text, master, &TimeParams::testing(20), SystemTime::now())
        .context("parse the survivor tor's own master descriptor")?;
    Ok(Some(d))
}

async fn switch_and_back(
    lab: &Lab,
    master: &OnionAddress,
    nodes: &mut [ClusterNodeProc],
) -> Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    start_all(lab, nodes, bin, &[])?;
    let url = format!("http://{master}/");
    let up = wait_cluster_up(lab, nodes, &url, LIVENESS).await?;
    let (s, f) = (up.node, 1 - up.node);
    let (survivor, follower) = (nodes[s].name.clone(), nodes[f].name.clone());
    // The first node up may have been alone long enough to go single-node before the
    // other's intro points arrived: then it returns to merged (drain included).
    let (_, took) = poll_until(
        "both nodes in merged mode",
        LIVENESS,
        Duration::from_millis(250),
        async || Ok((mode(&nodes[s]).await.as_deref() == Some("merged")).then_some(())),
    )
    .await?;
    eprintln!(
        "{survivor} in merged mode ({:.1}s more)",
        took.as_secs_f64()
    );

    // The follower dies; the client loop runs until the survivor is single-node and the
    // lab client fetched tor's own descriptor (pow-params in it).
    let t0 = Instant::now();
    let loop1 = ClientLoop::spawn(lab, &url, CONC, t0);
    nodes[f].kill();
    eprintln!("{follower} SIGKILLed (daemon and tor)");
    let (_, took) = poll_until(
        "the survivor single-node (tor's own master descriptor uploaded)",
        LIVENESS,
        Duration::from_millis(250),
        async || Ok((mode(&nodes[s]).await.as_deref() == Some("single-node")).then_some(())),
    )
    .await?;
    let solo_at = t0.elapsed().as_secs_f64();
    eprintln!(
        "{survivor} single-node {:.1}s after the kill (tor uploaded its own master descriptor)",
        took.as_secs_f64()
    );
    // tor's first confirmed upload may be of its other descriptor: the one `GETINFO` shows
    // (its current one) can still be waiting for its intro points, and then it does not
    // parse ("no introduction points"; CI run of 6ea1232).
    let (own, _) = poll_until(
        "the survivor tor's own current master descriptor, with intro points",
        LIVENESS,
        Duration::from_millis(250),
        async || Ok(tors_own(&nodes[s], master).await.ok().flatten()),
    )
    .await?;
    ensure!(
        !own.pow_params.is_empty(),
        "tor's own master descriptor must carry pow-params"
    );
    let (fetched, took) =
        client_cache::refetch_until(lab, master, LIVENESS, |d| !d.pow_params.is_empty()).await?;
    eprintln!(
        "the lab client fetched tor's own master descriptor in {:.1}s: revision {}, {} intro points, {} pow-params line(s)",
        took.as_secs_f64(),
        fetched.revision,
        fetched.intro_points.len(),
        fetched.pow_params.len()
    );
    // Served on the descriptor it holds now (tor's own, through the master service).
    let (answer, _) = lab.wait_http(&url, "served by", LIVENESS).await?;
    eprintln!("on tor's own descriptor: {}", answer.text().trim());
    // The loop itself must be served after the switch. The refetch above (NEWNYM)
    // can fail the loop's requests running at that moment, so wait for one that
    // started after the client held tor's own descriptor.
    let fetched_at = t0.elapsed().as_secs_f64();
    let served_loop = poll_until(
        "a request of the client loop served by the single-node service",
        LIVENESS,
        Duration::from_millis(250),
        async || Ok((loop1.served_since(fetched_at) > 0).then_some(())),
    )
    .await;
    let reqs = loop1.finish().await;
    let sum = summarize(&reqs, None);
    eprintln!(
        "GAP to single-node: longest stretch without a successful request {:.1}s; {}/{} served over {:.1}s (latency median {:.1}s, max {:.1}s); {:?}",
        longest_gap(&reqs),
        sum.ok,
        sum.requests,
        sum.duration_s,
        sum.p50_s,
        sum.max_s,
        sum.outcomes
    );
    served_loop.with_context(|| {
        format!(
            "the client loop must be served by the single-node service: {:?}",
            sum.outcomes
        )
    })?;
    ensure!(served_after(&reqs, solo_at) > 0);
    let metrics = rustbalance_node::admin::get(nodes[s].admin, "/metrics").await?;
    ensure!(
        metrics.contains("\nrustbalance_cluster_single_node 1\n"),
        "the metric shows single-node mode"
    );

    // tor restarted while single-node (SIGKILL; the node's watchdog starts it again): the
    // ephemeral master service died with it, and the node adds it again.
    let old_tor = nodes[s].tor_pid().context("the survivor's tor pid")?;
    rustbalance_tor::ProcessId::of_pid(old_tor)
        .context("the survivor's tor process")?
        .kill()?;
    let (_, took) = poll_until(
        "single-node again on the restarted tor",
        LIVENESS,
        Duration::from_millis(250),
        async || {
            let restarted = nodes[s].tor_pid().is_some_and(|p| p != old_tor);
            let solo = mode(&nodes[s]).await.as_deref() == Some("single-node");
            Ok((restarted && solo).then_some(()))
        },
    )
    .await?;
    let (own, _) = poll_until(
        "the restarted tor's own current master descriptor, with intro points",
        LIVENESS,
        Duration::from_millis(250),
        async || Ok(tors_own(&nodes[s], master).await.ok().flatten()),
    )
    .await?;
    ensure!(!own.pow_params.is_empty(), "with pow-params again");
    eprintln!(
        "{survivor}'s tor SIGKILLed while single-node: the restarted tor hosts the master service and uploaded its descriptor {:.1}s later",
        took.as_secs_f64()
    );

    // The follower comes back: merged descriptors listing both, then the master service
    // goes from the survivor's tor (after the drain).
    let t0 = Instant::now();
    let back_at = SystemTime::now();
    let loop2 = ClientLoop::spawn(lab, &url, CONC, t0);
    let log = lab.dir().join(format!("{follower}-again.log"));
    nodes[f].start(bin, &log)?;
    let mut both = [survivor.as_str(), follower.as_str()];
    both.sort_unstable();
    let merged = wait_published(nodes, &[], back_at, &both, LIVENESS).await?;
    eprintln!(
        "{follower} restarted: merged descriptors listing both after {:.1}s ({})",
        merged.waited.as_secs_f64(),
        merged.record["reason"]
    );
    let (_, took) = poll_until(
        "the master service removed from the survivor's tor",
        LIVENESS,
        Duration::from_millis(250),
        async || {
            let merged_mode = mode(&nodes[s]).await.as_deref() == Some("merged");
            Ok((merged_mode && tors_own(&nodes[s], master).await?.is_none()).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "the survivor's tor no longer hosts the master service {:.1}s after the merged upload",
        took.as_secs_f64()
    );
    // After the removal the publisher publishes once more (newer than anything the
    // master service uploaded during the drain), listing both.
    let (last, _) = poll_until(
        "the merged publication after the removal",
        LIVENESS,
        Duration::from_millis(250),
        async || {
            let Some((_, p)) = publisher(nodes, &[]).await else {
                return Ok(None);
            };
            let after = p["reason"] == "single-node switch" && published_nodes(&p) == both;
            Ok((after && confirmed(&p)).then_some(p))
        },
    )
    .await?;
    let d = client_cache::refetch_publication(lab, master, &last, LIVENESS).await?;
    ensure!(
        d.pow_params.is_empty(),
        "a merged descriptor carries no pow-params"
    );
    eprintln!(
        "the lab client holds the merged descriptor ({}): {} intro points, no pow-params",
        last["reason"],
        d.intro_points.len()
    );
    let reqs = loop2.finish().await;
    let sum = summarize(&reqs, None);
    eprintln!(
        "GAP back to merged: longest stretch without a successful request {:.1}s; {}/{} served over {:.1}s (latency median {:.1}s, max {:.1}s); {:?}",
        longest_gap(&reqs),
        sum.ok,
        sum.requests,
        sum.duration_s,
        sum.p50_s,
        sum.max_s,
        sum.outcomes
    );
    ensure!(sum.ok > 0, "the client must be served: {:?}", sum.outcomes);
    // Who serves on the merged descriptor (printed: a node the client has not asked yet
    // is the open issue 15, not this switch).
    eprintln!(
        "10 requests on the merged descriptor: {:?}",
        split(lab, &url, 10).await
    );
    Ok(())
}
