//! One node (`rustbalance run`) in the private Tor lab, real tor
//! everywhere: reachable through the lab client; tor SIGKILLed → restarted
//! by the watchdog and reachable again; target down → prompt failure, node
//! alive, target back → served; bad configs → one clear line, exit ≠ 0;
//! SIGTERM → node and tor gone within 10 s, nothing listening.

use rustbalance::cmd::lab::node_config;
use rustbalance_lab::{Lab, LabOptions};
use rustbalance_node::keystore::KeyFiles;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// An HTTP target that can be stopped and restarted on the same port.
struct Target {
    port: u16,
    task: Option<JoinHandle<()>>,
}

impl Target {
    async fn start(port: u16) -> Target {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let body = "served by node1\n";
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        Target {
            port,
            task: Some(task),
        }
    }
    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

struct Node {
    child: Child,
    admin: SocketAddr,
    data: PathBuf,
}

impl Node {
    fn start(config: &Path, log: &Path) -> Node {
        let text = std::fs::read_to_string(config).unwrap();
        let cfg: toml::Value = toml::from_str(&text).unwrap();
        let admin = cfg["admin"]["listen"].as_str().unwrap().parse().unwrap();
        let data = PathBuf::from(cfg["node"]["data_dir"].as_str().unwrap());
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rustbalance"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Node { child, admin, data }
    }
    async fn status(&self) -> Option<serde_json::Value> {
        let body = rustbalance_node::admin::get(self.admin, "/status")
            .await
            .ok()?;
        serde_json::from_str(&body).ok()
    }
    async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status().await {
                if ok(&s) {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status {:?}",
                self.status().await
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    fn tor_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("tor.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// A test that fails half-way drops its node: stop it (SIGTERM, so that it stops its tor too)
/// instead of leaving both running after the test process is gone.
impl Drop for Node {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_in_the_lab() {
    let dir = tempfile::Builder::new()
        .prefix("rb-node")
        .tempdir()
        .unwrap();
    let lab = Lab::create(dir.path(), LabOptions::default())
        .await
        .unwrap();
    let started = lab.start(|_| {}).await;
    let mut target = Target::start(0).await;
    let mut node: Option<Node> = None;
    let result = async {
        started?;
        let config = dir.path().join("node1.toml");
        let text = node_config(
            &lab,
            "node1",
            &format!("127.0.0.1:{}", target.port),
            None,
            "127.0.0.1:0".parse()?,
        )?;
        std::fs::write(&config, text)?;
        let n = Node::start(&config, &dir.path().join("node1.log"));
        let st = n
            .wait_status(
                "tor bootstrapped and descriptor uploaded",
                Duration::from_secs(120),
                |s| {
                    s["tor"]["phase"] == "running"
                        && s["uploads"]["uploaded"].as_u64().unwrap_or(0) > 0
                },
            )
            .await;
        let url = format!("http://{}/", st["master_address"].as_str().unwrap());
        let (_, took) = lab
            .wait_http(&url, "served by node1", Duration::from_secs(120))
            .await?;
        eprintln!(
            "reachable through the lab client ({:.1}s)",
            took.as_secs_f64()
        );

        // PoW on by default in single-node mode: tor's own descriptor carries pow-params.
        let port = std::fs::read_to_string(n.data.join("tor/control-port"))?;
        let ctl_addr: SocketAddr = port.trim().trim_start_matches("PORT=").parse()?;
        let ctl = rustbalance_tor::ControlClient::connect_authenticated(ctl_addr).await?;
        let master: rustbalance_hs::OnionAddress =
            st["master_address"].as_str().unwrap().parse()?;
        let view = rustbalance_node::publisher::network_view(&ctl, true).await?;
        let desc = rustbalance_node::publisher::instance_descriptor(
            &ctl,
            &master,
            &view.time,
            std::time::SystemTime::now(),
        )
        .await?;
        assert!(
            !desc.pow_params.is_empty(),
            "HiddenServicePoWDefensesEnabled 1 must put pow-params in the descriptor"
        );
        eprintln!(
            "tor's descriptor carries pow-params ({} intro points)",
            desc.intro_points.len()
        );

        // Watchdog: SIGKILL tor.
        let old = n.tor_pid().expect("tor pid file");
        signal(old, "-KILL");
        let t_kill = Instant::now();
        n.wait_status("tor restarted", Duration::from_secs(60), |s| {
            s["tor"]["restarts"] == 1 && s["tor"]["phase"] == "running" && s["tor"]["pid"] != old
        })
        .await;
        eprintln!(
            "tor restarted and bootstrapped {:.1}s after SIGKILL",
            t_kill.elapsed().as_secs_f64()
        );
        // The lab client still holds the descriptor with the dead tor's intro points. In one
        // CI run it did not get through within 240 s (36–38 s on an idle machine; the cause
        // was not found). What this checks is that the node's service comes back, so ask as
        // a new client would: NEWNYM drops the client's descriptor cache, its intro-point
        // failure cache and its circuits.
        rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr())
            .await?
            .signal("NEWNYM")
            .await?;
        let (_, took) = lab
            .wait_http(&url, "served by node1", Duration::from_secs(240))
            .await?;
        eprintln!(
            "reachable again {:.1}s after SIGKILL (last try {:.1}s)",
            t_kill.elapsed().as_secs_f64(),
            took.as_secs_f64()
        );

        // Target down: a prompt failure, never a hang; the node stays up.
        target.stop();
        let t = Instant::now();
        let r = lab.http_get(&url, Duration::from_secs(30)).await;
        assert!(
            r.is_err() || r.as_ref().map(|r| r.status != 200).unwrap_or(true),
            "target is down: {r:?}"
        );
        let took = t.elapsed();
        eprintln!(
            "target down: client failed after {:.1}s",
            took.as_secs_f64()
        );
        assert!(
            took < Duration::from_secs(20),
            "the failure must be prompt, took {took:?}"
        );
        assert!(
            n.status().await.is_some(),
            "node alive with its target down"
        );
        target = Target::start(target.port).await;
        lab.wait_http(&url, "served by node1", Duration::from_secs(60))
            .await?;
        eprintln!("target back: served again");

        node = Some(n);
        anyhow::Ok(())
    }
    .await;

    // SIGTERM: node and its tor gone within 10 s, nothing left listening.
    if let Some(mut n) = node.take() {
        let tor = n.tor_pid();
        let listen: Vec<SocketAddr> = vec![n.admin];
        signal(n.child.id(), "-TERM");
        let t = Instant::now();
        let exit = loop {
            if let Some(st) = n.child.try_wait().unwrap() {
                break Some(st);
            }
            if t.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let took = t.elapsed();
        if exit.is_none() {
            let _ = n.child.kill();
        }
        assert!(exit.is_some(), "node did not exit within 10 s of SIGTERM");
        eprintln!(
            "SIGTERM: node exited after {:.1}s ({:?})",
            took.as_secs_f64(),
            exit
        );
        if let Some(p) = tor {
            assert!(!alive(p), "tor {p} still running after the node exited");
        }
        for a in listen {
            assert!(
                std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_err(),
                "{a} still listening"
            );
        }
    }
    target.stop();
    lab.stop_and_verify().await.unwrap();
    result.unwrap();
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
