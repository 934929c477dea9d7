//! Revision counters above tor's after fleet PoW is turned off.

use super::SlotReport;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a descriptor stays at an HSDir: its lifetime (tor's default, 3 hours, which
/// ours use too), plus a margin.
pub(super) const HSDIR_MEMORY: Duration = Duration::from_secs(190 * 60);

/// Whether to use revision counters above tor's without fleet PoW. After fleet PoW is
/// turned off, the HSDirs hold descriptors with counters above 2^40 until they expire
/// (3 hours); tor's counters would be refused (`UPLOAD_REJECTED`) and clients would keep
/// getting fleet descriptors whose intro points are gone. So a publisher whose new
/// descriptor most of the HSDirs that answered refused uses counters above tor's for [`HSDIR_MEMORY`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CounterMemory {
    until: Option<Instant>,
}

impl CounterMemory {
    /// Counters above tor's now?
    pub fn above_tor(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// A publication's answers came in at `now`: remember a refusal; true when this
    /// starts a stretch of counters above tor's.
    pub fn answered(&mut self, reports: &[SlotReport], now: Instant) -> bool {
        // Most HSDirs of a time period, not one: fleet leftovers sit at every responsible
        // HSDir of a period, while a single misbehaving HSDir must not move the counters
        // (and so stop the single-node switch's own descriptors from winning) for hours.
        let mut per_period: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        for r in reports {
            let e = per_period.entry(r.period_num).or_default();
            for v in r.hsdirs.values().filter(|v| *v != "NO ANSWER") {
                e.0 += 1;
                e.1 += usize::from(v.starts_with("FAILED UPLOAD_REJECTED"));
            }
        }
        if !per_period
            .values()
            .any(|(answers, refused)| *refused > 0 && refused * 2 > *answers)
        {
            return false;
        }
        let starts = !self.above_tor(now);
        self.until = Some(now + HSDIR_MEMORY);
        starts
    }
}
