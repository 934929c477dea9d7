//! A node directory made by `rustbalance init` whose tor is a fake script, shared by
//! the process-level tests (included with `#[path]`; cargo does not build files under
//! `tests/support/` on their own).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes an executable `/bin/sh` script `dir/fake-tor` with `body` and returns its path.
pub fn fake_tor(dir: &Path, body: &str) -> PathBuf {
    let fake = dir.join("fake-tor");
    std::fs::write(&fake, format!("#!/bin/sh\n{body}\n")).expect("write the fake tor");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))
        .expect("make the fake tor executable");
    fake
}

/// `rustbalance init --dir DIR/node` (plain key, admin on a free port, a dead target),
/// with `fake_tor` as the tor binary in its config. Returns (node dir, config path).
pub fn init_node(dir: &Path, fake_tor: &Path) -> (PathBuf, PathBuf) {
    let node = dir.join("node");
    let o = Command::new(env!("CARGO_BIN_EXE_rustbalance"))
        .args(["init", "--dir"])
        .arg(&node)
        .args([
            "--target",
            "tcp://127.0.0.1:9",
            "--plain-key",
            "--admin",
            "127.0.0.1:0",
        ])
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run rustbalance init");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = node.join("rustbalance.toml");
    let text = std::fs::read_to_string(&config)
        .expect("read the new config")
        .replace(
            "binary = \"tor\"",
            &format!("binary = {:?}", fake_tor.display().to_string()),
        );
    std::fs::write(&config, text).expect("write the config");
    (node, config)
}
