//! `rustbalance run`: one node in single-node mode.
//!
//! Start order: data directory and pid file → master key into tor's
//! HiddenServiceDir → proxy listener (its port goes into the torrc) →
//! supervised tor → admin endpoint → upload watcher. Shutdown (SIGTERM or
//! SIGINT) runs it backwards: stop accepting, drain the proxy, stop tor.

use crate::admin::{Admin, StatusFn};
use crate::cluster_node::{ClusterNode, ClusterParams};
use crate::config::{Config, TargetUrl};
use crate::err::{Error, Result};
use crate::join::JoinService;
use crate::join_node::JoinNode;
use crate::layout::Layout;
use crate::metrics::Metrics;
use crate::supervisor::{TorPhase, TorSpec, TorStatus, TorSupervisor};
use rustbalance_hs::atomic::{create_private_dir, write_atomic};
use rustbalance_hs::IdentityKey;
use rustbalance_proxy::{Mode, Proxy, ProxyConfig, ProxyHandle, ProxyVersion, Target};
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Last descriptor upload seen on tor's control port.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadStatus {
    /// `HS_DESC UPLOADED` events seen.
    pub uploaded: u64,
    /// `HS_DESC FAILED` events seen (uploads).
    pub failed: u64,
    /// When the last successful upload was confirmed (RFC 3339).
    pub last_uploaded: Option<String>,
}

/// Pick a free loopback port (for tor's SocksPort when the target is an onion).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Other(format!("cannot find a free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| Error::Other(e.to_string()))?
        .port())
}

fn proxy_config(cfg: &Config, socks: Option<SocketAddr>) -> Result<ProxyConfig> {
    let target = match cfg.target_url()? {
        TargetUrl::Tcp { host, port } => Target::Tcp { host, port },
        TargetUrl::Onion { address, port } => Target::Onion {
            address: address.to_string(),
            port,
            socks: socks.ok_or_else(|| Error::Other("onion target without a SOCKS port".into()))?,
        },
    };
    let mut p = ProxyConfig::new(cfg.proxy.listen, target);
    p.mode = if cfg.target.mode == "http" {
        Mode::Http
    } else {
        Mode::Tcp
    };
    p.connect_timeout = Duration::from_secs(cfg.proxy.connect_timeout_secs);
    p.idle_timeout = Duration::from_secs(cfg.proxy.idle_timeout_secs);
    p.max_connections = cfg.proxy.max_connections;
    p.expect_proxy_header = cfg.proxy.export_circuit_id;
    p.send_proxy = match cfg.proxy.proxy_protocol.as_str() {
        "v1" => Some(ProxyVersion::V1),
        "v2" => Some(ProxyVersion::V2),
        _ => None,
    };
    Ok(p)
}

/// Run a node until `shutdown` resolves. `progress` receives one line per
/// start-up step.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
    progress: impl Fn(&str),
) -> Result<()> {
    let layout = Layout::new(&cfg.node.data_dir);
    create_private_dir(&layout.data_dir)?;
    create_private_dir(&layout.tor_dir())?;
    crate::join_node::refuse_if_removed(&layout.data_dir)?;
    let pid_file = layout.daemon_pid();
    if let Ok(old) = std::fs::read_to_string(&pid_file) {
        if let Some(id) = old
            .trim()
            .parse()
            .ok()
            .and_then(rustbalance_tor::ProcessId::of_pid)
        {
            if id.pid != std::process::id() {
                return Err(Error::Other(format!(
                    "another rustbalance (pid {}) runs on {}; stop it first",
                    id.pid,
                    layout.data_dir.display()
                )));
            }
        }
    }
    write_atomic(
        &pid_file,
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    )?;

    let master = load_master(&cfg)?;
    let master_address = cfg.master_address()?;
    progress(&format!("master address {master_address}"));
    // Multi-node mode: this node's tor runs an instance with its own key.
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
            let dir = layout.instance_hs_dir();
            let file = dir.join(rustbalance_hs::keys::SECRET_KEY_FILE);
            let key = if file.exists() {
                IdentityKey::load(&file)?
            } else {
                let k = IdentityKey::generate(&mut rand::rng());
                k.write_tor_dir(&dir)?;
                k
            };
            write_atomic(
                &dir.join("ob_config"),
                format!("MasterOnionAddress {master_address}\n").as_bytes(),
                0o600,
            )?;
            progress(&format!("cluster mode: instance {}", key.address()));
            Some(key.address())
        }
    };

    let onion_target = matches!(cfg.target_url()?, TargetUrl::Onion { .. });
    let socks = if onion_target {
        Some(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
    } else {
        None
    };
    // The join endpoint rides on the master port of meshed cluster nodes that know their
    // own WireGuard endpoint (so that new nodes can be told how to reach them).
    let join_svc = match (&cfg.cluster, &cfg.mesh) {
        (Some(_), Some(m)) if m.endpoint.is_some() => Some(JoinService::new()),
        _ => None,
    };
    let mut pcfg = proxy_config(&cfg, socks)?;
    if let Some(j) = &join_svc {
        pcfg.intercept = Some(j.clone());
    }
    let proxy = Proxy::start(pcfg)
        .await
        .map_err(|e| Error::Other(format!("proxy: {e}")))?;
    progress(&format!(
        "proxy listening on {} -> {}",
        proxy.local_addr(),
        cfg.target.url
    ));

    let mut torrc = match instance {
        None => {
            crate::torrc::single_node(&cfg, &layout, proxy.local_addr(), std::process::id(), false)?
        }
        Some(_) => crate::torrc::instance(&cfg, &layout, proxy.local_addr(), std::process::id())?,
    };
    if let Some(s) = socks {
        torrc.push("SocksPort", s)?;
    }
    write_atomic(&layout.torrc(), torrc.render().as_bytes(), 0o600)?;
    let tor = Arc::new(TorSupervisor::start(TorSpec {
        binary: cfg.tor.binary.clone(),
        torrc: layout.torrc(),
        control_port_file: layout.control_port_file(),
        log_file: layout.tor_log(),
        output_file: layout.tor_output(),
        pid_file: layout.tor_pid(),
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(30),
    }));

    let uploads = Arc::new(Mutex::new(UploadStatus::default()));
    let metrics = Metrics::new();
    register_metrics(&metrics, &tor, &proxy, &uploads);
    let mut mesh: Option<Arc<Mutex<rustbalance_mesh::Mesh>>> = None;
    let mut join_node = None;
    let cluster = match (&cfg.cluster, instance) {
        (Some(c), Some(inst)) => {
            let mut c = c.clone();
            if let Some(m) = &cfg.mesh {
                let (up, listen, seeds) = bring_up_mesh(m, &c, &layout).await?;
                progress(&format!(
                    "WireGuard mesh {} up ({:?} backend), overlay {}, {} peers",
                    m.interface,
                    up.backend_kind(),
                    up.overlay_addr(),
                    up.peers().count()
                ));
                c.listen = listen;
                c.advertise = None;
                c.seeds = seeds;
                mesh = Some(Arc::new(Mutex::new(up)));
            }
            let node = ClusterNode::start(ClusterParams {
                name: cfg.node.name.clone(),
                cfg: c.clone(),
                tor: tor.clone(),
                master: master.as_ref().map(|m| m.duplicate()),
                instance: inst,
                target_health: proxy.health_handle(),
                testing_network: cfg.tor.testing_network,
            })
            .await?;
            progress(&format!("gossip on {} ({} seeds)", c.listen, c.seeds.len()));
            if let (Some(svc), Some(mesh), Some(m)) = (&join_svc, &mesh, &cfg.mesh) {
                let (own_key, endpoint) = {
                    let g = mesh
                        .lock()
                        .map_err(|_| Error::Other("mesh lock poisoned".into()))?;
                    (g.public_key(), m.endpoint.unwrap_or(c.listen))
                };
                let secret =
                    zeroize::Zeroizing::new(std::fs::read(&c.secret_file).map_err(|source| {
                        Error::Io {
                            action: "read cluster secret",
                            path: c.secret_file.clone(),
                            source,
                        }
                    })?);
                let jn = JoinNode::start(crate::join::JoinNodeParams {
                    name: cfg.node.name.clone(),
                    master: master_address,
                    port: cfg.service.virtual_port,
                    secret,
                    cluster_id: c.cluster_id.clone(),
                    gossip_port: c.listen.port(),
                    own_key,
                    own_endpoint: endpoint,
                    mesh: mesh.clone(),
                    layout: layout.clone(),
                    service: svc.clone(),
                    membership: node.membership(),
                    timers: crate::join::JoinTimers::default(),
                })
                .await?;
                progress(&format!(
                    "join endpoint open on the master address (join generation {})",
                    jn.generation()
                ));
                let task = tokio::spawn(jn.clone().sync_forever());
                register_join_metrics(&metrics, svc);
                join_node = Some((jn, task));
            }
            let st = node.status_handle();
            metrics.register(move |w| {
                let s = st.lock().map(|s| s.clone()).unwrap_or_default();
                w.gauge(
                    "rustbalance_cluster_publisher",
                    "1 while this node publishes.",
                    f64::from(u8::from(s.role == "publisher")),
                );
                w.gauge(
                    "rustbalance_cluster_members_live",
                    "Live cluster members.",
                    s.members.iter().filter(|m| m.live).count() as f64,
                );
                w.counter(
                    "rustbalance_cluster_publishes_total",
                    "Master descriptor publications by this node.",
                    s.publishes,
                );
                w.counter(
                    "rustbalance_cluster_publish_failures_total",
                    "Failed publications.",
                    s.publish_failures,
                );
                w.counter(
                    "rustbalance_gossip_dropped_total",
                    "Gossip datagrams dropped (bad MAC, replay, malformed, stale).",
                    s.gossip_dropped,
                );
                let g = &s.gossip;
                for (name, help, v) in [
                    (
                        "rustbalance_gossip_datagrams_sent_total",
                        "Gossip datagrams sent.",
                        g.datagrams_sent,
                    ),
                    (
                        "rustbalance_gossip_bytes_sent_total",
                        "Gossip bytes sent (whole datagrams).",
                        g.bytes_sent,
                    ),
                    (
                        "rustbalance_gossip_datagrams_received_total",
                        "Authenticated gossip datagrams accepted.",
                        g.datagrams_accepted,
                    ),
                    (
                        "rustbalance_gossip_bytes_received_total",
                        "Gossip bytes accepted (whole datagrams).",
                        g.bytes_received,
                    ),
                    (
                        "rustbalance_gossip_send_errors_total",
                        "Gossip datagrams the socket refused to send.",
                        g.send_errors,
                    ),
                ] {
                    w.counter(name, help, v);
                }
            });
            Some(node)
        }
        _ => None,
    };
    let cluster_status = cluster.as_ref().map(|c| c.status_handle());
    let mesh_view = mesh.as_ref().map(|m| watch_mesh(m.clone(), &metrics));
    let status_fn: StatusFn = {
        let (tor, stats, uploads, addr) =
            (tor.clone(), proxy.stats(), uploads.clone(), master_address);
        let (name, target, listen) = (
            cfg.node.name.clone(),
            cfg.target.url.clone(),
            proxy.local_addr(),
        );
        let health = proxy.health_handle();
        let cluster_status = cluster_status.clone();
        let join = join_node.as_ref().map(|(jn, _)| jn.clone());
        let mesh_status = mesh_view.as_ref().map(|(v, _)| v.clone());
        Arc::new(move || {
            let join = join.as_ref().map(|jn| {
                let c = &jn.service.counters;
                serde_json::json!({
                    "generation": jn.generation(),
                    "open": jn.service.is_open(),
                    "removed": jn.removals(),
                    "accepted": c.accepted.load(std::sync::atomic::Ordering::Relaxed),
                    "rejected": c.rejections().iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
                })
            });
            serde_json::json!({
                "node": name,
                "mode": if cluster_status.is_some() { "cluster" } else { "single" },
                "cluster": cluster_status.as_ref().map(|c| c.lock().map(|s| s.clone()).unwrap_or_default()),
                "join": join,
                "mesh": mesh_status.as_ref().map(|m| m.lock().map(|m| m.clone()).unwrap_or_default()),
                "master_address": addr.to_string(),
                "tor": tor.status(),
                "proxy": { "listen": listen, "stats": stats.snapshot() },
                "target": { "url": target, "health": health.get() },
                "uploads": uploads.lock().map(|u| u.clone()).unwrap_or_default(),
            })
        })
    };
    let mut control = crate::admin::new_cookie(&layout.admin_cookie())?;
    if let Some((jn, _)) = &join_node {
        let jn = jn.clone();
        control.token = Some(Arc::new(move |rotate| {
            let jn = jn.clone();
            Box::pin(async move {
                let t = if rotate {
                    jn.rotate().await
                } else {
                    jn.token().encode()
                };
                Some(t.to_string())
            })
        }));
        let jn = join_node.as_ref().map(|(jn, _)| jn.clone());
        control.remove = jn.map(|jn| {
            Arc::new(move |who: String| {
                let jn = jn.clone();
                Box::pin(async move {
                    let r = jn.remove(&who).await.map_err(|e| e.to_string())?;
                    Ok(format!(
                        "removed {} (WireGuard key {}); the join token is rotated in {} s, once \
                         every member has cut it off\n",
                        r.name,
                        r.public_key,
                        jn.timers().rotate_after_removal.as_secs()
                    ))
                })
                    as std::pin::Pin<
                        Box<
                            dyn std::future::Future<Output = std::result::Result<String, String>>
                                + Send,
                        >,
                    >
            }) as crate::admin::RemoveFn
        });
    }
    let admin = Admin::start(cfg.admin.listen, metrics.clone(), status_fn, control)
        .await
        .map_err(|e| Error::Other(format!("admin endpoint {}: {e}", cfg.admin.listen)))?;
    progress(&format!(
        "admin endpoint http://{}/status and /metrics",
        admin.addr()
    ));

    let watcher = tokio::spawn(watch_uploads(
        tor.clone(),
        master_address.without_suffix(),
        uploads.clone(),
    ));

    let boot = tor.wait_running(Duration::from_secs(cfg.tor.bootstrap_timeout_secs), {
        let mut last = (TorPhase::Stopped, 255u8);
        move |s: &TorStatus| {
            if (s.phase, s.bootstrap) != last {
                last = (s.phase, s.bootstrap);
                progress(&format!("tor {:?} {} %", s.phase, s.bootstrap));
            }
        }
    });
    // Runs until SIGTERM (`shutdown`) or until this node learns it was removed.
    let removed = {
        let jn = join_node.as_ref().map(|(jn, _)| jn.clone());
        async move {
            match jn {
                Some(jn) => jn.removed().await,
                None => std::future::pending().await,
            }
        }
    };
    tokio::pin!(shutdown);
    tokio::pin!(removed);
    let mut removal = None;
    let mut stopping = false;
    tokio::select! {
        r = boot => if let Err(e) = r { tracing::warn!("{e}; still waiting for tor"); },
        _ = &mut shutdown => stopping = true,
        r = &mut removed => removal = Some(r),
    }
    if !stopping && removal.is_none() {
        tokio::select! {
            _ = &mut shutdown => {}
            r = &mut removed => removal = Some(r),
        }
    }

    tracing::info!("shutting down: leaving the cluster, draining the proxy, stopping tor");
    if let Some(svc) = &join_svc {
        svc.clear();
    }
    if let Some((jn, task)) = join_node {
        task.abort();
        let _ = task.await;
        drop(jn);
    }
    if let Some(c) = cluster {
        c.stop().await;
    }
    if let Some((_, task)) = mesh_view {
        task.abort();
    }
    if let Some(m) = mesh {
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut m) = m.lock() {
                let _ = m.close();
            }
        })
        .await;
    }
    admin.stop();
    watcher.abort();
    let report = proxy.shutdown(Duration::from_secs(5)).await;
    tracing::info!("proxy drained: {report:?}");
    tor.stop().await;
    tracing::info!("tor stopped");
    let _ = std::fs::remove_file(&pid_file);
    if removal.is_some() {
        // The marker written on removal says why and what to do.
        crate::join_node::refuse_if_removed(&layout.data_dir)?;
        return Err(Error::Removed(
            "this node was removed from the cluster".into(),
        ));
    }
    Ok(())
}

/// What `/status` shows of the WireGuard mesh.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct MeshView {
    interface: String,
    backend: String,
    overlay_addr: String,
    peers: Vec<rustbalance_mesh::PeerStatus>,
}

/// Read the mesh's peer table every 2 s (a netlink or control-socket round trip, so off
/// the async threads) for `/status` and the `rustbalance_mesh_*` metrics.
fn watch_mesh(
    mesh: Arc<Mutex<rustbalance_mesh::Mesh>>,
    metrics: &Metrics,
) -> (Arc<Mutex<MeshView>>, tokio::task::JoinHandle<()>) {
    let view = Arc::new(Mutex::new(MeshView::default()));
    let v = view.clone();
    metrics.register(move |w| {
        let m = v.lock().map(|m| m.clone()).unwrap_or_default();
        let recent = |p: &rustbalance_mesh::PeerStatus| {
            p.last_handshake
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|d| d < Duration::from_secs(180))
        };
        w.gauge(
            "rustbalance_mesh_peers",
            "WireGuard peers configured.",
            m.peers.len() as f64,
        );
        w.gauge(
            "rustbalance_mesh_peers_connected",
            "WireGuard peers with a handshake in the last 180 s.",
            m.peers.iter().filter(|p| recent(p)).count() as f64,
        );
        w.counter(
            "rustbalance_mesh_rx_bytes_total",
            "Bytes received from all WireGuard peers.",
            m.peers.iter().map(|p| p.rx_bytes).sum(),
        );
        w.counter(
            "rustbalance_mesh_tx_bytes_total",
            "Bytes sent to all WireGuard peers.",
            m.peers.iter().map(|p| p.tx_bytes).sum(),
        );
    });
    let v = view.clone();
    let task = tokio::spawn(async move {
        loop {
            let m = mesh.clone();
            let read = tokio::task::spawn_blocking(move || {
                let g = m.lock().ok()?;
                let peers = g.peers_status().ok()?;
                Some(MeshView {
                    interface: g.interface().to_string(),
                    backend: format!("{:?}", g.backend_kind()).to_lowercase(),
                    overlay_addr: g.overlay_addr().to_string(),
                    peers,
                })
            })
            .await;
            if let Ok(Some(now)) = read {
                if let Ok(mut s) = v.lock() {
                    *s = now;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    (view, task)
}

fn register_metrics(
    m: &Metrics,
    tor: &Arc<TorSupervisor>,
    proxy: &ProxyHandle,
    uploads: &Arc<Mutex<UploadStatus>>,
) {
    let t = tor.clone();
    m.register(move |w| {
        let s = t.status();
        w.gauge(
            "rustbalance_tor_up",
            "1 when tor is bootstrapped and running.",
            f64::from(u8::from(s.phase == TorPhase::Running)),
        );
        w.gauge(
            "rustbalance_tor_bootstrap_percent",
            "tor's bootstrap progress.",
            f64::from(s.bootstrap),
        );
        w.counter(
            "rustbalance_tor_restarts_total",
            "Times the watchdog restarted tor.",
            s.restarts,
        );
    });
    let stats = proxy.stats();
    m.register(move |w| {
        let s = stats.snapshot();
        w.counter(
            "rustbalance_proxy_connections_total",
            "Connections accepted from tor.",
            s.accepted,
        );
        w.gauge(
            "rustbalance_proxy_connections_active",
            "Connections open now.",
            s.active as f64,
        );
        w.counter(
            "rustbalance_proxy_connections_rejected_total",
            "Connections refused by the limit.",
            s.rejected,
        );
        w.counter(
            "rustbalance_proxy_bytes_to_target_total",
            "Bytes sent to the target.",
            s.bytes_to_target,
        );
        w.counter(
            "rustbalance_proxy_bytes_to_client_total",
            "Bytes sent back to clients.",
            s.bytes_to_client,
        );
        w.counter(
            "rustbalance_proxy_target_errors_total",
            "Failed connections to the target.",
            s.connect_errors,
        );
        w.counter(
            "rustbalance_proxy_timeouts_total",
            "Connections closed by a timeout.",
            s.timeouts,
        );
    });
    let u = uploads.clone();
    m.register(move |w| {
        let s = u.lock().map(|s| s.clone()).unwrap_or_default();
        w.counter(
            "rustbalance_descriptor_uploads_total",
            "Descriptor uploads confirmed by HSDirs.",
            s.uploaded,
        );
        w.counter(
            "rustbalance_descriptor_upload_failures_total",
            "Descriptor uploads that failed.",
            s.failed,
        );
    });
}

/// Follow `HS_DESC` events of the master address on tor's control port;
/// reconnects after tor restarts.
async fn watch_uploads(tor: Arc<TorSupervisor>, addr: String, uploads: Arc<Mutex<UploadStatus>>) {
    loop {
        let ctl = match tor.control().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(mut events) = ctl.take_events() else {
            return;
        };
        if ctl.setevents(&["HS_DESC"]).await.is_err() {
            continue;
        }
        while let Some(ev) = events.recv().await {
            let f: Vec<&str> = ev.text().split(' ').collect();
            if f.len() < 3 || f[0] != "HS_DESC" || f[2] != addr {
                continue;
            }
            if let Ok(mut u) = uploads.lock() {
                match f[1] {
                    "UPLOADED" => {
                        u.uploaded += 1;
                        u.last_uploaded =
                            Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
                    }
                    "FAILED" => u.failed += 1,
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Bring the WireGuard mesh up; gossip then listens on this node's overlay
/// address at `cluster.listen`'s port and seeds with the peers' overlay
/// addresses.
async fn bring_up_mesh(
    m: &crate::config::MeshSection,
    c: &crate::config::ClusterSection,
    layout: &Layout,
) -> Result<(rustbalance_mesh::Mesh, SocketAddr, Vec<SocketAddr>)> {
    use rustbalance_mesh::{Mesh, MeshConfig, MeshPeer, PrivateKey, PublicKey};
    let mesh_err = |e: rustbalance_mesh::Error| Error::Other(format!("mesh: {e}"));
    let key = PrivateKey::load(&m.private_key_file).map_err(mesh_err)?;
    let mut peers = Vec::new();
    for p in &m.peers {
        let public_key: PublicKey = p.public_key.parse().map_err(|_| Error::Config {
            key: "mesh.peers".into(),
            problem: format!("{:?} is not a WireGuard public key", p.public_key),
        })?;
        peers.push(MeshPeer {
            public_key,
            endpoint: p.endpoint,
        });
    }
    // Peers learned at run time (joins, gossip), kept across restarts; never a removed node.
    let own = key.public_key();
    let removed: Vec<String> =
        crate::join_node::load_removals(&layout.data_dir.join("mesh-removed.json"))?
            .into_iter()
            .map(|r| r.public_key)
            .collect();
    peers.retain(|p| !removed.contains(&p.public_key.to_string()));
    for p in crate::join_node::load_saved_peers(&layout.data_dir.join("mesh-peers.json"))? {
        if let Ok(public_key) = p.public_key.parse::<PublicKey>() {
            if public_key != own
                && !removed.contains(&p.public_key)
                && !peers.iter().any(|q| q.public_key == public_key)
            {
                peers.push(MeshPeer {
                    public_key,
                    endpoint: p.endpoint,
                });
            }
        }
    }
    let cfg = MeshConfig::new(
        &m.interface,
        &c.cluster_id,
        key,
        m.listen_port,
        peers.clone(),
    );
    let mesh = tokio::task::spawn_blocking(move || Mesh::up(cfg))
        .await
        .map_err(|e| Error::Other(format!("mesh task: {e}")))?
        .map_err(mesh_err)?;
    let port = c.listen.port();
    let listen = SocketAddr::new(mesh.overlay_addr().into(), port);
    let seeds = peers
        .iter()
        .map(|p| SocketAddr::new(mesh.overlay_addr_of(&p.public_key).into(), port))
        .collect();
    Ok((mesh, listen, seeds))
}

fn register_join_metrics(m: &Metrics, svc: &Arc<JoinService>) {
    let c = svc.counters.clone();
    let svc = svc.clone();
    m.register(move |w| {
        w.gauge(
            "rustbalance_join_open",
            "1 while this node takes a join token; 0 while a node removal waits for the token rotation, or when stopping.",
            if svc.is_open() { 1.0 } else { 0.0 },
        );
        w.counter(
            "rustbalance_join_accepted_total",
            "Nodes admitted through the join endpoint.",
            c.accepted.load(std::sync::atomic::Ordering::Relaxed),
        );
        for (reason, n) in c.rejections() {
            w.counter(
                &format!("rustbalance_join_rejected_{reason}_total"),
                "Join requests refused, by reason.",
                n,
            );
        }
    });
}

/// The master key named by `service.master_key`, unsealed with the passphrase from
/// `service.master_key_passphrase_file` or the systemd credential `master-passphrase`.
pub fn load_master(cfg: &Config) -> Result<Option<IdentityKey>> {
    use rustbalance_hs::sealed;
    let Some(k) = &cfg.service.master_key else {
        return Ok(None);
    };
    let key = IdentityKey::load_with(k, || match &cfg.service.master_key_passphrase_file {
        Some(p) => sealed::passphrase_from_file(p),
        None => sealed::passphrase_from_credentials(sealed::DEFAULT_CREDENTIAL)?
            .ok_or_else(|| rustbalance_hs::Error::PassphraseNeeded { path: k.clone() }),
    })?;
    Ok(Some(key))
}
