//! Fetch-mode backends (issue 17): plain tor onion services configured as Onionbalance
//! instances, listed under `[[backends]]`. Publisher-eligible nodes fetch each backend's
//! descriptor from the HSDirs through their own tor, check that the backend answers
//! through Tor, and the publisher lists the intro points of every backend that is fit
//! next to those of the RustBalance nodes (each backend is a group of its own in the fair
//! share, named `backend/<name>`).
//!
//! This module is the pure part: when to fetch, the backoff, and whether a backend is
//! listed ([`Backends::listed`]); the driver is [`driver::backend_task`].
//!
//! ```text
//!  due (start, new consensus, refresh, retry with backoff, probe turned fail)
//!     ─▶ HSFETCH ─▶ HS_DESC_CONTENT ─parse_descriptor─▶ fetched_ok ─┐
//!                   HS_DESC FAILED / bad bytes / no answer ─▶ failed ┤
//!  probe through Tor (canary::probe, hysteresis of canary::Canary) ──┤
//!                                                                    ▼
//!  listed = fetched once ∧ last good fetch ≤ stale_after ago ∧ signing cert not expired
//!           ∧ probe verdict ≠ fail
//! ```
//!
//! Why these numbers: `docs/ONIONBALANCE.md`, "When a backend leaves the descriptor".

mod driver;
#[cfg(test)]
mod tests;

pub use driver::{backend_task, BackendCtx};

use super::canary::{Canary, CanaryConfig, Verdict};
use rustbalance_hs::descriptor::{InstanceIntros, IntroPointDesc, ParsedDescriptor, Protocols};
use rustbalance_hs::OnionAddress;
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime};

/// The prefix of a backend's group name in the selection and in `/status`'s publication
/// record: node names never contain `/`, so a backend never shares a node's share.
pub const GROUP_PREFIX: &str = "backend/";

/// The backend timers (defaults: production and lab alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTimers {
    /// A backend fetched successfully is fetched again this often (besides on every new
    /// consensus and when its probe turns to `fail`).
    pub refresh: Duration,
    /// First retry after a failed fetch; doubles per failure in a row.
    pub retry_min: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
    /// A backend whose last good fetch is older than this leaves the descriptor.
    pub stale_after: Duration,
    /// How long one fetch waits for tor's answer.
    pub fetch_wait: Duration,
    /// The reachability probe's timings (the canary's).
    pub probe: CanaryConfig,
}

impl Default for BackendTimers {
    fn default() -> Self {
        BackendTimers {
            refresh: Duration::from_secs(60),
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            stale_after: Duration::from_secs(30 * 60),
            fetch_wait: Duration::from_secs(20),
            probe: CanaryConfig::default(),
        }
    }
}

/// A good fetch.
#[derive(Debug, Clone)]
struct Fetched {
    intros: Vec<IntroPointDesc>,
    flow: Option<(Protocols, u8)>,
    /// The time period it was made for: revision counters count again in each.
    period: u64,
    revision: u64,
    at: Instant,
    at_wall: SystemTime,
    cert_expiry: SystemTime,
}

/// One backend's state.
#[derive(Debug, Clone)]
struct Backend {
    name: String,
    address: OnionAddress,
    fetched: Option<Fetched>,
    /// Failed fetches in a row.
    failures: u32,
    failures_total: u64,
    fetches_total: u64,
    last_error: Option<String>,
    /// `None`: due now.
    next_fetch: Option<Instant>,
    in_flight: bool,
}

/// Why a backend is not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlisted {
    /// No descriptor fetched yet.
    NeverFetched,
    /// The last good fetch is older than `stale_after`.
    Stale,
    /// The descriptor's signing-key certificate has expired.
    Expired,
    /// The descriptor lists no usable intro point.
    NoIntroPoints,
    /// It does not answer through Tor (probe verdict `fail`).
    Unreachable,
}

impl Unlisted {
    /// The `/status` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Unlisted::NeverFetched => "never fetched",
            Unlisted::Stale => "stale: no good fetch for too long",
            Unlisted::Expired => "descriptor expired",
            Unlisted::NoIntroPoints => "no intro points",
            Unlisted::Unreachable => "unreachable through Tor",
        }
    }
}

/// What `/status` shows of one backend (no address in metric labels: the metrics use
/// [`BackendStatus::name`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackendStatus {
    /// `name` from the config, or `backend<i>` (1-based position).
    pub name: String,
    /// Its own onion address.
    pub address: String,
    /// In the master descriptor's candidates now.
    pub listed: bool,
    /// Why not, when it is not.
    pub not_listed_because: Option<String>,
    /// Intro points of its last good descriptor.
    pub intro_points: usize,
    /// Revision counter of that descriptor.
    pub revision: Option<u64>,
    /// When it was fetched (RFC 3339).
    pub last_fetch: Option<String>,
    /// Seconds since then.
    pub fetch_age_secs: Option<u64>,
    /// Failed fetches in a row.
    pub failures_in_row: u32,
    /// Good fetches since start.
    pub fetches_total: u64,
    /// Failed fetches since start.
    pub fetch_failures_total: u64,
    /// The last fetch error.
    pub last_error: Option<String>,
    /// The probe's verdict: `unknown`, `pass`, `fail`.
    pub probe: String,
}

/// Every backend of this node's config, in config order.
#[derive(Debug, Clone)]
pub struct Backends {
    list: Vec<Backend>,
    timers: BackendTimers,
    probes: Canary,
}

impl Backends {
    /// `(name, address)` pairs, in config order; nothing fetched, all due.
    pub fn new(backends: Vec<(String, OnionAddress)>, timers: BackendTimers) -> Backends {
        Backends {
            list: backends
                .into_iter()
                .map(|(name, address)| Backend {
                    name,
                    address,
                    fetched: None,
                    failures: 0,
                    failures_total: 0,
                    fetches_total: 0,
                    last_error: None,
                    next_fetch: None,
                    in_flight: false,
                })
                .collect(),
            probes: Canary::new(timers.probe.clone()),
            timers,
        }
    }

    /// The backends' names and addresses, in config order.
    pub fn addresses(&self) -> Vec<(String, OnionAddress)> {
        self.list
            .iter()
            .map(|b| (b.name.clone(), b.address))
            .collect()
    }

    /// The timers.
    pub fn timers(&self) -> &BackendTimers {
        &self.timers
    }

    /// Backends to fetch at `now` (marked in flight until [`Self::fetched`] or
    /// [`Self::failed`]).
    pub fn take_due(&mut self, now: Instant) -> Vec<OnionAddress> {
        let mut out = Vec::new();
        for b in &mut self.list {
            if !b.in_flight && b.next_fetch.is_none_or(|t| t <= now) {
                b.in_flight = true;
                out.push(b.address);
            }
        }
        out
    }

    /// A new consensus (maybe a new time period, new HSDirs): fetch everything now.
    pub fn new_consensus(&mut self) {
        for b in &mut self.list {
            b.next_fetch = None;
        }
    }

    fn get(&mut self, a: &OnionAddress) -> Option<&mut Backend> {
        self.list.iter_mut().find(|b| b.address == *a)
    }

    /// A good descriptor of `a` fetched at `now` (`wall`: the wall clock then). A
    /// descriptor with a lower revision than the one held (an HSDir that has not seen
    /// the backend's newest yet) refreshes the fetch time but keeps the newer points.
    pub fn fetched(
        &mut self,
        a: &OnionAddress,
        d: &ParsedDescriptor,
        now: Instant,
        wall: SystemTime,
    ) {
        let refresh = self.timers.refresh;
        let Some(b) = self.get(a) else { return };
        b.in_flight = false;
        b.failures = 0;
        b.fetches_total += 1;
        b.last_error = None;
        b.next_fetch = Some(now + refresh);
        // Newer: a later time period (its revision counter starts again, and its signing
        // certificate need not expire later), or in the same period a revision at least as
        // high or a certificate expiring later. An older period's descriptor, which its
        // HSDirs keep for its whole lifetime, lists intro points the backend has closed.
        let newer = b.fetched.as_ref().is_none_or(|f| {
            d.period_num > f.period
                || (d.period_num == f.period
                    && (d.revision >= f.revision || d.signing_cert_expiry > f.cert_expiry))
        });
        match (&mut b.fetched, newer) {
            // An earlier period's descriptor (its HSDirs keep it for hours) says nothing
            // about the intro points listed: it does not count as a fresh fetch.
            (Some(f), false) if d.period_num < f.period => {}
            (Some(f), false) => {
                f.at = now;
                f.at_wall = wall;
            }
            _ => {
                b.fetched = Some(Fetched {
                    intros: d.intro_points.clone(),
                    flow: d.flow_control.clone(),
                    period: d.period_num,
                    revision: d.revision,
                    at: now,
                    at_wall: wall,
                    cert_expiry: d.signing_cert_expiry,
                })
            }
        }
    }

    /// A failed fetch of `a` at `now` (`why` for `/status` and the log); retried after
    /// [`Self::backoff`].
    pub fn failed(&mut self, a: &OnionAddress, why: String, now: Instant) {
        let (min, max) = (self.timers.retry_min, self.timers.retry_max);
        let Some(b) = self.get(a) else { return };
        b.in_flight = false;
        b.failures = b.failures.saturating_add(1);
        b.failures_total += 1;
        b.last_error = Some(why);
        b.next_fetch = Some(now + backoff(b.failures, min, max));
    }

    /// Backends whose probe is due at `now`: those fetched once (tor then holds their
    /// descriptor, so the probe tests their intro points, not the HSDirs).
    pub fn probes_due(&self, now: Instant) -> Vec<OnionAddress> {
        self.list
            .iter()
            .filter(|b| b.fetched.is_some())
            .filter(|b| self.probes.due(&b.name, now, false))
            .map(|b| b.address)
            .collect()
    }

    /// A probe of `a` ended at `now`; returns the new verdict when it changed. A backend
    /// turning `fail` is fetched again at once (it may have new intro points).
    pub fn probed(&mut self, a: &OnionAddress, ok: bool, now: Instant) -> Option<Verdict> {
        let name = self.list.iter().find(|b| b.address == *a)?.name.clone();
        let changed = self.probes.record(&name, ok, now);
        if changed == Some(Verdict::Fail) {
            if let Some(b) = self.get(a) {
                b.next_fetch = None;
            }
        }
        changed
    }

    /// Whether backend `i` is listed at `now` / `wall`, and why not.
    fn unlisted(&self, b: &Backend, now: Instant, wall: SystemTime) -> Option<Unlisted> {
        let Some(f) = &b.fetched else {
            return Some(Unlisted::NeverFetched);
        };
        if now.saturating_duration_since(f.at) > self.timers.stale_after {
            return Some(Unlisted::Stale);
        }
        if wall >= f.cert_expiry {
            return Some(Unlisted::Expired);
        }
        if f.intros.is_empty() {
            return Some(Unlisted::NoIntroPoints);
        }
        if self.probes.verdict(&b.name) == Verdict::Fail {
            return Some(Unlisted::Unreachable);
        }
        None
    }

    /// The intro points of every listed backend, one group each (`backend/<name>`), in
    /// config order.
    pub fn listed(&self, now: Instant, wall: SystemTime) -> Vec<InstanceIntros> {
        self.list
            .iter()
            .filter(|b| self.unlisted(b, now, wall).is_none())
            .filter_map(|b| {
                Some(InstanceIntros {
                    instance: format!("{GROUP_PREFIX}{}", b.name),
                    intro_points: b.fetched.as_ref()?.intros.clone(),
                })
            })
            .collect()
    }

    /// The `flow-control` lines of the listed backends' descriptors.
    pub fn listed_flow(&self, now: Instant, wall: SystemTime) -> Vec<Option<(Protocols, u8)>> {
        self.list
            .iter()
            .filter(|b| self.unlisted(b, now, wall).is_none())
            .filter_map(|b| b.fetched.as_ref().map(|f| f.flow.clone()))
            .collect()
    }

    /// `/status` rows, in config order.
    pub fn status(&self, now: Instant, wall: SystemTime) -> Vec<BackendStatus> {
        self.list
            .iter()
            .map(|b| {
                let why = self.unlisted(b, now, wall);
                let f = b.fetched.as_ref();
                BackendStatus {
                    name: b.name.clone(),
                    address: b.address.to_string(),
                    listed: why.is_none(),
                    not_listed_because: why.map(|w| w.as_str().to_string()),
                    intro_points: f.map_or(0, |f| f.intros.len()),
                    revision: f.map(|f| f.revision),
                    last_fetch: f.map(|f| humantime::format_rfc3339_seconds(f.at_wall).to_string()),
                    fetch_age_secs: f.map(|f| now.saturating_duration_since(f.at).as_secs()),
                    failures_in_row: b.failures,
                    fetches_total: b.fetches_total,
                    fetch_failures_total: b.failures_total,
                    last_error: b.last_error.clone(),
                    probe: self.probes.verdict(&b.name).as_str().to_string(),
                }
            })
            .collect()
    }
}

/// The retry delay after `failures` failed fetches in a row: `min`, doubled per further
/// failure, at most `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    min.saturating_mul(1u32 << doublings).min(max)
}

/// The names of `[[backends]]` entries: `name`, or `backend<i>` (1-based) without one;
/// names are made unique by appending `-<i>` to a repeat.
pub fn names(entries: &[(Option<String>, OnionAddress)]) -> Vec<(String, OnionAddress)> {
    let mut out: Vec<(String, OnionAddress)> = Vec::with_capacity(entries.len());
    for (i, (name, a)) in entries.iter().enumerate() {
        let mut n = name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("backend{}", i + 1));
        if out.iter().any(|(o, _)| *o == n) {
            n = format!("{n}-{}", i + 1);
        }
        out.push((n, *a));
    }
    out
}

/// The `flow-control` line of a master descriptor listing the nodes (with this node's
/// own line `own`, when `nodes` lists any) and backends with `backends`' lines: the
/// first, only when every source has one (a client must be able to use it through any
/// intro point), as `hs::descriptor::common_flow_control` decides for instances.
pub fn merged_flow(
    own: Option<(Protocols, u8)>,
    nodes: bool,
    backends: &[Option<(Protocols, u8)>],
) -> Option<(Protocols, u8)> {
    let mut all = backends.to_vec();
    if nodes {
        all.insert(0, own);
    }
    if all.iter().all(Option::is_some) {
        all.into_iter().next().flatten()
    } else {
        None
    }
}
