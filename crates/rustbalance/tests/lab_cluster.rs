//! Three RustBalance nodes serve one master address in the private Tor
//! lab (real tor everywhere): all three answer; the publisher is SIGKILLed
//! and another node publishes without its intro points within 15 s; a
//! non-publisher is SIGKILLed and its intro points leave the descriptor
//! within 15 s; clients keep being served. Times are printed for the notes.

use rustbalance::cluster_lab::{prepare, split, wait_published};
use rustbalance_lab::{Lab, LabOptions};
use std::time::{Duration, Instant, SystemTime};

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
        let (p, took) = wait_published(
            &nodes,
            None,
            SystemTime::UNIX_EPOCH,
            &["node1", "node2", "node3"],
            Duration::from_secs(180),
        )
        .await?;
        eprintln!(
            "first publication with all 3 nodes by {} after {:.1}s",
            nodes[p].name,
            took.as_secs_f64()
        );
        let url = format!("http://{}/", master.address());
        lab.wait_http(&url, "served by", Duration::from_secs(120))
            .await?;
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
        anyhow::Ok(())
    }
    .await;
    for n in nodes.iter_mut() {
        n.stop();
    }
    lab.stop_and_verify().await.unwrap();
    result.unwrap();
}
