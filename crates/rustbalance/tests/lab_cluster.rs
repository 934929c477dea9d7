//! Three RustBalance nodes serve one master address in the private Tor
//! lab (real tor everywhere): all three answer; the publisher is SIGKILLed
//! and another node publishes without its intro points within 15 s; a
//! non-publisher is SIGKILLed and its intro points leave the descriptor
//! within 15 s; clients keep being served. The last node standing publishes
//! its own PoW parameters (single-node fallback) and drops them when the
//! others come back. Times are printed for the notes.

use rustbalance::cluster_lab::{prepare, split, wait_cluster_up, wait_published};
use rustbalance_lab::{Lab, LabOptions};
use std::time::{Duration, Instant, SystemTime};

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
) -> anyhow::Result<(usize, usize)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fail_over_in_seconds() {
    let dir = tempfile::Builder::new()
        .prefix("rb-cluster")
        .tempdir()
        .unwrap();
    let lab = Lab::create(dir.path(), LabOptions::default())
        .await
        .unwrap();
    let started = lab.start(|_| {}).await;
    let mut nodes = Vec::new();
    let result = async {
        started?;
        let (master, n) = prepare(&lab, 3).await?;
        nodes = n;
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rustbalance"));
        for n in nodes.iter_mut() {
            let log = dir.path().join(format!("{}.log", n.name));
            n.start(bin, &log)?;
        }
        let t0 = Instant::now();
        let url = format!("http://{}/", master.address());
        let (p, _) = wait_cluster_up(&lab, &nodes, &url, Duration::from_secs(180)).await?;
        eprintln!(
            "master reachable {:.1}s after the nodes started",
            t0.elapsed().as_secs_f64()
        );
        let s = split(&lab, &url, 60).await;
        eprintln!("60 requests: {s:?}");
        for n in &nodes {
            assert!(
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
        let (p2, took) = wait_published(
            &nodes,
            Some(dead),
            killed_at,
            &rest,
            Duration::from_secs(15),
        )
        .await?;
        eprintln!(
            "publisher {} SIGKILLed: {} published without it after {:.1}s",
            nodes[dead].name,
            nodes[p2].name,
            took.as_secs_f64()
        );
        let s = split(&lab, &url, 20).await;
        eprintln!("20 requests after the publisher died: {s:?}");
        let served: usize = s
            .iter()
            .filter(|(k, _)| k.starts_with("served by"))
            .map(|(_, v)| v)
            .sum();
        assert!(served >= 15, "clients must keep being served: {s:?}");

        // A non-publisher dies.
        let victim = (0..3)
            .find(|i| *i != dead && *i != p2)
            .expect("a third node");
        let killed_at = SystemTime::now();
        nodes[victim].kill();
        let last = [nodes[p2].name.as_str()];
        let (_, took) = wait_published(
            &nodes,
            Some(dead),
            killed_at,
            &last,
            Duration::from_secs(15),
        )
        .await?;
        eprintln!(
            "non-publisher {} SIGKILLed: its intro points left the descriptor after {:.1}s",
            nodes[victim].name,
            took.as_secs_f64()
        );
        let s = split(&lab, &url, 10).await;
        eprintln!("10 requests with one node left: {s:?}");
        let lone = &nodes[p2];
        anyhow::ensure!(
            s.get(&format!("served by {}", lone.name)).copied().unwrap_or(0) > 0,
            "the last node must serve: {s:?}"
        );

        // Single-node fallback: alone, the node publishes its own pow-params (tor's PoW
        // defences for clients), and a real client fetches them from the HSDirs.
        let t = Instant::now();
        loop {
            let pow = lone.status().await.and_then(|s| {
                s["cluster"]["last_publish"]["pow"].as_bool()
            });
            if pow == Some(true) {
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(20),
                "the lone node never published pow-params"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let ctl = rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr())
            .await?;
        let (pow, intros) = fetch_master(&lab, &ctl, &master.address(), 3).await?;
        eprintln!(
            "alone: {} published pow-params {:.1}s after becoming the last node; a client fetched {intros} intro points with {pow} pow-params line(s)",
            lone.name,
            t.elapsed().as_secs_f64() + took.as_secs_f64()
        );
        anyhow::ensure!(pow == 1, "the fetched descriptor has no pow-params");

        // The others come back: merged descriptor again, without pow-params, never dark.
        let back_at = SystemTime::now();
        for i in [dead, victim] {
            let log = dir.path().join(format!("{}-again.log", nodes[i].name));
            nodes[i].start(bin, &log)?;
        }
        let (_, took) = wait_published(
            &nodes,
            None,
            back_at,
            &["node1", "node2", "node3"],
            Duration::from_secs(120),
        )
        .await?;
        let (pow, intros) = fetch_master(&lab, &ctl, &master.address(), 9).await?;
        eprintln!(
            "peers back: all 3 published again after {:.1}s; a client fetched {intros} intro points, {pow} pow-params line(s)",
            took.as_secs_f64()
        );
        anyhow::ensure!(pow == 0, "pow-params must go with several nodes");
        let s = split(&lab, &url, 20).await;
        eprintln!("20 requests with all 3 back: {s:?}");
        anyhow::Ok(())
    }
    .await;
    for n in nodes.iter_mut() {
        n.stop();
    }
    lab.stop_and_verify().await.unwrap();
    result.unwrap();
}
