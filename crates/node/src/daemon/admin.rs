//! The admin phase: the `/status` document of a running node, and the admin endpoint with
//! its cookie-protected join-token and member-removal commands.

use super::cluster::ClusterParts;
use super::mesh::MeshView;
use super::uploads::UploadStatus;
use super::Keys;
use crate::admin::{Admin, Control, RemoveFn, StatusFn};
use crate::config::Config;
use crate::err::{Error, Result};
use crate::layout::Layout;
use crate::metrics::Metrics;
use rustbalance_proxy::ProxyHandle;
use rustbalance_tor::TorSupervisor;
use std::sync::{Arc, Mutex};

/// The `/status` document.
pub(super) fn status_fn(
    cfg: &Config,
    keys: &Keys,
    (tor, extra_tors): (&Arc<TorSupervisor>, &[Arc<TorSupervisor>]),
    proxy: Option<&ProxyHandle>,
    uploads: &Arc<Mutex<UploadStatus>>,
    parts: &ClusterParts,
    mesh_view: &Option<(Arc<Mutex<MeshView>>, tokio::task::AbortHandle)>,
) -> StatusFn {
    let (tor, stats, uploads, addr) = (
        tor.clone(),
        proxy.map(|p| p.stats()),
        uploads.clone(),
        keys.master_address,
    );
    let (name, target, listen) = (
        cfg.node.name.clone(),
        cfg.target.as_ref().map(|t| t.url.clone()),
        proxy.map(|p| p.local_addr()),
    );
    let health = proxy.map(|p| p.health_handle());
    let extra: Vec<(String, Arc<TorSupervisor>)> = keys
        .extra_instances
        .iter()
        .map(|a| a.to_string())
        .zip(extra_tors.iter().cloned())
        .collect();
    let cluster_status = parts.cluster.as_ref().map(|c| c.status_handle());
    let join = parts.join_node.as_ref().map(|(jn, _)| jn.clone());
    let mesh_status = mesh_view.as_ref().map(|(v, _)| v.clone());
    Arc::new(move || {
        let join = join.as_ref().map(|jn| {
            let c = &jn.service.counters;
            serde_json::json!({
                "generation": jn.generation(),
                "key": jn.key_fingerprint(),
                "spent": jn.service.spent().len(),
                "open": jn.service.is_open(),
                "removed": jn.removals(),
                "accepted": c.accepted.load(std::sync::atomic::Ordering::Relaxed),
                "rejected": c.rejections().iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            })
        });
        serde_json::json!({
            "node": name,
            "mode": match (&cluster_status, &target) {
                (Some(_), None) => "publisher-only",
                (Some(_), Some(_)) => "cluster",
                _ => "single",
            },
            "cluster": cluster_status.as_ref().map(|c| c.lock().map(|s| s.clone()).unwrap_or_default()),
            "join": join,
            "mesh": mesh_status.as_ref().map(|m| m.lock().map(|m| m.clone()).unwrap_or_default()),
            "master_address": addr.to_string(),
            "tor": tor.status(),
            "extra_tors": extra.iter().map(|(a, t)| serde_json::json!({ "instance": a, "tor": t.status() })).collect::<Vec<_>>(),
            "proxy": stats.as_ref().map(|s| serde_json::json!({ "listen": listen, "stats": s.snapshot() })),
            "target": health.as_ref().map(|h| serde_json::json!({ "url": target, "health": h.get() })),
            "uploads": uploads.lock().map(|u| u.clone()).unwrap_or_default(),
        })
    })
}

/// A new admin cookie, with the join-token and removal commands of a join endpoint.
fn control(layout: &Layout, parts: &ClusterParts) -> Result<Control> {
    let mut control = crate::admin::new_cookie(&layout.admin_cookie())?;
    let Some((jn, _)) = &parts.join_node else {
        return Ok(control);
    };
    let token_jn = jn.clone();
    control.token = Some(Arc::new(move |act| {
        let jn = token_jn.clone();
        Box::pin(async move { jn.token_act(act).await })
    }));
    let jn = jn.clone();
    let remove: RemoveFn = Arc::new(move |who: String| {
        let jn = jn.clone();
        Box::pin(async move {
            let r = jn
                .remove(&who)
                .await
                .map_err(|e| Error::RemoveRefused(e.to_string()))?;
            Ok(format!(
                "removed {} (WireGuard key {}); the join token is rotated in {} s, once \
                 every member has cut it off\n",
                r.name,
                r.public_key,
                jn.timers().rotate_after_removal.as_secs()
            ))
        })
    });
    control.remove = Some(remove);
    Ok(control)
}

/// Start the admin endpoint on `admin.listen`.
pub(super) async fn start(
    cfg: &Config,
    layout: &Layout,
    metrics: &Metrics,
    status: StatusFn,
    parts: &ClusterParts,
) -> Result<Admin> {
    let control = control(layout, parts)?;
    if !cfg.admin.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %cfg.admin.listen,
            "the admin endpoint listens off loopback: its cookie, the status page's login \
             link and session travel in clear text (plain HTTP); bind `admin.listen` to \
             127.0.0.1 and reach it over an SSH tunnel, or keep it on a network only you use"
        );
    }
    Admin::start(cfg.admin.listen, metrics.clone(), status, control)
        .await
        .map_err(|source| Error::Admin {
            listen: cfg.admin.listen,
            source,
        })
}
