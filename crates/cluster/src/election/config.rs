//! The election's tunables.

use std::time::Duration;

use crate::err::ClusterError;

/// Tunables of the election.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ElectionConfig {
    /// How often the holder renews its lease.
    pub renew: Duration,
    /// How long one renewal is valid. Must exceed `renew` (3× is a good ratio). It is also
    /// the longest a foreign lease counts, whatever TTL its advert claims (rule 3).
    pub lease: Duration,
    /// How long a new node listens before it may acquire.
    pub settle: Duration,
    /// Extra wait per rank position after a lapse (rule 4).
    pub candidate_step: Duration,
    /// The configured cluster size: the quorum (rule 5) is a strict majority of the larger
    /// of this and the number of members this node has ever seen. 1 (the default) means
    /// "as many as seen"; set it so that a node restarted while cut off cannot count itself
    /// a majority of one.
    pub cluster_size: usize,
    /// How far a publisher-eligible node's clock may be from the cluster's (the median
    /// over the members, this node included, of their gossip timestamps). The driver makes a node whose clock is further off
    /// ineligible; an observer adds [`ElectionConfig::guard`] to every foreign lease so that
    /// a new holder's first revision time is later than the last one of the holder before
    /// it, even when it never heard of that one (rule 3).
    pub clock_tolerance: Duration,
    /// The longest the failure detector takes to report a cut-off peer dead (phi
    /// accrual at threshold 12 and a 100 ms gossip interval: about 2.8 s). A holder cut
    /// off from the majority renews unseen until then; observers count it in the guard.
    pub detection: Duration,
    /// What quorum means (rule 5) and whether a holder reported dead loses its lease at
    /// once (rule 3). See [`QuorumMode`].
    pub quorum: QuorumMode,
}

/// What a node needs to acquire and renew the lease (`cluster.quorum`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuorumMode {
    /// Availability first (the default while the Tor witness is not built): no quorum,
    /// and a holder the failure detector reports dead loses its lease at once (no shadow
    /// lease). A lone survivor keeps the address up and a publisher's death costs about
    /// `detection + candidate_step`; a node cut off from the others publishes too (both
    /// sides list only the intro points they see live).
    #[default]
    Live,
    /// Partition safety first: a strict majority of the known cluster size, which never
    /// shrinks by itself; a holder reported dead keeps a shadow lease. A cut-off minority
    /// never publishes, but neither does a lone survivor, and a publisher's death costs
    /// `lease + guard + publish delay` (~20 s), because a dead holder and a cut-off one
    /// look the same from here.
    Majority,
    /// `Majority` with the Tor witness ([`crate::election::Input::Witness`]): a member
    /// silent in gossip stays in the known size while it still answers its canary
    /// through Tor (it is alive: a partition, the minority does not publish), and leaves
    /// it, its lease lapsing at once, when the canary confirms it dead from here (a lone
    /// survivor publishes; a dead publisher is replaced after detection, the canary's
    /// confirmation and the publish delay).
    Witness,
}

impl QuorumMode {
    /// The configuration value (`cluster.quorum`).
    pub fn as_str(self) -> &'static str {
        match self {
            QuorumMode::Live => "live",
            QuorumMode::Majority => "majority",
            QuorumMode::Witness => "witness",
        }
    }

    /// Whether a dead holder's lease lapses at once and no shadow lease is kept.
    pub fn takes_over_on_death(self) -> bool {
        self == QuorumMode::Live
    }
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            renew: Duration::from_secs(2),
            lease: Duration::from_secs(6),
            settle: Duration::from_secs(2),
            candidate_step: Duration::from_secs(2),
            cluster_size: 1,
            clock_tolerance: Duration::from_secs(2),
            detection: Duration::from_secs(3),
            quorum: QuorumMode::default(),
        }
    }
}

impl ElectionConfig {
    /// The defaults with [`QuorumMode::Majority`].
    pub fn majority() -> Self {
        ElectionConfig {
            quorum: QuorumMode::Majority,
            ..ElectionConfig::default()
        }
    }

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

    /// What an observer adds to a foreign lease before it counts it lapsed (10 s by
    /// default): the renewals a holder cut off from us may still make before its failure
    /// detector tells it it lost quorum (`renew + detection`: we counted from the last
    /// renewal we saw), twice the clock tolerance (two clocks each within it of the
    /// cluster's differ by up to twice as much) and one second (revision times count
    /// whole seconds). Found by the scenario `revision_times_never_go_backwards_across_holders`.
    pub fn guard(&self) -> Duration {
        self.renew + self.detection + self.clock_tolerance * 2 + Duration::from_secs(1)
    }

    /// How far ahead of its own clock a new holder builds its first descriptor when an
    /// eligible member is reported dead (rule 8):
    /// twice the clock tolerance and one second (5 s by default). A holder that died may
    /// have published once more just before, unseen in gossip, at its own clock (up to
    /// the tolerance ahead of the cluster's); without a guard wait (`"live"` mode takes
    /// over as soon as it is reported dead) only this keeps revision times going forward.
    /// Found by the model checker (`live_mode_crash_yield_and_delayed_gossip`).
    pub fn takeover_margin(&self) -> Duration {
        self.clock_tolerance * 2 + Duration::from_secs(1)
    }

    /// How long a new holder waits after acquiring before it publishes (rule 4): long
    /// enough to hear of a lease acquired at the same moment (a candidate step) and to
    /// notice a cut that happened at that moment (the failure detection time).
    /// In [`QuorumMode::Live`] only the candidate step (a cut at the moment of acquiring
    /// is what the detection part covers, and that mode does not protect against cuts).
    pub fn publish_delay(&self) -> Duration {
        match self.quorum {
            QuorumMode::Live => self.candidate_step,
            QuorumMode::Majority | QuorumMode::Witness => self.candidate_step.max(self.detection),
        }
    }

    /// Whether a clock `offset_ms` away from the cluster's is close enough to publish.
    pub fn clock_ok(&self, offset_ms: i64) -> bool {
        u128::from(offset_ms.unsigned_abs()) <= self.clock_tolerance.as_millis()
    }
}
