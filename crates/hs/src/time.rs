//! Time periods, shared-random protocol runs, and which two descriptors must
//! be live at a given moment — decided exactly as C tor decides them
//! (`hs_common.c`, `shared_random_client.c`).
//!
//! Everything takes the time as an argument; nothing here reads the clock.
//!
//! ```text
//!  SRV run start (00:00 real net)      TP start (12:00)            next SRV (00:00)
//!  |---- not "between": current TP + next TP ----|---- "between": previous TP + current TP ----|
//!        first desc: current TP, previous SRV          first desc: previous TP, previous SRV
//!        second desc: next TP,   current SRV           second desc: current TP, current SRV
//! ```

use crate::err::{Error, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tor_hscrypto::time::TimePeriod;

/// Rounds per shared-random phase (commit or reveal); a protocol run has two phases.
const SR_ROUNDS_PER_PHASE: u64 = 12;
/// Rounds per shared-random protocol run.
const SR_ROUNDS_PER_RUN: u64 = 2 * SR_ROUNDS_PER_PHASE;

/// The clock parameters of a Tor network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeParams {
    /// Consensus voting interval in seconds (3600 on the real network).
    pub voting_interval_secs: u64,
    /// Length of a time period in minutes (1440 on the real network).
    pub period_minutes: u32,
}

impl TimeParams {
    /// The real Tor network: hourly consensuses, one-day time periods.
    pub const REAL_NETWORK: TimeParams = TimeParams {
        voting_interval_secs: 3600,
        period_minutes: 1440,
    };

    /// A `TestingTorNetwork`: tor makes the time period as long as one shared
    /// random protocol run (24 voting intervals).
    pub fn testing(voting_interval_secs: u64) -> Self {
        TimeParams {
            voting_interval_secs,
            period_minutes: u32::try_from(SR_ROUNDS_PER_RUN * voting_interval_secs / 60)
                .unwrap_or(u32::MAX),
        }
    }

    /// From a consensus: the voting interval is `fresh-until - valid-after`;
    /// the period length is the `hsdir-interval` parameter (default 1440), or
    /// one protocol run on a testing network.
    pub fn from_consensus(
        valid_after: SystemTime,
        fresh_until: SystemTime,
        hsdir_interval: Option<i64>,
        testing_network: bool,
    ) -> Result<Self> {
        let vi = fresh_until
            .duration_since(valid_after)
            .map_err(|_| Error::BadDirectoryDoc {
                what: "consensus",
                reason: "fresh-until is before valid-after".into(),
            })?
            .as_secs();
        if vi == 0 {
            return Err(Error::BadDirectoryDoc {
                what: "consensus",
                reason: "fresh-until equals valid-after".into(),
            });
        }
        if testing_network {
            let tp = Self::testing(vi);
            if tp.period_minutes == 0 {
                // Every period computation divides by its length.
                return Err(Error::BadDirectoryDoc {
                    what: "consensus",
                    reason: format!(
                        "a voting interval of {vi} s gives a testing network a time period \
                         under one minute (at least 3 s is needed)"
                    ),
                });
            }
            return Ok(tp);
        }
        // tor clamps hsdir-interval to [30, 14400] minutes.
        let minutes = hsdir_interval.unwrap_or(1440).clamp(30, 14400) as u32;
        Ok(TimeParams {
            voting_interval_secs: vi,
            period_minutes: minutes,
        })
    }

    /// Offset of time-period boundaries from the epoch: one SR phase
    /// (12 voting intervals: 12:00 UTC on the real network).
    pub fn period_offset_secs(&self) -> u64 {
        SR_ROUNDS_PER_PHASE * self.voting_interval_secs
    }

    /// Length of a shared-random protocol run in seconds.
    pub fn srv_run_secs(&self) -> u64 {
        SR_ROUNDS_PER_RUN * self.voting_interval_secs
    }

    /// The time period containing `when`.
    pub fn period_at(&self, when: SystemTime) -> Result<TimePeriod> {
        TimePeriod::new(
            Duration::from_secs(u64::from(self.period_minutes) * 60),
            when,
            Duration::from_secs(self.period_offset_secs()),
        )
        .map_err(|e| Error::TimeOutOfRange(format!("{}: {e}", fmt_time(when))))
    }

    /// The time period with number `num`.
    pub fn period(&self, num: u64) -> TimePeriod {
        TimePeriod::from_parts(
            self.period_minutes,
            num,
            u32::try_from(self.period_offset_secs()).unwrap_or(u32::MAX),
        )
    }

    /// Unix start time of time period `num`.
    pub fn period_start(&self, num: u64) -> u64 {
        num * u64::from(self.period_minutes) * 60 + self.period_offset_secs()
    }

    /// Unix start of the SR protocol run containing the consensus round that
    /// began at `valid_after` (`sr_state_get_start_time_of_current_protocol_run`).
    pub fn srv_run_start(&self, valid_after: u64) -> u64 {
        let vi = self.voting_interval_secs;
        let slot = (valid_after / vi) % SR_ROUNDS_PER_RUN;
        valid_after - slot * vi
    }

    /// Whether a consensus valid after `valid_after` falls between a
    /// time-period start and the next SRV (`hs_in_period_between_tp_and_srv`).
    pub fn between_tp_and_srv(&self, valid_after: u64) -> bool {
        let srv_start = self.srv_run_start(valid_after);
        let tp_start = self.next_period_start(srv_start);
        !(valid_after >= srv_start && valid_after < tp_start)
    }

    /// Start of the first time period that begins after `t`.
    fn next_period_start(&self, t: u64) -> u64 {
        let len = u64::from(self.period_minutes) * 60;
        let num = t.saturating_sub(self.period_offset_secs()) / len;
        self.period_start(num + 1)
    }

    /// The time period of a consensus valid after `valid_after` (Unix seconds): the one
    /// C tor's `hs_get_time_period_num(0)` gives, and so the one whose descriptor its
    /// `HSFETCH` asks for.
    pub fn current_period(&self, valid_after: u64) -> u64 {
        let len = u64::from(self.period_minutes) * 60;
        valid_after.saturating_sub(self.period_offset_secs()) / len
    }

    /// The two descriptors that must be live at `now`, given the consensus'
    /// `valid_after` (both as Unix seconds).
    ///
    /// Like C tor (`hs_get_time_period_num(0)`), the period comes from the consensus'
    /// `valid_after`, not from the clock: just after a period starts, before the consensus
    /// that says so arrives, the wall clock would put the descriptors one period ahead, with
    /// revision counters computed from the wrong SRV run — higher than the ones that follow,
    /// so HSDirs would refuse the correct uploads (`UPLOAD_REJECTED`) for a whole period.
    /// `now` is kept for the callers' signature; only `valid_after` decides.
    pub fn live_slots(&self, now: u64, valid_after: u64) -> [DescriptorSlot; 2] {
        let _ = now;
        let current = self.current_period(valid_after);
        let (first_tp, second_tp) = if self.between_tp_and_srv(valid_after) {
            (current.saturating_sub(1), current)
        } else {
            (current, current + 1)
        };
        let run = self.srv_run_start(valid_after);
        [
            DescriptorSlot {
                period_num: first_tp,
                srv: SrvChoice::Previous,
                srv_run_start: run.saturating_sub(self.srv_run_secs()),
            },
            DescriptorSlot {
                period_num: second_tp,
                srv: SrvChoice::Current,
                srv_run_start: run,
            },
        ]
    }
}

/// Which shared random value a descriptor slot is placed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrvChoice {
    /// `shared-rand-previous-value`.
    Previous,
    /// `shared-rand-current-value`.
    Current,
}

/// One of the two live descriptors: its time period, the SRV that places it
/// on the HSDir ring, and the SR run its revision counter counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DescriptorSlot {
    /// Time period number.
    pub period_num: u64,
    /// Which SRV the HSDir ring uses for this descriptor.
    pub srv: SrvChoice,
    /// Unix start of the SR protocol run the revision counter counts from.
    pub srv_run_start: u64,
}

/// Unix seconds of a `SystemTime` (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `SystemTime` of Unix seconds.
pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// RFC 3339 rendering for messages.
pub fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod test {
    use super::*;

    fn ts(s: &str) -> u64 {
        unix_secs(humantime::parse_rfc3339(s).unwrap())
    }

    #[test]
    fn real_network_period_numbers() {
        // rend-spec-v3 [TIME-PERIODS]: 2016-04-13 11:15:01 UTC is in period 16903;
        // periods start at 12:00 UTC.
        let p = TimeParams::REAL_NETWORK;
        assert_eq!(
            p.period_at(from_unix(ts("2016-04-13T11:15:01Z")))
                .unwrap()
                .interval_num(),
            16903
        );
        assert_eq!(
            p.period_at(from_unix(ts("2016-04-13T12:00:00Z")))
                .unwrap()
                .interval_num(),
            16904
        );
        assert_eq!(p.period_start(16904), ts("2016-04-13T12:00:00Z"));
    }

    #[test]
    fn srv_run_and_phase_on_real_network() {
        let p = TimeParams::REAL_NETWORK;
        assert_eq!(
            p.srv_run_start(ts("2026-11-22T05:00:00Z")),
            ts("2026-11-22T00:00:00Z")
        );
        assert_eq!(
            p.srv_run_start(ts("2026-11-22T23:00:00Z")),
            ts("2026-11-22T00:00:00Z")
        );
        assert!(!p.between_tp_and_srv(ts("2026-11-22T00:00:00Z")));
        assert!(!p.between_tp_and_srv(ts("2026-11-22T11:00:00Z")));
        assert!(p.between_tp_and_srv(ts("2026-11-22T12:00:00Z")));
        assert!(p.between_tp_and_srv(ts("2026-11-22T23:00:00Z")));
    }

    #[test]
    fn live_slots_follow_the_phase() {
        let p = TimeParams::REAL_NETWORK;
        let morning = ts("2026-11-22T05:30:00Z");
        let cur = p.period_at(from_unix(morning)).unwrap().interval_num();
        let s = p.live_slots(morning, ts("2026-11-22T05:00:00Z"));
        assert_eq!((s[0].period_num, s[0].srv), (cur, SrvChoice::Previous));
        assert_eq!((s[1].period_num, s[1].srv), (cur + 1, SrvChoice::Current));
        assert_eq!(s[1].srv_run_start, ts("2026-11-22T00:00:00Z"));
        assert_eq!(s[0].srv_run_start, ts("2026-11-21T00:00:00Z"));

        let evening = ts("2026-11-22T17:30:00Z");
        let cur = p.period_at(from_unix(evening)).unwrap().interval_num();
        let s = p.live_slots(evening, ts("2026-11-22T17:00:00Z"));
        assert_eq!((s[0].period_num, s[0].srv), (cur - 1, SrvChoice::Previous));
        assert_eq!((s[1].period_num, s[1].srv), (cur, SrvChoice::Current));
    }

    #[test]
    fn testing_network_is_eight_minutes() {
        let p = TimeParams::testing(20);
        assert_eq!(p.period_minutes, 8);
        assert_eq!(p.period_offset_secs(), 240);
        assert_eq!(p.srv_run_secs(), 480);
        // Runs are aligned on 480 s; periods start 240 s into a run.
        assert_eq!(
            p.srv_run_start(1_000_000_020),
            1_000_000_020 - (1_000_000_020 % 480)
        );
        let va = 960_000_000; // a run start (divisible by 480)
        assert!(!p.between_tp_and_srv(va));
        assert!(!p.between_tp_and_srv(va + 220));
        assert!(p.between_tp_and_srv(va + 240));
        assert!(p.between_tp_and_srv(va + 460));
    }

    #[test]
    fn from_consensus_reads_interval() {
        let va = from_unix(1_000_000_000);
        let p = TimeParams::from_consensus(va, va + Duration::from_secs(20), None, true).unwrap();
        assert_eq!(p, TimeParams::testing(20));
        let p =
            TimeParams::from_consensus(va, va + Duration::from_secs(3600), None, false).unwrap();
        assert_eq!(p, TimeParams::REAL_NETWORK);
        assert!(TimeParams::from_consensus(va, va, None, false).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `consensus` fuzz target: a testing-network consensus with a 1-second
    /// voting interval gave a zero-minute period, and `live_slots` divided by zero.
    #[test]
    fn a_testing_period_under_a_minute_is_refused() {
        let va = from_unix(1_795_000_000);
        for vi in [1, 2] {
            let r = TimeParams::from_consensus(va, from_unix(1_795_000_000 + vi), None, true);
            assert!(r.is_err(), "{vi} s: {r:?}");
        }
        let tp = TimeParams::from_consensus(va, from_unix(1_795_000_003), None, true).unwrap();
        assert_eq!(tp.live_slots(0, 1_795_000_000)[0].srv, SrvChoice::Previous);
    }
}
