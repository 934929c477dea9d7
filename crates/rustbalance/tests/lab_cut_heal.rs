//! Cut a node off and heal it, with every node in its own network
//! namespace of a namespaced lab (real tor everywhere): the cut publisher
//! is replaced, the cut node does not crash and stops publishing, and after
//! healing there is exactly one publisher again and the healed node's intro
//! points are back in the published descriptor.

use rustbalance::cluster_lab::{publisher, start_ns_cluster, wait_cluster_up, wait_published};
use rustbalance_lab::{Lab, LabOptions, Placement};
use std::time::{Duration, Instant, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_heal_a_publisher() {
    let dir = tempfile::Builder::new().prefix("rb-cut").tempdir().unwrap();
    let opts = LabOptions {
        placement: Placement::namespace(),
        ..Default::default()
    };
    let lab = Lab::create(dir.path(), opts).await.unwrap();
    let started = lab
        .start(|p| eprintln!("[{:5.1}s] {}", p.elapsed.as_secs_f64(), p.phase))
        .await;
    let result = async {
        started?;
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rustbalance"));
        let (master, nodes) = start_ns_cluster(&lab, 3, bin, true)?;
        let all = ["node1", "node2", "node3"];
        let url = format!("http://{}/", master.address());
        let (p, _) = wait_cluster_up(&lab, &nodes, &url, Duration::from_secs(240)).await?;

        // Cut the publisher off.
        let cut_at = SystemTime::now();
        lab.cut(&nodes[p].name)?;
        let rest: Vec<&str> = all.into_iter().filter(|n| *n != nodes[p].name).collect();
        let (p2, took) =
            wait_published(&nodes, Some(p), cut_at, &rest, Duration::from_secs(30)).await?;
        eprintln!(
            "{} cut off: {} published without it after {:.1}s",
            nodes[p].name,
            nodes[p2].name,
            took.as_secs_f64()
        );
        // The cut node keeps running and gives up publishing once its lease ends.
        let t = Instant::now();
        loop {
            let s = nodes[p].status().await;
            assert!(s.is_some(), "the cut node must keep running");
            if s.as_ref()
                .is_some_and(|s| s["cluster"]["role"] == "follower")
            {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "cut node still publishing: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "cut node stopped publishing {:.1}s after the cut",
            t.elapsed().as_secs_f64() + took.as_secs_f64()
        );
        // The lab client keeps its cached descriptor, which still lists the cut node's
        // intro points. A cut (unlike a kill) black-holes that node: its intro points
        // still accept introductions, and the client learns they are dead only when each
        // rendezvous times out (about 30 s each, up to 3 of them). CI run of 2026-11-22
        // 13:57 needed more than 60 s.
        lab.wait_http(&url, "served by", Duration::from_secs(150))
            .await?;

        // Heal: one publisher again, and the healed node's intro points come back.
        let healed_at = SystemTime::now();
        lab.heal(&nodes[p].name)?;
        let (p3, took) =
            wait_published(&nodes, None, healed_at, &all, Duration::from_secs(120)).await?;
        eprintln!(
            "healed: {} published all 3 nodes again after {:.1}s",
            nodes[p3].name,
            took.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(8)).await;
        let mut publishers = Vec::new();
        for n in &nodes {
            if n.status()
                .await
                .is_some_and(|s| s["cluster"]["role"] == "publisher")
            {
                publishers.push(n.name.clone());
            }
        }
        assert_eq!(
            publishers.len(),
            1,
            "exactly one publisher after healing: {publishers:?}"
        );
        assert!(publisher(&nodes).await.is_some());
        lab.wait_http(&url, "served by", Duration::from_secs(60))
            .await?;
        anyhow::Ok(())
    }
    .await;
    lab.stop_and_verify().await.unwrap();
    result.unwrap();
}
