//! Target health: the result of the last connection to the target, from
//! real traffic or from the optional periodic probe.

use serde::Serialize;
use std::sync::{Arc, Mutex};

use crate::err::Error;
use std::time::{SystemTime, UNIX_EPOCH};

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
pub struct HealthHandle(Arc<Mutex<Health>>);

impl HealthHandle {
    /// The current health.
    pub fn get(&self) -> Health {
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // data: the value is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records the outcome of one connection attempt; a failure is kept as its message
    /// (the target in it is already redacted).
    pub(crate) fn record(&self, source: &'static str, result: Result<(), &Error>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        h.up = Some(result.is_ok());
        h.checked_unix_ms = Some(now);
        h.source = Some(source);
        if let Err(e) = result {
            h.last_error = Some(e.to_string());
        }
    }
}
