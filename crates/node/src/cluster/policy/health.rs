//! Publishing health, pure: whether this node is fit to hold the lease, and when to give
//! it up or compete again (election rule 7, `docs/ELECTION.md`).
//!
//! ```text
//!  clock off the cluster's (gossip timestamps) by more than the tolerance ─┐
//!  clock behind the consensus (valid-after in our future)                  │ unhealthy at once:
//!  consensus past its valid-until, or unreadable                           ├─▶ ineligible (yields
//!  tor not running                                                         │   the lease if held)
//!  holding, and no upload confirmed for `yield_after` since holding began ─┘
//!    or since a publication no HSDir confirmed (an idle holder whose last
//!    publication was confirmed awaits nothing)
//!
//!  ineligible ──every reason gone (and, after an upload failure, `yield_after` passed)──▶ eligible
//! ```

use std::time::{Duration, Instant};

/// Why this node does not publish now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// Its clock is this far (ms) from the cluster's; positive: ahead.
    ClockSkew(i64),
    /// Its clock is behind the consensus' valid-after by this many seconds.
    ClockBehindConsensus(u64),
    /// The consensus ended (valid-until) this many seconds ago.
    StaleConsensus(u64),
    /// tor's consensus cannot be read.
    NoConsensus,
    /// tor is not running.
    TorDown,
    /// No upload confirmed for this long while holding the lease.
    NoConfirmedUpload(Duration),
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::ClockSkew(ms) => write!(
                f,
                "this node's clock is {:.1} s {} the cluster's (gossip timestamps): fix its time \
                 (NTP); it does not publish until then",
                ms.unsigned_abs() as f64 / 1000.0,
                if *ms > 0 { "ahead of" } else { "behind" }
            ),
            Unfit::ClockBehindConsensus(s) => write!(
                f,
                "this node's clock is at least {s} s behind the consensus' valid-after: fix its \
                 time (NTP); it does not publish until then"
            ),
            Unfit::StaleConsensus(s) => write!(
                f,
                "tor's consensus ended {s} s ago (valid-until passed): tor cannot reach the \
                 directory, or this node's clock is ahead"
            ),
            Unfit::NoConsensus => write!(f, "tor's consensus cannot be read"),
            Unfit::TorDown => write!(f, "tor is not running"),
            Unfit::NoConfirmedUpload(d) => write!(
                f,
                "no HSDir confirmed an upload for {} s while holding the lease",
                d.as_secs()
            ),
        }
    }
}

/// What the health check reads this round.
#[derive(Debug, Clone, Copy)]
pub struct HealthInputs {
    /// Monotonic now.
    pub now: Instant,
    /// Wall clock, Unix seconds.
    pub now_unix: u64,
    /// This node's clock minus the cluster's (ms), when a peer was heard.
    pub clock_offset_ms: Option<i64>,
    /// The consensus' `(valid-after, valid-until)` in Unix seconds; `None`: unreadable.
    pub consensus: Option<(u64, u64)>,
    /// tor runs.
    pub tor_running: bool,
    /// This node holds the lease.
    pub holding: bool,
}

/// The limits of the health check.
#[derive(Debug, Clone, Copy)]
pub struct HealthLimits {
    /// Largest accepted clock offset from the cluster's.
    pub clock_tolerance: Duration,
    /// A holder without a confirmed upload for this long yields; it competes again this
    /// long after.
    pub yield_after: Duration,
    /// A settled holder (last publication confirmed, nothing new to publish) still yields
    /// when its last confirmed upload is this old: a healthy holder republishes every
    /// `republish_secs` and has that confirmed within seconds, so this is
    /// `republish + upload_confirm + yield_after`. It bounds the cases in which a holder
    /// stops uploading at all (its own view has no intro points, its client directory
    /// cannot be read, its clock stepped back), which would otherwise never unsettle it.
    pub settled_max: Duration,
}

/// What to tell the elector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Become ineligible (yield the lease if held) for this reason.
    Ineligible(Unfit),
    /// Eligible again.
    Eligible,
}

/// The health check's memory between rounds.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Since when an upload is awaited: when holding began, or the publication no HSDir
    /// confirmed.
    awaiting_since: Option<Instant>,
    /// The holder's latest publication was confirmed and nothing newer was uploaded:
    /// nothing is awaited (an idle publisher is a healthy one), up to
    /// [`HealthLimits::settled_max`] after that confirmation.
    settled: bool,
    /// Set while ineligible: why.
    unfit: Option<Unfit>,
    /// After an upload failure: not eligible again before this.
    cooldown_until: Option<Instant>,
}

impl Health {
    /// An HSDir confirmed an upload of every slot.
    pub fn confirmed(&mut self, now: Instant) {
        self.awaiting_since = Some(now);
        self.settled = true;
    }

    /// A publication was uploaded and no HSDir confirmed it: from now, a confirmed one
    /// is awaited (`yield_after`).
    pub fn unconfirmed(&mut self, now: Instant) {
        if self.settled {
            self.settled = false;
            self.awaiting_since = Some(now);
        }
    }

    /// Why this node is ineligible now, if it is.
    pub fn unfit(&self) -> Option<Unfit> {
        self.unfit
    }

    /// The reason to be unfit now, if any, from `i` alone.
    fn check(&mut self, i: &HealthInputs, l: &HealthLimits) -> Option<Unfit> {
        if !i.tor_running {
            return Some(Unfit::TorDown);
        }
        if let Some(ms) = i.clock_offset_ms {
            if u128::from(ms.unsigned_abs()) > l.clock_tolerance.as_millis() {
                return Some(Unfit::ClockSkew(ms));
            }
        }
        let Some((valid_after, valid_until)) = i.consensus else {
            return Some(Unfit::NoConsensus);
        };
        let tolerance = l.clock_tolerance.as_secs();
        if i.now_unix.saturating_add(tolerance) < valid_after {
            return Some(Unfit::ClockBehindConsensus(valid_after - i.now_unix));
        }
        if i.now_unix > valid_until {
            return Some(Unfit::StaleConsensus(i.now_unix - valid_until));
        }
        if !i.holding {
            self.awaiting_since = None;
            self.settled = false;
            return None;
        }
        if self.settled {
            let since = *self.awaiting_since.get_or_insert(i.now);
            let quiet = i.now.saturating_duration_since(since);
            return (quiet >= l.settled_max).then_some(Unfit::NoConfirmedUpload(quiet));
        }
        let since = *self.awaiting_since.get_or_insert(i.now);
        let waited = i.now.saturating_duration_since(since);
        (waited >= l.yield_after).then_some(Unfit::NoConfirmedUpload(waited))
    }

    /// Assess this round; `Some` when eligibility must change.
    pub fn assess(&mut self, i: &HealthInputs, l: &HealthLimits) -> Option<Verdict> {
        let reason = self.check(i, l);
        match (self.unfit, reason) {
            (None, Some(r)) => {
                self.unfit = Some(r);
                self.awaiting_since = None;
                self.settled = false;
                if matches!(r, Unfit::NoConfirmedUpload(_)) {
                    self.cooldown_until = Some(i.now + l.yield_after);
                }
                Some(Verdict::Ineligible(r))
            }
            (Some(_), Some(r)) => {
                self.unfit = Some(r);
                None
            }
            (Some(_), None) if self.cooldown_until.is_some_and(|c| i.now < c) => None,
            (Some(_), None) => {
                self.unfit = None;
                self.cooldown_until = None;
                Some(Verdict::Eligible)
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HealthLimits = HealthLimits {
        clock_tolerance: Duration::from_secs(2),
        yield_after: Duration::from_secs(180),
        settled_max: Duration::from_secs(600 + 10 + 180),
    };

    fn inputs(now: Instant) -> HealthInputs {
        HealthInputs {
            now,
            now_unix: 10_000,
            clock_offset_ms: Some(30),
            consensus: Some((9_000, 20_000)),
            tor_running: true,
            holding: true,
        }
    }

    #[test]
    fn a_healthy_holder_stays_eligible() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for s in 0..600 {
            let now = t0 + Duration::from_secs(s);
            if s % 60 == 0 {
                h.confirmed(now);
            }
            assert_eq!(h.assess(&inputs(now), &LIMITS), None, "{s}");
        }
    }

    /// A holder whose publication was confirmed and that has nothing new to publish
    /// (nothing changed, the next republication is `republish_secs` away) is healthy: the
    /// dropin benchmark's publisher-only node yielded 180 s after its last confirmed
    /// upload although the HSDirs held it, and the address had no publisher for 104 s.
    #[test]
    fn an_idle_holder_whose_last_upload_was_confirmed_stays_eligible() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.assess(&inputs(t0), &LIMITS), None);
        h.confirmed(t0 + Duration::from_secs(1));
        for s in 1..791 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(h.assess(&inputs(now), &LIMITS), None, "{s}");
        }
        // ...until its last confirmed upload is older than a republication, its
        // confirmation and the yield time together: it stopped uploading at all.
        assert!(matches!(
            h.assess(&inputs(t0 + Duration::from_secs(791)), &LIMITS),
            Some(Verdict::Ineligible(Unfit::NoConfirmedUpload(_)))
        ));
    }

    /// Republishing every 600 s, each confirmed, keeps a holder eligible for good.
    #[test]
    fn a_holder_republishing_on_schedule_stays_eligible() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for s in 0..3600 {
            let now = t0 + Duration::from_secs(s);
            if s % 600 == 5 {
                h.confirmed(now);
            }
            assert_eq!(h.assess(&inputs(now), &LIMITS), None, "{s}");
        }
    }

    /// The rule itself: a publication the HSDirs do not confirm (refused, or every
    /// upload failing) makes the holder yield `yield_after` later, however quiet the
    /// rounds in between, and only a confirmed one settles it again.
    #[test]
    fn an_unconfirmed_publication_yields_after_the_limit() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.confirmed(t0);
        h.unconfirmed(t0 + Duration::from_secs(10));
        for s in 10..190 {
            let now = t0 + Duration::from_secs(s);
            if s == 100 {
                // A retry that fails again does not put the yield back.
                h.unconfirmed(now);
            }
            assert_eq!(h.assess(&inputs(now), &LIMITS), None, "{s}");
        }
        let late = t0 + Duration::from_secs(190);
        assert!(matches!(
            h.assess(&inputs(late), &LIMITS),
            Some(Verdict::Ineligible(Unfit::NoConfirmedUpload(_)))
        ));
    }

    #[test]
    fn a_skewed_clock_refuses_at_once_and_recovers_when_fixed() {
        let t0 = Instant::now();
        let mut h = Health::default();
        let skewed = HealthInputs {
            clock_offset_ms: Some(-600_000),
            ..inputs(t0)
        };
        assert_eq!(
            h.assess(&skewed, &LIMITS),
            Some(Verdict::Ineligible(Unfit::ClockSkew(-600_000)))
        );
        assert!(h.unfit().unwrap().to_string().contains("600.0 s behind"));
        assert_eq!(h.assess(&skewed, &LIMITS), None);
        let fixed = HealthInputs {
            holding: false,
            ..inputs(t0 + Duration::from_secs(1))
        };
        assert_eq!(h.assess(&fixed, &LIMITS), Some(Verdict::Eligible));
    }

    #[test]
    fn a_stale_or_future_consensus_and_a_dead_tor_are_unfit() {
        let t0 = Instant::now();
        let cases = [
            (
                HealthInputs {
                    consensus: Some((1_000, 9_000)),
                    ..inputs(t0)
                },
                Unfit::StaleConsensus(1_000),
            ),
            (
                HealthInputs {
                    consensus: Some((10_100, 20_000)),
                    ..inputs(t0)
                },
                Unfit::ClockBehindConsensus(100),
            ),
            (
                HealthInputs {
                    consensus: None,
                    ..inputs(t0)
                },
                Unfit::NoConsensus,
            ),
            (
                HealthInputs {
                    tor_running: false,
                    ..inputs(t0)
                },
                Unfit::TorDown,
            ),
        ];
        for (i, want) in cases {
            let mut h = Health::default();
            assert_eq!(h.assess(&i, &LIMITS), Some(Verdict::Ineligible(want)));
        }
    }

    #[test]
    fn a_holder_without_confirmed_uploads_yields_and_competes_again_later() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.assess(&inputs(t0), &LIMITS), None);
        let late = t0 + Duration::from_secs(180);
        assert_eq!(
            h.assess(&inputs(late), &LIMITS),
            Some(Verdict::Ineligible(Unfit::NoConfirmedUpload(
                Duration::from_secs(180)
            )))
        );
        // No longer holding: healthy by every other measure, but it waits its cooldown.
        let follower = |s| HealthInputs {
            holding: false,
            ..inputs(late + Duration::from_secs(s))
        };
        assert_eq!(h.assess(&follower(179), &LIMITS), None);
        assert_eq!(h.assess(&follower(180), &LIMITS), Some(Verdict::Eligible));
        // Holding again: the wait for an upload counts from now.
        let again = late + Duration::from_secs(200);
        assert_eq!(h.assess(&inputs(again), &LIMITS), None);
        assert_eq!(
            h.assess(&inputs(again + Duration::from_secs(179)), &LIMITS),
            None
        );
    }
}
