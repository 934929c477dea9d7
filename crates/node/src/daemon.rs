//! `rustbalance run`: the composition root of a node.
//!
//! Start order, one function per phase: data directory and pid file (`claim_data_dir`)
//! → keys: master key into tor's HiddenServiceDir, or this node's instance key
//! (`prepare_keys`) → proxy listener, its port goes into the torrc (`proxy`) → supervised
//! tor (`start_tor`) → metrics → cluster: mesh, gossip, join endpoint (`cluster`) →
//! admin endpoint (`admin`) → upload watcher → wait for SIGTERM or removal
//! (`wait_for_end`). Shutdown runs it backwards (`Running::stop`): leave the cluster,
//! stop accepting, drain the proxy, stop tor.

mod admin;
mod cluster;
mod hardening;
mod mesh;
mod proxy;
mod restricted;
pub mod status_page;
mod telemetry;
mod uploads;

pub use mesh::bring_up_mesh;
pub use uploads::UploadStatus;

use crate::config::Config;
use crate::err::{Error, Result};
use crate::join::JoinService;
use crate::keystore::{create_private_dir, write_atomic, KeyFiles, Passphrase};
use crate::layout::Layout;
use crate::metrics::Metrics;
use cluster::ClusterParts;
use rustbalance_fsutil::PidLock;
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_proxy::ProxyHandle;
use rustbalance_tor::{TorPhase, TorStatus, TorSupervisor};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Run a node until `shutdown` resolves. `progress` receives one line per
/// start-up step.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
    progress: impl Fn(&str),
) -> Result<()> {
    let progress: &dyn Fn(&str) = &progress;
    let layout = Layout::new(&cfg.node.data_dir);
    hardening::harden_process();
    let pid_lock = claim_data_dir(&layout)?;
    let keys = prepare_keys(&cfg, &layout, progress)?;
    restricted::sync_single_node(&cfg, &layout)?;
    // The join endpoint rides on the master port of meshed cluster nodes that know their
    // own WireGuard endpoint (so that new nodes can be told how to reach them).
    let join_svc = match (&cfg.cluster, &cfg.mesh) {
        (Some(_), Some(m)) if m.endpoint.is_some() => Some(JoinService::new()),
        _ => None,
    };
    let (proxy, socks) = start_front(&cfg, join_svc.as_ref(), progress).await?;
    let tor = start_tor(
        &cfg,
        &layout,
        keys.instance.is_some(),
        proxy.as_ref(),
        socks,
    )?;
    let extra_tors = start_extra_tors(&cfg, &layout, &keys, proxy.as_ref())?;
    let uploads = Arc::new(Mutex::new(UploadStatus::default()));
    let metrics = Metrics::new();
    telemetry::register_metrics(&metrics, &tor, proxy.as_ref(), &uploads);
    telemetry::register_instance_metrics(&metrics, &tor, &extra_tors);
    let parts = cluster::start(
        &cfg,
        &layout,
        &keys,
        &tor,
        &extra_tors,
        proxy.as_ref(),
        join_svc.as_ref(),
        &metrics,
        progress,
    )
    .await?;
    let mesh_view = parts
        .mesh
        .as_ref()
        .map(|m| mesh::watch_mesh(m.clone(), &metrics, &parts.supervisor));
    let status = admin::status_fn(
        &cfg,
        &keys,
        (&tor, &extra_tors),
        proxy.as_ref(),
        &uploads,
        &parts,
        &mesh_view,
    );
    let admin = admin::start(&cfg, &layout, &metrics, status, &parts).await?;
    progress(&format!(
        "admin endpoint http://{}/status and /metrics",
        admin.addr()
    ));
    let clients = restricted::watch_single_node(cfg.clone(), layout.clone(), tor.clone());
    let upload_watch = uploads::watch_uploads(
        tor.clone(),
        keys.master_address.without_suffix(),
        uploads.clone(),
    );
    let watcher = tokio::spawn(async move {
        tokio::join!(upload_watch, clients);
    });
    let end = wait_for_end(&cfg, &tor, &parts, shutdown, progress).await;
    Running {
        join_svc,
        parts,
        mesh_view: mesh_view.map(|(_, task)| task),
        admin,
        watcher,
        proxy,
        tor,
        extra_tors,
    }
    .stop()
    .await;
    drop(pid_lock);
    match end {
        End::Shutdown => Ok(()),
        End::Removed => {
            // The marker written on removal says why and what to do.
            crate::join_node::refuse_if_removed(&layout.data_dir)?;
            Err(Error::Removed(
                "this node was removed from the cluster".into(),
            ))
        }
        End::TaskDied(death) => Err(Error::TaskDied(death)),
    }
}

/// The reverse proxy in front of the target, and the SOCKS port it reaches onion
/// targets through. A publisher-only node (no `[target]`) runs neither.
async fn start_front(
    cfg: &Config,
    join_svc: Option<&Arc<JoinService>>,
    progress: &dyn Fn(&str),
) -> Result<(Option<ProxyHandle>, Option<SocketAddr>)> {
    if cfg.publisher_only() {
        progress("publisher-only node: no proxy, no onion service of its own");
        return Ok((None, None));
    }
    let (p, s) = proxy::start_proxy(cfg, join_svc, progress).await?;
    Ok((Some(p), s))
}

/// Why a running node stops.
#[derive(Debug)]
enum End {
    /// SIGTERM.
    Shutdown,
    /// This node learnt it was removed from the cluster.
    Removed,
    /// One of its tasks ended unasked ([`crate::supervise`]).
    TaskDied(crate::supervise::TaskDeath),
}

/// Create the data directories, refuse to start on a removed node or next to another
/// running node, and lock the pid file (held until the returned lock is dropped; a pid
/// file left by a crash never blocks, see [`rustbalance_fsutil::PidLock`]).
fn claim_data_dir(layout: &Layout) -> Result<PidLock> {
    create_private_dir(&layout.data_dir)?;
    crate::join_node::refuse_if_removed(&layout.data_dir)?;
    let lock = PidLock::acquire(&layout.daemon_pid()).map_err(|e| match e {
        rustbalance_fsutil::Error::Locked { pid, .. } => Error::AlreadyRunning {
            pid,
            data_dir: layout.data_dir.clone(),
        },
        other => Error::Io {
            action: "claim the data directory with",
            path: layout.daemon_pid(),
            source: other.into_io(),
        },
    })?;
    // Before tor's directory exists: what tells a node that predates identities apart.
    crate::cluster::credentials::identity_for_new_node(layout)?;
    create_private_dir(&layout.tor_dir())?;
    Ok(lock)
}

/// The keys a node runs with.
pub(crate) struct Keys {
    /// The master key, if this node holds it.
    master: Option<IdentityKey>,
    /// The master address.
    master_address: OnionAddress,
    /// This node's instance address (cluster mode).
    instance: Option<OnionAddress>,
    /// Turbo mode (`tor.instances` > 1): the instance addresses of the extra tors, in
    /// order (tor 1, 2, ...).
    extra_instances: Vec<OnionAddress>,
    /// The instance keys (cluster mode), the first tor's first, then the extra tors'.
    instance_keys: Vec<std::sync::Arc<IdentityKey>>,
}

/// Single-node mode: the master key goes into tor's HiddenServiceDir. Multi-node mode:
/// this node's tor runs an instance with its own key (made on first start).
fn prepare_keys(cfg: &Config, layout: &Layout, progress: &dyn Fn(&str)) -> Result<Keys> {
    let master = load_master(cfg)?;
    let master_address = cfg.master_address()?;
    progress(&format!("master address {master_address}"));
    let mut instance_keys = Vec::new();
    let instance = match &cfg.cluster {
        None => {
            let m = master.as_ref().ok_or_else(|| Error::Config {
                key: "service.master_key".into(),
                problem: "required in single-node mode".into(),
            })?;
            m.write_tor_dir(&layout.master_hs_dir())?;
            None
        }
        Some(_) => {
            let key = instance_key(&layout.instance_hs_dir(), &master_address)?;
            progress(&format!("cluster mode: instance {}", key.address()));
            let address = key.address();
            instance_keys.push(std::sync::Arc::new(key));
            Some(address)
        }
    };
    let count = cfg.tor.instance_count(
        cfg.target.is_some() && instance.is_some(),
        cfg.proxy.export_circuit_id,
    );
    let mut extra_instances = Vec::new();
    for k in 1..count {
        let sub = layout.extra_instance(k);
        create_private_dir(&sub.data_dir)?;
        let key = instance_key(&sub.instance_hs_dir(), &master_address)?;
        extra_instances.push(key.address());
        instance_keys.push(std::sync::Arc::new(key));
    }
    if count > 1 {
        progress(&format!(
            "turbo mode: {count} tors (tor.instances), extra instances {}",
            extra_instances
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Keys {
        master,
        master_address,
        instance,
        extra_instances,
        instance_keys,
    })
}

/// An instance key in `dir` (tor's HiddenServiceDir), made on first start, and the
/// `ob_config` naming the master address.
fn instance_key(dir: &std::path::Path, master_address: &OnionAddress) -> Result<IdentityKey> {
    let file = dir.join(rustbalance_hs::keys::SECRET_KEY_FILE);
    let key = if file.exists() {
        IdentityKey::load(&file)?
    } else {
        let k = IdentityKey::generate(&mut rand::rng());
        k.write_tor_dir(dir)?;
        k
    };
    write_atomic(
        &dir.join("ob_config"),
        format!("MasterOnionAddress {master_address}\n").as_bytes(),
        0o600,
    )?;
    Ok(key)
}

/// Turbo mode: the extra tors (one per [`Keys::extra_instances`]), each from its own
/// [`Layout::extra_instance`], behind the same proxy, supervised each on its own.
fn start_extra_tors(
    cfg: &Config,
    layout: &Layout,
    keys: &Keys,
    proxy: Option<&ProxyHandle>,
) -> Result<Vec<Arc<TorSupervisor>>> {
    let Some(p) = proxy else {
        return Ok(Vec::new());
    };
    let pid = std::process::id();
    (1..=keys.extra_instances.len())
        .map(|k| {
            let sub = layout.extra_instance(k);
            let torrc = crate::torrc::extra_instance(cfg, &sub, p.local_addr(), pid)?;
            write_atomic(&sub.torrc(), torrc.render().as_bytes(), 0o600)?;
            Ok(Arc::new(TorSupervisor::start(sub.tor_spec(
                cfg.tor.binary.clone(),
                Duration::from_secs(30),
            ))))
        })
        .collect()
}

/// Render the torrc (a master service, or an instance in cluster mode) and start the
/// tor watchdog.
fn start_tor(
    cfg: &Config,
    layout: &Layout,
    instance: bool,
    proxy: Option<&ProxyHandle>,
    socks: Option<SocketAddr>,
) -> Result<Arc<TorSupervisor>> {
    let pid = std::process::id();
    let mut torrc = match (proxy, instance) {
        (None, _) => crate::torrc::publisher_only(cfg, layout, pid)?,
        (Some(p), true) => crate::torrc::instance(cfg, layout, p.local_addr(), pid)?,
        (Some(p), false) => crate::torrc::single_node(cfg, layout, p.local_addr(), pid, false)?,
    };
    if let Some(s) = socks {
        torrc.push("SocksPort", s)?;
    }
    write_atomic(&layout.torrc(), torrc.render().as_bytes(), 0o600)?;
    Ok(Arc::new(TorSupervisor::start(layout.tor_spec(
        cfg.tor.binary.clone(),
        Duration::from_secs(30),
    ))))
}

/// Follow tor's bootstrap, then run until SIGTERM (`shutdown`), until this node learns
/// it was removed, or until one of its cluster tasks dies.
async fn wait_for_end(
    cfg: &Config,
    tor: &TorSupervisor,
    parts: &ClusterParts,
    shutdown: impl Future<Output = ()>,
    progress: &dyn Fn(&str),
) -> End {
    let boot = tor.wait_running(Duration::from_secs(cfg.tor.bootstrap_timeout_secs), {
        let mut last = (TorPhase::Stopped, 255u8);
        move |s: &TorStatus| {
            if (s.phase, s.bootstrap) != last {
                last = (s.phase, s.bootstrap);
                progress(&format!("tor {:?} {} %", s.phase, s.bootstrap));
            }
        }
    });
    let removed = {
        let jn = parts.join_node.as_ref().map(|(jn, _)| jn.clone());
        async move {
            match jn {
                Some(jn) => jn.removed().await,
                None => std::future::pending().await,
            }
        }
    };
    let died = parts.supervisor.first_death();
    tokio::pin!(shutdown);
    tokio::pin!(removed);
    tokio::pin!(died);
    tokio::select! {
        r = boot => if let Err(e) = r { tracing::warn!("{e}; still waiting for tor (if this lasts, `rustbalance doctor --config FILE` checks tor, the clock and the network)"); },
        _ = &mut shutdown => return End::Shutdown,
        _ = &mut removed => return End::Removed,
        d = &mut died => return End::TaskDied(d),
    }
    tokio::select! {
        _ = &mut shutdown => End::Shutdown,
        _ = &mut removed => End::Removed,
        d = &mut died => End::TaskDied(d),
    }
}

/// Everything a running node stops on the way out.
struct Running {
    join_svc: Option<Arc<JoinService>>,
    parts: ClusterParts,
    mesh_view: Option<tokio::task::AbortHandle>,
    admin: crate::admin::Admin,
    watcher: tokio::task::JoinHandle<()>,
    proxy: Option<ProxyHandle>,
    tor: Arc<TorSupervisor>,
    extra_tors: Vec<Arc<TorSupervisor>>,
}

impl Running {
    /// Leave the cluster, close the join endpoint and the mesh, stop the admin endpoint,
    /// drain the proxy, stop tor.
    async fn stop(self) {
        tracing::info!("shutting down: leaving the cluster, draining the proxy, stopping tor");
        if let Some(svc) = &self.join_svc {
            svc.clear();
        }
        if let Some((jn, task)) = self.parts.join_node {
            task.abort();
            drop(jn);
        }
        if let Some(c) = self.parts.cluster {
            c.stop().await;
        }
        if let Some(task) = self.mesh_view {
            task.abort();
        }
        if let Some(m) = self.parts.mesh {
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(mut m) = m.lock() {
                    let _ = m.close();
                }
            })
            .await;
        }
        self.admin.stop();
        self.watcher.abort();
        if let Some(proxy) = self.proxy {
            let report = proxy.shutdown(Duration::from_secs(5)).await;
            tracing::info!("proxy drained: {report:?}");
        }
        // All tors at once (each may take its grace before SIGKILL): the node's stop stays
        // within one tor's grace however many it runs.
        let extra: Vec<_> = self
            .extra_tors
            .into_iter()
            .map(|t| tokio::spawn(async move { t.stop().await }))
            .collect();
        self.tor.stop().await;
        for t in extra {
            let _ = t.await;
        }
        tracing::info!("tor stopped");
    }
}

/// The master key named by `service.master_key`, unsealed with the passphrase from
/// `service.master_key_passphrase_file` or the systemd credential `master-passphrase`.
pub fn load_master(cfg: &Config) -> Result<Option<IdentityKey>> {
    let Some(k) = &cfg.service.master_key else {
        return Ok(None);
    };
    let pass = Passphrase::when_needed(cfg.service.master_key_passphrase_file.as_deref());
    Ok(Some(crate::keystore::load_master(k, pass)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid file left by a crash whose pid now belongs to another live process (init,
    /// and this test's parent) does not block the start; a second claim while the first
    /// holds the directory is refused, naming the holder.
    #[test]
    fn a_stale_pid_file_does_not_block_the_start() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(&d.path().join("data"));
        create_private_dir(&layout.data_dir).unwrap();
        for other in [1, std::os::unix::process::parent_id()] {
            std::fs::write(layout.daemon_pid(), format!("{other}\n")).unwrap();
            let lock = claim_data_dir(&layout).expect("a stale pid file blocked the start");
            match claim_data_dir(&layout) {
                Err(Error::AlreadyRunning { pid, .. }) => {
                    assert_eq!(pid, Some(std::process::id()))
                }
                other => panic!("a second claim gave {other:?}"),
            }
            drop(lock);
            assert!(!layout.daemon_pid().exists());
        }
    }

    fn start_signing(layout: &Layout) -> Result<Option<rustbalance_cluster::GossipAuth>> {
        let master = IdentityKey::from_seed(&[1; 32]);
        let _lock = claim_data_dir(layout)?;
        crate::cluster::credentials::gossip_auth(&crate::cluster::credentials::Credentials {
            layout,
            name: "node1",
            mode: None,
            master: Some(&master),
            instance: IdentityKey::from_seed(&[2; 32]).address(),
            wireguard: None,
        })
    }

    /// The lab's nodes (a config written without `init`, so no identity before the first
    /// start) refused to start: "made before signed gossip existed", because the start had
    /// created tor's directory before the check. A node that never ran starts, and starts
    /// again, with signatures required; only one that ran before identities existed is
    /// asked to choose its upgrade step, and nothing is made for it.
    #[test]
    fn a_new_node_signs_and_only_an_old_one_must_choose() {
        let d = tempfile::tempdir().unwrap();
        let new = Layout::new(&d.path().join("new"));
        for start in 0..2 {
            let auth = start_signing(&new)
                .unwrap_or_else(|e| panic!("start {start} of a new node: {e}"))
                .expect("a new node signs");
            assert_eq!(
                auth.trust.mode(),
                rustbalance_cluster::SignatureMode::Require
            );
        }
        let old = Layout::new(&d.path().join("old"));
        create_private_dir(&old.data_dir).unwrap();
        create_private_dir(&old.tor_dir()).unwrap();
        match start_signing(&old) {
            Err(e @ Error::SignatureModeUnset { .. }) => {
                assert!(e.to_string().contains("made before signed gossip"), "{e}")
            }
            other => panic!("a node from before identities: {other:?}"),
        }
        assert!(!old.node_identity().exists());
    }
}
