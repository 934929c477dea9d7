//! Several RustBalance nodes serving one master address in the lab: what
//! `rustbalance lab cluster` starts and what the cluster tests stand on.
//! Each node is a real `rustbalance run` process with its own tor, its own
//! target ("served by NAME") and a `[cluster]` section; all share one
//! master key and one cluster secret.

use crate::cmd::lab::node_config_with;
use anyhow::{Context, Result};
use rustbalance_hs::atomic::write_atomic;
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{DemoTarget, Lab};
use rustbalance_node::config::ClusterTemplate;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node process.
pub struct ClusterNodeProc {
    /// Its name (`node1`).
    pub name: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its admin endpoint.
    pub admin: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    /// Its target, when it runs in this process (`None`: an external one).
    pub target: Option<DemoTarget>,
    /// The target's address.
    pub target_addr: SocketAddr,
    child: Option<Child>,
}

fn free_port(udp: bool) -> Result<u16> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    })
}

impl ClusterNodeProc {
    /// The node's `/status`, if it answers.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let body = rustbalance_node::admin::get(self.admin, "/status")
            .await
            .ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Pid of the rustbalance process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Pid of its tor.
    pub fn tor_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("tor.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Start (or restart) the node process, output to `log`.
    pub fn start(&mut self, bin: &Path, log: &Path) -> Result<()> {
        let out = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start rustbalance run")?;
        let pid = child.id();
        // Track the child before anything else can fail, so it is never leaked.
        self.child = Some(child);
        let pid_file = self
            .data
            .parent()
            .unwrap_or(&self.data)
            .join("rustbalance-run.pid");
        std::fs::write(pid_file, format!("{pid}\n"))?;
        Ok(())
    }

    /// Stop tracking the process (it keeps running, owned by the lab).
    pub fn forget(&mut self) {
        self.child = None;
    }

    /// SIGKILL the node and its tor (a machine dying).
    pub fn kill(&mut self) {
        let tor = self.tor_pid();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = tor.and_then(rustbalance_tor::ProcessId::of_pid) {
            let _ = p.kill();
        }
    }

    /// SIGTERM and wait up to 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ClusterNodeProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shared files of a lab cluster: one master key and one cluster secret.
struct ClusterFiles {
    base: PathBuf,
    master: IdentityKey,
    secret_file: PathBuf,
}

impl ClusterFiles {
    fn create(lab: &Lab) -> Result<ClusterFiles> {
        let base = lab.dir().join("cluster");
        let master = IdentityKey::generate(&mut rand::rng());
        master.write_tor_dir(&base.join("master"))?;
        let secret_file = base.join("cluster.secret");
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rand::RngExt::fill(&mut rand::rng(), &mut secret[..]);
        write_atomic(&secret_file, &secret[..], 0o600)?;
        Ok(ClusterFiles {
            base,
            master,
            secret_file,
        })
    }

    /// Write node `i`'s config (priority 10·(i+1), every other gossip
    /// address as a seed) and create its directory; returns the config path.
    #[allow(clippy::too_many_arguments)]
    fn node_config(
        &self,
        lab: &Lab,
        i: usize,
        name: &str,
        target: &str,
        admin: SocketAddr,
        gossip: &[SocketAddr],
        mesh: Option<rustbalance_node::config::MeshTemplate>,
    ) -> Result<PathBuf> {
        let text = node_config_with(
            lab,
            name,
            target,
            Some(
                self.base
                    .join("master")
                    .join(rustbalance_hs::keys::SECRET_KEY_FILE),
            ),
            admin,
            Some(ClusterTemplate {
                secret_file: self.secret_file.clone(),
                listen: gossip[i],
                seeds: gossip
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| *a)
                    .collect(),
                priority: 10 * (i as u32 + 1),
                cluster_id: None,
            }),
            mesh,
        )?;
        let config = self.base.join(format!("{name}.toml"));
        write_atomic(&config, text.as_bytes(), 0o600)?;
        rustbalance_hs::atomic::create_private_dir(&lab.dir().join("rustbalance").join(name))?;
        Ok(config)
    }
}

/// Write configs (shared master key and cluster secret, priorities 10, 20, …)
/// and targets for `n` nodes under `lab.dir()/cluster`.
pub async fn prepare(lab: &Lab, n: usize) -> Result<(IdentityKey, Vec<ClusterNodeProc>)> {
    let mut targets = Vec::new();
    for i in 0..n {
        targets.push(Some(
            DemoTarget::start(&format!("served by node{}\n", i + 1)).await?,
        ));
    }
    prepare_with(
        lab,
        targets
            .into_iter()
            .map(|t| {
                (
                    t.as_ref()
                        .map(|t| t.addr())
                        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
                    t,
                )
            })
            .collect(),
    )
}

/// [`prepare`] with the given targets (address, and the in-process target if any).
pub fn prepare_with(
    lab: &Lab,
    targets: Vec<(SocketAddr, Option<DemoTarget>)>,
) -> Result<(IdentityKey, Vec<ClusterNodeProc>)> {
    let n = targets.len();
    let files = ClusterFiles::create(lab)?;
    let gossip: Vec<SocketAddr> = (0..n)
        .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], free_port(true)?))))
        .collect::<Result<_>>()?;
    let mut nodes = Vec::new();
    for (i, (target_addr, target)) in targets.into_iter().enumerate() {
        let name = format!("node{}", i + 1);
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port(false)?));
        let config = files.node_config(
            lab,
            i,
            &name,
            &target_addr.to_string(),
            admin,
            &gossip,
            None,
        )?;
        let node_dir = lab.dir().join("rustbalance").join(&name);
        nodes.push(ClusterNodeProc {
            data: node_dir.join("data"),
            name,
            config,
            admin,
            target,
            target_addr,
            child: None,
        });
    }
    Ok((files.master, nodes))
}

/// The node that currently publishes and its last publication
/// (`/status` → `cluster.last_publish`).
pub async fn publisher<N: StatusSource>(nodes: &[N]) -> Option<(usize, serde_json::Value)> {
    for (i, n) in nodes.iter().enumerate() {
        if let Some(s) = n.status().await {
            if s["cluster"]["role"] == "publisher" && !s["cluster"]["last_publish"].is_null() {
                return Some((i, s["cluster"]["last_publish"].clone()));
            }
        }
    }
    None
}

/// Node names whose intro points a publication lists.
pub fn published_nodes(p: &serde_json::Value) -> Vec<String> {
    p["intro_points"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Wait until a node other than `not` has published, at or after `since`,
/// descriptors listing exactly the nodes `want` and confirmed by at least one
/// HSDir each. Returns the publisher's index and the time waited.
pub async fn wait_published<N: StatusSource>(
    nodes: &[N],
    not: Option<usize>,
    since: std::time::SystemTime,
    want: &[&str],
    timeout: Duration,
) -> Result<(usize, Duration)> {
    let t0 = Instant::now();
    let since_s = rustbalance_hs::time::unix_secs(since);
    loop {
        if let Some((i, p)) = publisher(nodes).await {
            let at = p["at"]
                .as_str()
                .and_then(|a| humantime::parse_rfc3339(a).ok())
                .map(rustbalance_hs::time::unix_secs)
                .unwrap_or(0);
            let confirmed = p["slots"].as_array().is_some_and(|s| {
                s.iter().all(|s| {
                    s["hsdirs"]
                        .as_object()
                        .is_some_and(|h| h.values().any(|v| v == "UPLOADED"))
                })
            });
            if Some(i) != not && at >= since_s && published_nodes(&p) == want && confirmed {
                return Ok((i, t0.elapsed()));
            }
        }
        if t0.elapsed() > timeout {
            anyhow::bail!(
                "no publication listing {want:?} within {timeout:?}; last: {:?}",
                publisher(nodes).await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` GETs of `url` through the lab client, each on a fresh circuit;
/// counts answers by body ("served by NAME") and failures.
pub async fn split(lab: &Lab, url: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for _ in 0..n {
        let k = match lab.http_get(url, Duration::from_secs(30)).await {
            Ok(r) if r.status == 200 => r.text().trim().to_string(),
            Ok(r) => format!("HTTP {}", r.status),
            Err(e) => failure_kind(&e.to_string()),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// "failed: SOCKS error 0xF2 ..." → a short, stable label for counting.
pub fn failure_kind(e: &str) -> String {
    match e.find("SOCKS error") {
        Some(i) => format!("failed ({})", e[i..].split(':').next().unwrap_or("SOCKS")),
        None if e.contains("no complete response") => "failed (timeout)".into(),
        None => "failed (other)".into(),
    }
}

/// A cluster node running in its own network namespace of a namespaced
/// lab (so that it can be cut off and healed).
pub struct NsNode {
    /// Its name (`node1`); also the name of its node host and lab process.
    pub name: String,
    /// Its namespace.
    pub host: rustbalance_lab::NodeHost,
    /// Its config file.
    pub config: PathBuf,
    bin: PathBuf,
}

impl NsNode {
    /// Run `rustbalance ARGS` inside the node's namespace; returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str], timeout: Duration) -> Result<(bool, String, String)> {
        let (code, out, err) = self.cli_code(args, timeout).await?;
        Ok((code == Some(0), out, err))
    }

    /// As [`Self::cli`], with the exit status (`None`: ended by a signal).
    pub async fn cli_code(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<(Option<i32>, String, String)> {
        let mut cmd = tokio::process::Command::new(&self.host.exec_prefix[0]);
        cmd.args(&self.host.exec_prefix[1..])
            .arg(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| anyhow::anyhow!("`rustbalance {}` timed out", args.join(" ")))??;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// `/status` of the node, asked from inside its namespace
    /// (`rustbalance status --json`), `None` if it does not answer.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let mut cmd = tokio::process::Command::new(&self.host.exec_prefix[0]);
        cmd.args(&self.host.exec_prefix[1..])
            .arg(&self.bin)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(5), cmd.output())
            .await
            .ok()?
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// Start `n` cluster nodes, each in its own namespace with its own demo
/// target, on a started namespaced lab. The processes belong to the lab
/// (`lab.stop()` ends them).
pub fn start_ns_cluster(
    lab: &Lab,
    n: usize,
    bin: &Path,
    mesh: bool,
) -> Result<(IdentityKey, Vec<NsNode>)> {
    let files = ClusterFiles::create(lab)?;
    let names: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
    let hosts = names
        .iter()
        .map(|name| lab.add_node_host(name).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let gossip: Vec<SocketAddr> = hosts.iter().map(|h| SocketAddr::new(h.ip, 7946)).collect();
    // WireGuard keys (0600 files) and endpoints of every node, when meshed.
    let mut wg = Vec::new();
    if mesh {
        for name in &names {
            let key = rustbalance_mesh::PrivateKey::generate();
            let file = files.base.join(format!("{name}.wg"));
            key.save(&file)?;
            wg.push((file, key.public_key().to_string()));
        }
    }
    let mut nodes = Vec::new();
    for (i, host) in hosts.into_iter().enumerate() {
        let mesh_cfg = (!wg.is_empty()).then(|| rustbalance_node::config::MeshTemplate {
            // Unique on the machine: the lab's namespace id + node number.
            interface: format!(
                "rbw{}{}",
                host.netns.split('-').nth(1).unwrap_or("0"),
                i + 1
            ),
            private_key_file: wg[i].0.clone(),
            listen_port: 51820,
            endpoint: Some(SocketAddr::new(gossip[i].ip(), 51820)),
            peers: (0..wg.len())
                .filter(|j| *j != i)
                .map(|j| (wg[j].1.clone(), SocketAddr::new(gossip[j].ip(), 51820)))
                .collect(),
        });
        let name = names[i].clone();
        spawn_demo_target(lab, &host, bin, &name)?;
        let config = files.node_config(
            lab,
            i,
            &name,
            "127.0.0.1:8080",
            SocketAddr::from(([127, 0, 0, 1], 9661)),
            &gossip,
            mesh_cfg,
        )?;
        let args: Vec<std::ffi::OsString> =
            vec!["run".into(), "--config".into(), config.clone().into()];
        lab.spawn_program_in(&name, &host, bin, &args)?;
        nodes.push(NsNode {
            name,
            host,
            config,
            bin: bin.to_path_buf(),
        });
    }
    Ok((files.master, nodes))
}

/// Start node `name`'s demo target (`served by NAME`) on 127.0.0.1:8080 in its namespace,
/// as lab process `targetN` (N: the node's number).
fn spawn_demo_target(
    lab: &Lab,
    host: &rustbalance_lab::NodeHost,
    bin: &Path,
    name: &str,
) -> Result<()> {
    let args: Vec<std::ffi::OsString> = vec![
        "lab".into(),
        "target".into(),
        "--listen".into(),
        "127.0.0.1:8080".into(),
        "--body".into(),
        format!("served by {name}\n").into(),
    ];
    lab.spawn_program_in(
        &format!("target{}", name.trim_start_matches("node")),
        host,
        bin,
        &args,
    )?;
    Ok(())
}

/// Add a node to a running namespaced lab cluster the way an operator would: a new
/// namespace and demo target, `rustbalance join` with only the token (in `token_file`),
/// then `rustbalance run`. `tor_from` is any lab node config (its [tor] section points tor
/// at the lab network). Returns the node once its daemon is spawned.
pub async fn join_ns_node(
    lab: &Lab,
    name: &str,
    bin: &Path,
    token_file: &Path,
    tor_from: &Path,
    progress: impl Fn(&str),
) -> Result<NsNode> {
    let host = lab.add_node_host(name)?;
    spawn_demo_target(lab, &host, bin, name)?;
    let dir = lab.dir().join("rustbalance").join(name);
    let config = dir.join("rustbalance.toml");
    let iface = format!(
        "rbw{}{}",
        host.netns.split('-').nth(1).unwrap_or("0"),
        name.trim_start_matches("node")
    );
    let endpoint = SocketAddr::new(host.ip, 51820).to_string();
    let node = NsNode {
        name: name.to_string(),
        host,
        config: config.clone(),
        bin: bin.to_path_buf(),
    };
    let (dir_s, tok_s, from_s) = (
        dir.display().to_string(),
        token_file.display().to_string(),
        tor_from.display().to_string(),
    );
    let args = [
        "join",
        "--token-file",
        &tok_s,
        "--dir",
        &dir_s,
        "--target",
        "tcp://127.0.0.1:8080",
        "--endpoint",
        &endpoint,
        "--name",
        name,
        "--mesh-interface",
        &iface,
        "--gossip-port",
        "7946",
        "--tor-from",
        &from_s,
        "--timeout",
        "240",
    ];
    let t = Instant::now();
    let (ok, out, err) = node.cli(&args, Duration::from_secs(260)).await?;
    for l in err.lines() {
        progress(&format!("  join: {l}"));
    }
    if !ok {
        anyhow::bail!("`rustbalance join` failed: {}", err.trim());
    }
    progress(&format!(
        "{name} joined in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        out.trim()
    ));
    let args: Vec<std::ffi::OsString> = vec!["run".into(), "--config".into(), config.into()];
    lab.spawn_program_in(name, &node.host, bin, &args)?;
    Ok(node)
}

/// A cluster node whose `/status` can be read.
pub trait StatusSource {
    /// The node's `/status`.
    fn status(&self) -> impl std::future::Future<Output = Option<serde_json::Value>> + Send;
    /// The node's name.
    fn name(&self) -> &str;
}

impl StatusSource for ClusterNodeProc {
    async fn status(&self) -> Option<serde_json::Value> {
        ClusterNodeProc::status(self).await
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl StatusSource for NsNode {
    async fn status(&self) -> Option<serde_json::Value> {
        NsNode::status(self).await
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A freshly started cluster is up: some node published descriptors listing every node
/// of `nodes` within `publish_timeout`, and the lab client reaches `url` ("served by").
/// Prints who published and when; returns the publisher's index and the time it took.
pub async fn wait_cluster_up<N: StatusSource>(
    lab: &Lab,
    nodes: &[N],
    url: &str,
    publish_timeout: Duration,
) -> Result<(usize, Duration)> {
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    names.sort_unstable();
    let (p, took) = wait_published(
        nodes,
        None,
        std::time::SystemTime::UNIX_EPOCH,
        &names,
        publish_timeout,
    )
    .await?;
    eprintln!(
        "{} published all {} nodes after {:.1}s",
        nodes[p].name(),
        names.len(),
        took.as_secs_f64()
    );
    lab.wait_http(url, "served by", Duration::from_secs(120))
        .await?;
    Ok((p, took))
}

/// The `--name value` flags of the lab benchmark programs (`examples/`).
pub struct BenchArgs(Vec<String>);

impl BenchArgs {
    /// This process's arguments.
    pub fn from_env() -> Self {
        BenchArgs(std::env::args().collect())
    }

    /// Every value given to `--name` (a flag may repeat).
    pub fn values(&self, name: &str) -> Vec<String> {
        self.0
            .windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].clone())
            .collect()
    }

    /// The first value of `--name`.
    pub fn value(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }

    /// `--name SECONDS`, or `default` seconds.
    pub fn secs(&self, name: &str, default: u64) -> Duration {
        Duration::from_secs(
            self.value(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default),
        )
    }

    /// The rustbalance binary the nodes run: `--bin`, by default `target/release/rustbalance`.
    pub fn bin(&self) -> PathBuf {
        PathBuf::from(
            self.value("--bin")
                .unwrap_or_else(|| "target/release/rustbalance".into()),
        )
    }
}
