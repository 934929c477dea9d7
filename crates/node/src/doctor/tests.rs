//! doctor's checks against a fake machine.

use super::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

const NOW: u64 = 1_800_000_000;

struct Fake {
    tor_version: &'static str,
    modules: &'static str,
    files: BTreeMap<PathBuf, FileInfo>,
    texts: BTreeMap<PathBuf, String>,
    status: Option<serde_json::Value>,
    bindable: bool,
    answering: BTreeSet<u16>,
    free: u64,
}

impl Env for Fake {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }
    fn run(&self, _: &Path, args: &[&str]) -> std::io::Result<String> {
        match args {
            ["--version"] => Ok(format!(
                "Tor version {}.\nThis build of Tor is covered by the GPL\n",
                self.tor_version
            )),
            ["--list-modules"] => Ok(self.modules.to_string()),
            _ => Err(std::io::Error::other("unexpected")),
        }
    }
    fn file(&self, p: &Path) -> Option<FileInfo> {
        self.files.get(p).copied()
    }
    fn read(&self, p: &Path) -> Option<String> {
        self.texts.get(p).cloned()
    }
    fn status(&self, _: SocketAddr, _: &Path) -> Option<serde_json::Value> {
        self.status.clone()
    }
    fn can_bind(&self, _: SocketAddr) -> bool {
        self.bindable
    }
    fn can_connect(&self, _: &str, port: u16) -> bool {
        self.answering.contains(&port)
    }
    fn free_bytes(&self, _: &Path) -> Option<u64> {
        Some(self.free)
    }
}

fn config() -> Config {
    toml::from_str(
        r#"
[node]
name = "n1"
data_dir = "/d"
[service]
master_key = "/d/master/hs_ed25519_secret_key"
[target]
url = "tcp://127.0.0.1:8080"
[proxy]
listen = "127.0.0.1:9662"
[admin]
listen = "127.0.0.1:9661"
[cluster]
secret_file = "/d/cluster.secret"
listen = "127.0.0.1:9663"
[mesh]
interface = "rb0"
private_key_file = "/d/wg.key"
listen_port = 51820
"#,
    )
    .expect("test config")
}

fn fmt_time(t: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// A healthy running publisher.
fn healthy() -> Fake {
    let f = |mode| FileInfo { mode, uid: 1000 };
    let files = [
        ("/d", f(0o40700)),
        ("/d/master/hs_ed25519_secret_key", f(0o100600)),
        ("/d/cluster.secret", f(0o100600)),
        ("/d/wg.key", f(0o100600)),
    ]
    .into_iter()
    .map(|(p, i)| (PathBuf::from(p), i))
    .collect();
    let consensus = format!(
        "network-status-version 3 microdesc\nvalid-after {}\nfresh-until {}\nvalid-until {}\n",
        fmt_time(NOW - 600),
        fmt_time(NOW + 3000),
        fmt_time(NOW + 10200)
    );
    let hsdirs: serde_json::Map<String, serde_json::Value> = (0..8)
        .map(|i| (format!("HSDIR{i}"), json!("UPLOADED")))
        .collect();
    Fake {
        tor_version: "0.4.9.11",
        modules: "relay: yes\ndirauth: yes\ndircache: yes\npow: yes\n",
        files,
        texts: [(
            PathBuf::from("/d/tor/cached-microdesc-consensus"),
            consensus,
        )]
        .into(),
        status: Some(json!({
            "mesh": {"peers": [{"endpoint": "192.0.2.2:51820",
                                "last_handshake": {"secs_since_epoch": NOW - 30, "nanos_since_epoch": 0}}]},
            "cluster": {"lease_holders": ["n1"], "last_publish": {"slots": [
                {"period_num": 20000, "hsdirs": hsdirs.clone()},
                {"period_num": 20001, "hsdirs": hsdirs}]}}
        })),
        bindable: false,
        answering: [8080, 9661, 9662].into(),
        free: 10 << 30,
    }
}

fn fails(f: &[Finding]) -> Vec<(&'static str, &str)> {
    f.iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .map(|f| (f.check, f.what.as_str()))
        .collect()
}

#[test]
fn a_healthy_running_node_passes_every_check() {
    let f = diagnose(&config(), &healthy());
    assert!(f.iter().all(|f| f.verdict == Verdict::Ok), "{f:#?}");
    let checks: BTreeSet<&str> = f.iter().map(|f| f.check).collect();
    for c in [
        "tor", "clock", "files", "admin", "proxy", "target", "mesh", "hsdirs", "disk",
    ] {
        assert!(checks.contains(c), "no {c} check: {f:#?}");
    }
}

#[test]
fn every_problem_is_found_and_says_how_to_fix_it() {
    let mut e = healthy();
    e.tor_version = "0.4.7.16";
    e.files.insert(
        "/d".into(),
        FileInfo {
            mode: 0o40755,
            uid: 1000,
        },
    );
    e.files.insert(
        "/d/wg.key".into(),
        FileInfo {
            mode: 0o100644,
            uid: 1000,
        },
    );
    e.files.insert(
        "/d/cluster.secret".into(),
        FileInfo {
            mode: 0o100600,
            uid: 0,
        },
    );
    e.files
        .remove(&PathBuf::from("/d/master/hs_ed25519_secret_key"));
    let s = e.status.as_mut().unwrap();
    s["mesh"]["peers"][0]["last_handshake"]["secs_since_epoch"] = json!(NOW - 600);
    for h in ["HSDIR0", "HSDIR1", "HSDIR2"] {
        s["cluster"]["last_publish"]["slots"][1]["hsdirs"][h] = json!("FAILED 400");
    }
    e.answering = [9661].into(); // the proxy and the target do not answer
    e.free = 10 << 20;
    // The clock is 20 minutes behind the consensus.
    let c = e.texts.values_mut().next().unwrap();
    *c = c.replace(&fmt_time(NOW - 600), &fmt_time(NOW + 1200));
    let f = diagnose(&config(), &e);
    let got = fails(&f);
    let expect = [
        ("tor", "0.4.7.16"),
        ("clock", "behind"),
        ("files", "/d is mode 755"),
        ("files", "/d/master/hs_ed25519_secret_key does not exist"),
        ("files", "/d/cluster.secret belongs to uid 0"),
        ("files", "/d/wg.key is mode 644"),
        ("proxy", "nothing answers"),
        ("target", "nothing answers at tcp://127.0.0.1:8080"),
        ("mesh", "last handshake 600s ago"),
        ("hsdirs", "period 20001: only 5/8"),
        ("disk", "only 10 MiB"),
    ];
    for (check, part) in expect {
        assert!(
            got.iter().any(|(c, w)| *c == check && w.contains(part)),
            "no {check} failure mentioning {part:?}: {got:#?}"
        );
    }
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    assert!(f
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .all(|f| f.fix.as_deref().is_some_and(|x| !x.is_empty())));
}

#[test]
fn a_stopped_node_skips_what_needs_it_and_finds_its_ports_taken() {
    let mut e = healthy();
    e.status = None;
    e.answering = [8080].into();
    e.bindable = true;
    let f = diagnose(&config(), &e);
    assert!(fails(&f).is_empty(), "{f:#?}");
    let skipped: Vec<&str> = f
        .iter()
        .filter(|f| f.verdict == Verdict::Skip)
        .map(|f| f.check)
        .collect();
    assert_eq!(skipped, ["clock", "mesh", "hsdirs"], "{f:#?}");

    e.bindable = false;
    let f = diagnose(&config(), &e);
    let got = fails(&f);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got
        .iter()
        .all(|(c, w)| ["admin", "proxy"].contains(c) && w.contains("taken by another program")));
}

/// Port 0 (the lab's proxy): the port the running node reports is checked.
#[test]
fn a_port_chosen_at_start_is_checked_where_the_node_listens() {
    let mut cfg = config();
    cfg.proxy.listen = "127.0.0.1:0".parse().unwrap();
    let mut e = healthy();
    e.answering.remove(&9662);
    e.answering.insert(40000);
    e.status.as_mut().unwrap()["proxy"] = json!({"listen": "127.0.0.1:40000"});
    let f = diagnose(&cfg, &e);
    assert!(fails(&f).is_empty(), "{f:#?}");
    e.answering.remove(&40000);
    let f = diagnose(&cfg, &e);
    assert_eq!(
        fails(&f),
        [(
            "proxy",
            "the node runs but nothing answers on proxy.listen 127.0.0.1:40000"
        )]
    );
    e.status = None;
    e.bindable = true;
    assert!(fails(&diagnose(&cfg, &e)).is_empty());
}

#[test]
fn tor_without_pow_fails_only_when_pow_is_on() {
    let mut e = healthy();
    e.modules = "relay: yes\npow: no\n";
    let mut cfg = config();
    cfg.pow.enabled = true;
    let findings = checks::tor(&cfg, &e);
    let got = fails(&findings);
    assert!(
        got.len() == 1 && got[0].1.contains("without the PoW module"),
        "{got:?}"
    );
    cfg.pow.enabled = false;
    assert!(fails(&checks::tor(&cfg, &e)).is_empty());
}
