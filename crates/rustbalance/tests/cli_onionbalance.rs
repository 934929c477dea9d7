//! `rustbalance onionbalance import` on files made by Onionbalance's own generator
//! (`onionbalance-config`, Debian's onionbalance 0.2.2, which runs offline; scripts/test.sh
//! installs it): two services with two instances each, PEM keys. The import writes one
//! directory per service, the key sealed and 0600, a config `config check` accepts (a
//! publisher-only node in a cluster of one, its secret 0600); a second import or a bad
//! config writes nothing.

use rustbalance_node::keystore::{load_master, KeyFiles, Passphrase};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GENERATOR: &str = "/usr/sbin/onionbalance-config";
const PLACEHOLDER: &str = "<Enter the instance onion address here>";

fn rb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustbalance"))
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run rustbalance")
}

fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `onionbalance-config` output with the instance placeholders filled in by new keys.
fn generated(dir: &Path) -> (PathBuf, Vec<String>) {
    let ob = dir.join("ob");
    let st = Command::new(GENERATOR)
        .args(["--no-interactive", "-s", "2", "-n", "2", "--output"])
        .arg(&ob)
        .output()
        .expect("onionbalance-config (apt-get install onionbalance)");
    assert!(st.status.success(), "{}", out_text(&st));
    let cfg = ob.join("config.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    let mut instances = Vec::new();
    while text.contains(PLACEHOLDER) {
        let k = rustbalance_hs::IdentityKey::from_seed(&[instances.len() as u8 + 40; 32]);
        let a = k.address().to_string();
        text = text.replacen(PLACEHOLDER, &a, 1);
        instances.push(a);
    }
    std::fs::write(&cfg, text).unwrap();
    assert_eq!(instances.len(), 4);
    (cfg, instances)
}

#[test]
fn import_of_a_generated_onionbalance_config() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, instances) = generated(d.path());
    let pass = d.path().join("pass");
    std::fs::write(&pass, "import passphrase\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = d.path().join("rb");
    let args = [
        "onionbalance",
        "import",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ];
    let o = rb(&args);
    let text = out_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("Not carried over:"), "{text}");
    // One directory per service, named by its address; the generator's PEM key files
    // are named by that same address.
    let mut pems: Vec<_> = std::fs::read_dir(cfg.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    pems.sort();
    assert_eq!(pems.len(), 2);
    for pem in &pems {
        let orig = rustbalance_hs::IdentityKey::load(pem).unwrap();
        let addr = orig.address().to_string();
        assert_eq!(
            pem.file_stem().unwrap().to_str().unwrap(),
            addr.trim_end_matches(".onion")
        );
        let sdir = out.join(addr.trim_end_matches(".onion"));
        assert_eq!(mode(&sdir), 0o700);
        let key = sdir.join("master.key");
        assert_eq!(mode(&key), 0o600);
        let sealed = load_master(&key, Passphrase::read_now(Some(&pass)).unwrap()).unwrap();
        assert_eq!(sealed.address(), orig.address());
        assert!(text.contains(&addr), "{text}");
        let toml = sdir.join("rustbalance.toml");
        assert_eq!(mode(&toml), 0o600);
        let check = rb(&["config", "check", "--config", toml.to_str().unwrap()]);
        assert!(check.status.success(), "{}", out_text(&check));
        let c = rustbalance_node::Config::load(&toml).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert!(c.backends.iter().all(|b| instances.contains(&b.address)));
        // No secret in the config or the output.
        let cfg_text = std::fs::read_to_string(&toml).unwrap();
        assert!(!cfg_text.contains("import passphrase") && !text.contains("import passphrase"));
        // Publisher-only (no --target), in a cluster of one with its own secret.
        assert!(c.publisher_only(), "{cfg_text}");
        let cl = c.cluster.as_ref().expect("[cluster]");
        assert_eq!(mode(&cl.secret_file), 0o600);
        assert_eq!(cl.secret_file, sdir.join("cluster.secret"));
    }
    // A second import refuses and changes nothing.
    let before = std::fs::read(out.join(pems[0].file_stem().unwrap()).join("master.key")).unwrap();
    let again = rb(&args);
    assert!(!again.status.success());
    assert!(
        out_text(&again).contains("refusing to overwrite"),
        "{}",
        out_text(&again)
    );
    assert_eq!(
        std::fs::read(out.join(pems[0].file_stem().unwrap()).join("master.key")).unwrap(),
        before
    );
}

#[test]
fn a_bad_config_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, instances) = generated(d.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    // The last instance is still the generator's placeholder: the first service is fine,
    // the second is not, and nothing at all may be written.
    std::fs::write(&cfg, text.replacen(&instances[3], PLACEHOLDER, 1)).unwrap();
    let out = d.path().join("rb");
    let o = rb(&[
        "onionbalance",
        "import",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--plain-key",
    ]);
    assert!(!o.status.success());
    let t = out_text(&o);
    assert!(
        t.contains("services[1].instances[1].address is not filled in"),
        "{t}"
    );
    assert!(!out.exists());
}
