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
use super::gossip::{self, Role};
use super::publisher::{publish_task, PublishCtx, SlotReport, ViewCache};
use super::timers::Timers;
use crate::config::ClusterSection;
use crate::err::{Error, Result};
use rustbalance_cluster::{
    ClusterSecret, Election, ElectionConfig, Elector, Membership, MembershipConfig, UdpNetwork,
};
use rustbalance_hs::descriptor::{PowParams, Protocols};
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
    /// Target health from the proxy.
    pub target_health: HealthHandle,
    /// A TestingTorNetwork (the lab).
    pub testing_network: bool,
    /// The cluster tasks' timers ([`Timers::from_config`] in production).
    pub timers: Timers,
    /// Spawns the cluster's tasks and reports one that dies (gossip included).
    pub supervisor: Supervisor,
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
            ElectionConfig::default(),
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
/// its `flow-control` line and its `pow-params` (for the single-node fallback).
#[derive(Debug, Clone, Default)]
pub struct OwnParams {
    /// `flow-control` (protocol versions, sendme increment).
    pub flow: Option<(Protocols, u8)>,
    /// The first `pow-params` line.
    pub pow: Option<PowParams>,
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
    let next = NextDescriptor::default();
    // One cache of the consensus and microdescriptors for the three readers of this
    // node's tor (intro points, next descriptor, publisher).
    let views = ViewCache::default();
    let mut tasks = vec![sup.spawn(
        "intro",
        intro_task(IntroCtx {
            membership: membership.clone(),
            tor: p.tor.clone(),
            instance: p.instance,
            name: p.name.clone(),
            health: p.target_health.clone(),
            testing: p.testing_network,
            timers: p.timers.clone(),
            status: status.clone(),
            own: own.clone(),
            next: next.clone(),
            views: views.clone(),
        }),
    )];
    tasks.push(sup.spawn(
        "next-descriptor",
        next_descriptor_task(
            p.tor.clone(),
            p.instance,
            p.testing_network,
            p.timers.clone(),
            next,
            views.clone(),
        ),
    ));
    tasks.push(sup.spawn(
        "status",
        status_task(membership.clone(), status.clone(), p.timers.status_poll),
    ));
    if let Some(master) = p.master {
        tasks.push(sup.spawn(
            "publish",
            publish_task(PublishCtx {
                membership: membership.clone(),
                publishing: elector.watch(),
                tor: p.tor,
                master,
                testing: p.testing_network,
                timers: p.timers,
                status: status.clone(),
                own,
                name: p.name,
                views,
            }),
        ));
    }
    tasks
}

/// Refresh `/status`'s view of the members and the gossip counters.
async fn status_task(
    membership: Arc<Membership>,
    status: Arc<Mutex<ClusterStatus>>,
    every: Duration,
) {
    loop {
        let members = membership.members().await;
        let counters = membership.counters();
        if let Ok(mut s) = status.lock() {
            s.members = members
                .iter()
                .map(|v| MemberStatus {
                    name: v.node_id.clone(),
                    live: v.live,
                    intro_points: gossip::intro_count(v),
                    target: gossip::target_of(v).to_string(),
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
        tokio::time::sleep(every).await;
    }
}
