//! The metrics every component of a running node registers (`/metrics`).

use super::uploads::UploadStatus;
use crate::cluster::ClusterStatus;
use crate::join::JoinService;
use crate::metrics::{Metrics, MetricsWriter};
use rustbalance_cluster::TransportCounters;
use rustbalance_proxy::ProxyHandle;
use rustbalance_tor::{TorPhase, TorSupervisor};
use std::sync::{Arc, Mutex};

pub(super) fn register_metrics(
    m: &Metrics,
    tor: &Arc<TorSupervisor>,
    proxy: Option<&ProxyHandle>,
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
    if let Some(proxy) = proxy {
        register_proxy_metrics(m, proxy);
    }
    register_upload_metrics(m, uploads);
}

/// Turbo mode (`tor.instances`): how many tors this node runs and how many of them are
/// bootstrapped and running (the first one included).
pub(super) fn register_instance_metrics(
    m: &Metrics,
    tor: &Arc<TorSupervisor>,
    extra: &[Arc<TorSupervisor>],
) {
    let all: Vec<Arc<TorSupervisor>> = std::iter::once(tor.clone())
        .chain(extra.iter().cloned())
        .collect();
    m.register(move |w| {
        let up = all
            .iter()
            .filter(|t| t.status().phase == TorPhase::Running)
            .count();
        w.gauge(
            "rustbalance_tor_instances",
            "tor processes this node runs (tor.instances).",
            all.len() as f64,
        );
        w.gauge(
            "rustbalance_tor_instances_up",
            "Of those, bootstrapped and running.",
            up as f64,
        );
    });
}

/// The `rustbalance_proxy_*` metrics (nodes with a `[target]`).
fn register_proxy_metrics(m: &Metrics, proxy: &ProxyHandle) {
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
}

/// The descriptor upload counters (HS_DESC events of the master address).
fn register_upload_metrics(m: &Metrics, uploads: &Arc<Mutex<UploadStatus>>) {
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
        w.gauge(
            "rustbalance_cluster_publish_refused",
            "1 while this eligible node refuses to publish (clock off, stale consensus, tor \
             down, no confirmed upload; /status says why).",
            f64::from(u8::from(s.not_publishing_because.is_some())),
        );
        if let Some(ms) = s.clock_offset_ms {
            w.gauge(
                "rustbalance_cluster_clock_offset_seconds",
                "This node's clock minus the cluster's (gossip timestamps).",
                ms as f64 / 1000.0,
            );
        }
        // For the alert rules (deploy/monitoring): how fresh and how well spread the
        // last publication of this node is. 0 while it never published.
        let last = s.last_publish.as_ref();
        w.gauge(
            "rustbalance_cluster_last_publish_timestamp_seconds",
            "Unix time of this node's last publication (0: never).",
            last.and_then(|p| humantime::parse_rfc3339(&p.at).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        w.gauge(
            "rustbalance_cluster_last_publish_hsdirs_min",
            "HSDirs that confirmed the last publication, in its worst descriptor slot (0: never published).",
            last.and_then(|p| p.slots.iter().map(|r| r.uploaded()).min())
                .unwrap_or(0) as f64,
        );
        w.gauge(
            "rustbalance_cluster_canary_peers_failing",
            "Peers this node's canary cannot reach through Tor (verdict fail).",
            s.canary.values().filter(|c| c.verdict == "fail").count() as f64,
        );
        w.gauge(
            "rustbalance_tor_pow_suggested_effort",
            "Suggested PoW effort in this node's tor's own descriptor (0: none; rising: an \
             introduction flood).",
            f64::from(s.pow_suggested_effort),
        );
        w.gauge(
            "rustbalance_cluster_single_node",
            "1 while this node's tor hosts the master key and publishes itself with PoW \
             (a lone node: cluster.solo).",
            f64::from(u8::from(s.master_hosted)),
        );
        w.gauge(
            "rustbalance_cluster_members_target_down",
            "Live members whose target is down.",
            s.members.iter().filter(|m| m.live && m.target == "down").count() as f64,
        );
        hsdir_metrics(w, &s);
        backend_metrics(w, &s);
        w.counter(
            "rustbalance_gossip_dropped_total",
            "Gossip datagrams dropped (bad MAC, replay, malformed, stale).",
            s.gossip_dropped,
        );
        register_gossip_counters(w, &s.gossip);
    });
}

/// Per fetch-mode backend, labelled with its name (never its address).
fn backend_metrics(w: &mut MetricsWriter<'_>, s: &ClusterStatus) {
    if s.backends.is_empty() {
        return;
    }
    let per = |f: &dyn Fn(&crate::cluster::backends::BackendStatus) -> f64| -> Vec<(&str, f64)> {
        s.backends.iter().map(|b| (b.name.as_str(), f(b))).collect()
    };
    w.gauge_labeled(
        "rustbalance_backend_listed",
        "1 when the fetch-mode backend's intro points are candidates for the master descriptor.",
        "backend",
        &per(&|b| f64::from(u8::from(b.listed))),
    );
    w.gauge_labeled(
        "rustbalance_backend_intro_points",
        "Intro points in the backend's last good descriptor.",
        "backend",
        &per(&|b| b.intro_points as f64),
    );
    w.gauge_labeled(
        "rustbalance_backend_fetch_age_seconds",
        "Seconds since the backend's descriptor was last fetched successfully (-1: never).",
        "backend",
        &per(&|b| b.fetch_age_secs.map_or(-1.0, |a| a as f64)),
    );
    w.gauge_labeled(
        "rustbalance_backend_fetch_failures_in_row",
        "Failed fetches of the backend's descriptor in a row.",
        "backend",
        &per(&|b| f64::from(b.failures_in_row)),
    );
    w.gauge_labeled(
        "rustbalance_backend_probe_failing",
        "1 when the backend does not answer through Tor (probe verdict fail).",
        "backend",
        &per(&|b| f64::from(u8::from(b.probe == "fail"))),
    );
}

/// The HSDir anti-entropy figures of the lease holder (`publisher::hsdir_check`).
fn hsdir_metrics(w: &mut MetricsWriter<'_>, s: &ClusterStatus) {
    // Anti-entropy: only the slot of tor's current period can be checked (`HSFETCH`).
    if let Some(c) = s.hsdir_coverage.iter().find(|c| c.checked) {
        w.gauge_labeled(
            "rustbalance_hsdir_holding_latest",
            "Responsible HSDirs holding this node's latest descriptor at the last check \
             (after re-uploads); slot=current: tor's current time period.",
            "slot",
            &[("current", c.holding_latest.unwrap_or(0) as f64)],
        );
        w.gauge_labeled(
            "rustbalance_hsdir_responsible",
            "HSDirs responsible for this node's latest descriptor.",
            "slot",
            &[("current", c.responsible as f64)],
        );
    }
    w.counter(
        "rustbalance_hsdir_reuploads_total",
        "Descriptors uploaded again to HSDirs that had lost them or held another, confirmed.",
        s.hsdir_reuploads,
    );
    w.counter(
        "rustbalance_hsdir_reupload_refused_total",
        "Such uploads refused by the HSDir (it holds a revision at least as high).",
        s.hsdir_reupload_refusals,
    );
}

/// The `rustbalance_gossip_*` counters of this node's gossip transport.
fn register_gossip_counters(w: &mut MetricsWriter<'_>, g: &TransportCounters) {
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
        (
            "rustbalance_gossip_dropped_no_cert_total",
            "Node deltas dropped: the node showed no member certificate.",
            g.dropped_no_cert,
        ),
        (
            "rustbalance_gossip_dropped_bad_cert_total",
            "Node deltas dropped: forged, foreign or unreadable member certificate.",
            g.dropped_bad_cert,
        ),
        (
            "rustbalance_gossip_dropped_revoked_total",
            "Node deltas dropped: the member certificate is revoked.",
            g.dropped_revoked,
        ),
        (
            "rustbalance_gossip_dropped_unsigned_total",
            "Values of certified nodes dropped: not signed.",
            g.dropped_unsigned,
        ),
        (
            "rustbalance_gossip_dropped_bad_signature_total",
            "Values dropped: the signature does not verify (forged or replayed).",
            g.dropped_bad_signature,
        ),
    ] {
        w.counter(name, help, v);
    }
}
