//! Cluster nodes of a namespaced lab, each in its own network namespace
//! (so that it can be cut off and healed), each with its own demo target
//! (`rustbalance lab target`, "served by NAME" on 127.0.0.1:8080) and
//! gossiping over the WireGuard mesh when meshed. The processes belong to
//! the lab (`lab.stop()` ends them); [`NsNode::stop`] ends one node early.

use super::{ClusterFiles, NodePlan};
use crate::node_config::node_dir;
use anyhow::Result;
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{Lab, LabProcess, NodeHost};
use rustbalance_node::config::MeshTemplate;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Every node's gossip port (on its own address).
const GOSSIP_PORT: u16 = 7946;
/// Every node's WireGuard port.
const WG_PORT: u16 = 51820;
/// Every node's target, inside its namespace.
const TARGET: &str = "127.0.0.1:8080";

/// A cluster node running in its own network namespace of a namespaced lab.
pub struct NsNode {
    /// Its name (`node1`); also the name of its node host and lab process.
    pub name: String,
    /// Its namespace.
    pub host: NodeHost,
    /// Its config file.
    pub config: PathBuf,
    bin: PathBuf,
    process: Option<LabProcess>,
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

    /// Pid of its `rustbalance run` process (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(LabProcess::pid)
    }

    /// `/status` of the node, asked from inside its namespace
    /// (`rustbalance status --json`), `None` if it does not answer.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let config = self.config.display().to_string();
        let (ok, out, _) = self
            .cli(
                &["status", "--json", "--config", &config],
                Duration::from_secs(5),
            )
            .await
            .ok()?;
        if !ok {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    /// Stops the node for good (SIGTERM, so that it stops its tor), then
    /// SIGKILLs whatever still runs in its namespace (its target too).
    /// Blocks the calling thread for up to a few seconds.
    pub fn stop(&mut self, lab: &Lab) -> Result<()> {
        if let Some(p) = self.process.take() {
            p.stop()?;
        }
        lab.kill(&self.name)?;
        Ok(())
    }
}

/// WireGuard interface of node `name` in the lab whose namespace is `host`'s:
/// unique on the machine (the UAPI socket path is not per namespace).
fn interface(host: &NodeHost, name: &str) -> String {
    format!(
        "rbw{}{}",
        host.netns.split('-').nth(1).unwrap_or("0"),
        name.trim_start_matches(super::DEFAULT_PREFIX)
    )
}

/// WireGuard keys (0600 files) of every node, and their public keys.
fn wg_keys(files: &ClusterFiles, names: &[String]) -> Result<Vec<(PathBuf, String)>> {
    let mut wg = Vec::new();
    for name in names {
        let key = rustbalance_mesh::PrivateKey::generate();
        let file = files.base.join(format!("{name}.wg"));
        key.save(&file)?;
        wg.push((file, key.public_key().to_string()));
    }
    Ok(wg)
}

/// Start `n` cluster nodes PREFIX1…PREFIXn, each in its own namespace with
/// its own demo target, on a started namespaced lab. The prefix is at most
/// 5 letters (interface names).
pub fn start_ns_cluster(
    lab: &Lab,
    prefix: &str,
    n: usize,
    bin: &Path,
    mesh: bool,
) -> Result<(IdentityKey, Vec<NsNode>)> {
    start_ns_cluster_with(lab, prefix, n, bin, mesh, Knobs::default())
}

/// Cluster settings a lab case or benchmark sets on every node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Knobs {
    /// `cluster.quorum` (`None`: the default).
    pub quorum: Option<rustbalance_node::config::QuorumMode>,
    /// `cluster.gossip_signatures` (`None`: the default).
    pub gossip_signatures: Option<rustbalance_node::config::SignatureMode>,
}

/// [`start_ns_cluster`] with [`Knobs`] set on every node.
pub fn start_ns_cluster_with(
    lab: &Lab,
    prefix: &str,
    n: usize,
    bin: &Path,
    mesh: bool,
    knobs: Knobs,
) -> Result<(IdentityKey, Vec<NsNode>)> {
    let mut files = ClusterFiles::create(lab, prefix)?;
    files.quorum = knobs.quorum;
    files.gossip_signatures = knobs.gossip_signatures;
    let names: Vec<String> = (1..=n).map(|i| format!("{prefix}{i}")).collect();
    let hosts = names
        .iter()
        .map(|name| lab.add_node_host(name).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let gossip: Vec<SocketAddr> = hosts
        .iter()
        .map(|h| SocketAddr::new(h.ip, GOSSIP_PORT))
        .collect();
    let wg = if mesh {
        wg_keys(&files, &names)?
    } else {
        Vec::new()
    };
    let mut nodes = Vec::new();
    for (i, host) in hosts.into_iter().enumerate() {
        let name = names[i].clone();
        let mesh_cfg = (!wg.is_empty()).then(|| MeshTemplate {
            interface: interface(&host, &name),
            private_key_file: wg[i].0.clone(),
            listen_port: WG_PORT,
            endpoint: Some(SocketAddr::new(gossip[i].ip(), WG_PORT)),
            peers: (0..wg.len())
                .filter(|j| *j != i)
                .map(|j| (wg[j].1.clone(), SocketAddr::new(gossip[j].ip(), WG_PORT)))
                .collect(),
        });
        spawn_demo_target(lab, &host, bin, &name)?;
        let config = files.node_config(
            lab,
            NodePlan {
                i,
                name: &name,
                target: TARGET,
                admin: SocketAddr::from(([127, 0, 0, 1], 9661)),
                gossip: &gossip,
                mesh: mesh_cfg,
            },
        )?;
        let args: Vec<OsString> = vec!["run".into(), "--config".into(), config.clone().into()];
        let process = lab.spawn_program_in(&name, &host, bin, &args)?;
        nodes.push(NsNode {
            name,
            host,
            config,
            bin: bin.to_path_buf(),
            process: Some(process),
        });
    }
    Ok((files.master, nodes))
}

/// Start node `name`'s demo target (`served by NAME`) on 127.0.0.1:8080 in its namespace,
/// as lab process `targetN` (`N`: the name without the default prefix).
fn spawn_demo_target(lab: &Lab, host: &NodeHost, bin: &Path, name: &str) -> Result<()> {
    let args: Vec<OsString> = vec![
        "lab".into(),
        "target".into(),
        "--listen".into(),
        TARGET.into(),
        "--body".into(),
        format!("served by {name}\n").into(),
    ];
    lab.spawn_program_in(
        &format!("target{}", name.trim_start_matches(super::DEFAULT_PREFIX)),
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
    let dir = node_dir(lab, name);
    let config = dir.join("rustbalance.toml");
    let iface = interface(&host, name);
    let endpoint = SocketAddr::new(host.ip, WG_PORT).to_string();
    let mut node = NsNode {
        name: name.to_string(),
        host,
        config: config.clone(),
        bin: bin.to_path_buf(),
        process: None,
    };
    let (dir_s, tok_s, from_s) = (
        dir.display().to_string(),
        token_file.display().to_string(),
        tor_from.display().to_string(),
    );
    let gossip_port = GOSSIP_PORT.to_string();
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
        &gossip_port,
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
    // The joined node's config is `join`'s; lab nodes all write the second tor log.
    let text = std::fs::read_to_string(&config)?;
    std::fs::write(&config, crate::node_config::with_lab_tor(&text))?;
    let args: Vec<OsString> = vec!["run".into(), "--config".into(), config.into()];
    node.process = Some(lab.spawn_program_in(name, &node.host, bin, &args)?);
    Ok(node)
}
