//! The join subsystem's timers, as configuration (today's values are the defaults), so
//! that tests can shorten them.

use std::time::Duration;

/// How long members keep a removed node's WireGuard peer after learning of the removal, so
/// that the removal still reaches the node itself over gossip and it stops.
pub const REMOVAL_GRACE: Duration = Duration::from_secs(5);

/// How long after a removal the member that made it rotates the join token (unless the
/// generation moved meanwhile): long enough for every member to have dropped the removed
/// node's WireGuard peer ([`REMOVAL_GRACE`] after learning, itself within seconds), so the
/// new generation's salt never reaches the removed node over gossip.
pub const ROTATE_AFTER_REMOVAL: Duration = Duration::from_secs(15);

/// The other members rotate only if the remover's new generation has not reached them
/// this long after [`ROTATE_AFTER_REMOVAL`] (the remover died meanwhile). Were they all to
/// rotate on time, each would draw its own salt, the cluster would settle on the highest,
/// and the token `node remove` printed could be one the cluster no longer takes.
pub const ROTATION_FALLBACK: Duration = Duration::from_secs(15);

/// Removals learned later than this after they were made (by their wall-clock stamp) no
/// longer close the join endpoint nor ask for a rotation: that rotation happened while this
/// member was away, and gossip brings its generation.
pub const RECENT_REMOVAL: Duration = Duration::from_secs(600);

/// How often a member follows gossip (peers, generations, removals).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// How long `node remove` waits for the rotated token to hold still before printing it
/// (two members may rotate at once; the cluster keeps one generation).
pub const TOKEN_HOLD: Duration = Duration::from_secs(3);

/// How long `node remove` waits for the rotation beyond [`ROTATE_AFTER_REMOVAL`].
pub const ROTATION_WAIT_SLACK: Duration = Duration::from_secs(30);

/// The join subsystem's timers; see the constants of the same names for what each does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTimers {
    /// [`REMOVAL_GRACE`].
    pub removal_grace: Duration,
    /// [`ROTATE_AFTER_REMOVAL`].
    pub rotate_after_removal: Duration,
    /// [`ROTATION_FALLBACK`].
    pub rotation_fallback: Duration,
    /// [`RECENT_REMOVAL`].
    pub recent_removal: Duration,
    /// [`SYNC_INTERVAL`].
    pub sync_interval: Duration,
    /// [`TOKEN_HOLD`].
    pub token_hold: Duration,
    /// [`ROTATION_WAIT_SLACK`].
    pub rotation_wait_slack: Duration,
}

impl Default for JoinTimers {
    fn default() -> Self {
        JoinTimers {
            removal_grace: REMOVAL_GRACE,
            rotate_after_removal: ROTATE_AFTER_REMOVAL,
            rotation_fallback: ROTATION_FALLBACK,
            recent_removal: RECENT_REMOVAL,
            sync_interval: SYNC_INTERVAL,
            token_hold: TOKEN_HOLD,
            rotation_wait_slack: ROTATION_WAIT_SLACK,
        }
    }
}
