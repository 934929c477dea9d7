//! The logic behind `rustbalance lab cluster|kill|status` on a running lab
//! (the binary parses the command line and prints).

use crate::cluster::ns::start_ns_cluster;
use crate::cluster::publication::wait_published;
use crate::cluster::{cluster_dir, prepare_with, DEFAULT_PREFIX};
use anyhow::{bail, Result};
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{Lab, LabStatus};
use rustbalance_tor::port::{free_port, Proto};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a new cluster may take to publish every node.
const FIRST_PUBLISH: Duration = Duration::from_secs(240);

/// Where to tell a user of the lab commands about progress and results.
pub trait Narrator {
    /// A progress line (stderr).
    fn progress(&self, line: &str);
    /// A result line (stdout).
    fn result(&self, line: &str);
}

/// Config files of the lab's cluster nodes (`DIR/cluster/nodeN.toml`).
pub fn cluster_configs(lab: &Lab) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(cluster_dir(lab, DEFAULT_PREFIX))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A node's `/status`: asked from inside its namespace (namespaced lab),
/// else from its admin endpoint.
async fn node_status(lab: &Lab, name: &str, path: &Path, bin: &Path) -> Option<Value> {
    if let Ok(host) = lab.node_host(name) {
        let out = tokio::process::Command::new(&host.exec_prefix[0])
            .args(&host.exec_prefix[1..])
            .arg(bin)
            .args(["status", "--json", "--config"])
            .arg(path)
            .output()
            .await
            .ok()?;
        return out
            .status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten();
    }
    let cfg = rustbalance_node::Config::load(path).ok()?;
    let cookie = rustbalance_node::layout::Layout::new(&cfg.node.data_dir).admin_cookie();
    let body = rustbalance_node::admin::status(cfg.admin.listen, &cookie)
        .await
        .ok()?;
    serde_json::from_str(&body).ok()
}

/// name, pid, role and the nodes whose intro points the last published
/// descriptor lists, for each cluster node (`bin`: the rustbalance binary).
pub async fn cluster_status(lab: &Lab, st: &LabStatus, bin: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, path) in cluster_configs(lab) {
        let proc_ = st.processes.iter().find(|p| p.name == name);
        let status = node_status(lab, &name, &path, bin).await;
        let c = status
            .as_ref()
            .map(|s| s["cluster"].clone())
            .unwrap_or_default();
        out.push(json!({
            "name": name,
            "pid": proc_.map(|p| p.pid),
            "alive": proc_.map(|p| p.alive).unwrap_or(false),
            "role": c["role"],
            "own_intro_points": c["own_intro_points"],
            "last_published_intro_points": c["last_publish"]["intro_points"],
        }));
    }
    out
}

/// Starts an `n`-node cluster on the running `lab` (`bin`: the rustbalance
/// binary the nodes run) and waits for its first publication; the nodes
/// belong to the lab afterwards. Returns the master key.
pub async fn start_cluster(
    lab: &Lab,
    n: usize,
    bin: &Path,
    say: &dyn Narrator,
) -> Result<IdentityKey> {
    if !lab.is_running()? {
        bail!(
            "the lab in {} is not running; start it with `rustbalance lab up`",
            lab.dir().display()
        );
    }
    if !cluster_configs(lab).is_empty() {
        bail!(
            "a cluster already exists in {}; `rustbalance lab down` first",
            lab.dir().display()
        );
    }
    if lab.placement().netns().is_some() {
        let (master, nodes) = start_ns_cluster(lab, DEFAULT_PREFIX, n, bin, true)?;
        let all: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let p = wait_published(&nodes, &[], SystemTime::UNIX_EPOCH, &all, FIRST_PUBLISH).await?;
        say.progress(&format!("[{:6.1}s] {} published the master descriptor with the intro points of {:?} (each node in its own namespace)", p.waited.as_secs_f64(), nodes[p.node].name, all));
        say.result(&format!("master address {}", master.address()));
        say.result(&format!("try: rustbalance lab curl --dir {} http://{}/   then: lab cut / lab heal / lab kill NODE", lab.dir().display(), master.address()));
        return Ok(master);
    }
    let mut targets = Vec::new();
    for i in 1..=n {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port(Proto::Tcp)?));
        let args: Vec<OsString> = vec![
            "lab".into(),
            "target".into(),
            "--listen".into(),
            addr.to_string().into(),
            "--body".into(),
            format!("served by {DEFAULT_PREFIX}{i}\n").into(),
        ];
        lab.spawn_program(&format!("target{i}"), bin, &args)?;
        targets.push((addr, None));
    }
    let (master, mut nodes) = prepare_with(lab, targets)?;
    for node in &nodes {
        let args: Vec<OsString> = vec!["run".into(), "--config".into(), node.config.clone().into()];
        lab.spawn_program(&node.name, bin, &args)?;
        say.progress(&format!(
            "started {} (config {})",
            node.name,
            node.config.display()
        ));
    }
    let all: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let p = wait_published(&nodes, &[], SystemTime::UNIX_EPOCH, &all, FIRST_PUBLISH).await?;
    say.progress(&format!(
        "[{:6.1}s] {} published the master descriptor with the intro points of {:?}",
        p.waited.as_secs_f64(),
        nodes[p.node].name,
        all
    ));
    say.result(&format!("master address {}", master.address()));
    say.result(&format!(
        "try: rustbalance lab curl --dir {} http://{}/",
        lab.dir().display(),
        master.address()
    ));
    // The node processes belong to the lab now (stopped by `lab down`).
    for n in nodes.iter_mut() {
        n.forget();
    }
    Ok(master)
}

/// SIGKILLs cluster node `node` and its tor (a machine dying); returns a
/// line saying what was killed.
pub fn kill_node(lab: &Lab, node: &str) -> Result<String> {
    if lab.placement().netns().is_some() {
        let n = lab.kill(node)?;
        return Ok(format!("SIGKILLed {n} processes of {node}"));
    }
    let cfgs = cluster_configs(lab);
    let Some((_, path)) = cfgs.iter().find(|(n, _)| n == node) else {
        bail!(
            "no cluster node {node:?} in {} (have: {:?})",
            lab.dir().display(),
            cfgs.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
    };
    let cfg = rustbalance_node::Config::load(path)?;
    let st = lab.status()?;
    let pid = st
        .processes
        .iter()
        .find(|p| p.name == node && p.alive)
        .and_then(|p| p.pid);
    let tor = std::fs::read_to_string(cfg.node.data_dir.join("tor.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let mut killed = Vec::new();
    for p in [pid, tor].into_iter().flatten() {
        if let Some(id) = rustbalance_tor::ProcessId::of_pid(p) {
            id.kill()?;
            killed.push(p);
        }
    }
    if killed.is_empty() {
        bail!("{node} is not running");
    }
    Ok(format!("SIGKILLed {node} (pids {killed:?})"))
}
