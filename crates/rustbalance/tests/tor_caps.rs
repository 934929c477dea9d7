//! tor never inherits the node's CAP_NET_ADMIN, and the node itself is not dumpable.
//! Under systemd the node runs as its own user with `AmbientCapabilities=CAP_NET_ADMIN`,
//! and Linux hands the ambient set to every program a process executes. Here `setpriv`
//! gives a node running as `nobody` the same ambient capability, the node's `tor.binary`
//! is a script that records its own capabilities, and the test checks that the node has
//! CAP_NET_ADMIN while "tor" has none, and that the node's `/proc/PID/environ` belongs to root
//! (what the kernel does for a non-dumpable process). Needs root (to change user), as the
//! lab tests do.

#[path = "support/node_dir.rs"]
mod node_dir;
use node_dir::{fake_tor, init_node};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
const CAP_NET_ADMIN_BIT: u64 = 1 << 12;

/// `Cap*` lines of a `/proc/PID/status` text, as numbers.
fn caps(status: &str) -> std::collections::BTreeMap<String, u64> {
    status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.starts_with("Cap"))
        .map(|(k, v)| {
            (
                k.to_string(),
                u64::from_str_radix(v.trim(), 16).expect("hex capability mask"),
            )
        })
        .collect()
}

fn chown_tree(p: &Path) {
    let ok = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {p:?}");
}

#[test]
fn tor_does_not_inherit_the_nodes_ambient_capabilities() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "this test needs root (it runs the node as another user), like the lab tests"
    );
    let tmp = tempfile::Builder::new()
        .prefix("rb-caps")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A "tor" that records its capabilities and waits to be stopped.
    let record = dir.join("tor-caps.txt");
    let r = record.display();
    let fake = fake_tor(
        dir,
        &format!("grep '^Cap' /proc/self/status > {r}.tmp && mv {r}.tmp {r}\nexec sleep 60"),
    );
    let (node_dir, config) = init_node(dir, &fake);
    chown_tree(&node_dir);
    chown_tree(dir);

    let node = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--inh-caps=+net_admin",
            "--ambient-caps=+net_admin",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_rustbalance"))
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let t0 = Instant::now();
    while !record.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // setpriv execs the node, so the pid is the node's.
    let node_caps =
        caps(&std::fs::read_to_string(format!("/proc/{}/status", node.id())).unwrap_or_default());
    let tor_caps = std::fs::read_to_string(&record).map(|t| caps(&t));
    // A non-dumpable process's private /proc files (environ, mem, ...) belong to root,
    // whoever runs it: the node (uid 65534) made itself non-dumpable before reading any
    // key. (The /proc/PID directory itself keeps the process's owner.)
    let node_proc_owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(format!("/proc/{}/environ", node.id())).unwrap(),
    );
    let _ = Command::new("kill").arg(node.id().to_string()).status();
    let out = node.wait_with_output().unwrap();
    let tor_caps = tor_caps.unwrap_or_else(|_| {
        panic!(
            "the node never started its tor: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        node_caps
            .get("CapAmb")
            .is_some_and(|c| c & CAP_NET_ADMIN_BIT != 0)
            && node_caps
                .get("CapEff")
                .is_some_and(|c| c & CAP_NET_ADMIN_BIT != 0),
        "the node should hold CAP_NET_ADMIN (test setup): {node_caps:?}"
    );
    assert_eq!(
        node_proc_owner, 0,
        "the node is dumpable (/proc/PID/environ belongs to its user): core dumps and ptrace by \
         its user could read the master key"
    );
    // ...and its tor holds nothing.
    // (The inheritable set passes through exec but grants nothing without file
    // capabilities or the ambient set.)
    for k in ["CapPrm", "CapEff", "CapAmb"] {
        let v = tor_caps.get(k).copied();
        assert_eq!(v, Some(0), "tor's {k} is {v:?}: {tor_caps:?}");
    }
}
