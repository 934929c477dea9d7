//! Gossip membership: who is alive and what each node advertises.
//!
//! A thin driver over [`chitchat`] (Scuttlebutt anti-entropy + phi-accrual failure
//! detection). Every datagram goes through [`crate::transport`], i.e. is authenticated
//! with a key derived from the cluster secret. Per-node state is a string key/value map;
//! the well-known keys are in [`crate::keys`].
//!
//! With signed gossip ([`MembershipConfig::auth`]), every value this node sets is wrapped
//! in an envelope signed by its identity ([`crate::signed`]) inside chitchat's lock, so the
//! version it signs is exactly the one chitchat assigns; its certificate is its first key
//! ([`keys::CERT`]); deletions write signed tombstones. Incoming deltas are checked by
//! [`crate::validator::SignatureCheck`]. Views ([`NodeView`]) show values without their
//! envelopes; [`Membership::members`] leaves out nodes whose certificate is revoked and,
//! in [`crate::SignatureMode::Require`], nodes without one, and prefers a certified generation
//! of a node to an uncertified one.

mod signing;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState,
};
use tokio::sync::watch;

pub use signing::GossipAuth;

use crate::auth::{ClusterSecret, MacKey};
use crate::cert::{CertRole, MemberCert};
use crate::election::{LeaseAdvert, Member, NodeId};
use crate::err::ClusterError;
use crate::health::{supervise, GossipHealth};
use crate::keys;
use crate::signed::Opened;
use crate::transport::{AuthTransport, Counters, Network, TransportCounters};
use crate::trust::Trust;
use crate::validator::{SignatureCheck, Validator};

/// How a node joins the gossip.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Unique and stable node id.
    pub node_id: NodeId,
    /// Where to listen (port 0: any free port).
    pub listen_addr: SocketAddr,
    /// What peers should send to, when it differs from the bound address.
    pub advertise_addr: Option<SocketAddr>,
    /// Peers to contact first.
    pub seeds: Vec<SocketAddr>,
    /// Nodes with a different cluster id ignore each other.
    pub cluster_id: String,
    pub gossip_interval: Duration,
    /// Phi-accrual threshold above which a peer is reported dead.
    pub phi_threshold: f64,
    /// How long a dead node is remembered before it is dropped from the state.
    pub dead_node_grace_period: Duration,
    /// Accepted clock difference between nodes for datagram timestamps.
    pub replay_window: Duration,
    /// Increases at every start of the node (default: Unix time in ms at `new`).
    pub generation: u64,
    /// Signed gossip: this node's identity, certificate and trust. `None` gossips and
    /// accepts unsigned values (clusters from before signatures, and tests of the
    /// unsigned layer).
    pub auth: Option<GossipAuth>,
}

impl MembershipConfig {
    pub fn new(node_id: impl Into<NodeId>, listen_addr: SocketAddr) -> MembershipConfig {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        MembershipConfig {
            node_id: node_id.into(),
            listen_addr,
            advertise_addr: None,
            seeds: Vec::new(),
            cluster_id: "rustbalance".into(),
            gossip_interval: Duration::from_millis(100),
            phi_threshold: 8.0,
            dead_node_grace_period: Duration::from_secs(3600),
            replay_window: Duration::from_secs(30),
            generation,
            auth: None,
        }
    }
}

/// What the membership knows about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub node_id: NodeId,
    pub generation: u64,
    pub addr: SocketAddr,
    pub live: bool,
    /// Its gossip heartbeat as this node last heard it (0: none yet).
    pub heartbeat: u64,
    pub state: BTreeMap<String, String>,
}

impl NodeView {
    fn from_chitchat(id: &ChitchatId, live: bool, state: Option<&NodeState>) -> NodeView {
        NodeView {
            node_id: id.node_id.to_string(),
            generation: id.generation_id,
            addr: id.gossip_advertise_addr,
            live,
            heartbeat: state.map(|s| u64::from(s.heartbeat())).unwrap_or(0),
            state: state.map(signing::plain_state).unwrap_or_default(),
        }
    }

    /// The node's member certificate ([`keys::CERT`]). Only certificates that passed
    /// [`crate::validator::SignatureCheck`] (or this node's own) reach a view built by
    /// [`Membership`].
    pub fn cert(&self) -> Option<MemberCert> {
        self.get(keys::CERT)
            .and_then(|c| crate::cert::parse(c.as_bytes()).ok())
    }

    /// The role the node's certificate grants; `None` for an uncertified node.
    pub fn certified_role(&self) -> Option<CertRole> {
        self.cert().map(|c| c.role())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.state.get(key).map(String::as_str)
    }

    /// Election priority ([`keys::PRIORITY`]); unreadable or absent ranks last.
    pub fn priority(&self) -> u32 {
        self.get(keys::PRIORITY)
            .and_then(|p| p.parse().ok())
            .unwrap_or(u32::MAX)
    }

    /// [`keys::ELIGIBLE`] is `"true"` and, for a certified node, its certificate's role is
    /// `eligible` (a worker's claim counts for nothing). An uncertified node is only seen
    /// in [`crate::SignatureMode::AcceptUnsigned`] (or without signed gossip), where its claim is
    /// all there is.
    pub fn eligible(&self) -> bool {
        self.get(keys::ELIGIBLE) == Some("true")
            && self.cert().is_none_or(|c| c.role() == CertRole::Eligible)
    }

    /// The advertised lease; an unreadable one counts as none.
    pub fn lease(&self) -> Option<LeaseAdvert> {
        self.get(keys::LEASE)
            .and_then(|l| LeaseAdvert::decode(l).ok())
    }

    /// `(instance, serialized intro points)` for every tor instance of the node.
    pub fn intro_points(&self) -> impl Iterator<Item = (&str, &str)> {
        self.state.iter().filter_map(|(k, v)| {
            k.strip_prefix(keys::INTRO_POINTS_PREFIX)
                .map(|i| (i, v.as_str()))
        })
    }

    /// The election's view of this node.
    pub fn to_member(&self) -> Member {
        Member {
            id: self.node_id.clone(),
            priority: self.priority(),
            eligible: self.eligible(),
            live: self.live,
            heartbeat: Some(self.heartbeat),
            // Only an eligible node may hold the lease (issue 13, attack 3): a worker's
            // advert, whatever its TTL, is as if it had none.
            lease: self.lease().filter(|_| self.eligible()),
        }
    }
}

/// A running gossip membership.
pub struct Membership {
    handle: ChitchatHandle,
    counters: Arc<Counters>,
    local_addr: SocketAddr,
    health: watch::Receiver<GossipHealth>,
    auth: Option<GossipAuth>,
    generation: u64,
    /// The configured seed addresses (not this node's): their clocks always count.
    seeds: BTreeSet<SocketAddr>,
}

impl Membership {
    /// Binds the socket on `network`, then starts gossiping with `initial` state.
    pub async fn start(
        cfg: MembershipConfig,
        secret: &ClusterSecret,
        initial: Vec<(String, String)>,
        network: &dyn Network,
    ) -> Result<Membership, ClusterError> {
        let mut validator = Validator::new(cfg.node_id.clone(), cfg.generation);
        if let Some(auth) = &cfg.auth {
            auth.check(&cfg.node_id)?;
            validator =
                validator.with_signatures(Arc::new(SignatureCheck::new(auth.trust.clone())));
        }
        Membership::start_with(cfg, secret, initial, network, Some(validator)).await
    }

    /// [`Membership::start`] with the payload check of `validator` (none: chitchat gets
    /// every authenticated payload, which only tests of the supervision want).
    pub(crate) async fn start_with(
        cfg: MembershipConfig,
        secret: &ClusterSecret,
        initial: Vec<(String, String)>,
        network: &dyn Network,
        validator: Option<Validator>,
    ) -> Result<Membership, ClusterError> {
        if cfg.gossip_interval.is_zero() {
            return Err(ClusterError::BadConfig(
                "the gossip interval must not be zero; 100ms is a good value".into(),
            ));
        }
        let socket = network
            .bind(cfg.listen_addr)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: cfg.listen_addr,
                source,
            })?;
        let local_addr = socket.local_addr();
        let counters = Arc::new(Counters::default());
        let node_bound = validator.as_ref().map(Validator::node_bound);
        let window_ms = u64::try_from(cfg.replay_window.as_millis()).unwrap_or(u64::MAX);
        let transport = AuthTransport::new(
            socket,
            MacKey::derive(secret),
            rand::random(),
            window_ms,
            validator,
            counters.clone(),
        );
        let advertise = cfg.advertise_addr.unwrap_or(local_addr);
        // The configured peers' clocks count from the start: a node whose clock is far
        // off hears only stale datagrams, learns no member, and must still find out why.
        let seeds: BTreeSet<SocketAddr> = cfg
            .seeds
            .iter()
            .copied()
            .filter(|a| *a != local_addr && *a != advertise)
            .collect();
        counters.set_clock_members(seeds.clone());
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(cfg.node_id.clone(), cfg.generation, advertise),
            cluster_id: cfg.cluster_id.clone(),
            gossip_interval: cfg.gossip_interval,
            listen_addr: local_addr,
            seed_nodes: cfg.seeds.iter().map(ToString::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: cfg.phi_threshold,
                sampling_window_size: 1_000,
                max_interval: Duration::from_secs(10),
                initial_interval: cfg.gossip_interval,
                dead_node_grace_period: cfg.dead_node_grace_period,
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        // A signing node sets its initial state itself, signed, once chitchat runs.
        let unsigned_initial = if cfg.auth.is_some() {
            Vec::new()
        } else {
            initial.clone()
        };
        let handle = spawn_chitchat(config, unsigned_initial, &transport)
            .await
            .map_err(|e| ClusterError::Gossip {
                addr: local_addr,
                message: format!("{e:#}"),
            })?;
        if let Some(bound) = node_bound {
            bound.attach(handle.chitchat()); // crate::node_bound: count what chitchat knows
        }
        let health = supervise(&handle, local_addr);
        let membership = Membership {
            handle,
            counters,
            local_addr,
            health,
            auth: cfg.auth.clone(),
            generation: cfg.generation,
            seeds,
        };
        if let Some(auth) = &membership.auth {
            let cert = auth.cert.encode();
            let values = std::iter::once((keys::CERT.to_string(), cert)).chain(initial);
            membership.set_all(values.collect()).await;
        }
        Ok(membership)
    }

    /// Sets several keys in one go (signed when this node signs).
    async fn set_all(&self, values: Vec<(String, String)>) {
        let (auth, generation) = (self.auth.clone(), self.generation);
        self.handle
            .with_chitchat(move |c| {
                let state = c.self_node_state();
                for (k, v) in &values {
                    match &auth {
                        Some(a) => {
                            signing::set_signed(state, &a.identity, generation, k, Opened::Set(v))
                        }
                        None => state.set(k, v),
                    }
                }
            })
            .await;
    }

    /// The address this node gossips on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.handle.chitchat_id().node_id
    }

    /// Sets one key of this node's state (gossiped to every peer; signed when this node
    /// signs).
    pub async fn set(&self, key: &str, value: &str) {
        self.set_all(vec![(key.to_string(), value.to_string())])
            .await;
    }

    /// Deletes one key of this node's state (a signing node writes a signed tombstone).
    pub async fn delete(&self, key: &str) {
        let (auth, generation) = (self.auth.clone(), self.generation);
        self.handle
            .with_chitchat(move |c| {
                let state = c.self_node_state();
                match &auth {
                    Some(a) => {
                        signing::set_signed(state, &a.identity, generation, key, Opened::Deleted)
                    }
                    None if state.contains_key(key) => state.delete(key),
                    None => {}
                }
            })
            .await;
    }

    /// Replaces this node's certificate (a renewed one from the authority); it must name
    /// this node and its identity and be valid for the node's trust.
    pub async fn set_cert(&self, cert: &MemberCert) -> Result<(), ClusterError> {
        let Some(auth) = &self.auth else {
            return Err(ClusterError::CertMismatch {
                problem: "this node does not gossip signed values".into(),
            });
        };
        auth.fits(cert, self.node_id())?;
        self.set(keys::CERT, &cert.encode()).await;
        Ok(())
    }

    /// The trust (authority key, revocations) of a signing node: whoever verifies a signed
    /// revocation adds it here, and the gossip check and the views obey it at once.
    pub fn trust(&self) -> Option<Arc<Trust>> {
        self.auth.as_ref().map(|a| a.trust.clone())
    }

    /// Nodes considered alive (this node included), sorted by node id.
    pub async fn live_nodes(&self) -> Vec<NodeView> {
        self.members()
            .await
            .into_iter()
            .filter(|n| n.live)
            .collect()
    }

    /// Live and dead (not yet forgotten) nodes, one entry per node id (a restarted node
    /// shows its newest live generation), sorted by node id.
    pub async fn members(&self) -> Vec<NodeView> {
        let views = self
            .handle
            .with_chitchat(|c| {
                let live: Vec<ChitchatId> = c.live_nodes().cloned().collect();
                let dead: Vec<ChitchatId> = c.dead_nodes().cloned().collect();
                live.iter()
                    .map(|id| NodeView::from_chitchat(id, true, c.node_state(id)))
                    .chain(
                        dead.iter()
                            .map(|id| NodeView::from_chitchat(id, false, c.node_state(id))),
                    )
                    .collect::<Vec<_>>()
            })
            .await;
        let trust = self.trust();
        let mut by_id: BTreeMap<NodeId, NodeView> = BTreeMap::new();
        let rank = |v: &NodeView| (v.get(keys::CERT).is_some(), v.live, v.generation);
        for v in views {
            if !signing::admitted(trust.as_deref(), v.cert().as_ref()) {
                continue;
            }
            let better = by_id.get(&v.node_id).is_none_or(|old| rank(&v) > rank(old));
            if better {
                by_id.insert(v.node_id.clone(), v);
            }
        }
        self.counters.set_clock_members(
            by_id
                .values()
                .filter(|v| v.node_id != self.node_id())
                .map(|v| v.addr)
                .chain(self.seeds.iter().copied())
                .collect(),
        );
        by_id.into_values().collect()
    }

    /// A watch that fires when a node joins, leaves or changes its state.
    pub async fn subscribe(&self) -> MembershipWatch {
        MembershipWatch {
            rx: self.handle.with_chitchat(|c| c.live_nodes_watcher()).await,
            trust: self.trust(),
        }
    }

    /// Transport counters (sent, accepted, dropped by reason).
    pub fn counters(&self) -> TransportCounters {
        self.counters.snapshot()
    }

    /// Whether the gossip task still runs.
    pub fn gossip_health(&self) -> GossipHealth {
        self.health.borrow().clone()
    }

    /// A watch of [`Membership::gossip_health`].
    pub fn watch_gossip_health(&self) -> watch::Receiver<GossipHealth> {
        self.health.clone()
    }

    /// Waits until the gossip task has ended and says how. A node awaits this next to
    /// its other tasks: on [`GossipHealth::Died`] its view is frozen, so it must leave
    /// the lease (the [`crate::Elector`] already does) and stop or restart loudly.
    pub async fn gossip_ended(&self) -> GossipHealth {
        let mut rx = self.health.clone();
        let ended = rx.wait_for(|h| !h.is_running()).await.map(|h| h.clone());
        ended.unwrap_or_else(|_| GossipHealth::Died {
            reason: "the gossip supervisor is gone (runtime shutting down)".into(),
        })
    }

    /// Stops gossiping and releases the socket.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        let addr = self.local_addr;
        self.handle
            .shutdown()
            .await
            .map_err(|e| ClusterError::Gossip {
                addr,
                message: format!("{e:#}"),
            })
    }
}

/// Change notifications of a [`Membership`].
pub struct MembershipWatch {
    rx: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    trust: Option<Arc<Trust>>,
}

impl MembershipWatch {
    /// Waits for the next change and returns the live nodes; `None` once the membership
    /// has shut down.
    pub async fn changed(&mut self) -> Option<Vec<NodeView>> {
        self.rx.changed().await.ok()?;
        let map = self.rx.borrow_and_update();
        Some(
            map.iter()
                .map(|(id, state)| NodeView::from_chitchat(id, true, Some(state)))
                .filter(|v| signing::admitted(self.trust.as_deref(), v.cert().as_ref()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
