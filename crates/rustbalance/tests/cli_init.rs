//! The CLI without tor: a second `rustbalance init` never replaces a master key, and
//! `--master-key` restores a service from an existing key (plain or sealed), keeping its
//! address; a wrong passphrase leaves nothing behind. Bad configs make `run` and
//! `config check` fail with one clear line.

use rustbalance_node::keystore::KeyFiles;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn rb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustbalance"))
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run rustbalance")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn passphrase(dir: &Path, name: &str, pass: &str) -> String {
    let f = dir.join(name);
    std::fs::write(&f, pass).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    f.display().to_string()
}

/// `init --dir DIR --master-key KEY --passphrase-file PASS` with the test's target.
fn restore(dir: &Path, key: &Path, pass: &str) -> Output {
    rb(&[
        "init",
        "--dir",
        &dir.display().to_string(),
        "--target",
        "tcp://127.0.0.1:8080",
        "--master-key",
        &key.display().to_string(),
        "--passphrase-file",
        pass,
    ])
}

fn address(out: &str) -> String {
    out.lines()
        .find(|l| l.ends_with(".onion"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn init_keeps_keys_and_restores_from_an_existing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let a = base.join("a");
    let a_s = a.display().to_string();
    let target = "tcp://127.0.0.1:8080";

    // A first node with a plain key.
    let o = rb(&["init", "--dir", &a_s, "--target", target, "--plain-key"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let addr = address(&out);
    assert!(addr.ends_with(".onion"), "{out}");
    let key_file = a.join("master/hs_ed25519_secret_key");
    let before = std::fs::read(&key_file).unwrap();

    // init again into the same directory, even with another config path: refused, and the
    // key is untouched.
    let other_cfg = base.join("other.toml").display().to_string();
    let o = rb(&[
        "init",
        "--dir",
        &a_s,
        "--target",
        target,
        "--plain-key",
        "--config",
        &other_cfg,
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&key_file).unwrap(), before);
    assert!(!base.join("other.toml").exists());

    // Restore from the plain key into a sealed one: same address.
    let pass = passphrase(base, "pass", "a long enough passphrase");
    let o = restore(&base.join("b"), &key_file, &pass);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(address(&out), addr);
    assert!(
        err.contains("starting from the existing master key"),
        "{err}"
    );
    let sealed = base.join("b/master.key");
    assert!(sealed.exists());

    // A wrong passphrase on the sealed key: a clear error, and no node directory made.
    let wrong = passphrase(base, "wrong", "not the passphrase at all");
    let c = base.join("c");
    let o = restore(&c, &sealed, &wrong);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("--master-key"), "{err}");
    assert!(!c.exists(), "a failed restore left {c:?} behind");

    // The sealed key with its passphrase restores the same address again.
    let o = restore(&c, &sealed, &pass);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(address(&out), addr);
}

#[test]
fn bad_configs_fail_with_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let key_dir = d.path().join("k");
    rustbalance_hs::IdentityKey::generate(&mut rand::rng())
        .write_tor_dir(&key_dir)
        .unwrap();
    let key = key_dir.join("hs_ed25519_secret_key");
    let base = |target: &str, extra: &str, key: &Path| {
        format!(
            "[node]\nname = \"n\"\ndata_dir = \"{}/data\"\n[service]\nmaster_key = \"{}\"\n[target]\nurl = \"{target}\"\n{extra}",
            d.path().display(),
            key.display()
        )
    };
    for (name, text, expect) in [
        (
            "missing key",
            base("tcp://127.0.0.1:80", "", &d.path().join("nope")),
            "service.master_key",
        ),
        (
            "bad address",
            base("onion://abc.onion:80", "", &key),
            "target.url",
        ),
        (
            "bad port",
            base("tcp://127.0.0.1:70000", "", &key),
            "port must be 1..65535",
        ),
        (
            "unknown key",
            base("tcp://127.0.0.1:80", "[proxy]\ncolour = \"blue\"\n", &key),
            "unknown field `colour`",
        ),
        ("not toml", "[node\n".to_string(), "config"),
    ] {
        let f = d.path().join("bad.toml");
        std::fs::write(&f, &text).unwrap();
        for sub in [
            &["run", "--config"][..],
            &["config", "check", "--config"][..],
        ] {
            let o = Command::new(env!("CARGO_BIN_EXE_rustbalance"))
                .args(sub)
                .arg(&f)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{name}: must fail");
            assert!(err.contains(expect), "{name}: {err}");
            assert!(
                err.trim().lines().count() <= 3,
                "{name}: short message expected: {err}"
            );
        }
    }
}
