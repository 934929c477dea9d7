//! A cold lab start, a plain v3 onion service, a GET through the lab client,
//! and a clean stop.

use std::time::{Duration, Instant};

use rustbalance_lab::{DemoTarget, Error, Lab, LabOptions, Torrc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_plain_onion_service() {
    let tmp = tempfile::Builder::new()
        .prefix("rb-lab-plain-")
        .tempdir()
        .unwrap();
    let t0 = Instant::now();
    let lab = Lab::create(tmp.path().join("lab"), LabOptions::default())
        .await
        .unwrap();
    let _guard = lab.stop_on_drop();
    eprintln!("lab in {} (block {})", lab.dir().display(), lab.block());
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
    eprintln!(
        "lab usable {:.1}s after start ({:.1}s with key generation)",
        report.total.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );

    // A live lab refuses a second start and a re-create, and can be reattached.
    let err = lab.start(|_| {}).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyRunning { .. }), "{err}");
    assert!(
        err.to_string().contains("rustbalance lab down --dir"),
        "{err}"
    );
    let err = Lab::create(lab.dir(), LabOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyRunning { .. }), "{err}");
    let again = Lab::open(lab.dir()).unwrap();
    let status = again.status().unwrap();
    assert!(status.running);
    assert_eq!(status.processes.len(), 10);
    assert!(status.processes.iter().all(|p| p.alive && p.pid.is_some()));
    again.wait_usable(|_| {}).await.unwrap();

    // A plain onion service in front of a demo target.
    let target = DemoTarget::start("served by hs1").await.unwrap();
    let torrc = Torrc::new()
        .with("HiddenServiceDir", lab.dir().join("hs1-hs").display())
        .unwrap()
        .with("HiddenServicePort", format!("80 {}", target.addr()))
        .unwrap();
    let hs_start = Instant::now();
    let hs = lab.spawn_tor("hs1", &torrc).await.unwrap();
    let ctl = hs.control().await.unwrap();
    let mut events = ctl.take_events().unwrap();
    ctl.setevents(&["HS_DESC"]).await.unwrap();
    let address = loop {
        match std::fs::read_to_string(lab.dir().join("hs1-hs/hostname")) {
            Ok(s) if s.trim().ends_with(".onion") => break s.trim().to_string(),
            _ => {
                assert!(
                    hs_start.elapsed() < Duration::from_secs(30),
                    "no hostname file"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let bare = address.trim_end_matches(".onion").to_string();
    let uploaded = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(ev) = events.recv().await {
            if let Some(h) = ev.hs_desc() {
                if h.action == "UPLOADED" && h.address == bare {
                    return h.hsdir;
                }
            }
        }
        panic!("control connection of hs1 closed: {:?}", hs.check_alive());
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no HS_DESC UPLOADED for {address} within 120 s; hs1 alive: {:?}",
            hs.check_alive()
        )
    });
    eprintln!(
        "descriptor uploaded to {uploaded} {:.1}s after the service started",
        hs_start.elapsed().as_secs_f64()
    );

    let url = format!("http://{address}/");
    let (resp, took) = lab
        .wait_http(&url, "served by hs1", Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(resp.text(), "served by hs1");
    eprintln!(
        "onion service answered {:.1}s after upload (cold start to answer: {:.1}s)",
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    // A second request, on a fresh circuit, answers at once.
    let resp = lab.http_get(&url, Duration::from_secs(30)).await.unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "served by hs1"));
    assert!(target.requests() >= 2);

    // Stop: nothing of the lab runs or listens afterwards.
    let addrs = lab.listen_addrs().unwrap();
    assert!(addrs.len() >= 11, "{addrs:?}");
    let report = lab.stop_and_verify().await.unwrap();
    assert_eq!(report.stopped.len(), 11, "{report:?}");
    assert!(!hs.is_alive());
    let status = lab.status().unwrap();
    assert!(!status.running);
    assert!(status.processes.iter().all(|p| !p.alive), "{status:?}");
    for addr in addrs {
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "{addr} still listens"
        );
    }
}
