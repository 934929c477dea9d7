//! Cross-checks of merged descriptors with independent implementations:
//! stem (Python) decrypts them from the master address alone and verifies
//! every certificate; a real tor accepts them over its control port
//! (`+HSPOST`) and rejects a corrupted one.
//!
//! Needs `tor` and `/usr/bin/python3` with python3-stem (the README's test
//! command installs both).

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_hs::fixture::fake_instance_descriptor;
use rustbalance_hs::time::{from_unix, unix_secs, TimeParams};
use rustbalance_hs::IdentityKey;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rustbalance")
}

/// A master key and `n` instance descriptors (each with `ips` intro points)
/// written into `dir`; returns (master address, [--instance args]).
fn setup(dir: &Path, n: usize, ips: usize, now: u64) -> (String, Vec<String>) {
    let mut rng = ChaCha20Rng::seed_from_u64(now);
    let out = Command::new(bin())
        .args(["keygen", "--out"])
        .arg(dir.join("master"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let master = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let tp = TimeParams::REAL_NETWORK;
    let slot = tp.live_slots(now, now - now % 3600)[0];
    let args = (0..n)
        .map(|i| {
            let key = IdentityKey::generate(&mut rng);
            let text =
                fake_instance_descriptor(&key, tp, slot, from_unix(now), ips, &mut rng).unwrap();
            let f = dir.join(format!("instance{i}.desc"));
            std::fs::write(&f, text).unwrap();
            format!("{}={}", key.address(), f.display())
        })
        .collect();
    (master, args)
}

fn merge(dir: &Path, instances: &[String], now: u64, extra: &[&str]) -> PathBuf {
    let out = dir.join("master.desc");
    let mut cmd = Command::new(bin());
    cmd.args(["descriptor", "merge", "--master-key"])
        .arg(dir.join("master/hs_ed25519_secret_key"))
        .args(["--time", &now.to_string(), "--out"])
        .arg(&out)
        .args(extra);
    for i in instances {
        cmd.args(["--instance", i]);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "merge failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn stem(addr: &str, file: &Path, expected: usize) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/stem_check.py");
    let o = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(addr)
        .arg(file)
        .arg(expected.to_string())
        .output()
        .expect("run /usr/bin/python3 (apt-get install python3-stem)");
    assert!(
        o.status.success(),
        "stem rejected the descriptor: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn stem_decrypts_merged_descriptor_from_master_address() {
    let now = unix_secs(SystemTime::now());
    for (n, ips, cap, want) in [(1, 3, 20, 3), (5, 3, 20, 15), (10, 3, 20, 20), (3, 3, 5, 5)] {
        let d = tempfile::tempdir().unwrap();
        let (master, inst) = setup(d.path(), n, ips, now);
        let out = merge(
            d.path(),
            &inst,
            now,
            &["--max-intro-points", &cap.to_string()],
        );
        let v = stem(&master, &out, want);
        assert_eq!(v["intro_points"], want);
        assert_eq!(v["lifetime"], 180);
    }
}

#[test]
fn stem_rejects_a_descriptor_for_another_address() {
    let now = unix_secs(SystemTime::now());
    let d = tempfile::tempdir().unwrap();
    let (_master, inst) = setup(d.path(), 2, 3, now);
    let out = merge(d.path(), &inst, now, &[]);
    let other = inst[0].split('=').next().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/stem_check.py");
    let o = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(other)
        .arg(&out)
        .arg("6")
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "stem must fail to decrypt with the wrong address"
    );
}

#[test]
fn merge_reports_bad_input_in_one_line() {
    let now = unix_secs(SystemTime::now());
    let d = tempfile::tempdir().unwrap();
    let (_master, inst) = setup(d.path(), 2, 3, now);
    let run = |args: &[&str]| {
        let o = Command::new(bin()).args(args).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8(o.stderr).unwrap()
    };
    let key = d.path().join("master/hs_ed25519_secret_key");
    let key = key.to_str().unwrap();
    let out = d.path().join("x.desc");
    let out = out.to_str().unwrap();
    // Instance descriptor given under the wrong address.
    let (a0, f0) = inst[0].split_once('=').unwrap();
    let (a1, _) = inst[1].split_once('=').unwrap();
    let e = run(&[
        "descriptor",
        "merge",
        "--master-key",
        key,
        "--instance",
        &format!("{a1}={f0}"),
        "--out",
        out,
    ]);
    assert!(e.contains("wrong address") && e.lines().count() == 1, "{e}");
    // Bad address.
    let e = run(&[
        "descriptor",
        "merge",
        "--master-key",
        key,
        "--instance",
        &format!("abc={f0}"),
        "--out",
        out,
    ]);
    assert!(
        e.contains("invalid onion address") && e.lines().count() == 1,
        "{e}"
    );
    // Unreadable file.
    let e = run(&[
        "descriptor",
        "merge",
        "--master-key",
        key,
        "--instance",
        &format!("{a0}=/nonexistent"),
        "--out",
        out,
    ]);
    assert!(e.contains("/nonexistent") && e.lines().count() == 1, "{e}");
    // Corrupt master key.
    std::fs::write(d.path().join("bad.key"), b"nonsense").unwrap();
    let bad = d.path().join("bad.key");
    let e = run(&[
        "descriptor",
        "merge",
        "--master-key",
        bad.to_str().unwrap(),
        "--instance",
        &inst[0],
        "--out",
        out,
    ]);
    assert!(
        e.contains("not a usable onion-service key") && e.lines().count() == 1,
        "{e}"
    );
    // Cap out of range.
    let e = run(&[
        "descriptor",
        "merge",
        "--master-key",
        key,
        "--instance",
        &inst[0],
        "--max-intro-points",
        "21",
        "--out",
        out,
    ]);
    assert!(e.contains("between 1 and 20"), "{e}");
    assert!(!Path::new(out).exists(), "nothing written on failure");
    // keygen refuses to overwrite.
    let e = run(&["keygen", "--out", d.path().join("master").to_str().unwrap()]);
    assert!(e.contains("refusing to overwrite"), "{e}");
}

#[test]
fn inspect_shows_what_a_client_sees() {
    let now = unix_secs(SystemTime::now());
    let d = tempfile::tempdir().unwrap();
    let (master, inst) = setup(d.path(), 2, 3, now);
    let out = merge(d.path(), &inst, now, &[]);
    let o = Command::new(bin())
        .args(["descriptor", "inspect", "--json", "--address", &master])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["intro_points"].as_array().unwrap().len(), 6);
    assert_eq!(v["flow_control"], "FlowCtrl=1-2 sendme_inc=31");
    assert!(v["size"].as_u64().unwrap() < 50_000);
}

/// A real tor (offline: DisableNetwork) parses and checks the outer layer of
/// what it is given on HSPOST: ours is accepted, a corrupted one refused.
#[test]
fn real_tor_accepts_hspost() {
    let now = unix_secs(SystemTime::now());
    let d = tempfile::tempdir().unwrap();
    let (master, inst) = setup(d.path(), 3, 3, now);
    let out = merge(d.path(), &inst, now, &[]);
    let text = std::fs::read_to_string(&out).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tor = support::OfflineTor::start(d.path()).await;
        let ctl = tor.control().await;
        let addr = master.trim_end_matches(".onion");
        ctl.hspost::<&str>(&text, &[], Some(addr))
            .await
            .expect("tor must accept our descriptor");
        let broken = text.replacen("revision-counter ", "revision-counter 1", 1);
        let err = ctl
            .hspost::<&str>(&broken, &[], Some(addr))
            .await
            .expect_err("tor must refuse a descriptor whose signature no longer matches");
        assert!(err.to_string().contains("554"), "{err}");
        tor.stop();
    });
}

mod support;
