//! The metrics every component of a running node registers (`/metrics`).

use super::uploads::UploadStatus;
use crate::cluster::ClusterStatus;
use crate::join::JoinService;
use crate::metrics::Metrics;
use rustbalance_proxy::ProxyHandle;
use rustbalance_tor::{TorPhase, TorSupervisor};
use std::sync::{Arc, Mutex};

pub(super) fn register_metrics(
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
            "rustbalance_proxy_circuit_rejected_total",
            "Connections refused because their tor circuit held max_streams_per_circuit.",
            s.circuit_rejected,
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

pub(super) fn register_join_metrics(m: &Metrics, svc: &Arc<JoinService>) {
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

/// The `rustbalance_cluster_*` and `rustbalance_gossip_*` metrics, from `/status`'s view.
pub(super) fn register_cluster_metrics(metrics: &Metrics, st: Arc<Mutex<ClusterStatus>>) {
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
}
