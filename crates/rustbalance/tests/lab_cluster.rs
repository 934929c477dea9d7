//! Three RustBalance nodes serve one master address in the private Tor
//! lab (real tor everywhere): all three answer; the publisher is SIGKILLed
//! and another node publishes without its intro points within 15 s; a
//! non-publisher is SIGKILLed and its intro points leave the descriptor
//! within 15 s; clients keep being served. Times are printed for the notes.

use rustbalance::cluster_lab::{prepare, ClusterNodeProc};
use rustbalance_lab::{Lab, LabOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// The publisher among `nodes` and its last publication's intro points per node.
async fn publisher(nodes: &[ClusterNodeProc]) -> Option<(usize, serde_json::Value)> {
    for (i, n) in nodes.iter().enumerate() {
        if let Some(s) = n.status().await {
            if s["cluster"]["role"] == "publisher" && !s["cluster"]["last_publish"].is_null() {
                return Some((i, s["cluster"]["last_publish"].clone()));
            }
        }
    }
    None
}

fn published_nodes(p: &serde_json::Value) -> Vec<String> {
    p["intro_points"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Wait until some node (other than `not`) has published at or after
/// `since` a descriptor whose nodes are exactly `want`.
async fn wait_published(
    nodes: &[ClusterNodeProc],
    not: Option<usize>,
    since: SystemTime,
    want: &[&str],
    timeout: Duration,
) -> (usize, Duration) {
    let t0 = Instant::now();
    let since_s = rustbalance_hs::time::unix_secs(since);
    loop {
        if let Some((i, p)) = publisher(nodes).await {
            let at = p["at"]
                .as_str()
                .and_then(|a| humantime::parse_rfc3339(a).ok())
                .map(rustbalance_hs::time::unix_secs)
                .unwrap_or(0);
            let got = published_nodes(&p);
            let ok_hsdirs = p["slots"]
                .as_array()
                .map(|s| {
                    s.iter().all(|s| {
                        s["hsdirs"]
                            .as_object()
                            .is_some_and(|h| h.values().any(|v| v == "UPLOADED"))
                    })
                })
                .unwrap_or(false);
            if Some(i) != not && at >= since_s && got == want && ok_hsdirs {
                return (i, t0.elapsed());
            }
        }
        assert!(
            t0.elapsed() < timeout,
            "no publication of {want:?} within {timeout:?}; publisher: {:?}",
            publisher(nodes).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn split(lab: &Lab, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let k = match lab.http_get(url, Duration::from_secs(30)).await {
            Ok(r) if r.status == 200 => r.text().trim().to_string(),
            Ok(r) => format!("HTTP {}", r.status),
            Err(_) => "failed".into(),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
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
        let (p, took) = wait_published(
            &nodes,
            None,
            SystemTime::UNIX_EPOCH,
            &["node1", "node2", "node3"],
            Duration::from_secs(180),
        )
        .await;
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
        .await;
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
        .await;
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
