//! Two mesh nodes in two network namespaces, joined by a veth pair, talk over their derived
//! overlay addresses: UDP echo, then a TCP bulk transfer (the figures go to BENCH.md).
//!
//! Needs root (network namespaces, /dev/net/tun). Skipped, with a message, when not root.
//! Everything lives in namespaces named `rbmesh-{a,b}-<pid>` that the test creates and always
//! deletes (a Drop guard), so no packet leaves the machine.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use rustbalance_mesh::{OverlayPrefix, PrivateKey};
use serde_json::Value;

const NODE_BIN: &str = env!("CARGO_BIN_EXE_rbmesh-node");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node process: `ip netns exec` execs the binary in place, so the child's pid is the node's.
struct Node {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    pid_file: PathBuf,
}

impl Node {
    fn next(&self, event: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(v) => eprintln!("[{}] {v}", self.name),
                Err(_) => panic!("node {} sent no {event:?} event in {timeout:?}", self.name),
            }
        }
    }
}

/// Namespaces and processes, torn down on drop even when the test fails.
struct Lab {
    namespaces: Vec<String>,
    /// Mesh interface names used in this lab.
    interfaces: Vec<String>,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(names: &[String]) -> Self {
        let mut lab = Lab {
            namespaces: Vec::new(),
            interfaces: Vec::new(),
            nodes: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for n in names {
            // A namespace left by a killed earlier run with the same pid: remove it first.
            ip(&["netns", "del", n]);
            must_ip(&["netns", "add", n]);
            lab.namespaces.push(n.clone());
            must_ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn spawn(&mut self, name: &'static str, ns: &str, args: &[String]) -> usize {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, NODE_BIN])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let pid_file = self.dir.path().join(format!("{name}.pid"));
        std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("node output: {line}"),
                }
            }
        });
        self.nodes.push(Node {
            name,
            child,
            stdin,
            events: rx,
            pid_file,
        });
        self.nodes.len() - 1
    }

    fn wait_exit(&mut self, i: usize, timeout: Duration) {
        let node = &mut self.nodes[i];
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = node.child.try_wait().expect("try_wait") {
                assert!(status.success(), "node {} exited with {status}", node.name);
                let _ = std::fs::remove_file(&node.pid_file);
                return;
            }
            assert!(Instant::now() < deadline, "node {} did not exit", node.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // First ask nicely (a node stops when its stdin closes), then stop by pid.
        for node in &mut self.nodes {
            drop(node.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && self
                .nodes
                .iter_mut()
                .any(|n| matches!(n.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for node in &mut self.nodes {
            if let Ok(None) = node.child.try_wait() {
                // Stop by pid (the one in the pid file).
                let _ = node.child.kill();
                let _ = node.child.wait();
            }
            let _ = std::fs::remove_file(&node.pid_file);
        }
        // A killed userspace node cannot remove its control socket.
        for ifname in &self.interfaces {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{ifname}.sock"));
        }
        for ns in &self.namespaces {
            if !ip(&["netns", "del", ns]) {
                eprintln!("could not delete network namespace {ns}");
            }
        }
    }
}

fn kernel_wireguard_available(ns: &str) -> bool {
    let ok = ip(&["-n", ns, "link", "add", "rbmprobe", "type", "wireguard"]);
    if ok {
        ip(&["-n", ns, "link", "del", "rbmprobe"]);
    }
    ok
}

fn write_key(dir: &Path, name: &str) -> (PathBuf, rustbalance_mesh::PublicKey) {
    let key = PrivateKey::generate();
    let path = dir.join(format!("{name}.key"));
    key.save(&path).expect("save key");
    (path, key.public_key())
}

/// Runs the whole two-node scenario with one backend; returns the probe's result event.
fn scenario(backend: &str) -> Value {
    let pid = std::process::id();
    let ns_a = format!("rbmesh-a-{pid}");
    let ns_b = format!("rbmesh-b-{pid}");
    let mut lab = Lab::new(&[ns_a.clone(), ns_b.clone()]);

    // The underlay: a veth pair between the two namespaces, 10.250.x.0/30.
    let x = pid % 250 + 1;
    let (ip_a, ip_b) = (format!("10.250.{x}.1"), format!("10.250.{x}.2"));
    must_ip(&[
        "-n", &ns_a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns",
        &ns_b,
    ]);
    must_ip(&[
        "-n",
        &ns_a,
        "addr",
        "add",
        &format!("{ip_a}/30"),
        "dev",
        "veth0",
    ]);
    must_ip(&[
        "-n",
        &ns_b,
        "addr",
        "add",
        &format!("{ip_b}/30"),
        "dev",
        "veth1",
    ]);
    must_ip(&["-n", &ns_a, "link", "set", "veth0", "up"]);
    must_ip(&["-n", &ns_b, "link", "set", "veth1", "up"]);

    // Interface names are unique per run: the userspace backend's control socket lives in
    // the shared /var/run/wireguard.
    let (if_a, if_b) = (format!("rbm{pid}a"), format!("rbm{pid}b"));
    lab.interfaces = vec![if_a.clone(), if_b.clone()];
    let (key_a, pub_a) = write_key(lab.dir.path(), "a");
    let (key_b, pub_b) = write_key(lab.dir.path(), "b");
    let cluster = format!("rbmesh-test-{pid}");
    let prefix = OverlayPrefix::for_cluster(cluster.as_bytes());
    let port = "51820";
    let common = |ifname: &str, key: &Path, peer: String| -> Vec<String> {
        vec![
            "--ifname".into(),
            ifname.into(),
            "--key-file".into(),
            key.display().to_string(),
            "--port".into(),
            port.into(),
            "--cluster".into(),
            cluster.clone(),
            "--backend".into(),
            backend.into(),
            "--peer".into(),
            peer,
        ]
    };

    let mut args_b = common(&if_b, &key_b, format!("{pub_a}@{ip_a}:{port}"));
    args_b.push("serve".into());
    let b = lab.spawn("b", &ns_b, &args_b);
    let up_b = lab.nodes[b].next("up", Duration::from_secs(10));
    let ready = lab.nodes[b].next("ready", Duration::from_secs(10));
    let overlay_b = prefix.addr_of(&pub_b);
    assert_eq!(up_b["overlay"], overlay_b.to_string());
    assert_eq!(up_b["backend"], backend);
    if backend == "userspace" {
        // B's name is taken machine-wide (shared control socket dir), even from another
        // namespace: A may not steal it.
        let err = node_fails(&ns_a, &[], &if_b, &key_a);
        assert!(err.contains("already exists"), "{err}");
    }

    let bytes: u64 = std::env::var("RBMESH_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000_000);
    let mut args_a = common(&if_a, &key_a, format!("{pub_b}@{ip_b}:{port}"));
    args_a.extend([
        "--target".into(),
        format!("[{overlay_b}]:{}", ready["port"]),
        "--bytes".into(),
        bytes.to_string(),
        "probe".into(),
    ]);
    let a = lab.spawn("a", &ns_a, &args_a);
    let up_a = lab.nodes[a].next("up", Duration::from_secs(10));
    assert_eq!(up_a["overlay"], prefix.addr_of(&pub_a).to_string());
    let result = lab.nodes[a].next("result", Duration::from_secs(40));
    assert_eq!(result["removed_peer_blocked"], true);
    assert!(result["rejoin_ms"].as_f64().is_some());
    let status_a = lab.nodes[a].next("status", Duration::from_secs(5));
    lab.nodes[a].next("down", Duration::from_secs(5));
    lab.wait_exit(a, Duration::from_secs(5));

    // A sees B (re-added by set_peers, so its counters restarted): a completed handshake,
    // traffic both ways, AllowedIPs = B's derived /128.
    let peer = &status_a["peers"][0];
    assert_eq!(peer["public_key"], pub_b.to_string());
    assert_eq!(peer["overlay_addr"], overlay_b.to_string());
    assert!(!peer["last_handshake"].is_null(), "no handshake: {peer}");
    assert!(peer["tx_bytes"].as_u64().unwrap() > 0, "{peer}");
    assert!(peer["rx_bytes"].as_u64().unwrap() > 0, "{peer}");

    // Stop B by closing its stdin; it removes its interface and exits cleanly.
    drop(lab.nodes[b].stdin.take());
    let status_b = lab.nodes[b].next("status", Duration::from_secs(5));
    assert!(status_b["peers"][0]["rx_bytes"].as_u64().unwrap() > bytes);
    lab.nodes[b].next("down", Duration::from_secs(5));
    lab.wait_exit(b, Duration::from_secs(5));

    // Nothing left behind: no mesh interface in either namespace, no control socket.
    for (ns, ifname) in [(&ns_a, &if_a), (&ns_b, &if_b)] {
        let links = ip_output(&["-n", ns, "-o", "link", "show"]);
        assert!(
            !links.contains(ifname.as_str()),
            "{ifname} left in {ns}: {links}"
        );
        let sock = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
        assert!(!sock.exists(), "{} left behind", sock.display());
    }
    drop(lab);
    let left = ip_output(&["netns", "list"]);
    assert!(
        !left.contains(&ns_a) && !left.contains(&ns_b),
        "namespaces left: {left}"
    );

    println!(
        "mesh[{backend}] Mesh::up {:.1} ms; first packet over the overlay {:.1} ms (handshake done after {} ms), \
         RTT {:.3} ms, TCP {} bytes in {:.3} s = {:.0} Mbit/s; \
         remove_peer blocked traffic, set_peers restored it in {:.1} ms",
        up_a["up_ms"].as_f64().unwrap(),
        result["first_packet_ms"].as_f64().unwrap(),
        result["handshake_ms"]
            .as_f64()
            .map_or("?".into(), |v| format!("{v:.1}")),
        result["rtt_median_ms"].as_f64().unwrap_or(f64::NAN),
        result["tcp_bytes"],
        result["tcp_secs"].as_f64().unwrap(),
        result["tcp_mbit_s"].as_f64().unwrap(),
        result["rejoin_ms"].as_f64().unwrap(),
    );
    result
}

/// Runs a node that must fail; returns its stderr.
fn node_fails(ns: &str, wrapper: &[&str], ifname: &str, key: &Path) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(wrapper)
        .arg(NODE_BIN)
        .args(["--ifname", ifname, "--key-file"])
        .arg(key)
        .args(["--port", "51820", "--cluster", "x", "serve"])
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    assert!(!out.status.success(), "node unexpectedly came up");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The errors an operator meets first say what to do.
fn error_paths(kernel: bool) {
    let pid = std::process::id();
    let ns = format!("rbmesh-e-{pid}");
    let mut lab = Lab::new(std::slice::from_ref(&ns));
    let (key, _) = write_key(lab.dir.path(), "e");
    let ifname = format!("rbm{pid}e");
    lab.interfaces.push(ifname.clone());

    // The name is taken (here by a veth): refuse, never adopt someone else's interface.
    must_ip(&[
        "-n", &ns, "link", "add", &ifname, "type", "veth", "peer", "name", "rbmother",
    ]);
    let err = node_fails(&ns, &[], &ifname, &key);
    assert!(
        err.contains("already exists") && err.contains("ip link del"),
        "{err}"
    );
    must_ip(&["-n", &ns, "link", "del", &ifname]);

    // No kernel module and no /dev/net/tun (hidden by a tmpfs in a private mount namespace).
    let unshare = Command::new("unshare").arg("--help").output().is_ok();
    if kernel || !unshare {
        println!("no-backend error not exercised (kernel module present or no `unshare`)");
        return;
    }
    let err = node_fails(
        &ns,
        &[
            "unshare",
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /dev/net && exec \"$0\" \"$@\"",
        ],
        &ifname,
        &key,
    );
    assert!(
        err.contains("no wireguard kernel module and /dev/net/tun unavailable")
            && err.contains("modprobe wireguard"),
        "{err}"
    );
    println!("no-backend error: {}", err.trim());
}

#[test]
fn two_nodes_talk_over_the_overlay() {
    if !is_root() {
        println!("SKIPPED two_nodes_talk_over_the_overlay: needs root (network namespaces, /dev/net/tun)");
        return;
    }
    // The userspace backend must always work; the kernel one too where the module exists.
    scenario("userspace");
    let probe_ns = format!("rbmesh-k-{}", std::process::id());
    let kernel = {
        let lab = Lab::new(std::slice::from_ref(&probe_ns));
        let k = kernel_wireguard_available(&probe_ns);
        drop(lab);
        k
    };
    error_paths(kernel);
    if kernel {
        scenario("kernel");
    } else {
        println!("kernel WireGuard module not available here: kernel backend not exercised");
    }
    let _ = std::io::stdout().flush();
}

/// The CI run of 2026-12-06 under two CPU hogs: a node's userspace device panicked while
/// re-binding its UDP port (defguard_boringtun 0.7.1 indexes its fd-keyed event table with
/// a descriptor number that other threads' closes made stale), its control socket still
/// said "no error", and the node went on with a dead mesh. In-process, `rbmesh-node churn`
/// (two threads opening and closing descriptors while the mesh goes up and down) hit that
/// panic within 30 rounds and then hung for good on dropping the wedged device. With the
/// device in a process of its own every round must come up listening on its port.
#[test]
fn userspace_device_survives_descriptor_churn() {
    if !is_root() {
        println!("SKIPPED userspace_device_survives_descriptor_churn: needs root (network namespaces, /dev/net/tun)");
        return;
    }
    const ROUNDS: u32 = 200;
    let ns = format!("rbmesh-c-{}", std::process::id());
    let mut lab = Lab::new(std::slice::from_ref(&ns));
    let ifname = format!("rbmc{}", std::process::id() % 100_000);
    lab.interfaces.push(ifname.clone());
    let (key, _) = write_key(lab.dir.path(), "churn");
    let args: Vec<String> = [
        "--ifname",
        &ifname,
        "--key-file",
        key.to_str().expect("utf-8 path"),
        "--port",
        "51830",
        "--cluster",
        "churn.onion",
        "--backend",
        "userspace",
        "churn",
        "--rounds",
        &ROUNDS.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let i = lab.spawn("churn", &ns, &args);
    // Not a speed bound: the in-process device hung forever here; 200 rounds take ~5 s.
    let v = lab.nodes[i].next("churn", Duration::from_secs(600));
    println!("descriptor churn: {v}");
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert_eq!(v["listening"], ROUNDS, "{v}");
    lab.wait_exit(i, Duration::from_secs(30));
    assert!(
        !ip_output(&["-n", &ns, "link", "show"]).contains(&ifname),
        "the device process left {ifname} behind"
    );
}
