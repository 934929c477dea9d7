//! The node's cluster timers, one struct like the election's `ElectionConfig`: the
//! defaults are the production values; tests shorten them.

use super::solo::SoloTimers;
use std::time::Duration;

/// Every fixed delay of the cluster tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    /// How often the publish task looks at the lease and the intro points.
    pub publish_poll: Duration,
    /// A held lease republishes unchanged descriptors this often (`cluster.republish_secs`).
    pub republish: Duration,
    /// First retry delay after a publication that missed HSDirs; doubles per failure.
    pub retry_base: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
    /// How long a publication waits for the HSDirs' `HS_DESC` answers.
    pub upload_confirm: Duration,
    /// How often the intro task reads this node's own descriptor and target health.
    pub intro_poll: Duration,
    /// After a period starts, how long the intro task waits for the instance's descriptor
    /// of that period before it falls back to tor's current one.
    pub next_wait: Duration,
    /// How often the next-descriptor task looks at the time period.
    pub next_poll: Duration,
    /// How often the fetched descriptor of the running period is refreshed.
    pub next_refresh: Duration,
    /// How long one fetch of the instance's descriptor from the HSDirs may take.
    pub next_fetch: Duration,
    /// Delay before fetching again when the HSDirs served another period's descriptor.
    pub next_retry: Duration,
    /// How often `/status` is refreshed from gossip.
    pub status_poll: Duration,
    /// How often the elector runs the election.
    pub election_tick: Duration,
    /// How long a stopping node waits after giving up its lease (for gossip to carry it).
    pub leave_grace: Duration,
    /// How often the publish task checks this node's publishing health.
    pub health_poll: Duration,
    /// A lease holder with no upload confirmed for this long yields the lease, and
    /// competes again this long after (`policy::Health`).
    pub yield_after: Duration,
    /// While the lease is held, the responsible HSDirs are asked this often (and after
    /// each publication) whether they hold our latest descriptor (`cluster.hsdir_check_secs`).
    pub hsdir_check: Duration,
    /// How long one such check waits for the HSDirs' answers.
    pub hsdir_fetch: Duration,
    /// The single-node switch (`cluster.solo_after_secs`, `cluster.solo_drain_secs`).
    pub solo: SoloTimers,
}

impl Timers {
    /// The production timers; `testing_network` (a TestingTorNetwork, whose descriptors
    /// change faster) refreshes the fetched descriptor every 15 s instead of 300 s and
    /// checks the HSDirs every 20 s instead of 600 s.
    pub fn new(testing_network: bool) -> Timers {
        Timers {
            publish_poll: Duration::from_millis(250),
            republish: Duration::from_secs(crate::config::DEFAULT_REPUBLISH_SECS),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            upload_confirm: Duration::from_secs(10),
            intro_poll: Duration::from_secs(1),
            next_wait: Duration::from_secs(90),
            next_poll: Duration::from_secs(1),
            next_refresh: Duration::from_secs(if testing_network { 15 } else { 300 }),
            next_fetch: Duration::from_secs(20),
            next_retry: Duration::from_secs(2),
            status_poll: Duration::from_millis(500),
            election_tick: Duration::from_millis(250),
            leave_grace: Duration::from_millis(300),
            health_poll: Duration::from_secs(1),
            yield_after: Duration::from_secs(180),
            hsdir_check: Duration::from_secs(if testing_network {
                crate::config::TESTING_HSDIR_CHECK_SECS
            } else {
                crate::config::DEFAULT_HSDIR_CHECK_SECS
            }),
            hsdir_fetch: Duration::from_secs(20),
            solo: if testing_network {
                SoloTimers {
                    alone_after: Duration::from_secs(crate::config::TESTING_SOLO_SECS),
                    drain: Duration::from_secs(crate::config::TESTING_SOLO_SECS),
                }
            } else {
                SoloTimers::default()
            },
        }
    }

    /// The production timers with `cluster.republish_secs`, `cluster.hsdir_check_secs`,
    /// `cluster.solo_after_secs` and `cluster.solo_drain_secs`.
    pub fn from_config(c: &crate::config::ClusterSection, testing_network: bool) -> Timers {
        let t = Timers::new(testing_network);
        Timers {
            republish: Duration::from_secs(c.republish_secs),
            hsdir_check: c
                .hsdir_check_secs
                .map_or(t.hsdir_check, Duration::from_secs),
            solo: SoloTimers {
                alone_after: c
                    .solo_after_secs
                    .map_or(t.solo.alone_after, Duration::from_secs),
                drain: c.solo_drain_secs.map_or(t.solo.drain, Duration::from_secs),
            },
            ..t
        }
    }
}

impl Default for Timers {
    fn default() -> Self {
        Timers::new(false)
    }
}
