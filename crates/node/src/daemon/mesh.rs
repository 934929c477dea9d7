//! The node's WireGuard mesh: brought up before gossip (gossip runs over it), and watched
//! for `/status` and the `rustbalance_mesh_*` metrics.

use crate::config::{ClusterSection, MeshSection};
use crate::err::{Error, Result};
use crate::layout::Layout;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bring the WireGuard mesh up; gossip then listens on this node's overlay
/// address at `cluster.listen`'s port and seeds with the peers' overlay
/// addresses. Public for the lab's hostile worker (it replaces a node's process and
/// speaks over the node's mesh with the node's own keys).
pub async fn bring_up_mesh(
    m: &MeshSection,
    c: &ClusterSection,
    layout: &Layout,
) -> Result<(rustbalance_mesh::Mesh, SocketAddr, Vec<SocketAddr>)> {
    use rustbalance_mesh::{Mesh, MeshConfig, MeshPeer, PrivateKey, PublicKey};
    let key = PrivateKey::load(&m.private_key_file).map_err(Error::Mesh)?;
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
        .map_err(Error::MeshTask)?
        .map_err(Error::Mesh)?;
    let port = c.listen.port();
    let listen = SocketAddr::new(mesh.overlay_addr().into(), port);
    let seeds = peers
        .iter()
        .map(|p| SocketAddr::new(mesh.overlay_addr_of(&p.public_key).into(), port))
        .collect();
    Ok((mesh, listen, seeds))
}

/// What `/status` shows of the WireGuard mesh.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct MeshView {
    interface: String,
    backend: String,
    overlay_addr: String,
    peers: Vec<rustbalance_mesh::PeerStatus>,
}

/// Read the mesh's peer table every 2 s (a netlink or control-socket round trip, so off
/// the async threads) for `/status` and the `rustbalance_mesh_*` metrics.
pub(super) fn watch_mesh(
    mesh: Arc<Mutex<rustbalance_mesh::Mesh>>,
    metrics: &Metrics,
    supervisor: &crate::supervise::Supervisor,
) -> (Arc<Mutex<MeshView>>, tokio::task::AbortHandle) {
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
    // Supervised: when the userspace device's process has died the task ends, and the node
    // with it (a node without its mesh cannot gossip; its supervisor restarts it).
    let task = supervisor.spawn("mesh-watch", async move {
        loop {
            let m = mesh.clone();
            let read = tokio::task::spawn_blocking(move || {
                let g = m.lock().ok()?;
                Some(g.peers_status().map(|peers| MeshView {
                    interface: g.interface().to_string(),
                    backend: format!("{:?}", g.backend_kind()).to_lowercase(),
                    overlay_addr: g.overlay_addr().to_string(),
                    peers,
                }))
            })
            .await;
            match read {
                Ok(Some(Ok(now))) => {
                    if let Ok(mut s) = v.lock() {
                        *s = now;
                    }
                }
                Ok(Some(Err(e @ rustbalance_mesh::Error::DeviceGone { .. }))) => {
                    tracing::error!("{e}");
                    return;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    (view, task)
}
