//! The publisher: reads the network view from tor over the control port, plans both live master descriptors with the hs
//! core, uploads each to exactly its responsible HSDirs (`+HSPOST
//! SERVER=...`), and confirms every upload from `HS_DESC` events.
//!
//! ```text
//!  instance tors ──GETINFO hs/service/desc/id──▶ intro points ─┐
//!  publishing tor ─GETINFO consensus-microdesc, md/all──▶ ring ─┼─▶ plan ─▶ HSPOST ×2 ─▶ HS_DESC UPLOADED/FAILED
//! ```
//!
//! `publish_task` drives it on a cluster node: while the lease is held it reads the
//! healthy intro points, asks [`super::policy`] whether and why to publish, publishes,
//! and records the outcome (gossip `last_publish`, `/status`, retry backoff). After each
//! publication and every `cluster.hsdir_check_secs` it asks the HSDirs whether they still
//! hold it and uploads it again to those that lost it ([`hsdir_check`]).

use super::gossip::{self, Role};
use super::node::{ClusterStatus, OwnParams, PublishRecord};
use super::policy::{
    self, AntiEntropy, Health, HealthInputs, HealthLimits, Outcome, PublishInputs, PublishState,
    Reason, Verdict,
};
use super::pow;
use super::roster::{healthy_intros, HealthyIntros};
use super::solo::SoloDriver;
use super::timers::Timers;
use crate::err::{Error, Result};
use rand::CryptoRng;
use rustbalance_cluster::{ElectionConfig, ElectorHandle, Membership};
use rustbalance_hs::descriptor::{
    common_flow_control, ClientAuthKey, InstanceIntros, ParsedDescriptor, PowParams, Protocols,
    MAX_INTRO_POINTS,
};
use rustbalance_hs::publish::{plan_uploads, FleetSlot, PublishInput, SlotUpload};
use rustbalance_hs::time::unix_secs;
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_tor::control::{ControlClient, Event};
use rustbalance_tor::{TorPhase, TorSupervisor};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;

pub use super::view::{
    instance_descriptor, instance_descriptor_from_hsdirs, network_view, only_established,
    NetworkView, ViewCache,
};

mod confirm;
mod counters;
mod fleet_round;
mod hsdir_check;
mod record;

pub use counters::CounterMemory;
use counters::HSDIR_MEMORY;

pub use hsdir_check::{PublishedSlot, SlotCheck};

/// At most this many intro points go into a master descriptor.
const MAX_PUBLISHED_INTROS: usize = 20;

/// The outcome of uploading one descriptor slot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotReport {
    /// Time period of the descriptor.
    pub period_num: u64,
    /// Its revision counter.
    pub revision: u64,
    /// Intro points listed.
    pub intro_points: usize,
    /// Size in bytes.
    pub size: usize,
    /// HSDir fingerprint → `UPLOADED`, `FAILED <reason>` or `NO ANSWER`.
    pub hsdirs: BTreeMap<String, String>,
}

impl SlotReport {
    /// How many HSDirs confirmed the upload.
    pub fn uploaded(&self) -> usize {
        self.hsdirs.values().filter(|s| *s == "UPLOADED").count()
    }
}

/// Publishes master descriptors through one tor's control port.
pub struct Publisher {
    ctl: ControlClient,
    events: UnboundedReceiver<Event>,
    master: IdentityKey,
    testing_network: bool,
    max_intro_points: usize,
    /// Above `max_intro_points`, one descriptor per HSDir clients fetch from.
    per_hsdir: bool,
    views: ViewCache,
    /// Restricted discovery: the authorized clients (`None`: open to anyone).
    auth_clients: Option<Vec<ClientAuthKey>>,
    /// What the latest publication uploaded, slot by slot (anti-entropy checks it).
    last: Vec<PublishedSlot>,
    /// Fleet PoW: the next publication's descriptors for the periods the node tors'
    /// descriptors were made for ([`super::fleet`]).
    fleet: Vec<FleetSlot>,
    /// Revision counters above tor's (fleet PoW: node tors publish master descriptors too).
    above_tor_counters: bool,
    /// Counters above tor's until then, fleet PoW or not: most HSDirs refused a new
    /// descriptor ([`CounterMemory`]).
    counters: CounterMemory,
}

impl Publisher {
    /// Take over `ctl` (its event stream is used for upload confirmations).
    pub async fn new(
        ctl: ControlClient,
        master: IdentityKey,
        testing_network: bool,
        max_intro_points: usize,
    ) -> Result<Self> {
        let events = ctl
            .take_events()
            .ok_or(rustbalance_tor::Error::EventsTaken)?;
        ctl.setevents(&["HS_DESC", "HS_DESC_CONTENT"]).await?;
        Ok(Publisher {
            ctl,
            events,
            master,
            testing_network,
            max_intro_points: max_intro_points.clamp(1, MAX_INTRO_POINTS),
            per_hsdir: false,
            views: ViewCache::default(),
            auth_clients: None,
            last: Vec::new(),
            fleet: Vec::new(),
            above_tor_counters: false,
            counters: CounterMemory::default(),
        })
    }

    /// Above `max_intro_points` intro points, give each HSDir that clients fetch from a
    /// descriptor of its own, each listing at most `max_intro_points` (chosen per window:
    /// `selection::choose_windows`).
    pub fn per_hsdir(mut self, on: bool) -> Self {
        self.per_hsdir = on;
        self
    }

    /// Share `views` with other readers of the same tor instead of a cache of its own.
    pub fn with_views(mut self, views: ViewCache) -> Self {
        self.views = views;
        self
    }

    /// Fleet PoW: upload every descriptor with a revision counter above any tor's, and use
    /// `slots`' descriptors for their periods in the next publications.
    pub fn set_fleet(&mut self, slots: Vec<FleetSlot>) {
        self.above_tor_counters = true;
        self.fleet = slots;
    }

    /// Restrict the next descriptors to these clients (`None`: open to anyone).
    pub fn set_auth_clients(&mut self, clients: Option<Vec<ClientAuthKey>>) {
        self.auth_clients = clients;
    }

    /// The master address.
    pub fn address(&self) -> OnionAddress {
        self.master.address()
    }

    /// The network view of the publishing tor (cached per consensus).
    pub async fn view(&mut self) -> Result<std::sync::Arc<NetworkView>> {
        self.views.get(&self.ctl, self.testing_network).await
    }

    /// The control client (to read the network view from the same tor).
    pub fn control(&self) -> &ControlClient {
        &self.ctl
    }

    /// Merge `instances`, build both live descriptors and upload each to
    /// its responsible HSDirs; wait up to `confirm_timeout` for the
    /// `HS_DESC` answers.
    pub async fn publish<R: rand::Rng + CryptoRng>(
        &mut self,
        instances: &[ParsedDescriptor],
        now: SystemTime,
        confirm_timeout: Duration,
        rng: &mut R,
    ) -> Result<Vec<SlotReport>> {
        let intros = InstanceIntros::from_parsed(instances);
        let flow_control = common_flow_control(instances);
        self.publish_intros(&intros, flow_control, None, now, confirm_timeout, rng)
            .await
    }

    /// Like [`Publisher::publish`], from intro points already extracted
    /// (e.g. received over gossip).
    pub async fn publish_intros<R: rand::Rng + CryptoRng>(
        &mut self,
        intros: &[InstanceIntros],
        flow_control: Option<(Protocols, u8)>,
        pow_params: Option<&PowParams>,
        now: SystemTime,
        confirm_timeout: Duration,
        rng: &mut R,
    ) -> Result<Vec<SlotReport>> {
        let view = self.views.get(&self.ctl, self.testing_network).await?;
        // Per-HSDir descriptors above `max_intro_points` distinct points: one window per
        // HSDir clients fetch from (2 replicas × 3).
        let fetched = usize::from(view.hsdirs.n_replicas) * view.hsdirs.spread_fetch;
        let selections = if self.per_hsdir
            && super::selection::distinct_points(intros) > self.max_intro_points
            && fetched > 1
        {
            super::selection::choose_windows(intros, fetched, self.max_intro_points)
        } else {
            vec![super::selection::choose(intros, self.max_intro_points)]
        };
        // What the first window (or the merged descriptor) left out is logged; the others
        // leave out other points by design.
        let selection = &selections[0];
        selection.log();
        let lists: Vec<Vec<rustbalance_hs::descriptor::IntroPointDesc>> =
            selections.iter().map(|s| s.points()).collect();
        let plan = plan_uploads(
            &PublishInput {
                master: &self.master,
                consensus: &view.consensus,
                hsdirs: &view.hsdirs,
                time: view.time,
                now,
                descriptors: &lists,
                flow_control,
                pow_params,
                auth_clients: self.auth_clients.as_deref(),
                fleet: &self.fleet,
                above_tor_counters: self.above_tor_counters
                    || self.counters.above_tor(Instant::now()),
            },
            rng,
        )?;
        selection.log_fitted(&plan);
        // Until every slot is uploaded there is nothing for anti-entropy to check.
        self.last.clear();
        // Drop stale events from earlier rounds.
        while self.events.try_recv().is_ok() {}
        let addr = self.master.address().without_suffix();
        let mut reports = Vec::new();
        for up in &plan {
            let servers: Vec<String> = up.hsdirs.iter().map(|d| d.fingerprint.clone()).collect();
            self.ctl
                .hspost(&up.descriptor.text, &servers, Some(&addr))
                .await
                .map_err(|source| Error::Upload {
                    period: up.slot.period_num,
                    source,
                })?;
            reports.push(report_of(up));
        }
        self.last = plan.iter().map(PublishedSlot::of).collect();
        self.confirm(&addr, &mut reports, confirm_timeout).await;
        if self.counters.answered(&reports, Instant::now()) && !self.above_tor_counters {
            tracing::warn!(
                "most HSDirs refused a new descriptor (UPLOAD_REJECTED): they hold a higher \
                 revision counter, most likely a fleet PoW descriptor (counter above 2^40) \
                 from before cluster.fleet_pow was turned off; publishing with counters above \
                 tor's for {} minutes, until such descriptors have expired",
                HSDIR_MEMORY.as_secs() / 60
            );
        }
        Ok(reports)
    }
}

fn report_of(up: &SlotUpload) -> SlotReport {
    SlotReport {
        period_num: up.slot.period_num,
        revision: up.descriptor.revision,
        intro_points: up.descriptor.intro_count,
        size: up.descriptor.text.len(),
        hsdirs: up
            .hsdirs
            .iter()
            .map(|d| (d.fingerprint.clone(), "NO ANSWER".to_string()))
            .collect(),
    }
}

/// Fail unless every slot (time period) reached at least one HSDir. With per-HSDir
/// descriptors a period has several reports, one per descriptor.
pub fn require_uploaded(reports: &[SlotReport]) -> Result<()> {
    for r in reports {
        let period_reached = reports
            .iter()
            .filter(|o| o.period_num == r.period_num)
            .any(|o| o.uploaded() > 0);
        if !period_reached {
            let all: BTreeMap<&String, &String> = reports
                .iter()
                .filter(|o| o.period_num == r.period_num)
                .flat_map(|o| o.hsdirs.iter())
                .collect();
            return Err(Error::NotUploaded {
                period: r.period_num,
                hsdirs: format!("{all:?}"),
            });
        }
    }
    Ok(())
}

/// What the publish task works with.
pub(super) struct PublishCtx {
    /// The gossip membership.
    pub membership: Arc<Membership>,
    /// `true` while this node holds the lease.
    pub publishing: tokio::sync::watch::Receiver<bool>,
    /// Makes this node ineligible while its publishing health is bad, and eligible again.
    pub elector: ElectorHandle,
    /// The election's configuration (clock tolerance, guard).
    pub election: ElectionConfig,
    /// The node's supervised tor (it uploads).
    pub tor: Arc<TorSupervisor>,
    /// The master key.
    pub master: IdentityKey,
    /// A TestingTorNetwork (the lab).
    pub testing: bool,
    /// The node's timers.
    pub timers: Timers,
    /// What `/status` shows.
    pub status: Arc<Mutex<ClusterStatus>>,
    /// `flow-control` and `pow-params` of this node's own instance descriptor.
    pub own: Arc<Mutex<OwnParams>>,
    /// This node's name.
    pub name: String,
    /// The node's shared network view cache.
    pub views: ViewCache,
    /// `service.authorized_clients_dir` (restricted discovery), read every round.
    pub auth_clients_dir: Option<std::path::PathBuf>,
    /// The single-node switch (`None`: off for this configuration).
    pub solo: Option<SoloDriver>,
    /// Fetch-mode backends (`None`: the config lists none).
    pub backends: Option<Arc<Mutex<super::backends::Backends>>>,
    /// `cluster.per_hsdir_descriptors`.
    pub per_hsdir: bool,
    /// Fleet PoW (`cluster.fleet_pow`): `Some(cluster.fleet_pow_min_effort)`.
    pub fleet_pow: Option<u32>,
}

/// While this node holds the lease: publish the healthy nodes' intro points whenever the
/// policy says so, and check the HSDirs' copies after each publication and every
/// `timers.hsdir_check` ([`hsdir_check`]); step down to follower when the lease goes. On
/// every eligible node: check publishing health and make the node ineligible while it is bad.
pub(super) async fn publish_task(mut c: PublishCtx) {
    let mut publisher: Option<(u32, Publisher)> = None;
    let mut state = PublishState::default();
    let mut health = Health::default();
    let mut next_health = Instant::now();
    let mut anti_entropy = AntiEntropy::default();
    let mut solo = c.solo.take();
    if solo.is_none() {
        if let Ok(mut st) = c.status.lock() {
            st.mode = super::solo::SoloMode::Merged.as_str().into();
        }
    }
    loop {
        tokio::time::sleep(c.timers.publish_poll).await;
        let holding = *c.publishing.borrow_and_update();
        if Instant::now() >= next_health {
            next_health = Instant::now() + c.timers.health_poll;
            c.check_health(&mut publisher, &mut health, holding).await;
        }
        let merged = match solo.as_mut() {
            Some(s) => c.solo_round(s, holding).await,
            None => true,
        };
        if !holding {
            anti_entropy.step_down();
            if state.step_down() {
                c.set_role(Role::Follower).await;
                // A follower checks nothing: no stale coverage in `/status` and the metrics.
                if let Ok(mut s) = c.status.lock() {
                    s.hsdir_coverage.clear();
                }
            }
            continue;
        }
        if !merged {
            // tor publishes the master descriptor itself (its upload was confirmed): a
            // merged one, or an anti-entropy re-upload, would replace it and its PoW.
            health.confirmed(Instant::now());
            continue;
        }
        let Some(p) = c.connect(&mut publisher).await else {
            continue;
        };
        let mut broken = false;
        let solo_epoch = solo.as_ref().map_or(0, SoloDriver::epoch);
        if let Some((outcome, b)) = c.round(p, &mut state, solo_epoch).await {
            if outcome.confirmed {
                health.confirmed(Instant::now());
            } else {
                health.unconfirmed(Instant::now());
            }
            if let Some(s) = solo.as_mut() {
                s.merged_published(outcome.confirmed, outcome.lists_peers);
            }
            broken = b;
            anti_entropy.published(Instant::now());
        }
        if !broken && anti_entropy.due(Instant::now()) {
            broken = c.check_hsdirs(p, &mut anti_entropy).await;
        }
        if broken {
            publisher = None;
        }
    }
}

/// How a publication went, for the health check and the single-node switch.
struct Confirmed {
    /// Every slot reached at least one HSDir.
    confirmed: bool,
    /// It listed other nodes' intro points.
    lists_peers: bool,
}

impl PublishCtx {
    /// One publish round while holding the lease: `None` when nothing was published,
    /// else how it went and whether the tor connection broke.
    async fn round(
        &self,
        p: &mut Publisher,
        state: &mut PublishState,
        solo_epoch: u64,
    ) -> Option<(Confirmed, bool)> {
        let mut intros = healthy_intros(&self.membership).await;
        let nodes_listed = !intros.nodes.is_empty();
        let backend_flows = self.add_backends(&mut intros);
        if intros.nodes.is_empty() {
            return None;
        }
        // Restricted discovery: a changed client set republishes like changed intro points.
        let clients_fp = super::auth::apply_clients(self.auth_clients_dir.as_deref(), p)?;
        let wall_secs = unix_secs(SystemTime::now());
        if !state.may_build(wall_secs) {
            return None;
        }
        let view = p.view().await.ok()?;
        let live = view
            .time
            .live_slots(wall_secs, view.consensus.valid_after_unix());
        // A tor's `desc_current`, what fleet PoW lists, is always for the first live slot.
        let fleet = self.fleet_round(p, &view, live[0].period_num).await;
        let own_pow = self.own.lock().ok().and_then(|o| o.pow.clone());
        let pow = pow::master_pow(
            &intros.nodes,
            &self.name,
            own_pow.as_ref(),
            &self.master.address(),
        );
        let input = PublishInputs {
            intros: format!("{}{clients_fp}{}", intros.fingerprint, fleet.fingerprint),
            pow: policy::pow_fingerprint(pow.as_ref()),
            periods: live.iter().map(|s| s.period_num).collect(),
            ring: view.ring_fingerprint(),
            solo_epoch,
        };
        let reason = state.reason(&input, Instant::now(), &self.timers)?;
        // Election rule 8: never at or before a revision time any publisher used.
        let (seen, a_holder_died) = self.revision_times_seen().await;
        let margin = if a_holder_died {
            self.election.takeover_margin().as_secs()
        } else {
            0
        };
        let revision =
            state.revision_time(wall_secs, seen, self.election.guard().as_secs(), margin);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(revision);
        if state.building(wall_secs, revision) {
            self.set_role(Role::Publisher).await;
        }
        let own_flow = self.own.lock().ok().and_then(|o| o.flow.clone());
        let flow = match backend_flows {
            Some(b) => super::backends::merged_flow(own_flow, nodes_listed, &b),
            None => own_flow,
        };
        let t0 = Instant::now();
        let mut rng = {
            use rand::SeedableRng;
            rand::rngs::StdRng::from_rng(&mut rand::rng())
        };
        let result = p
            .publish_intros(
                &intros.nodes,
                flow,
                pow.as_ref(),
                now,
                self.timers.upload_confirm,
                &mut rng,
            )
            .await;
        let broken = result.as_ref().is_err_and(Error::is_tor);
        let (outcome, reached) = self
            .record(
                result,
                &intros,
                (pow.is_some(), fleet.nodes),
                now,
                reason,
                t0,
            )
            .await;
        state.finished(input, outcome, Instant::now(), &self.timers);
        let lists_peers = intros.nodes.iter().any(|i| i.instance != self.name);
        Some((
            Confirmed {
                confirmed: reached,
                lists_peers,
            },
            broken,
        ))
    }

    /// The single-node switch's round (on every eligible node: a node that loses the
    /// lease removes the master service at once); whether merged descriptors go out.
    async fn solo_round(&self, s: &mut SoloDriver, holding: bool) -> bool {
        // Listed fetch-mode backends are peers too: a node publishing for backends is
        // never alone (its own tor's descriptor would drop them).
        let peers = if holding {
            let mut intros = healthy_intros(&self.membership).await;
            self.add_backends(&mut intros);
            intros
                .nodes
                .iter()
                .filter(|i| i.instance != self.name)
                .count()
        } else {
            0
        };
        let merged = s.step(&self.tor, &self.master, holding, peers).await;
        if let Ok(mut st) = self.status.lock() {
            st.mode = s.mode().as_str().into();
            st.master_hosted = s.mode() != super::solo::SoloMode::Merged;
        }
        merged
    }

    /// Append the listed backends' intro points (one group each) to `intros` and to its
    /// fingerprint (a backend listed, left out or with new points republishes); returns
    /// their `flow-control` lines, `None` without backends.
    fn add_backends(&self, intros: &mut HealthyIntros) -> Option<Vec<Option<(Protocols, u8)>>> {
        let b = self.backends.as_ref()?;
        let s = b.lock().ok()?;
        let (now, wall) = (Instant::now(), SystemTime::now());
        for g in s.listed(now, wall) {
            let fp = &mut intros.fingerprint;
            fp.push_str(&g.instance);
            fp.push(':');
            fp.push_str(&gossip::encode_intros(&g.intro_points));
            fp.push(';');
            intros.nodes.push(g);
        }
        Some(s.listed_flow(now, wall))
    }

    /// The revision times the eligible members gossiped (`last_publish`), this node's
    /// own included, and whether an eligible member is reported dead (it may have
    /// published once more, unseen: the first build then takes the takeover margin).
    async fn revision_times_seen(&self) -> (Vec<u64>, bool) {
        let members = self.membership.members().await;
        let eligible = || members.iter().filter(|v| v.eligible());
        let seen = eligible().filter_map(gossip::last_publish_time).collect();
        (seen, eligible().any(|v| !v.live))
    }

    /// Publishing health: tell the elector when this node becomes unfit or fit again,
    /// log it, and show it in `/status`.
    async fn check_health(
        &self,
        publisher: &mut Option<(u32, Publisher)>,
        health: &mut Health,
        holding: bool,
    ) {
        let tor_running = self.tor.status().phase == TorPhase::Running;
        let consensus = match self.connect(publisher).await {
            Some(p) => p.view().await.ok().map(|v| {
                (
                    v.consensus.valid_after_unix(),
                    unix_secs(v.consensus.valid_until),
                )
            }),
            None => None,
        };
        let clock_offset_ms = self.membership.counters().clock_offset_ms;
        let inputs = HealthInputs {
            now: Instant::now(),
            now_unix: unix_secs(SystemTime::now()),
            clock_offset_ms,
            consensus,
            tor_running,
            holding,
        };
        let limits = HealthLimits {
            clock_tolerance: self.election.clock_tolerance,
            yield_after: self.timers.yield_after,
            settled_max: self.timers.republish
                + self.timers.upload_confirm
                + self.timers.yield_after,
        };
        match health.assess(&inputs, &limits) {
            Some(Verdict::Ineligible(why)) => {
                tracing::warn!(
                    "this node does not publish: {why}; another eligible node takes over; \
                     `rustbalance doctor --config FILE` checks tor, the consensus and the clock"
                );
                self.elector.set_eligible(false);
            }
            Some(Verdict::Eligible) => {
                tracing::info!("publishing health is good again: this node is eligible");
                self.elector.set_eligible(true);
            }
            None => {}
        }
        if let Ok(mut s) = self.status.lock() {
            s.not_publishing_because = health.unfit().map(|u| u.to_string());
            s.clock_offset_ms = clock_offset_ms;
        }
    }

    /// The publisher on the running tor, made anew after tor restarted.
    async fn connect<'a>(
        &self,
        publisher: &'a mut Option<(u32, Publisher)>,
    ) -> Option<&'a mut Publisher> {
        let st = self.tor.status();
        let (Some(pid), TorPhase::Running) = (st.pid, st.phase) else {
            return None;
        };
        if publisher.as_ref().map(|(p, _)| *p) != Some(pid) {
            let ctl = self.tor.control().await.ok()?;
            let key = self.master.duplicate();
            match Publisher::new(ctl, key, self.testing, MAX_PUBLISHED_INTROS).await {
                Ok(p) => {
                    let p = p.with_views(self.views.clone()).per_hsdir(self.per_hsdir);
                    *publisher = Some((pid, p));
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot publish through tor's control port: {e}; tried again next round; \
                         if it lasts, run `rustbalance doctor --config FILE`"
                    );
                    return None;
                }
            }
        }
        publisher.as_mut().map(|(_, p)| p)
    }

    /// Gossip and show this node's role.
    async fn set_role(&self, role: Role) {
        self.membership.set(gossip::ROLE, role.as_str()).await;
        if let Ok(mut s) = self.status.lock() {
            s.role = role.as_str().into();
        }
    }
}

#[cfg(test)]
mod tests;
