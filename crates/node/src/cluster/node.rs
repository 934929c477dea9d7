//! A cluster node: joins the gossip and the lease election, and runs the tasks that
//! advertise this node's intro points and, while it holds the lease, publish the master
//! descriptor. `/status` shows what it knows.
//!
//! ```text
//!  start: secret ─▶ Membership (gossip) ─▶ Election + Elector ─▶ tasks:
//!           advertise::intro_task, advertise::next_descriptor_task, status_task,
//!           publisher::publish_task (publisher-eligible nodes only)
//!  stop:  yield the lease ─▶ leave_grace ─▶ abort tasks ─▶ elector, membership down
//! ```

use super::advertise::{intro_task, next_descriptor_task, IntroCtx, NextDescriptor};
use super::backends::{backend_task, BackendCtx, BackendTimers, Backends};
use super::canary::CANARY_KEY;
use super::gossip::{self, Role};
use super::pow::OwnPow;
use super::publisher::{publish_task, PublishCtx, SlotReport, ViewCache};
use super::timers::Timers;
use crate::config::ClusterSection;
use crate::err::{Error, Result};
use rustbalance_cluster::{
    ClusterSecret, Election, ElectionConfig, Elector, GossipAuth, Membership, MembershipConfig,
    UdpNetwork,
};
use rustbalance_hs::descriptor::Protocols;
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_proxy::HealthHandle;
use rustbalance_tor::TorSupervisor;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::task::AbortHandle;

use crate::supervise::Supervisor;

/// What `/status` shows of the cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterStatus {
    /// `publisher` or `follower`.
    pub role: String,
    /// Nodes currently advertising a lease.
    pub lease_holders: Vec<String>,
    /// Every known node.
    pub members: Vec<MemberStatus>,
    /// Intro points this node advertises (all its tors).
    pub own_intro_points: usize,
    /// Per tor of this node (its `intro/*` gossip key: the node name, then
    /// `<name>.tor<k>` for turbo mode's extra tors): its intro points and advert state.
    pub instances: BTreeMap<String, InstanceAdvert>,
    /// What this node advertises and why: `advertising N intro points`, `nothing yet:
    /// <why>` (waiting for tor's descriptor, its rotation, a control connection),
    /// `keeping the last advert: <why>`, `withdrawn: <why>`.
    pub advert: String,
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
    /// Why this publisher-eligible node refuses to publish now (clock off, stale
    /// consensus, tor down, no confirmed upload); `None` while it may.
    pub not_publishing_because: Option<String>,
    /// This node's clock minus the cluster's, in ms (gossip timestamps).
    pub clock_offset_ms: Option<i64>,
    /// The canary's view of each peer probed through Tor (`cluster::canary`).
    pub canary: BTreeMap<String, CanaryStatus>,
    /// The suggested PoW effort in this node's tor's own descriptor (0: no `pow-params`,
    /// clients need not solve). Rising means tor sees an introduction flood.
    pub pow_suggested_effort: u32,
    /// The descriptor mode (`merged`, `single-node (starting)`, `single-node`, `merged
    /// (single-node draining)`): whether this node's tor hosts the master key and
    /// publishes itself (`cluster::solo`); `merged` when the switch is off. Empty on a
    /// node that is not publisher-eligible.
    pub mode: String,
    /// This node's tor hosts the master service now (any mode but `merged`).
    pub master_hosted: bool,
    /// Anti-entropy: each slot of the last publication and how many of its responsible
    /// HSDirs hold it (`cluster.hsdir_check_secs`).
    pub hsdir_coverage: Vec<super::policy::SlotCoverage>,
    /// Descriptors given again to HSDirs that had lost them (or held another), confirmed.
    pub hsdir_reuploads: u64,
    /// Such uploads the HSDir refused (it holds a revision at least as high).
    pub hsdir_reupload_refusals: u64,
    /// Fetch-mode backends (`[[backends]]`), as this node's backend task sees them
    /// (publisher-eligible nodes only).
    pub backends: Vec<super::backends::BackendStatus>,
    /// Fleet PoW (`cluster.fleet_pow`): what this node's tor's master service offers the
    /// fleet descriptors now (`None`: off, or nothing usable yet).
    pub fleet_pow: Option<super::fleet::FleetStatus>,
}

/// What this node's canary concluded about one peer.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryStatus {
    /// `unknown`, `pass` or `fail`.
    pub verdict: String,
    /// When the current run of failed probes began (the first failed probe ended;
    /// RFC 3339); `None` while the last probe answered.
    pub failing_since: Option<String>,
}

/// What one of this node's tors advertises.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InstanceAdvert {
    /// Intro points advertised.
    pub intro_points: usize,
    /// As [`ClusterStatus::advert`], for this tor.
    pub advert: String,
}

/// The gossip key suffix of this node's tor `slot` (0: the node name; then
/// `<name>.tor<slot>`: node names hold no `.`).
pub fn instance_key_name(name: &str, slot: usize) -> String {
    if slot == 0 {
        name.to_owned()
    } else {
        format!("{name}.tor{slot}")
    }
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
    /// The role it gossips (`publisher`, `follower`; `unknown` when none).
    pub role: String,
    /// Whether it may hold the lease: it gossips `eligible` and its certificate (when
    /// it has one) makes it publisher-eligible. A lease from a member that may not is
    /// ignored by the election.
    pub eligible: bool,
    /// Its lease, when it advertises one.
    pub lease: Option<rustbalance_cluster::election::LeaseAdvert>,
    /// Its canary's verdicts on its peers as it gossips them ([`CANARY_KEY`]:
    /// `peer=pass|fail ...`), when it gossips any; this node's own verdicts are
    /// [`ClusterStatus::canary`].
    pub canary: Option<String>,
    /// Its last publication as gossiped (`<unix secs> ok|failed`).
    pub last_publish: Option<String>,
    /// When this node last saw it live (RFC 3339); `None`: never since this node started.
    pub last_seen: Option<String>,
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
    /// The descriptors carry `pow-params`: only when this node's own tor holds the master
    /// key and lists every intro point (`cluster::pow`), or with fleet PoW; never from an
    /// instance tor.
    pub pow: bool,
    /// Fleet PoW: the nodes whose tors' intro points and `pow-params` went into fleet
    /// descriptors, per time period (`cluster::fleet`).
    pub fleet: BTreeMap<u64, Vec<String>>,
    /// Per descriptor slot: HSDir answers.
    pub slots: Vec<SlotReport>,
}

/// A running cluster membership + publisher.
pub struct ClusterNode {
    membership: Arc<Membership>,
    elector: Elector,
    tasks: Vec<AbortHandle>,
    status: Arc<Mutex<ClusterStatus>>,
    leave_grace: Duration,
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
    /// Turbo mode (`tor.instances`): the extra tors and their instance addresses, each
    /// advertised under a gossip key of its own ([`instance_key_name`]).
    pub extra_instances: Vec<(Arc<TorSupervisor>, OnionAddress)>,
    /// The instance keys, first tor first: a node tells its tor's fresh uploads from an
    /// earlier process's by their revision counters ([`super::advertise::published_since`]).
    pub instance_keys: Vec<Arc<rustbalance_hs::IdentityKey>>,
    /// The port clients connect to (the canary probes peers on it).
    pub virtual_port: u16,
    /// Target health from the proxy.
    pub target_health: HealthHandle,
    /// A TestingTorNetwork (the lab).
    pub testing_network: bool,
    /// The cluster tasks' timers ([`Timers::from_config`] in production).
    pub timers: Timers,
    /// Signed gossip ([`super::credentials::gossip_auth`]); `None`: unsigned.
    pub auth: Option<GossipAuth>,
    /// Spawns the cluster's tasks and reports one that dies (gossip included).
    pub supervisor: Supervisor,
    /// `service.authorized_clients_dir`: restricted discovery on the master address.
    pub auth_clients_dir: Option<std::path::PathBuf>,
    /// `ADD_ONION` arguments of the master service for the single-node switch
    /// ([`super::solo::master_service_args`]); `None`: the switch is off.
    pub solo: Option<Vec<String>>,
    /// `ADD_ONION` arguments of the master service for fleet PoW on this node's tor
    /// (`cluster.fleet_pow` on an eligible node with a target); `None`: not hosted here.
    pub fleet: Option<Vec<String>>,
    /// `[[backends]]` (named, config order): fetched and probed on publisher-eligible
    /// nodes, listed in the master descriptor next to the nodes.
    pub backends: Vec<(String, OnionAddress)>,
    /// Client keys of restricted backends (`cluster.backends_client_auth_dir`).
    pub backend_keys: crate::backend_auth::BackendKeys,
    /// Publisher-only (no `[target]`): this node's tor runs no onion service; the node
    /// advertises no intro points and is probed by no canary.
    pub publisher_only: bool,
}

fn read_secret(path: &std::path::Path) -> Result<ClusterSecret> {
    let raw = crate::keystore::read_cluster_secret(path)?;
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
        mcfg.auth = p.auth.clone();
        let eligible = p.master.is_some();
        let initial = gossip::initial_state(p.cfg.priority, eligible);
        let membership = Arc::new(
            Membership::start(mcfg, &secret, initial, &UdpNetwork)
                .await
                .map_err(Error::Gossip)?,
        );
        let incarnation = rustbalance_hs::time::unix_secs(SystemTime::now());
        let election = Election::new(
            p.name.clone(),
            p.cfg.priority,
            eligible,
            incarnation,
            ElectionConfig {
                cluster_size: p.cfg.size,
                quorum: p.cfg.quorum,
                ..ElectionConfig::default()
            },
        )
        .map_err(Error::Election)?;
        let elector = Elector::spawn(membership.clone(), election, p.timers.election_tick);
        let status = Arc::new(Mutex::new(ClusterStatus {
            role: Role::Follower.as_str().into(),
            ..Default::default()
        }));
        let leave_grace = p.timers.leave_grace;
        let mut tasks = vec![p.supervisor.watch_gossip(membership.clone())];
        tasks.extend(spawn_tasks(p, &membership, &elector, &status));
        Ok(ClusterNode {
            membership,
            elector,
            tasks,
            status,
            leave_grace,
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
        tokio::time::sleep(self.leave_grace).await;
        for t in &self.tasks {
            t.abort();
        }
        self.elector.stop().await;
        if let Ok(m) = Arc::try_unwrap(self.membership) {
            let _ = m.shutdown().await;
        }
    }
}

/// What this node's own instance descriptor says that the master descriptor may carry:
/// its `flow-control` line, and its `pow-params` with the address they were made for
/// ([`super::pow::master_pow`] decides whether they may go in).
#[derive(Debug, Clone, Default)]
pub struct OwnParams {
    /// `flow-control` (protocol versions, sendme increment).
    pub flow: Option<(Protocols, u8)>,
    /// The first `pow-params` line and the identity of its descriptor.
    pub pow: Option<OwnPow>,
}

/// Start the node's tasks (the publish task only on a publisher-eligible node).
fn spawn_tasks(
    p: ClusterParams,
    membership: &Arc<Membership>,
    elector: &Elector,
    status: &Arc<Mutex<ClusterStatus>>,
) -> Vec<AbortHandle> {
    let sup = p.supervisor.clone();
    let own = Arc::new(Mutex::new(OwnParams::default()));
    // One cache of the consensus and microdescriptors for the three readers of this
    // node's tor (intro points, next descriptor, publisher).
    let views = ViewCache::default();
    let backends = Arc::new(Mutex::new(Backends::new(
        p.backends.clone(),
        BackendTimers::default(),
    )));
    let mut tasks = Vec::new();
    if p.master.is_some() && !p.backends.is_empty() {
        tasks.push(sup.spawn(
            "backends",
            backend_task(BackendCtx {
                tor: p.tor.clone(),
                state: backends.clone(),
                views: views.clone(),
                testing: p.testing_network,
                port: p.virtual_port,
                status: status.clone(),
                keys: p.backend_keys.clone(),
            }),
        ));
    }
    if !p.publisher_only {
        tasks.extend(spawn_instance_tasks(
            &p, membership, elector, status, &own, &views,
        ));
    }
    tasks.push(sup.spawn(
        "status",
        status_task(
            membership.clone(),
            status.clone(),
            own.clone(),
            p.timers.status_poll,
        ),
    ));
    if let (Some(master), Some(args)) = (&p.master, &p.fleet) {
        tasks.push(sup.spawn(
            "fleet",
            super::fleet::host::fleet_task(super::fleet::host::FleetCtx {
                membership: membership.clone(),
                tor: p.tor.clone(),
                master: master.duplicate(),
                args: args.clone(),
                testing: p.testing_network,
                timers: p.timers.clone(),
                views: views.clone(),
                status: status.clone(),
            }),
        ));
    }
    if let Some(master) = p.master {
        let solo = p
            .solo
            .map(|args| super::solo::SoloDriver::new(args, p.timers.solo));
        tasks.push(sup.spawn(
            "publish",
            publish_task(PublishCtx {
                membership: membership.clone(),
                publishing: elector.watch(),
                elector: elector.handle(),
                election: elector.config().clone(),
                tor: p.tor,
                master,
                testing: p.testing_network,
                timers: p.timers,
                status: status.clone(),
                own,
                name: p.name,
                views,
                auth_clients_dir: p.auth_clients_dir,
                backends: (!p.backends.is_empty()).then_some(backends),
                solo,
                per_hsdir: p.cfg.per_hsdir_descriptors,
                fleet_pow: p.cfg.fleet_pow.then_some(p.cfg.fleet_pow_min_effort),
            }),
        ));
    }
    tasks
}

/// The tasks of a node whose tor runs an instance: advertise its intro points, fetch
/// its next descriptor, and probe the peers (canary).
fn spawn_instance_tasks(
    p: &ClusterParams,
    membership: &Arc<Membership>,
    elector: &Elector,
    status: &Arc<Mutex<ClusterStatus>>,
    own: &Arc<Mutex<OwnParams>>,
    views: &ViewCache,
) -> Vec<AbortHandle> {
    let sup = p.supervisor.clone();
    let mut tasks = Vec::new();
    let tors =
        std::iter::once((p.tor.clone(), p.instance)).chain(p.extra_instances.iter().cloned());
    for (slot, (tor, instance)) in tors.enumerate() {
        let next = NextDescriptor::default();
        // The first tor shares the node's view cache with the publisher; an extra tor has
        // a control connection, and so a cache, of its own.
        let views = if slot == 0 {
            views.clone()
        } else {
            ViewCache::default()
        };
        tasks.push(sup.spawn(
            if slot == 0 {
                "intro"
            } else {
                "intro (extra tor)"
            },
            intro_task(IntroCtx {
                membership: membership.clone(),
                tor: tor.clone(),
                instance,
                name: instance_key_name(&p.name, slot),
                primary: slot == 0,
                health: p.target_health.clone(),
                testing: p.testing_network,
                timers: p.timers.clone(),
                status: status.clone(),
                own: own.clone(),
                next: next.clone(),
                views: views.clone(),
            }),
        ));
        tasks.push(sup.spawn(
            if slot == 0 {
                "next-descriptor"
            } else {
                "next-descriptor (extra tor)"
            },
            next_descriptor_task(
                tor,
                instance,
                p.instance_keys.get(slot).cloned(),
                p.testing_network,
                p.timers.clone(),
                next,
                views,
            ),
        ));
    }
    tasks.push(sup.spawn(
        "canary",
        super::canary::canary_task(super::canary::CanaryCtx {
            membership: membership.clone(),
            tor: p.tor.clone(),
            elector: elector.handle(),
            me: p.name.clone(),
            advertised: format!("{}:{}", p.instance, p.virtual_port),
            cfg: super::canary::CanaryConfig::default(),
            status: status.clone(),
        }),
    ));
    tasks
}

/// Refresh `/status`'s view of the members and the gossip counters.
async fn status_task(
    membership: Arc<Membership>,
    status: Arc<Mutex<ClusterStatus>>,
    own: Arc<Mutex<OwnParams>>,
    every: Duration,
) {
    let mut seen = BTreeMap::new();
    loop {
        let members = membership.members().await;
        let counters = membership.counters();
        let now = SystemTime::now();
        for v in members.iter().filter(|v| v.live) {
            seen.insert(v.node_id.clone(), now);
        }
        if let Ok(mut s) = status.lock() {
            s.members = members
                .iter()
                .map(|v| member_status(v, seen.get(&v.node_id).copied()))
                .collect();
            s.lease_holders = members
                .iter()
                .filter(|v| v.live && v.lease().is_some())
                .map(|v| v.node_id.clone())
                .collect();
            s.gossip_dropped = counters.dropped();
            // None once no peer has been heard for a while: no stale offset in /metrics.
            s.clock_offset_ms = counters.clock_offset_ms;
            s.gossip = counters;
            s.pow_suggested_effort = own
                .lock()
                .ok()
                .and_then(|o| {
                    o.pow
                        .as_ref()
                        .map(|p| super::pow::suggested_effort(&p.params))
                })
                .unwrap_or(0);
        }
        tokio::time::sleep(every).await;
    }
}

/// One member's row of `/status` (`last_seen`: when this node last saw it live).
fn member_status(v: &rustbalance_cluster::NodeView, last_seen: Option<SystemTime>) -> MemberStatus {
    MemberStatus {
        name: v.node_id.clone(),
        live: v.live,
        intro_points: gossip::intro_count(v),
        target: gossip::target_of(v).to_string(),
        role: v.get(gossip::ROLE).unwrap_or("unknown").to_string(),
        eligible: v.eligible(),
        lease: v.lease(),
        // Absent until its canary has decided about a peer.
        canary: v.get(CANARY_KEY).map(String::from),
        last_publish: v.get(gossip::LAST_PUBLISH).map(String::from),
        last_seen: last_seen.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
    }
}
