//! `rustbalance client-auth add | list | remove` without tor: tor's file formats, 0600
//! files, the printed `ClientOnionAuthDir` line, and clear errors.

use rustbalance_hs::descriptor::{auth_line, ClientSecret};
use rustbalance_hs::IdentityKey;
use rustbalance_node::keystore::KeyFiles;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn rb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustbalance"))
        .args(args)
        .output()
        .expect("run rustbalance")
}

fn out(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn config(d: &Path, clients: Option<&Path>) -> (String, IdentityKey) {
    let key = IdentityKey::generate(&mut rand::rng());
    key.write_tor_dir(&d.join("master")).unwrap();
    let extra = clients
        .map(|c| format!("authorized_clients_dir = {:?}\n", c.display().to_string()))
        .unwrap_or_default();
    let text = format!(
        "[node]\nname = \"n1\"\ndata_dir = {:?}\n[service]\nmaster_key = {:?}\n{extra}\
         [target]\nurl = \"tcp://127.0.0.1:8080\"\n",
        d.join("data").display().to_string(),
        d.join("master/hs_ed25519_secret_key").display().to_string(),
    );
    let p = d.join("c.toml");
    std::fs::write(&p, text).unwrap();
    (p.display().to_string(), key)
}

#[test]
fn add_list_remove_through_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("clients");
    let (cfg, key) = config(d.path(), Some(&dir));
    // A generated key: the client's line on stdout, the service's file 0600.
    let o = rb(&["client-auth", "add", "alice", "--config", &cfg]);
    let (stdout, stderr) = out(&o);
    assert!(o.status.success(), "{stderr}");
    let line = stdout.trim();
    let addr = key.address().without_suffix();
    assert!(
        line.starts_with(&format!("{addr}:descriptor:x25519:")),
        "{line}"
    );
    assert_eq!(line.len(), addr.len() + 1 + 18 + 52);
    assert!(stderr.contains("ClientOnionAuthDir"), "{stderr}");
    let f = dir.join("alice.auth");
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&f)
        .unwrap()
        .starts_with("descriptor:x25519:"));
    // The client's own public key: nothing secret printed.
    let bob = ClientSecret::generate(&mut rand::rng());
    let pubf = d.path().join("bob.pub");
    std::fs::write(&pubf, auth_line(&bob.public())).unwrap();
    let o = rb(&[
        "client-auth",
        "add",
        "bob",
        "--config",
        &cfg,
        "--public-key-file",
        pubf.to_str().unwrap(),
    ]);
    assert!(o.status.success() && out(&o).0.is_empty(), "{:?}", out(&o));
    // The same key twice, a bad name, a bad key file.
    let o = rb(&[
        "client-auth",
        "add",
        "bob2",
        "--config",
        &cfg,
        "--public-key-file",
        pubf.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && out(&o).1.contains("already authorized as \"bob\""),
        "{:?}",
        out(&o)
    );
    let o = rb(&["client-auth", "add", "../evil", "--config", &cfg]);
    assert!(
        !o.status.success() && out(&o).1.contains("letters, digits"),
        "{:?}",
        out(&o)
    );
    std::fs::write(&pubf, "descriptor:x25519:short").unwrap();
    let o = rb(&[
        "client-auth",
        "add",
        "carol",
        "--config",
        &cfg,
        "--public-key-file",
        pubf.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && out(&o).1.contains("bob.pub"),
        "{:?}",
        out(&o)
    );
    let o = rb(&["client-auth", "list", "--config", &cfg]);
    let listed = out(&o).0;
    assert_eq!(
        listed
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert!(listed.contains(&auth_line(&bob.public())));
    let o = rb(&["client-auth", "remove", "alice", "--config", &cfg]);
    assert!(o.status.success(), "{:?}", out(&o));
    assert!(!f.exists());
    let o = rb(&["client-auth", "remove", "alice", "--config", &cfg]);
    assert!(
        !o.status.success() && out(&o).1.contains("known: bob"),
        "{:?}",
        out(&o)
    );
    // `config check` accepts the directory; a broken file in it is named.
    assert!(rb(&["config", "check", "--config", &cfg]).status.success());
    std::fs::write(dir.join("zed.auth"), "nonsense").unwrap();
    let o = rb(&["config", "check", "--config", &cfg]);
    assert!(
        !o.status.success() && out(&o).1.contains("zed.auth"),
        "{:?}",
        out(&o)
    );
}

#[test]
fn without_the_setting_the_error_says_what_to_add() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, _) = config(d.path(), None);
    let o = rb(&["client-auth", "add", "alice", "--config", &cfg]);
    assert!(!o.status.success());
    assert!(
        out(&o).1.contains("authorized_clients_dir ="),
        "{:?}",
        out(&o)
    );
}
