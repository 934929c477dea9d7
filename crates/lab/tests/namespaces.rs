//! A namespaced lab with real tor processes (needs root): node hosts in
//! their own network namespaces reach each other and the lab's relays, can
//! be cut off and healed, and nothing is left after stop.
//!
//! * `namespaced_lab_with_node_hosts`: the lab comes up in its namespace;
//!   two node hosts exchange UDP datagrams on their `10.B.C.H` addresses,
//!   not while one is cut off, again after heal; a plain onion service tor
//!   started inside a node host (joined with the lab's `DirAuthority`
//!   lines) answers `lab.http_get` through the lab client; `kill` takes the
//!   node's processes down; `stop` leaves no namespace, interface, process
//!   or listener.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustbalance_lab::{DemoTarget, Lab, LabOptions, NodeHost, Placement, Torrc};
use tokio::net::UdpSocket;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Sends `msg` from `from` to `to_addr` and expects it on `to` within `within`.
async fn datagram_passes(
    from: &UdpSocket,
    to: &UdpSocket,
    to_addr: SocketAddr,
    msg: &[u8],
    within: Duration,
) -> bool {
    // A cut-off sender may get an error (no carrier): that also means "no".
    if from.send_to(msg, to_addr).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let t0 = Instant::now();
    while t0.elapsed() < within {
        match tokio::time::timeout(within - t0.elapsed(), to.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) if &buf[..n] == msg => return true,
            Ok(Ok(_)) => continue, // a late datagram of an earlier step
            _ => return false,
        }
    }
    false
}

async fn both_ways(a: &(NodeHost, UdpSocket), b: &(NodeHost, UdpSocket), tag: &str) -> bool {
    let (addr_a, addr_b) = (a.1.local_addr().unwrap(), b.1.local_addr().unwrap());
    let w = Duration::from_millis(700);
    let ab = datagram_passes(&a.1, &b.1, addr_b, format!("{tag} a->b").as_bytes(), w).await;
    let ba = datagram_passes(&b.1, &a.1, addr_a, format!("{tag} b->a").as_bytes(), w).await;
    ab && ba
}

fn netns_names(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_lab_with_node_hosts() {
    if !is_root() {
        eprintln!("SKIPPED: network namespaces need root");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("rb-lab-ns-")
        .tempdir()
        .unwrap();
    let lab = Lab::create(
        tmp.path().join("lab"),
        LabOptions {
            placement: Placement::namespace(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _guard = lab.stop_on_drop();
    let ns = lab.placement().netns().unwrap().to_string();
    eprintln!(
        "[ns] lab in {} (namespace {ns}, block {})",
        lab.dir().display(),
        lab.block()
    );
    let report = lab
        .start(|p| {
            eprintln!(
                "[ns] t+{:5.1}s {}: {}",
                p.elapsed.as_secs_f64(),
                p.phase,
                p.detail
            )
        })
        .await
        .unwrap();
    eprintln!("[ns] lab usable after {:.1}s", report.total.as_secs_f64());
    assert!(lab.dir_authority_lines()[0].contains(&format!(
        " 10.{}.{}.",
        lab.block().b,
        lab.block().c
    )));
    assert!(
        lab.socks_addr().ip().is_loopback(),
        "the host reaches SOCKS through the portal"
    );

    // Two node hosts on the bridge.
    let t_hosts = Instant::now();
    let a = lab.add_node_host("n1").unwrap();
    let b = lab.add_node_host("n2").unwrap();
    eprintln!(
        "[ns] node hosts {} ({}) and {} ({}) in {:.0} ms",
        a.netns,
        a.ip,
        b.netns,
        b.ip,
        t_hosts.elapsed().as_secs_f64() * 1000.0
    );
    assert!(lab.add_node_host("n1").is_err(), "names are unique");
    assert_eq!(lab.node_hosts().unwrap(), vec![a.clone(), b.clone()]);
    let ua = a.bind_udp(SocketAddr::new(a.ip, 0)).await.unwrap();
    let ub = b.bind_udp(SocketAddr::new(b.ip, 0)).await.unwrap();
    let (a, b) = ((a, ua), (b, ub));
    assert!(
        both_ways(&a, &b, "attached").await,
        "node hosts exchange UDP"
    );

    lab.cut("n1").unwrap();
    assert!(
        !both_ways(&a, &b, "cut").await,
        "a cut node host is unreachable"
    );
    lab.heal("n1").unwrap();
    let t_heal = Instant::now();
    let mut healed = false;
    while !healed && t_heal.elapsed() < Duration::from_secs(10) {
        healed = both_ways(&a, &b, "healed").await;
    }
    assert!(healed, "a healed node host is reachable again");
    eprintln!(
        "[ns] UDP passes again {:.0} ms after heal",
        t_heal.elapsed().as_secs_f64() * 1000.0
    );

    // A plain onion service tor inside node host n1, serving a target in
    // the same namespace, joined to the lab with its DirAuthority lines.
    let target = DemoTarget::start_in(&a.0, "served from node n1")
        .await
        .unwrap();
    let data = lab.dir().join("n1-tor");
    let hs_dir = data.join("hs");
    let torrc_path = lab.dir().join("n1-tor.torrc");
    let mut torrc = Torrc::new();
    torrc
        .push("TestingTorNetwork", 1)
        .unwrap()
        .push("DataDirectory", data.display())
        .unwrap()
        .push("SocksPort", 0)
        .unwrap()
        .push(
            "Log",
            format!("notice file {}", data.join("notice.log").display()),
        )
        .unwrap()
        .push("GeoIPFile", lab.dir().join("empty.geoip").display())
        .unwrap()
        .push("GeoIPv6File", lab.dir().join("empty.geoip").display())
        .unwrap()
        .push("ClientUseIPv6", 0)
        .unwrap()
        .push("HiddenServiceDir", hs_dir.display())
        .unwrap()
        .push("HiddenServicePort", format!("80 {}", target.addr()))
        .unwrap();
    for line in lab.dir_authority_lines() {
        torrc.push("DirAuthority", line).unwrap();
    }
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    torrc.write_to(&torrc_path).unwrap();
    let t_hs = Instant::now();
    let tor = lab
        .spawn_program_in("n1tor", &a.0, "tor", &["-f".into(), torrc_path.into()])
        .unwrap();
    let address = loop {
        match std::fs::read_to_string(hs_dir.join("hostname")) {
            Ok(s) if s.trim().ends_with(".onion") => break s.trim().to_string(),
            _ => {
                tor.check_alive().unwrap();
                assert!(t_hs.elapsed() < Duration::from_secs(30), "no hostname file");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (resp, took) = lab
        .wait_http(
            &format!("http://{address}/"),
            "served from node n1",
            Duration::from_secs(150),
        )
        .await
        .unwrap();
    assert_eq!(resp.text(), "served from node n1");
    eprintln!(
        "[ns] onion service in {} answered through the lab client {:.1}s after its tor started",
        a.0.netns,
        t_hs.elapsed().as_secs_f64()
    );
    let _ = took;
    assert!(target.requests() >= 1);
    let status = lab.status().unwrap();
    assert_eq!(status.netns.as_deref(), Some(ns.as_str()));
    assert_eq!(status.node_hosts.len(), 2);
    let n1tor = status.processes.iter().find(|p| p.name == "n1tor").unwrap();
    assert_eq!(n1tor.netns.as_deref(), Some(a.0.netns.as_str()));
    assert!(n1tor.alive);

    // kill: every process of the node host, at once.
    let killed = lab.kill("n1").unwrap();
    assert!(killed >= 1, "killed {killed}");
    assert!(!tor.is_alive());

    // Stop: no namespace, interface, process or listener is left. Sockets
    // opened inside the namespaces go first (they would keep them alive).
    drop(target);
    drop((a, b));
    let addrs = lab.listen_addrs().unwrap();
    let t_stop = Instant::now();
    let report = lab.stop_and_verify().await.unwrap();
    eprintln!(
        "[ns] stopped {} processes in {:.1}s",
        report.stopped.len(),
        t_stop.elapsed().as_secs_f64()
    );
    assert_eq!(netns_names(&ns), Vec::<String>::new());
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(" vh") && !links.contains("rbl-"), "{links}");
    let status = lab.status().unwrap();
    assert!(status.processes.iter().all(|p| !p.alive), "{status:?}");
    for addr in addrs {
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "{addr} still listens"
        );
    }
    assert!(lab.node_hosts().unwrap().is_empty());
}
