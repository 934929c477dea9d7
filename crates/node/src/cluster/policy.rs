//! The cluster node's decisions, pure: each takes `now` and its inputs and says what to do;
//! the async tasks (`publisher`, `advertise`) read tor and gossip, ask here, and act.
//!
//! ```text
//!  publish:   lease? ─no─▶ StepDown (role follower)
//!               └─yes─▶ built this second? ─▶ skip
//!                       became publisher / changed / pow-params changed / new period /
//!                       hsdirs changed / retry (backoff due) / periodic (republish due) ─▶ Publish(reason)
//!  pow:       see super::pow (an instance tor's pow-params never go in)
//!  advertise: between period start and SRV? ─▶ fetched descriptor of the running period
//!             (or wait for it up to `next_wait`) ; tor not rotated yet ─▶ wait
//! ```

mod coverage;
mod health;

pub use coverage::{emptied, fetchable_slot, judge, Answer, AntiEntropy, HsDirCopy, SlotCoverage};
pub use health::{Health, HealthInputs, HealthLimits, Unfit, Verdict};

use super::timers::Timers;
use std::time::{Duration, Instant};

/// Why a master descriptor is (re)published; the text is what logs and `/status` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// This node just got the lease.
    BecamePublisher,
    /// The healthy nodes' intro points changed.
    Changed,
    /// This node's tor uploaded its own master descriptor or stopped hosting the master
    /// service (`solo`): the next merged descriptor must be newer than tor's.
    SingleNode,
    /// The single-node PoW parameters appeared, changed or went.
    PowChanged,
    /// A new time period started (other descriptor slots).
    NewPeriod,
    /// The HSDir ring or the shared random values changed.
    HsDirsChanged,
    /// The last publication missed HSDirs and its backoff is over.
    Retry,
    /// Nothing changed but the republish interval passed.
    Periodic,
}

impl Reason {
    /// The reason as logs and `/status` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BecamePublisher => "became publisher",
            Reason::Changed => "changed",
            Reason::SingleNode => "single-node switch",
            Reason::PowChanged => "pow-params changed",
            Reason::NewPeriod => "new period",
            Reason::HsDirsChanged => "hsdirs changed",
            Reason::Retry => "retry",
            Reason::Periodic => "periodic",
        }
    }
}

/// What the publisher sees this round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishInputs {
    /// Fingerprint of the healthy nodes' intro points (`roster::HealthyIntros`).
    pub intros: String,
    /// Fingerprint of the single-node PoW parameters ([`pow_fingerprint`]); empty without.
    pub pow: String,
    /// Time periods of the live descriptor slots.
    pub periods: Vec<u64>,
    /// Fingerprint of the HSDir ring (`NetworkView::ring_fingerprint`).
    pub ring: String,
    /// Counts tor's own master uploads and the master service's removals
    /// (`solo::SoloDriver::epoch`).
    pub solo_epoch: u64,
}

/// How a publication went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every HSDir of every slot confirmed.
    Complete,
    /// Uploaded, but some HSDirs failed or did not answer.
    Incomplete,
    /// The upload could not be made at all.
    Failed,
}

/// What the publisher remembers between rounds; its methods are the publish decisions.
#[derive(Debug, Clone, Default)]
pub struct PublishState {
    publishing: bool,
    last: Option<PublishInputs>,
    last_at: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
    /// Wall-clock second of the last build.
    last_built: Option<u64>,
    /// Revision time of the last build (election rule 8).
    last_revision: Option<u64>,
}

impl PublishState {
    /// The lease is gone: true when this node was publishing (it steps down to follower).
    pub fn step_down(&mut self) -> bool {
        std::mem::replace(&mut self.publishing, false)
    }

    /// Whether a descriptor may be built at `now_secs` (wall clock). Revision counters
    /// count whole seconds: at most one build per second, or the revision time, which
    /// [`PublishState::revision_time`] keeps above the last one, would run ahead of the clock.
    pub fn may_build(&self, now_secs: u64) -> bool {
        self.last_built.is_none_or(|t| now_secs > t)
    }

    /// The revision time to build at (election rule 8): the wall clock `now_secs`, but
    /// after every revision time seen, this node's own included. `seen` holds the other
    /// publishers' gossiped times; a time more than `ahead_limit` seconds ahead of our
    /// clock is ignored (no honest clock is that far off, and a forged one far in the
    /// future would otherwise push every descriptor out of its time period). The first
    /// build after becoming publisher is at least `margin` seconds ahead of our clock
    /// (`ElectionConfig::takeover_margin` when an eligible member is reported dead: it
    /// may have published once more, unseen; 0 otherwise).
    pub fn revision_time(
        &self,
        now_secs: u64,
        seen: impl IntoIterator<Item = u64>,
        ahead_limit: u64,
        margin: u64,
    ) -> u64 {
        let limit = now_secs.saturating_add(ahead_limit);
        let last = seen
            .into_iter()
            .filter(|t| *t <= limit)
            .chain(self.last_revision)
            .max();
        let base = if self.publishing {
            now_secs
        } else {
            now_secs.saturating_add(margin)
        };
        rustbalance_cluster::revision_secs(base, last)
    }

    /// Why to publish now, or `None` to wait.
    pub fn reason(&self, input: &PublishInputs, now: Instant, timers: &Timers) -> Option<Reason> {
        let empty = PublishInputs::default();
        let last = self.last.as_ref().unwrap_or(&empty);
        if !self.publishing {
            Some(Reason::BecamePublisher)
        } else if input.intros != last.intros {
            Some(Reason::Changed)
        } else if input.solo_epoch != last.solo_epoch {
            Some(Reason::SingleNode)
        } else if input.pow != last.pow {
            Some(Reason::PowChanged)
        } else if input.periods != last.periods {
            Some(Reason::NewPeriod)
        } else if input.ring != last.ring {
            Some(Reason::HsDirsChanged)
        } else if self.retry_at.is_some_and(|r| now >= r) {
            Some(Reason::Retry)
        } else if self
            .last_at
            .is_none_or(|t| now.saturating_duration_since(t) >= timers.republish)
        {
            Some(Reason::Periodic)
        } else {
            None
        }
    }

    /// A publication starts at wall-clock second `now_secs` with revision time
    /// `revision`: returns true when this node just became publisher (its role changes in
    /// gossip and `/status`).
    pub fn building(&mut self, now_secs: u64, revision: u64) -> bool {
        self.last_built = Some(now_secs);
        self.last_revision = Some(revision);
        !std::mem::replace(&mut self.publishing, true)
    }

    /// Record how a publication of `input` went; sets the retry backoff.
    pub fn finished(&mut self, input: PublishInputs, outcome: Outcome, now: Instant, t: &Timers) {
        if outcome != Outcome::Failed {
            self.last = Some(input);
            self.last_at = Some(now);
        }
        if outcome == Outcome::Complete {
            self.failures = 0;
            self.retry_at = None;
        } else {
            self.failures += 1;
            self.retry_at = Some(now + retry_backoff(self.failures, t));
        }
    }
}

/// Delay before retrying a publication that did not reach every HSDir: twice
/// `retry_base` after the first failure, doubling up to `retry_max`.
pub fn retry_backoff(failures: u32, t: &Timers) -> Duration {
    t.retry_base
        .saturating_mul(1u32 << failures.min(4))
        .min(t.retry_max)
}

/// The fingerprint of the PoW parameters in [`PublishInputs::pow`].
pub fn pow_fingerprint<P: std::fmt::Debug>(pow: Option<&P>) -> String {
    pow.map(|p| format!("{p:?}")).unwrap_or_default()
}

/// Which of this node's instance descriptors to advertise intro points from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// tor's current descriptor (`GETINFO hs/service/desc/id`).
    Current,
    /// The running period's descriptor fetched from the HSDirs.
    Fetched,
    /// Neither yet: keep what is advertised.
    Wait(&'static str),
}

/// Where the intro task stands in the time period.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    /// Period of tor's current descriptor.
    pub current: u64,
    /// The running period (of the consensus' valid-after), when known.
    pub running: Option<u64>,
    /// Between a period start and the next SRV.
    pub between: bool,
}

/// Pick the descriptor to advertise. After a period starts, advertise the intro points of
/// the descriptor tor made for that period (they outlive the next SRV; the current ones
/// die there while clients still hold them). From the SRV to the next period start, tor's
/// current descriptor is the running period's; until tor has rotated (a second or so after
/// the consensus), it is still the previous one, about to die: keep what is advertised.
pub fn advertise_source(p: Period, next: &NextState, now: Instant, t: &Timers) -> Source {
    if !p.between && p.running.is_some_and(|r| p.current < r) {
        return Source::Wait("tor has not rotated its descriptors yet");
    }
    if !p.between {
        return Source::Current;
    }
    if next.fetched_with_intros {
        return Source::Fetched;
    }
    // Not fetched yet: keep what is advertised (nothing on a fresh start) rather than
    // publish intro points that die at the SRV, for a while.
    if next
        .window_since
        .is_none_or(|s| now.saturating_duration_since(s) < t.next_wait)
    {
        return Source::Wait("waiting for the running period's instance descriptor");
    }
    Source::Current
}

/// What the next-descriptor task knows, as the intro task reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NextState {
    /// Since when the node is between a period start and the next SRV (`None`: outside).
    pub window_since: Option<Instant>,
    /// A fetched descriptor with intro points is at hand.
    pub fetched_with_intros: bool,
}

/// Whether the fetched descriptor (fetched at `fetched_at`) must be fetched again.
pub fn refetch_due(fetched_at: Option<Instant>, now: Instant, t: &Timers) -> bool {
    fetched_at.is_none_or(|at| now.saturating_duration_since(at) >= t.next_refresh)
}

/// What to do with this node's intro-point advert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advert {
    /// Gossip this encoding.
    Set(String),
    /// Delete the advert (tor down, or no established intro circuit).
    Withdraw,
    /// Nothing changed.
    Keep,
}

/// Compare what is advertised (`last`, empty for nothing) with what should be
/// (`wanted`: `None` when there is nothing to advertise).
pub fn advert(last: &str, wanted: Option<String>) -> Advert {
    match wanted {
        Some(enc) if enc != last => Advert::Set(enc),
        Some(_) => Advert::Keep,
        None if !last.is_empty() => Advert::Withdraw,
        None => Advert::Keep,
    }
}

#[cfg(test)]
#[path = "policy/tests.rs"]
mod tests;
