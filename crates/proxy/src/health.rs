//! Target health: the result of the last connections to the target, from
//! real traffic or from the optional periodic probe.
//!
//! Hysteresis: a target that was up is reported down only after [`DOWN_AFTER`]
//! failed attempts in a row (one refused or timed-out connect is common and must not
//! take a cluster node out of the descriptor); one success reports it up again (a real
//! connection went through). The first result after start decides at once.

use serde::Serialize;
use std::sync::{Arc, Mutex};

use crate::err::Error;
use std::time::{SystemTime, UNIX_EPOCH};

/// Failed attempts in a row that turn a target that was up into down.
pub const DOWN_AFTER: u32 = 2;

/// What we last learned about the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `Some(true)` if the last connection attempt succeeded, `Some(false)` if
    /// it failed, `None` before the first attempt.
    pub up: Option<bool>,
    /// When that attempt ended, milliseconds since the Unix epoch.
    pub checked_unix_ms: Option<u64>,
    /// Where the result came from: `traffic` or `probe`.
    pub source: Option<&'static str>,
    /// The last failure (target redacted), kept after the target came back.
    pub last_error: Option<String>,
}

/// A cheap, cloneable view of the target's health; [`HealthHandle::get`]
/// copies the current state.
#[derive(Debug, Clone, Default)]
pub struct HealthHandle(Arc<Mutex<(Health, u32)>>);

impl HealthHandle {
    /// The current health.
    pub fn get(&self) -> Health {
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // data: the value is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Records the outcome of one connection attempt; a failure is kept as its message
    /// (the target in it is already redacted).
    pub(crate) fn record(&self, source: &'static str, result: Result<(), &Error>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (h, fails) = &mut *g;
        *fails = if result.is_ok() {
            0
        } else {
            fails.saturating_add(1)
        };
        if result.is_ok() || h.up != Some(true) || *fails >= DOWN_AFTER {
            h.up = Some(result.is_ok());
        }
        h.checked_unix_ms = Some(now);
        h.source = Some(source);
        if let Err(e) = result {
            h.last_error = Some(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_never_takes_a_target_down_two_in_a_row_do() {
        let h = HealthHandle::default();
        let err = Error::Config("x".into());
        let fail = |h: &HealthHandle| h.record("probe", Err(&err));
        let ok = |h: &HealthHandle| h.record("probe", Ok(()));
        ok(&h);
        assert_eq!(h.get().up, Some(true));
        fail(&h);
        assert_eq!(h.get().up, Some(true), "one failure");
        ok(&h);
        fail(&h);
        assert_eq!(h.get().up, Some(true), "failures not in a row");
        fail(&h);
        assert_eq!(h.get().up, Some(false), "two in a row");
        ok(&h);
        assert_eq!(h.get().up, Some(true), "one success brings it back");
        let fresh = HealthHandle::default();
        fail(&fresh);
        assert_eq!(fresh.get().up, Some(false), "the first result decides");
    }
}
