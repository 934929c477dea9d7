//! The cluster phase of a multi-node node: the WireGuard mesh (when configured), then
//! gossip, election and the cluster tasks, then the join endpoint (meshed nodes that know
//! their endpoint).

use super::{mesh, telemetry, Keys};
use crate::cluster::{ClusterNode, ClusterParams, Timers};
use crate::config::{ClusterSection, Config, MeshSection};
use crate::err::{Error, Result};
use crate::join::JoinService;
use crate::join_node::JoinNode;
use crate::layout::Layout;
use crate::metrics::Metrics;
use crate::supervise::Supervisor;
use rustbalance_mesh::Mesh;
use rustbalance_proxy::ProxyHandle;
use rustbalance_tor::TorSupervisor;
use std::sync::{Arc, Mutex};
use tokio::task::AbortHandle;

/// What the cluster phase started (all `None` on a single node).
#[derive(Default)]
pub(super) struct ClusterParts {
    /// Gossip, election and the cluster tasks.
    pub cluster: Option<ClusterNode>,
    /// The WireGuard mesh.
    pub mesh: Option<Arc<Mutex<Mesh>>>,
    /// The join endpoint's node side and its sync task.
    pub join_node: Option<(Arc<JoinNode>, AbortHandle)>,
    /// The cluster's tasks (gossip, intro, publish, join sync): the first that dies
    /// stops the node.
    pub supervisor: Supervisor,
}

/// Start the cluster parts `cfg` asks for.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start(
    cfg: &Config,
    layout: &Layout,
    keys: &Keys,
    tor: &Arc<TorSupervisor>,
    extra_tors: &[Arc<TorSupervisor>],
    proxy: Option<&ProxyHandle>,
    join_svc: Option<&Arc<JoinService>>,
    metrics: &Metrics,
    progress: &dyn Fn(&str),
) -> Result<ClusterParts> {
    let (Some(c), Some(instance)) = (&cfg.cluster, keys.instance) else {
        return Ok(ClusterParts::default());
    };
    let mut c = c.clone();
    let mut parts = ClusterParts::default();
    if let Some(m) = &cfg.mesh {
        parts.mesh = Some(start_mesh(m, &mut c, layout, progress).await?);
    }
    let wireguard = match &parts.mesh {
        Some(m) => Some(
            *m.lock()
                .map_err(|_| Error::MeshPoisoned)?
                .public_key()
                .as_bytes(),
        ),
        None => None,
    };
    let auth =
        crate::cluster::credentials::gossip_auth(&crate::cluster::credentials::Credentials {
            layout,
            name: &cfg.node.name,
            mode: c.gossip_signatures,
            master: keys.master.as_ref(),
            instance,
            wireguard,
        })?;
    let identity = auth.as_ref().map(|a| a.identity.public());
    let (fleet, solo) = master_service_uses(
        cfg,
        &c,
        proxy.map(|p| p.local_addr()),
        keys.master.is_some(),
        progress,
    );
    let node = ClusterNode::start(ClusterParams {
        name: cfg.node.name.clone(),
        cfg: c.clone(),
        tor: tor.clone(),
        master: keys.master.as_ref().map(|m| m.duplicate()),
        instance,
        extra_instances: extra_tors
            .iter()
            .cloned()
            .zip(keys.extra_instances.iter().copied())
            .collect(),
        instance_keys: keys.instance_keys.clone(),
        virtual_port: cfg.service.virtual_port,
        // A publisher-only node has no target: its health stays unknown, and it
        // advertises no intro points anyway.
        target_health: proxy.map(|p| p.health_handle()).unwrap_or_default(),
        testing_network: cfg.tor.testing_network,
        timers: Timers::from_config(&c, cfg.tor.testing_network),
        auth,
        supervisor: parts.supervisor.clone(),
        auth_clients_dir: cfg.service.authorized_clients_dir.clone(),
        solo,
        fleet,
        backends: crate::config::named_backends(&cfg.backends),
        backend_keys: match &c.backends_client_auth_dir {
            Some(dir) if !cfg.backends.is_empty() => crate::backend_auth::read_backend_keys(
                dir,
                &crate::config::named_backends(&cfg.backends),
            )?,
            _ => Default::default(),
        },
        publisher_only: cfg.publisher_only(),
    })
    .await?;
    progress(&format!("gossip on {} ({} seeds)", c.listen, c.seeds.len()));
    if let (Some(svc), Some(mesh), Some(m)) = (join_svc, &parts.mesh, &cfg.mesh) {
        let jn = start_join(cfg, keys, &c, m, mesh, layout, svc, &node, identity).await?;
        progress(&format!(
            "join endpoint open on the master address (join generation {})",
            jn.generation()
        ));
        let task = parts
            .supervisor
            .spawn("join-sync", jn.clone().sync_forever());
        telemetry::register_join_metrics(metrics, svc);
        parts.join_node = Some((jn, task));
    }
    telemetry::register_cluster_metrics(metrics, node.status_handle());
    parts.cluster = Some(node);
    Ok(parts)
}

/// Bring the mesh up; gossip then runs over it (`c` gets the overlay addresses).
async fn start_mesh(
    m: &MeshSection,
    c: &mut ClusterSection,
    layout: &Layout,
    progress: &dyn Fn(&str),
) -> Result<Arc<Mutex<Mesh>>> {
    let (up, listen, seeds) = mesh::bring_up_mesh(m, c, layout).await?;
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
    Ok(Arc::new(Mutex::new(up)))
}

/// Open the join endpoint's node side.
#[allow(clippy::too_many_arguments)]
async fn start_join(
    cfg: &Config,
    keys: &Keys,
    c: &ClusterSection,
    m: &MeshSection,
    mesh: &Arc<Mutex<Mesh>>,
    layout: &Layout,
    svc: &Arc<JoinService>,
    node: &ClusterNode,
    identity: Option<rustbalance_cluster::NodePublicKey>,
) -> Result<Arc<JoinNode>> {
    let (own_key, endpoint) = {
        let g = mesh.lock().map_err(|_| Error::MeshPoisoned)?;
        (g.public_key(), m.endpoint.unwrap_or(c.listen))
    };
    let secret = crate::keystore::read_cluster_secret(&c.secret_file)?;
    JoinNode::start(crate::join::JoinNodeParams {
        name: cfg.node.name.clone(),
        master: keys.master_address,
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
        // Eligible nodes certify joiners, sign removals and mint tokens.
        authority: keys.master.as_ref().map(|m| {
            (
                Arc::new(crate::keystore::identity::authority_of(m)),
                m.derive_secret(crate::join::token::JOIN_SECRET_INFO),
            )
        }),
        identity,
    })
    .await
}

/// The `ADD_ONION` arguments of the master service on this node's tor, for fleet PoW and
/// for the single-node switch (`None`: not used), saying on the start-up output why not.
fn master_service_uses(
    cfg: &Config,
    c: &ClusterSection,
    proxy: Option<std::net::SocketAddr>,
    holds_master: bool,
    progress: &dyn Fn(&str),
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    // A publisher-only node (no proxy) serves nothing itself: no single-node switch and
    // no fleet PoW on its tor.
    let master_args = proxy.map(|p| crate::cluster::solo::master_service_args(cfg, p));
    let fleet = match &master_args {
        Some(Ok(args)) if c.fleet_pow && holds_master => {
            progress(
                "fleet PoW on: this node's tor hosts the master key too (single-node switch off)",
            );
            Some(args.clone())
        }
        _ if c.fleet_pow && holds_master => {
            progress("fleet PoW: a publisher-only node's tor hosts no service; it publishes the others' fleet descriptors");
            None
        }
        _ => None,
    };
    let solo = match master_args {
        _ if c.fleet_pow => None,
        None => None,
        Some(Ok(args)) if holds_master => Some(args),
        Some(Ok(_)) => None,
        Some(Err(why)) => {
            progress(&format!(
                "single-node fallback off: {why}; a lone node publishes merged descriptors without PoW"
            ));
            None
        }
    };
    (fleet, solo)
}
