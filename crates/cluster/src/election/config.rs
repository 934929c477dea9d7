//! The election's tunables.

use std::time::Duration;

use crate::err::ClusterError;

/// Tunables of the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// How often the holder renews its lease.
    pub renew: Duration,
    /// How long one renewal is valid. Must exceed `renew` (3× is a good ratio).
    pub lease: Duration,
    /// How long a new node listens before it may acquire.
    pub settle: Duration,
    /// Extra wait per rank position after a lapse (rule 4).
    pub candidate_step: Duration,
    /// How long a dead member still counts in the last-known membership (rule 5).
    pub forget_after: Duration,
    /// Treat a holder that the failure detector reports dead as lapsed (rule 3).
    pub takeover_on_holder_death: bool,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            renew: Duration::from_secs(2),
            lease: Duration::from_secs(6),
            settle: Duration::from_secs(2),
            candidate_step: Duration::from_secs(2),
            forget_after: Duration::from_secs(60),
            takeover_on_holder_death: true,
        }
    }
}

impl ElectionConfig {
    /// Checks the relations between the durations.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.renew.is_zero() || self.lease <= self.renew {
            return Err(ClusterError::BadConfig(format!(
                "the lease ({:?}) must be longer than the renew interval ({:?}) and the renew \
                 interval must not be zero; use for instance renew 2s and lease 6s",
                self.lease, self.renew
            )));
        }
        Ok(())
    }
}
