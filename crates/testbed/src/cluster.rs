//! Several RustBalance nodes serving one master address in the lab: what
//! `rustbalance lab cluster` starts and what the cluster tests and
//! benchmarks stand on. Each node is a real `rustbalance run` process with
//! its own tor, its own target ("served by NAME") and a `[cluster]`
//! section; all share one master key and one cluster secret.
//!
//! Nodes are named PREFIX1, PREFIX2, … (`node1`… by default), so that
//! several clusters can share one lab; the shared files live in
//! `DIR/cluster` (default prefix) or `DIR/cluster-PREFIX`.

pub mod ns;
pub mod publication;

use crate::node_config::{node_config_with, node_dir};
use anyhow::{Context, Result};
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{DemoTarget, Lab};
use rustbalance_node::config::{ClusterTemplate, MeshTemplate};
use rustbalance_node::keystore::{write_atomic, KeyFiles};
use rustbalance_tor::port::{free_port, Proto};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use ns::NsNode;

/// The node-name prefix of `rustbalance lab cluster` (`node1`, `node2`, …).
pub const DEFAULT_PREFIX: &str = "node";

/// The directory of the cluster whose nodes are named `PREFIX<N>`.
pub fn cluster_dir(lab: &Lab, prefix: &str) -> PathBuf {
    if prefix == DEFAULT_PREFIX {
        lab.dir().join("cluster")
    } else {
        lab.dir().join(format!("cluster-{prefix}"))
    }
}

/// One node process on the host's loopback.
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

impl ClusterNodeProc {
    /// The node's `/status`, if it answers.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let cookie = rustbalance_node::layout::Layout::new(&self.data).admin_cookie();
        let body = rustbalance_node::admin::status(self.admin, &cookie)
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
        self.tor_pid_of(0)
    }

    /// Pid of its tor `slot` (0: the first; turbo mode's extra tors from 1).
    pub fn tor_pid_of(&self, slot: usize) -> Option<u32> {
        let layout = rustbalance_node::layout::Layout::new(&self.data).tor_slot(slot);
        std::fs::read_to_string(layout.tor_pid())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A control connection to its tor (the port tor wrote into the node's data
    /// directory; cookie authentication).
    pub async fn tor_control(&self) -> Result<rustbalance_tor::ControlClient> {
        self.tor_control_of(0).await
    }

    /// [`Self::tor_control`] of its tor `slot` (0: the first; turbo mode's extra tors from
    /// 1, each in its own `instance-<k>` directory).
    pub async fn tor_control_of(&self, slot: usize) -> Result<rustbalance_tor::ControlClient> {
        let layout = rustbalance_node::layout::Layout::new(&self.data).tor_slot(slot);
        let file = layout.control_port_file();
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        let addr = text
            .trim()
            .strip_prefix("PORT=")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("no PORT=ADDR in {}", file.display()))?;
        Ok(rustbalance_tor::ControlClient::connect_authenticated(addr).await?)
    }

    /// Start (or restart) the node process, output to `log`.
    pub fn start(&mut self, bin: &Path, log: &Path) -> Result<()> {
        self.start_with_env(bin, log, &[])
    }

    /// [`Self::start`] with extra environment variables (e.g. libfaketime's, to skew
    /// the node's clock: see [`faketime_env`]).
    pub fn start_with_env(
        &mut self,
        bin: &Path,
        log: &Path,
        env: &[(String, String)],
    ) -> Result<()> {
        let out = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .envs(env.iter().map(|(k, v)| (k, v)))
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

    /// Put `line` (`key = value`) into the node's `[cluster]` section; takes effect at its
    /// next start.
    pub fn set_cluster_option(&self, line: &str) -> Result<()> {
        self.set_option("cluster", line)
    }

    /// Set `line` (`key = value`) in the config's `[section]` (it must have one): in place
    /// of that key's line there, or at the top of the section.
    pub fn set_option(&self, section: &str, line: &str) -> Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        let text = crate::node_config::set_option(&text, section, line)
            .with_context(|| format!("{} has no [{section}] section", self.config.display()))?;
        write_atomic(&self.config, text.as_bytes(), 0o600)?;
        Ok(())
    }

    /// Stop tracking the process (it keeps running, owned by the lab).
    pub fn forget(&mut self) {
        self.child = None;
    }

    /// SIGKILL the node and its tor (a machine dying).
    pub fn kill(&mut self) {
        // Every tor it runs (turbo mode: its extra tors too).
        let tors: Vec<u32> = (0..=rustbalance_node::config::MAX_TOR_INSTANCES)
            .filter_map(|slot| self.tor_pid_of(slot))
            .collect();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in tors
            .into_iter()
            .filter_map(rustbalance_tor::ProcessId::of_pid)
        {
            let _ = p.kill();
        }
    }

    /// SIGTERM and wait up to 10 s (then SIGKILL).
    pub fn stop(&mut self) {
        self.terminate(Duration::from_secs(10));
    }

    /// SIGTERM, wait up to `within` for the exit, SIGKILL after that.
    /// Returns the exit status if the process exited in time (`None` also
    /// when it was not running).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// A node of its own (not one of a prepared cluster) that runs with the
    /// config file `config`; start it with [`Self::start`].
    pub fn from_config(config: &Path, target_addr: SocketAddr) -> Result<ClusterNodeProc> {
        let cfg = rustbalance_node::Config::load(config)?;
        Ok(ClusterNodeProc {
            name: cfg.node.name.clone(),
            config: config.to_path_buf(),
            admin: cfg.admin.listen,
            data: cfg.node.data_dir.clone(),
            target: None,
            target_addr,
            child: None,
        })
    }
}

impl Drop for ClusterNodeProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shared files of a lab cluster: one master key and one cluster secret.
pub(crate) struct ClusterFiles {
    pub(crate) base: PathBuf,
    pub(crate) master: IdentityKey,
    secret_file: PathBuf,
    /// `cluster.quorum` of every node (`None`: the default).
    pub(crate) quorum: Option<rustbalance_node::config::QuorumMode>,
    /// `cluster.gossip_signatures` of every node (`None`: the default, `require`).
    pub(crate) gossip_signatures: Option<rustbalance_node::config::SignatureMode>,
}

/// Where node `i` of a cluster listens and what it runs with.
pub(crate) struct NodePlan<'a> {
    pub(crate) i: usize,
    pub(crate) name: &'a str,
    pub(crate) target: &'a str,
    pub(crate) admin: SocketAddr,
    pub(crate) gossip: &'a [SocketAddr],
    pub(crate) mesh: Option<MeshTemplate>,
}

impl ClusterFiles {
    pub(crate) fn create(lab: &Lab, prefix: &str) -> Result<ClusterFiles> {
        let base = cluster_dir(lab, prefix);
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
            quorum: None,
            gossip_signatures: None,
        })
    }

    /// Write node `plan.i`'s config (priority 10·(i+1), every other gossip
    /// address as a seed) and create its directory; returns the config path.
    pub(crate) fn node_config(&self, lab: &Lab, plan: NodePlan) -> Result<PathBuf> {
        let NodePlan {
            i,
            name,
            target,
            admin,
            gossip,
            mesh,
        } = plan;
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
                quorum: self.quorum,
                gossip_signatures: self.gossip_signatures,
            }),
            mesh,
        )?;
        let config = self.base.join(format!("{name}.toml"));
        write_atomic(&config, text.as_bytes(), 0o600)?;
        rustbalance_node::keystore::create_private_dir(&node_dir(lab, name))?;
        Ok(config)
    }
}

/// Start every node (`bin run`, output to `LAB/NAME.log`), each with the `[cluster]`
/// lines of `options` set first (e.g. `solo = false`).
pub fn start_all(
    lab: &Lab,
    nodes: &mut [ClusterNodeProc],
    bin: &Path,
    options: &[&str],
) -> Result<()> {
    for n in nodes.iter_mut() {
        for line in options {
            n.set_cluster_option(line)?;
        }
        let log = lab.dir().join(format!("{}.log", n.name));
        n.start(bin, &log)?;
    }
    Ok(())
}

/// [`prepare`] `n` nodes, run `body` with the master key and the nodes, stop every node
/// whatever `body` returned, and return that.
pub async fn with_cluster(
    lab: &Lab,
    n: usize,
    body: impl AsyncFnOnce(&IdentityKey, &mut [ClusterNodeProc]) -> Result<()>,
) -> Result<()> {
    let (master, mut nodes) = prepare(lab, n).await?;
    let r = body(&master, &mut nodes).await;
    stop_all(&mut nodes);
    r
}

/// Stop every node that runs (by its pid).
pub fn stop_all(nodes: &mut [ClusterNodeProc]) {
    for n in nodes.iter_mut() {
        n.stop();
    }
}

/// Write configs (shared master key and cluster secret, priorities 10, 20, …)
/// and start in-process targets for `n` nodes `node1`… under `lab.dir()/cluster`.
pub async fn prepare(lab: &Lab, n: usize) -> Result<(IdentityKey, Vec<ClusterNodeProc>)> {
    prepare_named(lab, DEFAULT_PREFIX, n).await
}

/// [`prepare`] a cluster of its own whose nodes are `PREFIX1`… (a second cluster beside
/// the default one in the same lab: own master key, secret and gossip ports).
pub async fn prepare_named(
    lab: &Lab,
    prefix: &str,
    n: usize,
) -> Result<(IdentityKey, Vec<ClusterNodeProc>)> {
    let mut targets = Vec::new();
    for i in 0..n {
        let t = DemoTarget::start(&format!("served by {prefix}{}\n", i + 1)).await?;
        targets.push((t.addr(), Some(t)));
    }
    prepare_in(lab, prefix, targets)
}

/// [`prepare`] with the given targets (address, and the in-process target if any).
pub fn prepare_with(
    lab: &Lab,
    targets: Vec<(SocketAddr, Option<DemoTarget>)>,
) -> Result<(IdentityKey, Vec<ClusterNodeProc>)> {
    prepare_in(lab, DEFAULT_PREFIX, targets)
}

/// [`prepare_with`] for nodes named `PREFIX1`….
fn prepare_in(
    lab: &Lab,
    prefix: &str,
    targets: Vec<(SocketAddr, Option<DemoTarget>)>,
) -> Result<(IdentityKey, Vec<ClusterNodeProc>)> {
    let n = targets.len();
    let files = ClusterFiles::create(lab, prefix)?;
    // A fresh deployment: scenarios on one lab reuse the node names and directories
    // (tor's cached consensus speeds its start), but not an earlier scenario's instance
    // keys, whose descriptors (another master's, dead intro points) are still on the
    // lab's HSDirs.
    for i in 0..n {
        let data = node_dir(lab, &format!("{prefix}{}", i + 1)).join("data");
        let layout = rustbalance_node::layout::Layout::new(&data);
        let _ = std::fs::remove_dir_all(layout.instance_hs_dir());
        for k in 1..=rustbalance_node::config::MAX_TOR_INSTANCES {
            let _ = std::fs::remove_dir_all(layout.extra_instance(k).data_dir);
        }
    }
    let gossip: Vec<SocketAddr> = (0..n)
        .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], free_port(Proto::Udp)?))))
        .collect::<Result<_>>()?;
    let mut nodes = Vec::new();
    for (i, (target_addr, target)) in targets.into_iter().enumerate() {
        let name = format!("{prefix}{}", i + 1);
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port(Proto::Tcp)?));
        let config = files.node_config(
            lab,
            NodePlan {
                i,
                name: &name,
                target: &target_addr.to_string(),
                admin,
                gossip: &gossip,
                mesh: None,
            },
        )?;
        nodes.push(ClusterNodeProc {
            data: node_dir(lab, &name).join("data"),
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

/// The environment that makes a process's wall clock run `offset` (libfaketime's
/// syntax: `+10m`, `-600`) from the machine's, monotonic time untouched: Debian's
/// `faketime` package (its multi-threaded library, `LD_PRELOAD`). A node's tor does not
/// inherit it: the daemon gives tor a clean environment, so tor keeps the real clock.
pub fn faketime_env(offset: &str) -> Result<Vec<(String, String)>> {
    let lib = std::fs::read_dir("/usr/lib")?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime").join("libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .context(
            "libfaketime not found under /usr/lib/*/faketime (Debian: apt-get install faketime)",
        )?;
    Ok(vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}
