//! The canary task: probes every member that advertises an instance address, records
//! the results in a [`Canary`], gossips the verdicts and hands the Tor witness (the
//! members failing from here) to the election.
//!
//! ```text
//!  every 500 ms: members ─▶ due (interval, or retry while failing / silent)? ─▶ spawn probe
//!  probe done ─▶ Canary::record ─▶ verdict changed? ─▶ log, gossip `canary`, witness
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustbalance_cluster::{ElectorHandle, Membership};
use rustbalance_tor::TorSupervisor;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::super::node::{CanaryStatus, ClusterStatus};
use super::{probe, Canary, CanaryConfig, Verdict, CANARY_KEY, INSTANCE_KEY};

/// What the canary task needs.
pub struct CanaryCtx {
    /// Gossip: the members, and where the verdicts go.
    pub membership: Arc<Membership>,
    /// This node's tor (its SOCKS port).
    pub tor: Arc<TorSupervisor>,
    /// Where the witness goes.
    pub elector: ElectorHandle,
    /// This node's name and what it advertises for the others to probe
    /// (`<instance address>:<virtual port>`).
    pub me: String,
    /// `<instance address>.onion:<virtual port>`.
    pub advertised: String,
    /// The timings.
    pub cfg: CanaryConfig,
    /// `/status` (`cluster.canary`).
    pub status: Arc<Mutex<ClusterStatus>>,
}

/// Where this node's tor's SOCKS port listens (it changes when tor restarts).
pub(crate) async fn socks_addr(tor: &TorSupervisor) -> Option<SocketAddr> {
    let answer = tor
        .control()
        .await
        .ok()?
        .getinfo("net/listeners/socks")
        .await
        .ok()?;
    answer.trim().trim_matches('"').parse().ok()
}

/// `host:port` of an advertised instance.
fn target(advertised: &str) -> Option<(String, u16)> {
    let (host, port) = advertised.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// Runs until aborted.
pub async fn canary_task(ctx: CanaryCtx) {
    ctx.membership.set(INSTANCE_KEY, &ctx.advertised).await;
    let mut canary = Canary::new(ctx.cfg.clone());
    let mut probes: JoinSet<(String, bool)> = JoinSet::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    // Wall-clock start of each peer's current run of failed probes (for `/status`).
    let mut failing_since: BTreeMap<String, SystemTime> = BTreeMap::new();
    let mut every = tokio::time::interval(Duration::from_millis(500));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let members = ctx.membership.members().await;
                let ids: BTreeSet<String> = members.iter().map(|v| v.node_id.clone()).collect();
                canary.retain(&ids);
                failing_since.retain(|id, _| ids.contains(id));
                let Some(socks) = socks_addr(&ctx.tor).await else { continue };
                let now = Instant::now();
                for v in members.iter().filter(|v| v.node_id != ctx.me) {
                    let Some((host, port)) = v.get(INSTANCE_KEY).and_then(target) else { continue };
                    // Its first tor's points: the instance probed is that tor's.
                    let advertises = v
                        .get(&crate::cluster::gossip::intro_points(&v.node_id))
                        .is_some_and(|e| !e.is_empty());
                    let before = canary.verdict(&v.node_id);
                    let ready = canary.ready(&v.node_id, v.live, advertises, now);
                    if canary.verdict(&v.node_id) != before {
                        failing_since.remove(&v.node_id);
                        ctx.membership.set(CANARY_KEY, &canary.encode()).await;
                        ctx.elector.set_witness(canary.failing());
                        show(&ctx.status, &canary, &failing_since);
                    }
                    if !ready {
                        continue;
                    }
                    if in_flight.contains(&v.node_id) || !canary.due(&v.node_id, now, !v.live) {
                        continue;
                    }
                    in_flight.insert(v.node_id.clone());
                    let (id, timeout) = (v.node_id.clone(), ctx.cfg.timeout);
                    probes.spawn(async move {
                        let r = probe(socks, &host, port, timeout).await;
                        if let Err(e) = &r {
                            tracing::debug!(peer = %id, error = %e, "canary probe failed");
                        }
                        (id, r.is_ok())
                    });
                }
            }
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                let Ok((id, ok)) = done else { continue };
                in_flight.remove(&id);
                if ok {
                    failing_since.remove(&id);
                } else {
                    failing_since.entry(id.clone()).or_insert_with(SystemTime::now);
                }
                if let Some(v) = canary.record(&id, ok, Instant::now()) {
                    match v {
                        Verdict::Fail => warn!(peer = %id, "canary: unreachable through Tor; it leaves the descriptor if most peers agree; check that node's tor and target (`rustbalance doctor --config FILE` there)"),
                        _ => info!(peer = %id, verdict = ?v, "canary"),
                    }
                    ctx.membership.set(CANARY_KEY, &canary.encode()).await;
                    ctx.elector.set_witness(canary.failing());
                }
                show(&ctx.status, &canary, &failing_since);
            }
        }
    }
}

/// `/status` `cluster.canary`: the verdict on each peer probed, and since when it fails.
fn show(
    status: &Mutex<ClusterStatus>,
    canary: &Canary,
    failing_since: &BTreeMap<String, SystemTime>,
) {
    let Ok(mut s) = status.lock() else { return };
    s.canary = canary
        .peers()
        .map(|id| {
            let st = CanaryStatus {
                verdict: canary.verdict(id).as_str().to_owned(),
                failing_since: failing_since
                    .get(id)
                    .map(|t| humantime::format_rfc3339_millis(*t).to_string()),
            };
            (id.to_owned(), st)
        })
        .collect();
}

/// The live members that leave the descriptor because most of their live peers cannot
/// reach them through Tor ([`super::ejected`] over the gossiped verdicts). Never all of
/// them: a cluster whose every node fails from the others lists them all (the canaries,
/// not the nodes, are then most likely broken).
pub fn ejected_members(live: &[rustbalance_cluster::NodeView]) -> BTreeSet<String> {
    let ids: BTreeSet<String> = live.iter().map(|v| v.node_id.clone()).collect();
    let out = super::ejected(&gossiped_reports(live), &ids);
    if out.len() >= ids.len() {
        return BTreeSet::new();
    }
    out
}

/// Every live member's gossiped verdicts (for [`super::ejected`]).
pub fn gossiped_reports(
    members: &[rustbalance_cluster::NodeView],
) -> BTreeMap<String, BTreeMap<String, Verdict>> {
    members
        .iter()
        .filter(|v| v.live)
        .filter_map(|v| Some((v.node_id.clone(), super::decode(v.get(CANARY_KEY)?))))
        .collect()
}
