//! Three nodes on one master address: failover, single-node fallback, and
//! the others coming back.

use anyhow::{ensure, Result};
use rustbalance_lab::Lab;
use rustbalance_testbed::clients::{served, split};
use rustbalance_testbed::{poll_until, prepare, wait_cluster_up, wait_published, ClusterNodeProc};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// How long a takeover or a dropped node may take before the test calls it
/// broken (the benchmark measures seconds: docs/BENCHMARKS.md, "Failover").
const LIVENESS: Duration = Duration::from_secs(90);

/// Make the lab client forget the master descriptor (NEWNYM), reach the service (which
/// fetches it again from the HSDirs), and read what it fetched: (pow-params lines, intro
/// points). tor delays a NEWNYM that comes within 10 s of the last one, so this waits that
/// long first, and tries until the descriptor lists `want` intro points (the newest
/// publication) or three times.
async fn fetch_master(
    lab: &Lab,
    ctl: &rustbalance_tor::ControlClient,
    master: &rustbalance_hs::OnionAddress,
    want: usize,
) -> Result<(usize, usize)> {
    let mut got = (0, 0);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(11)).await;
        ctl.signal("NEWNYM").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        lab.wait_http(
            &format!("http://{master}/"),
            "served by",
            Duration::from_secs(60),
        )
        .await?;
        let text = ctl
            .getinfo(&format!("hs/client/desc/id/{}", master.without_suffix()))
            .await?;
        let d = rustbalance_hs::descriptor::parse_descriptor(
            &text,
            master,
            &rustbalance_hs::TimeParams::testing(20),
            SystemTime::now(),
        )?;
        got = (d.pow_params.len(), d.intro_points.len());
        if got.1 == want {
            break;
        }
    }
    Ok(got)
}

pub async fn three_nodes_fail_over(lab: Lab) -> Result<()> {
    let (master, mut nodes) = prepare(&lab, 3).await?;
    let r = fail_over(&lab, &master, &mut nodes).await;
    for n in nodes.iter_mut() {
        n.stop();
    }
    r
}

async fn fail_over(
    lab: &Lab,
    master: &rustbalance_hs::IdentityKey,
    nodes: &mut [ClusterNodeProc],
) -> Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    for n in nodes.iter_mut() {
        let log = lab.dir().join(format!("{}.log", n.name));
        n.start(bin, &log)?;
    }
    let t0 = Instant::now();
    let url = format!("http://{}/", master.address());
    let p = wait_cluster_up(lab, nodes, &url, Duration::from_secs(180))
        .await?
        .node;
    eprintln!(
        "master reachable {:.1}s after the nodes started",
        t0.elapsed().as_secs_f64()
    );
    let s = split(lab, &url, 60).await;
    eprintln!("60 requests: {s:?}");
    for n in nodes.iter() {
        ensure!(
            s.get(&format!("served by {}", n.name))
                .copied()
                .unwrap_or(0)
                > 0,
            "{} never served: {s:?}",
            n.name
        );
    }

    // The publisher dies.
    let dead = p;
    let killed_at = SystemTime::now();
    nodes[dead].kill();
    let rest: Vec<&str> = ["node1", "node2", "node3"]
        .into_iter()
        .filter(|n| *n != nodes[dead].name)
        .collect();
    let next = wait_published(nodes, &[dead], killed_at, &rest, LIVENESS).await?;
    let p2 = next.node;
    eprintln!(
        "publisher {} SIGKILLed: {} published without it after {:.1}s",
        nodes[dead].name,
        nodes[p2].name,
        next.waited.as_secs_f64()
    );
    let s = split(lab, &url, 20).await;
    eprintln!("20 requests after the publisher died: {s:?}");
    ensure!(served(&s) >= 15, "clients must keep being served: {s:?}");

    // A non-publisher dies.
    let victim = (0..3)
        .find(|i| *i != dead && *i != p2)
        .expect("a third node");
    let killed_at = SystemTime::now();
    nodes[victim].kill();
    let last = [nodes[p2].name.as_str()];
    let took = wait_published(nodes, &[dead], killed_at, &last, LIVENESS)
        .await?
        .waited;
    eprintln!(
        "non-publisher {} SIGKILLed: its intro points left the descriptor after {:.1}s",
        nodes[victim].name,
        took.as_secs_f64()
    );
    let s = split(lab, &url, 10).await;
    eprintln!("10 requests with one node left: {s:?}");
    let lone = &nodes[p2];
    ensure!(
        s.get(&format!("served by {}", lone.name))
            .copied()
            .unwrap_or(0)
            > 0,
        "the last node must serve: {s:?}"
    );

    // Single-node fallback: alone, the node publishes its own pow-params (tor's PoW
    // defences for clients), and a real client fetches them from the HSDirs.
    let (_, pow_after) = poll_until(
        "the lone node publishing pow-params",
        LIVENESS,
        Duration::from_millis(250),
        async || {
            let s = lone.status().await;
            Ok(
                (s.and_then(|s| s["cluster"]["last_publish"]["pow"].as_bool()) == Some(true))
                    .then_some(()),
            )
        },
    )
    .await?;
    let ctl =
        rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let (pow, intros) = fetch_master(lab, &ctl, &master.address(), 3).await?;
    eprintln!(
        "alone: {} published pow-params {:.1}s after becoming the last node; a client fetched {intros} intro points with {pow} pow-params line(s)",
        lone.name,
        pow_after.as_secs_f64() + took.as_secs_f64()
    );
    ensure!(pow == 1, "the fetched descriptor has no pow-params");

    // The others come back: merged descriptor again, without pow-params, never dark.
    let back_at = SystemTime::now();
    for i in [dead, victim] {
        let log = lab.dir().join(format!("{}-again.log", nodes[i].name));
        nodes[i].start(bin, &log)?;
    }
    let all = ["node1", "node2", "node3"];
    let took = wait_published(nodes, &[], back_at, &all, Duration::from_secs(120))
        .await?
        .waited;
    let (pow, intros) = fetch_master(lab, &ctl, &master.address(), 9).await?;
    eprintln!(
        "peers back: all 3 published again after {:.1}s; a client fetched {intros} intro points, {pow} pow-params line(s)",
        took.as_secs_f64()
    );
    ensure!(pow == 0, "pow-params must go with several nodes");
    let s = split(lab, &url, 20).await;
    eprintln!("20 requests with all 3 back: {s:?}");
    Ok(())
}
