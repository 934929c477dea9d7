//! `rustbalance run` as a process, with a fake tor (no network): what the start-up code
//! guarantees about the node and its tor child.
//!
//! * tor gets a clean environment: `CREDENTIALS_DIRECTORY` (where systemd puts the
//!   master-key passphrase), which the node itself has, is not in `/proc/TOR/environ`;
//! * the node may write no core file (`/proc/NODE/limits`);
//! * a pid file left by a crash, naming a process that is alive but not a node, does not
//!   block the start; a second node on the same data directory is refused;
//! * run as root, the node says loudly that its tor runs as root too;
//! * on SIGTERM the node stops its tor and removes its pid file.

#[path = "support/node_dir.rs"]
mod node_dir;
use node_dir::{fake_tor, init_node};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `f` every 100 ms until it returns `Some`; panics with `what` after `limit`
/// (a failure detector only: a busy machine gets far more than it needs).
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_node(config: &Path, credentials: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rustbalance"))
        .args(["run", "--config"])
        .arg(config)
        .env("CREDENTIALS_DIRECTORY", credentials)
        .env("RB_TEST_DECOY", "not for tor")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The `KEY=VALUE` entries of `/proc/PID/environ`.
fn environ(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
    )
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn the_node_and_its_tor_start_hardened() {
    let tmp = tempfile::Builder::new()
        .prefix("rb-proc")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    // A "tor" that only waits to be stopped.
    let fake = fake_tor(dir, "exec sleep 600");
    let (node_dir, config) = init_node(dir, &fake);
    let creds = dir.join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("master-passphrase"), "not for tor\n").unwrap();

    // A pid file left by a crash; its pid now belongs to a live process that is no node
    // (this test).
    // (The data directory is made here with the default mode, 0755: the node closes it.)
    let data = node_dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let pid_file = data.join("rustbalance.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();

    let mut node = run_node(&config, &creds);
    let tor_pid_file = data.join("tor.pid");
    let tor_pid: u32 = {
        let mut exited = None;
        let pid = wait_for("the node to start its tor", Duration::from_secs(60), || {
            if let Ok(Some(st)) = node.try_wait() {
                exited = Some(st);
                return Some(0);
            }
            std::fs::read_to_string(&tor_pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });
        if let Some(st) = exited {
            let out = node.wait_with_output().unwrap();
            panic!(
                "the node exited ({st}) before starting tor: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        pid
    };

    // The node has the credentials directory (readable here as root only: the node is
    // not dumpable); its tor must not.
    if let Some(node_env) = environ(node.id()) {
        assert!(
            node_env
                .iter()
                .any(|v| v.starts_with("CREDENTIALS_DIRECTORY=")),
            "test setup: the node should have CREDENTIALS_DIRECTORY: {node_env:?}"
        );
    }
    let tor_env = wait_for("tor's environment", Duration::from_secs(10), || {
        environ(tor_pid)
    });
    for leaked in ["CREDENTIALS_DIRECTORY=", "RB_TEST_DECOY="] {
        assert!(
            !tor_env.iter().any(|v| v.starts_with(leaked)),
            "tor inherited {leaked}...: {tor_env:?}"
        );
    }

    // No core file, soft or hard.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", node.id())).unwrap();
    let core: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&core[4..6], ["0", "0"], "core limit: {core:?}");

    // The pid file is this node's now, and a second node on the directory is refused.
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        node.id().to_string()
    );
    let second = Command::new(env!("CARGO_BIN_EXE_rustbalance"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second node started: {err}");
    assert!(
        err.contains(&format!("another rustbalance (pid {}) runs", node.id())),
        "{err}"
    );

    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700,
        "the data directory was left open"
    );
    let ok = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {}", node.id());
    let out = node.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the node failed: {stderr}");
    wait_for("tor to be stopped", Duration::from_secs(30), || {
        (!alive(tor_pid)).then_some(())
    });
    assert!(!pid_file.exists(), "the pid file stayed behind");

    let root = effective_uid() == 0;
    assert_eq!(
        stderr.contains("runs as root"),
        root,
        "euid 0: {root}; the node said: {stderr}"
    );
}

/// This process's effective uid, from `/proc/self/status` (`Uid: real effective ...`).
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|u| u.parse().ok())
        .unwrap()
}
