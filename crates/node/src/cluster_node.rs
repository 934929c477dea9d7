//! Multi-node mode: this node's tor runs an *instance* of the master
//! service (own key, `HiddenServiceOnionbalanceInstance 1`,
//! `PublishHidServDescriptors 0`); the node shares its intro points over
//! authenticated gossip, takes part in the lease election, and — while it
//! holds the lease — merges every healthy node's intro points into the
//! master descriptor and uploads it.
//!
//! ```text
//!  intro task:   tor GETINFO own descriptor ─▶ gossip intro/<node>, target_health
//!  publish task: lease held? ─▶ live healthy nodes' intro points ─▶ changed / due / HSDirs failed?
//!                   └─▶ Publisher: plan both descriptors ─▶ HSPOST SERVER=… ─▶ HS_DESC answers
//! ```

use crate::config::ClusterSection;
use crate::err::{Error, Result};
use crate::join_node::{mesh_key, Removal};
use crate::publisher::{Publisher, SlotReport, ViewCache};
use crate::supervisor::{TorPhase, TorSupervisor};
use rustbalance_cluster::{
    keys, ClusterSecret, Election, ElectionConfig, Elector, Membership, MembershipConfig, NodeView,
    UdpNetwork,
};
use rustbalance_hs::descriptor::{
    decode_intro_points, encode_intro_points, InstanceIntros, PowParams, Protocols,
};
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_proxy::HealthHandle;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

/// What `/status` shows of the cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterStatus {
    /// `publisher` or `follower`.
    pub role: String,
    /// Nodes currently advertising a lease.
    pub lease_holders: Vec<String>,
    /// Every known node.
    pub members: Vec<MemberStatus>,
    /// Intro points this node advertises.
    pub own_intro_points: usize,
    /// Descriptor publications by this node.
    pub publishes: u64,
    /// Failed publications by this node.
    pub publish_failures: u64,
    /// The last publication by this node.
    pub last_publish: Option<PublishRecord>,
    /// Gossip datagrams dropped (bad MAC, replayed, malformed, stale).
    pub gossip_dropped: u64,
    /// This node's gossip traffic since it started.
    pub gossip: rustbalance_cluster::TransportCounters,
}

/// One member as seen from here.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// Node name.
    pub name: String,
    /// Alive according to the failure detector.
    pub live: bool,
    /// Intro points it advertises.
    pub intro_points: usize,
    /// Its target health (`up`, `down`, `unknown`).
    pub target: String,
}

/// A publication.
#[derive(Debug, Clone, Serialize)]
pub struct PublishRecord {
    /// When (RFC 3339).
    pub at: String,
    /// Why: `changed`, `periodic`, `retry`, `new period`, `became publisher`.
    pub reason: String,
    /// Intro points per node in the published descriptors.
    pub intro_points: BTreeMap<String, usize>,
    /// The descriptors carry `pow-params` (this node was the only one left: single-node
    /// fallback with tor's PoW defences).
    pub pow: bool,
    /// Per descriptor slot: HSDir answers.
    pub slots: Vec<SlotReport>,
}

/// A running cluster membership + publisher.
pub struct ClusterNode {
    membership: Arc<Membership>,
    elector: Elector,
    tasks: Vec<JoinHandle<()>>,
    status: Arc<Mutex<ClusterStatus>>,
}

/// Inputs of [`ClusterNode::start`].
pub struct ClusterParams {
    /// This node's name (its gossip id).
    pub name: String,
    /// `[cluster]`.
    pub cfg: ClusterSection,
    /// The node's supervised tor.
    pub tor: Arc<TorSupervisor>,
    /// The master key, if this node is publisher-eligible.
    pub master: Option<IdentityKey>,
    /// This node's instance address.
    pub instance: OnionAddress,
    /// Target health from the proxy.
    pub target_health: HealthHandle,
    /// A TestingTorNetwork (the lab).
    pub testing_network: bool,
}

fn read_secret(path: &std::path::Path) -> Result<ClusterSecret> {
    let raw = zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
        action: "read cluster secret",
        path: path.to_path_buf(),
        source,
    })?);
    ClusterSecret::new(raw.to_vec()).map_err(|e| Error::Config {
        key: "cluster.secret_file".into(),
        problem: e.to_string(),
    })
}

impl ClusterNode {
    /// Join the gossip, start the election and the intro/publish tasks.
    pub async fn start(p: ClusterParams) -> Result<ClusterNode> {
        let secret = read_secret(&p.cfg.secret_file)?;
        let mut mcfg = MembershipConfig::new(p.name.clone(), p.cfg.listen);
        mcfg.advertise_addr = p.cfg.advertise;
        mcfg.seeds = p.cfg.seeds.clone();
        mcfg.cluster_id = p.cfg.cluster_id.clone();
        mcfg.phi_threshold = p.cfg.phi_threshold;
        let eligible = p.master.is_some();
        let initial = vec![
            (keys::PRIORITY.to_string(), p.cfg.priority.to_string()),
            (keys::ELIGIBLE.to_string(), eligible.to_string()),
            (keys::ROLE.to_string(), "follower".to_string()),
        ];
        let membership = Arc::new(
            Membership::start(mcfg, &secret, initial, &UdpNetwork)
                .await
                .map_err(|e| Error::Other(format!("gossip: {e}")))?,
        );
        let incarnation = rustbalance_hs::time::unix_secs(SystemTime::now());
        let election = Election::new(
            p.name.clone(),
            p.cfg.priority,
            eligible,
            incarnation,
            ElectionConfig::default(),
        )
        .map_err(|e| Error::Other(format!("election: {e}")))?;
        let elector = Elector::spawn(membership.clone(), election, Duration::from_millis(250));
        let status = Arc::new(Mutex::new(ClusterStatus {
            role: "follower".into(),
            ..Default::default()
        }));
        let flow = Arc::new(Mutex::new(None));
        let pow = Arc::new(Mutex::new(None));
        let next = Arc::new(Mutex::new(NextState::default()));
        // One cache of the consensus and microdescriptors for the three readers of this
        // node's tor (intro points, next descriptor, publisher).
        let views = ViewCache::default();
        let mut tasks = vec![tokio::spawn(intro_task(
            membership.clone(),
            p.tor.clone(),
            p.instance,
            p.name.clone(),
            p.target_health.clone(),
            p.testing_network,
            status.clone(),
            (flow.clone(), pow.clone(), next.clone()),
            views.clone(),
        ))];
        tasks.push(tokio::spawn(next_descriptor_task(
            p.tor.clone(),
            p.instance,
            p.testing_network,
            next,
            views.clone(),
        )));
        tasks.push(tokio::spawn(status_task(
            membership.clone(),
            status.clone(),
        )));
        if let Some(master) = p.master {
            tasks.push(tokio::spawn(publish_task(PublishCtx {
                membership: membership.clone(),
                publishing: elector.watch(),
                tor: p.tor.clone(),
                master,
                testing: p.testing_network,
                republish: Duration::from_secs(p.cfg.republish_secs),
                status: status.clone(),
                flow,
                pow,
                name: p.name.clone(),
                views,
            })));
        }
        Ok(ClusterNode {
            membership,
            elector,
            tasks,
            status,
        })
    }

    /// What `/status` shows.
    pub fn status(&self) -> ClusterStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A shared handle on the status.
    pub fn status_handle(&self) -> Arc<Mutex<ClusterStatus>> {
        self.status.clone()
    }

    /// The gossip membership.
    pub fn membership(&self) -> Arc<Membership> {
        self.membership.clone()
    }

    /// Gossip counters.
    pub fn counters(&self) -> rustbalance_cluster::TransportCounters {
        self.membership.counters()
    }

    /// Leave: give up the lease so a standby takes over at once, stop tasks.
    pub async fn stop(self) {
        self.elector.yield_lease();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for t in &self.tasks {
            t.abort();
        }
        self.elector.stop().await;
        if let Ok(m) = Arc::try_unwrap(self.membership) {
            let _ = m.shutdown().await;
        }
    }
}

/// Read this node's own instance descriptor and advertise its intro points.
#[allow(clippy::too_many_arguments)]
async fn intro_task(
    membership: Arc<Membership>,
    tor: Arc<TorSupervisor>,
    instance: OnionAddress,
    name: String,
    health: HealthHandle,
    testing: bool,
    status: Arc<Mutex<ClusterStatus>>,
    (flow, pow, next): (SharedFlow, SharedPow, NextDescriptor),
    views: ViewCache,
) {
    let key = keys::intro_points(&name);
    let mut last_enc = String::new();
    let mut last_health = String::new();
    let mut ctl = None;
    loop {
        let h = match health.get().up {
            Some(true) => "up",
            Some(false) => "down",
            None => "unknown",
        };
        if h != last_health {
            membership.set(keys::TARGET_HEALTH, h).await;
            last_health = h.to_string();
        }
        if tor.status().phase != TorPhase::Running {
            ctl = None;
            if !last_enc.is_empty() {
                // Our tor is down: our intro points are dead, withdraw them.
                membership.delete(&key).await;
                last_enc.clear();
            }
        } else {
            if ctl.is_none() {
                ctl = tor.control().await.ok();
                views.clear().await;
            }
            if let Some(c) = &ctl {
                let got = async {
                    let view = views.get(c, testing).await?;
                    let current = crate::publisher::instance_descriptor(
                        c,
                        &instance,
                        &view.time,
                        SystemTime::now(),
                    )
                    .await?;
                    // After a period starts, advertise the intro points of the descriptor tor
                    // made for that period (they outlive the next SRV; the current ones die
                    // there while clients still hold them).
                    let between = view
                        .time
                        .between_tp_and_srv(view.consensus.valid_after_unix());
                    // From the SRV to the next period start, tor's current descriptor is the
                    // running period's; until tor has rotated (a second or so after the
                    // consensus), it is still the previous one, about to die: keep what is
                    // advertised meanwhile.
                    let running = view
                        .time
                        .period_at(rustbalance_hs::time::from_unix(
                            view.consensus.valid_after_unix(),
                        ))
                        .map(|p| p.interval_num())
                        .ok();
                    if !between && running.is_some_and(|r| current.period_num < r) {
                        return Err(Error::Other(
                            "tor has not rotated its descriptors yet".into(),
                        ));
                    }
                    let mut chosen = current;
                    if between {
                        let (fetched, since) = next
                            .lock()
                            .map(|n| (n.desc.as_ref().map(|(_, d)| d.clone()), n.window_since))
                            .unwrap_or((None, None));
                        match fetched {
                            Some(d) if !d.intro_points.is_empty() => chosen = d,
                            // Not fetched yet: keep what is advertised (nothing on a fresh
                            // start) rather than publish intro points that die at the SRV,
                            // for a while.
                            _ if since.is_none_or(|t| t.elapsed() < NEXT_WAIT) => {
                                return Err(Error::Other(
                                    "waiting for the running period's instance descriptor".into(),
                                ));
                            }
                            _ => {}
                        }
                    }
                    // Only intro points whose circuits are up right now.
                    crate::publisher::only_established(c, &instance, chosen).await
                }
                .await;
                match got {
                    Ok(d) if !d.intro_points.is_empty() => {
                        if let Ok(mut f) = flow.lock() {
                            *f = d.flow_control.clone();
                        }
                        if let Ok(mut p) = pow.lock() {
                            *p = d.pow_params.first().cloned();
                        }
                        let enc = encode_intro_points(&d.intro_points);
                        if enc != last_enc {
                            membership.set(&key, &enc).await;
                            tracing::info!("advertising {} intro points", d.intro_points.len());
                            if let Ok(mut s) = status.lock() {
                                s.own_intro_points = d.intro_points.len();
                            }
                            last_enc = enc;
                        }
                    }
                    Ok(_) => {
                        // tor lists intro points but none has a live circuit: withdraw
                        // ours until it has re-established some.
                        if !last_enc.is_empty() {
                            membership.delete(&key).await;
                            tracing::info!("no established intro circuit: intro points withdrawn");
                            if let Ok(mut s) = status.lock() {
                                s.own_intro_points = 0;
                            }
                            last_enc.clear();
                        }
                    }
                    Err(Error::Tor(_)) => ctl = None,
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The `flow-control` line of this node's own instance descriptor.
type SharedFlow = Arc<Mutex<Option<(Protocols, u8)>>>;
/// The `pow-params` of this node's own instance descriptor.
type SharedPow = Arc<Mutex<Option<PowParams>>>;

/// The instance descriptor fetched back from the HSDirs, with when it was fetched.
type NextDescriptor = Arc<Mutex<NextState>>;

/// What [`next_descriptor_task`] knows.
#[derive(Default)]
struct NextState {
    /// Since when the node is between a period start and the next SRV (`None`: outside).
    window_since: Option<Instant>,
    /// The instance's descriptor for the running period, and when it was fetched.
    desc: Option<(Instant, rustbalance_hs::descriptor::ParsedDescriptor)>,
}

/// How long, after a period starts, a node waits for its instance's descriptor for that
/// period before it falls back to tor's current one (whose intro points die at the SRV).
const NEXT_WAIT: Duration = Duration::from_secs(90);

/// Between a period start and the next SRV, keep the instance's descriptor for the current
/// period fresh (fetched from the HSDirs; see `instance_descriptor_from_hsdirs`); outside
/// that window, forget it.
async fn next_descriptor_task(
    tor: Arc<TorSupervisor>,
    instance: OnionAddress,
    testing: bool,
    next: NextDescriptor,
    views: ViewCache,
) {
    // How often the fetched descriptor is refreshed (its intro points change rarely: tor
    // replaces a failed intro point and uploads a new descriptor).
    let every = if testing {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(300)
    };
    // Diagnostic for bench/rotation.sh only: behave as before the fix.
    if std::env::var_os("RUSTBALANCE_DIAG_CURRENT_DESC_ONLY").is_some() {
        tracing::warn!(
            "RUSTBALANCE_DIAG_CURRENT_DESC_ONLY: advertising tor's current descriptor only"
        );
        return;
    }
    let mut ctl = None;
    let mut was_between = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if tor.status().phase != TorPhase::Running {
            ctl = None;
            continue;
        }
        if ctl.is_none() {
            ctl = tor.control().await.ok();
            views.clear().await;
        }
        let Some(c) = &ctl else { continue };
        let Ok(view) = views.get(c, testing).await else {
            continue;
        };
        let between = view
            .time
            .between_tp_and_srv(view.consensus.valid_after_unix());
        if !between {
            if was_between {
                if let Ok(mut n) = next.lock() {
                    *n = NextState::default();
                }
            }
            was_between = false;
            continue;
        }
        if !was_between {
            if let Ok(mut n) = next.lock() {
                *n = NextState {
                    window_since: Some(Instant::now()),
                    desc: None,
                };
            }
            was_between = true;
        }
        let stale = next
            .lock()
            .map(|n| n.desc.as_ref().is_none_or(|(t, _)| t.elapsed() >= every))
            .unwrap_or(true);
        if !stale {
            continue;
        }
        match crate::publisher::instance_descriptor_from_hsdirs(
            c,
            &instance,
            &view.time,
            SystemTime::now(),
            Duration::from_secs(20),
        )
        .await
        {
            Ok(d) => {
                // The client cache may still hold an older period's copy: only the running
                // period's descriptor will do.
                let want = view
                    .time
                    .period_at(rustbalance_hs::time::from_unix(
                        view.consensus.valid_after_unix(),
                    ))
                    .map(|p| p.interval_num())
                    .ok();
                if want != Some(d.period_num) {
                    tracing::debug!(
                        "fetched instance descriptor is for period {}, not {want:?}",
                        d.period_num
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
                tracing::debug!(
                    "fetched this instance's current-period descriptor: {} intro points",
                    d.intro_points.len()
                );
                if let Ok(mut n) = next.lock() {
                    n.desc = Some((Instant::now(), d));
                }
            }
            Err(Error::Tor(_)) => ctl = None,
            Err(e) => tracing::debug!("instance descriptor from the HSDirs: {e}"),
        }
    }
}

async fn status_task(membership: Arc<Membership>, status: Arc<Mutex<ClusterStatus>>) {
    loop {
        let members = membership.members().await;
        let counters = membership.counters();
        if let Ok(mut s) = status.lock() {
            s.members = members
                .iter()
                .map(|v| MemberStatus {
                    name: v.node_id.clone(),
                    live: v.live,
                    intro_points: v
                        .intro_points()
                        .map(|(_, e)| decode_intro_points(e).map(|v| v.len()).unwrap_or(0))
                        .sum(),
                    target: v.get(keys::TARGET_HEALTH).unwrap_or("unknown").to_string(),
                })
                .collect();
            s.lease_holders = members
                .iter()
                .filter(|v| v.live && v.lease().is_some())
                .map(|v| v.node_id.clone())
                .collect();
            s.gossip_dropped = counters.dropped();
            s.gossip = counters;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct PublishCtx {
    membership: Arc<Membership>,
    publishing: tokio::sync::watch::Receiver<bool>,
    tor: Arc<TorSupervisor>,
    master: IdentityKey,
    testing: bool,
    republish: Duration,
    status: Arc<Mutex<ClusterStatus>>,
    flow: Arc<Mutex<Option<(Protocols, u8)>>>,
    /// This node's own instance pow-params (from its tor).
    pow: Arc<Mutex<Option<PowParams>>>,
    /// This node's name.
    name: String,
    /// The node's shared network view cache.
    views: ViewCache,
}

/// The intro points of every live node whose target is not down, with a
/// fingerprint of the set (to notice changes).
async fn healthy_intros(m: &Membership) -> (Vec<InstanceIntros>, String) {
    intros_of(m.live_nodes().await)
}

/// WireGuard keys that any of `nodes` lists as removed (`rustbalance node remove`).
fn removed_keys(nodes: &[NodeView]) -> BTreeSet<String> {
    nodes
        .iter()
        .filter_map(|v| v.get(keys::MESH_REMOVED))
        .flat_map(|list| list.lines().filter_map(Removal::parse_line))
        .map(|r| r.public_key)
        .collect()
}

/// [`healthy_intros`] of a set of live nodes: a node whose target is down, or whose
/// WireGuard key was removed from the cluster, contributes nothing. The publisher drops
/// a removed node at once, without waiting for the node to stop or for its mesh peer to go.
fn intros_of(mut nodes: Vec<NodeView>) -> (Vec<InstanceIntros>, String) {
    let mut out = Vec::new();
    let mut fp = String::new();
    let removed = removed_keys(&nodes);
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    for v in nodes {
        if v.get(keys::TARGET_HEALTH) == Some("down") {
            continue;
        }
        if mesh_key(&v).is_some_and(|k| removed.contains(&k)) {
            continue;
        }
        for (_, enc) in v.intro_points() {
            match decode_intro_points(enc) {
                Ok(ips) if !ips.is_empty() => {
                    fp.push_str(&v.node_id);
                    fp.push(':');
                    fp.push_str(enc);
                    fp.push(';');
                    out.push(InstanceIntros {
                        instance: v.node_id.clone(),
                        intro_points: ips,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(node = %v.node_id, "ignoring bad intro points: {e}"),
            }
        }
    }
    (out, fp)
}

async fn publish_task(mut c: PublishCtx) {
    let mut publisher: Option<(u32, Publisher)> = None;
    let mut last_fp = String::new();
    let mut last_at: Option<Instant> = None;
    let mut last_periods: Vec<u64> = Vec::new();
    let mut last_ring = String::new();
    let mut last_pow = String::new();
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0u32;
    let mut was_publishing = false;
    let mut last_built: Option<u64> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let publishing = *c.publishing.borrow_and_update();
        if !publishing {
            if was_publishing {
                c.membership.set(keys::ROLE, "follower").await;
                if let Ok(mut s) = c.status.lock() {
                    s.role = "follower".into();
                }
            }
            was_publishing = false;
            continue;
        }
        let st = c.tor.status();
        let (Some(pid), TorPhase::Running) = (st.pid, st.phase) else {
            continue;
        };
        if publisher.as_ref().map(|(p, _)| *p) != Some(pid) {
            let ctl = match c.tor.control().await {
                Ok(ctl) => ctl,
                Err(_) => continue,
            };
            let key = c.master.duplicate();
            match Publisher::new(ctl, key, c.testing, 20).await {
                Ok(p) => publisher = Some((pid, p.with_views(c.views.clone()))),
                Err(e) => {
                    tracing::warn!("publisher: {e}");
                    continue;
                }
            }
        }
        let (intros, fp) = healthy_intros(&c.membership).await;
        if intros.is_empty() {
            continue;
        }
        let now = SystemTime::now();
        // Revision counters count whole seconds: a second descriptor built in the same
        // second as the last one would carry the same counter, and every HSDir would refuse
        // it (seen in the lab: a node joining 0.5 s after a publication, "HSDirs 0/8").
        let now_secs = rustbalance_hs::time::unix_secs(now);
        if last_built.is_some_and(|t| now_secs <= t) {
            continue;
        }
        let (periods, ring): (Vec<u64>, String) = match publisher.as_mut() {
            Some((_, p)) => match p.view().await {
                Ok(v) => (
                    v.time
                        .live_slots(
                            rustbalance_hs::time::unix_secs(now),
                            v.consensus.valid_after_unix(),
                        )
                        .iter()
                        .map(|s| s.period_num)
                        .collect(),
                    v.ring_fingerprint(),
                ),
                Err(_) => continue,
            },
            None => continue,
        };
        // Single-node fallback: alone, this node's own pow-params can go into the master
        // descriptor (one PoW seed), so clients get tor's PoW defences; with others back,
        // they come out again.
        let alone = intros.len() == 1 && intros[0].instance == c.name;
        let pow = if alone {
            c.pow.lock().ok().and_then(|p| p.clone())
        } else {
            None
        };
        let pow_fp = pow.as_ref().map(|p| format!("{p:?}")).unwrap_or_default();
        let reason = if !was_publishing {
            "became publisher"
        } else if fp != last_fp {
            "changed"
        } else if pow_fp != last_pow {
            "pow-params changed"
        } else if periods != last_periods {
            "new period"
        } else if ring != last_ring {
            "hsdirs changed"
        } else if retry_at.is_some_and(|r| Instant::now() >= r) {
            "retry"
        } else if last_at.is_none_or(|t| t.elapsed() >= c.republish) {
            "periodic"
        } else {
            continue;
        };
        if !was_publishing {
            c.membership.set(keys::ROLE, "publisher").await;
            if let Ok(mut s) = c.status.lock() {
                s.role = "publisher".into();
            }
            was_publishing = true;
        }
        let flow = c.flow.lock().ok().and_then(|f| f.clone());
        let Some((_, p)) = publisher.as_mut() else {
            continue;
        };
        let t0 = Instant::now();
        last_built = Some(now_secs);
        let mut rng = {
            use rand::SeedableRng;
            rand::rngs::StdRng::from_rng(&mut rand::rng())
        };
        let result = p
            .publish_intros(
                &intros,
                flow,
                pow.as_ref(),
                now,
                Duration::from_secs(10),
                &mut rng,
            )
            .await;
        match result {
            Ok(slots) => {
                let complete = slots.iter().all(|s| s.uploaded() == s.hsdirs.len());
                let any = slots.iter().all(|s| s.uploaded() > 0);
                tracing::info!(
                    "published ({reason}): {} intro points from {} nodes{} in {:.1}s; HSDirs {}",
                    intros.iter().map(|i| i.intro_points.len()).sum::<usize>(),
                    intros.len(),
                    if pow.is_some() {
                        " with PoW (alone)"
                    } else {
                        ""
                    },
                    t0.elapsed().as_secs_f64(),
                    slots
                        .iter()
                        .map(|s| format!("{}/{}", s.uploaded(), s.hsdirs.len()))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                last_fp = fp;
                last_pow = pow_fp;
                last_periods = periods;
                last_ring = ring;
                last_at = Some(Instant::now());
                if complete {
                    failures = 0;
                    retry_at = None;
                } else {
                    failures += 1;
                    let backoff = retry_backoff(failures);
                    retry_at = Some(Instant::now() + backoff);
                }
                c.membership
                    .set(
                        keys::LAST_PUBLISH,
                        &format!(
                            "{} {}",
                            rustbalance_hs::time::unix_secs(now),
                            if any { "ok" } else { "failed" }
                        ),
                    )
                    .await;
                if let Ok(mut s) = c.status.lock() {
                    s.publishes += 1;
                    if !any {
                        s.publish_failures += 1;
                    }
                    s.last_publish = Some(PublishRecord {
                        at: humantime::format_rfc3339_seconds(now).to_string(),
                        reason: reason.to_string(),
                        intro_points: intros
                            .iter()
                            .map(|i| (i.instance.clone(), i.intro_points.len().min(20)))
                            .collect(),
                        pow: pow.is_some(),
                        slots,
                    });
                }
            }
            Err(e) => {
                tracing::warn!("publishing failed: {e}");
                failures += 1;
                retry_at = Some(Instant::now() + retry_backoff(failures));
                if let Ok(mut s) = c.status.lock() {
                    s.publish_failures += 1;
                }
                if matches!(e, Error::Tor(_)) {
                    publisher = None;
                }
            }
        }
    }
}

/// Delay before retrying a publication that did not reach every HSDir:
/// 10 s after the first failure, doubling up to 60 s.
fn retry_backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64 << failures.min(4)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_node::tests::key;

    fn node(name: &str, key: &str, removed: &[String]) -> NodeView {
        let ips: Vec<_> = (0..3)
            .map(|_| rustbalance_hs::fixture::fake_intro_point(&mut rand::rng()))
            .collect();
        let mut state = BTreeMap::new();
        state.insert(keys::intro_points("tor0"), encode_intro_points(&ips));
        state.insert(keys::MESH.to_string(), format!("{key} 10.0.0.1:51820"));
        if !removed.is_empty() {
            state.insert(keys::MESH_REMOVED.to_string(), removed.join("\n"));
        }
        NodeView {
            node_id: name.into(),
            generation: 1,
            addr: "127.0.0.1:9663".parse().unwrap(),
            live: true,
            state,
        }
    }

    fn names(nodes: Vec<NodeView>) -> Vec<String> {
        intros_of(nodes).0.into_iter().map(|i| i.instance).collect()
    }

    #[test]
    fn a_removed_node_leaves_the_descriptor_at_once() {
        let (k1, k2, k3) = (key(), key(), key());
        let all = |removed: &[String]| {
            vec![
                node("node1", &k1, removed),
                node("node2", &k2, &[]),
                node("node3", &k3, &[]),
            ]
        };
        assert_eq!(names(all(&[])), ["node1", "node2", "node3"]);
        // One member's gossip names node3's key: the publisher, whoever it is, drops it.
        let line = format!("node3 {k3} 1795000000 node1");
        assert_eq!(names(all(std::slice::from_ref(&line))), ["node1", "node2"]);
        // Removal is by key: a wiped machine that joined again under the same name counts.
        let other = format!("node3 {} 1795000000 node1", key());
        assert_eq!(names(all(&[other])), ["node1", "node2", "node3"]);
        // Malformed removal lines remove nothing.
        let bad = vec![format!("node3 {k3}"), format!("node3 notakey 1 node1")];
        assert_eq!(names(all(&bad)), ["node1", "node2", "node3"]);
        // A node whose target is down contributes nothing either.
        let mut nodes = all(&[]);
        nodes[1]
            .state
            .insert(keys::TARGET_HEALTH.to_string(), "down".into());
        assert_eq!(names(nodes), ["node1", "node3"]);
    }
}
