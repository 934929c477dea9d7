//! Onionbalance as the anchor: 2 instances behind a master address in a lab,
//! master reachable through the lab client.

use std::time::{Duration, Instant};

use rustbalance_lab::onionbalance::OnionbalanceSetup;
use rustbalance_lab::{Lab, LabOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onionbalance_anchor() {
    let tmp = tempfile::Builder::new()
        .prefix("rb-lab-ob-")
        .tempdir()
        .unwrap();
    let lab = Lab::create(tmp.path().join("lab"), LabOptions::default())
        .await
        .unwrap();
    let _guard = lab.stop_on_drop();
    let report = lab
        .start(|p| {
            eprintln!(
                "[lab] t+{:5.1}s {}: {}",
                p.elapsed.as_secs_f64(),
                p.phase,
                p.detail
            )
        })
        .await
        .unwrap();
    eprintln!("lab usable after {:.1}s", report.total.as_secs_f64());

    let t0 = Instant::now();
    let ob = OnionbalanceSetup::start(&lab, "ob", 2, Duration::from_secs(120))
        .await
        .unwrap();
    eprintln!(
        "onionbalance started {:.1}s after setup began; master {}",
        t0.elapsed().as_secs_f64(),
        ob.master_address()
    );
    assert_eq!(ob.instances().len(), 2);
    for inst in ob.instances() {
        assert_ne!(inst.address, ob.master_address());
    }
    let took = ob
        .wait_master_reachable(&lab, Duration::from_secs(240))
        .await
        .unwrap();
    eprintln!(
        "onionbalance start -> master reachable: {:.1}s",
        took.as_secs_f64()
    );

    // Requests through fresh circuits are answered by the instances.
    let resp = lab
        .http_get(&ob.master_url(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with("served by obi"), "{}", resp.text());
    let served: u64 = ob.instances().iter().map(|i| i.target.requests()).sum();
    assert!(served >= 2, "instances served {served} requests");

    let status = lab.status().unwrap();
    assert!(status.processes.iter().any(|p| p.name == "obob" && p.alive));
    ob.stop().unwrap();
    assert!(!ob.daemon().is_alive());
    lab.stop_and_verify().await.unwrap();
}
