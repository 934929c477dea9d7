//! What a node tells the cluster about itself: its target's health and the intro points
//! of its own instance whose circuits are up (gossip `target_health`, `intro/<node>`).
//!
//! ```text
//!  intro task (every intro_poll):
//!    proxy health ─▶ target_health
//!    tor down ─▶ withdraw intro/<node>
//!    tor up ─▶ network view ─▶ policy::advertise_source ─▶ current | fetched | wait
//!           ─▶ only established circuits ─▶ policy::advert ─▶ set | withdraw | keep
//!  next-descriptor task (every next_poll):
//!    between period start and SRV? ─no─▶ forget ; ─yes─▶ refetch due? ─▶ HSFETCH own
//!    instance ─▶ running period's? ─▶ keep it for the intro task
//! ```

use super::gossip;
use super::node::{ClusterStatus, OwnParams};
use super::policy::{self, Advert, NextState, Period, Source};
use super::pow::OwnPow;
use super::publisher::{instance_descriptor, instance_descriptor_from_hsdirs, only_established};
use super::timers::Timers;
use super::view::{NetworkView, ViewCache};
use crate::err::Result;
use rustbalance_cluster::Membership;
use rustbalance_hs::descriptor::ParsedDescriptor;
use rustbalance_hs::OnionAddress;
use rustbalance_proxy::HealthHandle;
use rustbalance_tor::control::ControlClient;
use rustbalance_tor::{TorPhase, TorSupervisor};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The instance descriptor fetched back from the HSDirs, shared by the two tasks.
#[derive(Clone, Default)]
pub(super) struct NextDescriptor(Arc<Mutex<NextFetch>>);

/// What [`next_descriptor_task`] knows.
#[derive(Default)]
struct NextFetch {
    /// Since when the node is between a period start and the next SRV (`None`: outside).
    window_since: Option<Instant>,
    /// The instance's descriptor for the running period, and when it was fetched.
    desc: Option<(Instant, ParsedDescriptor)>,
}

impl NextDescriptor {
    /// The fetched descriptor and the policy's view of the fetch.
    fn snapshot(&self) -> (Option<ParsedDescriptor>, NextState) {
        self.0
            .lock()
            .map(|n| {
                let desc = n.desc.as_ref().map(|(_, d)| d.clone());
                let state = NextState {
                    window_since: n.window_since,
                    fetched_with_intros: desc.as_ref().is_some_and(|d| !d.intro_points.is_empty()),
                };
                (desc, state)
            })
            .unwrap_or_default()
    }

    fn set(&self, f: NextFetch) {
        if let Ok(mut n) = self.0.lock() {
            *n = f;
        }
    }

    fn fetched_at(&self) -> Option<Instant> {
        self.0
            .lock()
            .ok()
            .and_then(|n| n.desc.as_ref().map(|(t, _)| *t))
    }

    /// Drop the fetched descriptor (the next-descriptor task fetches again at once).
    fn forget(&self) {
        if let Ok(mut n) = self.0.lock() {
            n.desc = None;
        }
    }

    fn store(&self, d: ParsedDescriptor, at: Instant) {
        if let Ok(mut n) = self.0.lock() {
            n.desc = Some((at, d));
        }
    }
}

/// What the intro task works with.
pub(super) struct IntroCtx {
    pub membership: Arc<Membership>,
    pub tor: Arc<TorSupervisor>,
    pub instance: OnionAddress,
    /// The gossip key suffix (`intro/<name>`): [`super::node::instance_key_name`].
    pub name: String,
    /// The node's first tor: its descriptor's flow control and PoW are the node's.
    pub primary: bool,
    pub health: HealthHandle,
    pub testing: bool,
    pub timers: Timers,
    pub status: Arc<Mutex<ClusterStatus>>,
    pub own: Arc<Mutex<OwnParams>>,
    pub next: NextDescriptor,
    pub views: ViewCache,
}

/// Read this node's own instance descriptor and advertise its intro points.
pub(super) async fn intro_task(c: IntroCtx) {
    let key = gossip::intro_points(&c.name);
    let mut last_enc = String::new();
    let mut last_health = String::new();
    let mut ctl = None;
    loop {
        let h = gossip::target_health(c.health.get().up);
        // The node's target health, said once: by its first tor's task.
        if c.primary && h != last_health {
            c.membership.set(gossip::TARGET_HEALTH, h).await;
            last_health = h.to_string();
        }
        let wanted = if c.tor.status().phase != TorPhase::Running {
            ctl = None;
            // Our tor is down: our intro points are dead, withdraw them.
            Want::TorDown
        } else {
            if ctl.is_none() {
                ctl = c.tor.control().await.ok();
                c.views.clear().await;
            }
            match &ctl {
                None => Want::Wait("no control connection to tor".into()),
                Some(conn) => match c.established(conn).await {
                    Ok(Ok(d)) => {
                        if c.primary && !d.intro_points.is_empty() {
                            if let Ok(mut o) = c.own.lock() {
                                o.flow = d.flow_control.clone();
                                o.pow = OwnPow::of(&d);
                            }
                        }
                        Want::Established(d)
                    }
                    Ok(Err(why)) => Want::Wait(why.into()),
                    Err(e) => {
                        if e.is_tor() {
                            ctl = None;
                        }
                        Want::Wait(format!("reading tor's descriptor: {e}"))
                    }
                },
            }
        };
        c.apply(&key, &mut last_enc, wanted).await;
        tokio::time::sleep(c.timers.intro_poll).await;
    }
}

impl IntroCtx {
    /// The descriptor to advertise, trimmed to established intro circuits; `Err(why)`
    /// while the policy says to wait.
    async fn established(
        &self,
        ctl: &ControlClient,
    ) -> Result<std::result::Result<ParsedDescriptor, &'static str>> {
        let view = self.views.get(ctl, self.testing).await?;
        let current =
            instance_descriptor(ctl, &self.instance, &view.time, SystemTime::now()).await?;
        let (fetched, next) = self.next.snapshot();
        let period = Period {
            current: current.period_num,
            running: running_period(&view),
            between: view
                .time
                .between_tp_and_srv(view.consensus.valid_after_unix()),
        };
        let chosen = match policy::advertise_source(period, &next, Instant::now(), &self.timers) {
            Source::Wait(why) => {
                tracing::trace!("intro points: {why}");
                return Ok(Err(why));
            }
            Source::Fetched => match fetched {
                Some(f) => {
                    let f = only_established(ctl, &self.instance, f).await?;
                    if !f.intro_points.is_empty() {
                        return Ok(Ok(f));
                    }
                    // None of its points has a circuit of this tor: a copy uploaded by an
                    // earlier run of it (a restart with the same instance key, in the
                    // window), still on the HSDirs. Forget it (fetched again at once) and
                    // advertise what this tor has meanwhile.
                    tracing::debug!(
                        instance = %self.name,
                        "fetched instance descriptor has no intro point of this tor: fetching again"
                    );
                    self.next.forget();
                    current
                }
                None => current,
            },
            Source::Current => current,
        };
        for (i, fault) in &chosen.refused_intro_points {
            tracing::debug!("own instance descriptor: intro point {i} left out: {fault}");
        }
        // Only intro points whose circuits are up right now.
        Ok(Ok(only_established(ctl, &self.instance, chosen).await?))
    }

    /// Gossip, withdraw or keep this node's intro-point advert.
    async fn apply(&self, key: &str, last_enc: &mut String, wanted: Want) {
        self.show_state(&wanted, last_enc.is_empty());
        let enc = match &wanted {
            Want::Wait(_) => return,
            Want::TorDown => None,
            // tor lists intro points but none has a live circuit: withdraw ours until it
            // has re-established some.
            Want::Established(d) if d.intro_points.is_empty() => None,
            Want::Established(d) => Some(gossip::encode_intros(&d.intro_points)),
        };
        match policy::advert(last_enc, enc) {
            Advert::Set(enc) => {
                let n = match &wanted {
                    Want::Established(d) => d.intro_points.len(),
                    _ => 0,
                };
                self.membership.set(key, &enc).await;
                tracing::info!(instance = %self.name, "advertising {n} intro points");
                self.count(n);
                *last_enc = enc;
            }
            Advert::Withdraw => {
                self.membership.delete(key).await;
                if !matches!(wanted, Want::TorDown) {
                    tracing::info!(instance = %self.name, "no established intro circuit: intro points withdrawn");
                }
                self.count(0);
                last_enc.clear();
            }
            Advert::Keep => {}
        }
    }
}

impl IntroCtx {
    /// `/status` `cluster.advert`: what this node advertises and why (a node missing from
    /// the descriptor says here whether it is waiting, and for what).
    fn show_state(&self, wanted: &Want, nothing_advertised: bool) {
        let state = match wanted {
            Want::Wait(why) if nothing_advertised => format!("nothing yet: {why}"),
            Want::Wait(why) => format!("keeping the last advert: {why}"),
            Want::TorDown => "withdrawn: tor is down".to_owned(),
            Want::Established(d) if d.intro_points.is_empty() => {
                "withdrawn: no established intro circuit".to_owned()
            }
            Want::Established(d) => format!("advertising {} intro points", d.intro_points.len()),
        };
        if let Ok(mut s) = self.status.lock() {
            if self.primary && s.advert != state {
                s.advert = state.clone();
            }
            s.instances.entry(self.name.clone()).or_default().advert = state;
        }
    }

    /// `/status`: this tor advertises `n` intro points; the node's total follows.
    fn count(&self, n: usize) {
        if let Ok(mut s) = self.status.lock() {
            s.instances
                .entry(self.name.clone())
                .or_default()
                .intro_points = n;
            s.own_intro_points = s.instances.values().map(|i| i.intro_points).sum();
        }
    }
}

/// What the intro task wants advertised this round.
enum Want {
    /// Nothing new (no control connection, or the policy says wait, and why): keep the
    /// advert.
    Wait(String),
    /// tor is down: its intro points are dead.
    TorDown,
    /// This descriptor, trimmed to established intro circuits.
    Established(ParsedDescriptor),
}

/// Whether a fetched copy of this tor's instance descriptor was published by the tor
/// process running now, not by an earlier one with the same key (a restart): its revision
/// counter is above the counter tor computes at `launched_at` for the same descriptor.
/// tor's counter is the order-preserving encryption of the seconds since the descriptor's
/// SR run began, keyed by the blinded key, so it only grows with the upload time; a copy
/// uploaded before the launch has a smaller one. `None` when the period's slot or key is
/// unknown here (then the copy is not judged by this test).
pub(super) fn published_since(
    key: &rustbalance_hs::IdentityKey,
    time: &rustbalance_hs::time::TimeParams,
    valid_after: u64,
    launched_at: SystemTime,
    period_num: u64,
    revision: u64,
) -> Option<bool> {
    let slot = time
        .live_slots(valid_after, valid_after)
        .into_iter()
        .find(|s| s.period_num == period_num)?;
    let (_, blinded, _) = key
        .to_hs_keypair()
        .compute_blinded_key(time.period(period_num))
        .ok()?;
    // tor's counter for an upload in the launch second itself: only the old process
    // can have uploaded then (the new one needs seconds to bootstrap), so strictly above.
    let floor = rustbalance_hs::descriptor::revision_counter(&blinded, &slot, launched_at);
    Some(revision > floor)
}

/// The running time period (of the consensus' valid-after), when known.
fn running_period(view: &NetworkView) -> Option<u64> {
    view.time
        .period_at(rustbalance_hs::time::from_unix(
            view.consensus.valid_after_unix(),
        ))
        .map(|p| p.interval_num())
        .ok()
}

/// Between a period start and the next SRV, keep the instance's descriptor for the current
/// period fresh (fetched from the HSDirs; see `instance_descriptor_from_hsdirs`); outside
/// that window, forget it.
pub(super) async fn next_descriptor_task(
    tor: Arc<TorSupervisor>,
    instance: OnionAddress,
    key: Option<Arc<rustbalance_hs::IdentityKey>>,
    testing: bool,
    timers: Timers,
    next: NextDescriptor,
    views: ViewCache,
) {
    // Diagnostic for bench/rotation.sh only: behave as before the fix.
    if std::env::var_os("RUSTBALANCE_DIAG_CURRENT_DESC_ONLY").is_some() {
        tracing::warn!(
            "RUSTBALANCE_DIAG_CURRENT_DESC_ONLY: advertising tor's current descriptor only \
             (a diagnostic that breaks failover at period changes: unset it)"
        );
        return;
    }
    let mut ctl = None;
    let mut was_between = false;
    let mut launch_seen = None;
    loop {
        tokio::time::sleep(timers.next_poll).await;
        let status = tor.status();
        if status.launched_at != launch_seen {
            // A new tor process (the supervisor restarted it): a copy fetched from the
            // old one's upload lists points that are gone.
            if launch_seen.is_some() {
                next.forget();
            }
            launch_seen = status.launched_at;
        }
        if status.phase != TorPhase::Running {
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
        if between != was_between {
            next.set(NextFetch {
                window_since: between.then(Instant::now),
                desc: None,
            });
            was_between = between;
        }
        if !between || !policy::refetch_due(next.fetched_at(), Instant::now(), &timers) {
            continue;
        }
        let this_run = |d: &ParsedDescriptor| match (&key, launch_seen) {
            (Some(k), Some(at)) => published_since(
                k,
                &view.time,
                view.consensus.valid_after_unix(),
                at,
                d.period_num,
                d.revision,
            ),
            _ => None,
        };
        match fetch_running(c, &instance, &view, &timers, this_run).await {
            Ok(Fetched::Running(d)) => next.store(d, Instant::now()),
            Ok(Fetched::OtherPeriod) => tokio::time::sleep(timers.next_retry).await,
            Ok(Fetched::Stale) => {
                // Whatever was kept came from the same HSDirs; and each fetch without
                // named HSDirs uses one of the six for tor's 15-minute requery memory,
                // so the next try waits a refresh, not a retry.
                next.forget();
                tokio::time::sleep(timers.next_refresh).await;
            }
            Err(e) if e.is_tor() => ctl = None,
            Err(e) => tracing::debug!("instance descriptor from the HSDirs: {e}"),
        }
    }
}

/// What a fetch of the instance's own descriptor brought.
enum Fetched {
    /// The running period's copy, uploaded by the tor running now.
    Running(ParsedDescriptor),
    /// Another period's copy (the HSDirs, or the client cache, have nothing newer).
    OtherPeriod,
    /// The running period's copy, uploaded by an earlier tor process
    /// ([`published_since`]).
    Stale,
}

/// The instance's descriptor for the running period from the HSDirs.
async fn fetch_running(
    ctl: &ControlClient,
    instance: &OnionAddress,
    view: &NetworkView,
    timers: &Timers,
    this_run: impl Fn(&ParsedDescriptor) -> Option<bool>,
) -> Result<Fetched> {
    let d = instance_descriptor_from_hsdirs(
        ctl,
        instance,
        &view.time,
        SystemTime::now(),
        timers.next_fetch,
    )
    .await?;
    let want = running_period(view);
    if want != Some(d.period_num) {
        tracing::debug!(
            "fetched instance descriptor is for period {}, not {want:?}",
            d.period_num
        );
        return Ok(Fetched::OtherPeriod);
    }
    if this_run(&d) == Some(false) {
        // The HSDirs still hold what the previous tor process (same key) uploaded: its
        // intro points are gone, and some may sit on relays where this tor also has a
        // circuit, so the established-circuit filter would not catch them all.
        tracing::debug!(
            "fetched instance descriptor (revision {}) predates this tor's start: not used",
            d.revision
        );
        return Ok(Fetched::Stale);
    }
    tracing::debug!(
        "fetched this instance's current-period descriptor: {} intro points",
        d.intro_points.len()
    );
    Ok(Fetched::Running(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustbalance_hs::descriptor::revision_counter;
    use rustbalance_hs::time::{from_unix, TimeParams};
    use rustbalance_hs::IdentityKey;

    /// A copy uploaded by the previous tor process (same key) is told apart from the
    /// running one's by its revision counter: the restart bug of FIELD-NOTES ("a restarted
    /// node advertising its previous run's intro points").
    #[test]
    fn a_copy_uploaded_before_this_tor_started_is_not_this_run_s() {
        let key = IdentityKey::generate(&mut rand::rng());
        let time = TimeParams::testing(20);
        // A consensus between a period start and the next SRV: the running period is
        // the second live slot, the one the node fetches back from the HSDirs.
        let mut valid_after = 1_765_000_000;
        while !time.between_tp_and_srv(valid_after) {
            valid_after += 20;
        }
        let slot = time.live_slots(valid_after, valid_after)[1];
        let period = slot.period_num;
        assert_eq!(period, time.current_period(valid_after));
        let (_, blinded, _) = key
            .to_hs_keypair()
            .compute_blinded_key(time.period(period))
            .unwrap();
        // What tor puts in a descriptor it uploads at `t` (same counter as ours).
        let uploaded_at = |t: u64| revision_counter(&blinded, &slot, from_unix(t));
        let launched = from_unix(valid_after + 30);
        let judge =
            |t: u64| published_since(&key, &time, valid_after, launched, period, uploaded_at(t));
        assert_eq!(
            judge(valid_after + 29),
            Some(false),
            "uploaded a second before"
        );
        assert_eq!(
            judge(valid_after - 60),
            Some(false),
            "uploaded a minute before"
        );
        assert_eq!(
            judge(valid_after + 30),
            Some(false),
            "uploaded in the launch second"
        );
        assert_eq!(
            judge(valid_after + 31),
            Some(true),
            "uploaded a second after"
        );
        assert_eq!(judge(valid_after + 45), Some(true), "uploaded after");
        // Another period than the live ones: not judged.
        assert_eq!(
            published_since(&key, &time, valid_after, launched, period + 5, 1),
            None
        );
    }
}
