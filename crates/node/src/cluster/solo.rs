//! The switch between cluster mode and single-node mode on a publisher-eligible node,
//! pure: [`SoloSwitch::step`] takes `now` and what the node observes, and says what to do.
//! The effect — `ADD_ONION` with the master key and tor's PoW options on the node's own
//! tor, `DEL_ONION` on return — is the thin driver [`host::SoloDriver`], run by the
//! publish task; `cluster.solo`, `cluster.solo_after_secs` and `cluster.solo_drain_secs`
//! configure it. Lab proof: `lab_loopback` scenario `lone_node_goes_single_node`.
//!
//! Why: tor's PoW verifies only on a tor that holds the master key ([`super::pow`]). A lone
//! node whose tor also hosts the master service publishes tor's own descriptor, PoW
//! included, and clients that solve are served first under a flood.
//!
//! ```text
//!            alone (no peer advertising intro points) for `alone_after`, holding the lease
//!  Cluster ───────────────────────────────────────────────────────────▶ AddMaster
//!     ▲       (merged descriptors go on until tor's own master descriptor is uploaded,
//!     │        then stop: they would replace tor's, PoW and all)
//!     │
//!     │  peers back ─▶ publish merged (newer revision replaces tor's at the HSDirs)
//!     │            ─▶ merged upload confirmed ─▶ `drain` (rendezvous in flight end)
//!     └────────────────────────── RemoveMaster ◀───────────────────────┘
//!
//!  lease lost or no master key while tor hosts the master service ─▶ RemoveMaster at once
//!  tor restarted (the ephemeral service is gone) while still alone ─▶ AddMaster again
//! ```
//!
//! "Uploaded" and "confirmed" mean *newest at the HSDirs*: [`Uploads`] orders tor's own
//! confirmed uploads and the confirmed merged publications on one sequence.

use std::time::{Duration, Instant};

pub mod host;

pub use host::{master_service_args, SoloDriver, SoloMode};

/// What the node sees this round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoloInputs {
    /// This node holds the publish lease.
    pub leader: bool,
    /// This node holds the master key (publisher-eligible).
    pub holds_master_key: bool,
    /// Other live, healthy nodes advertising intro points.
    pub peers: usize,
    /// This node's tor hosts the master service now.
    pub master_service: bool,
    /// tor's own master descriptor has reached an HSDir since the service was added.
    pub master_uploaded: bool,
    /// A merged descriptor listing the peers has been confirmed by the HSDirs since they
    /// came back.
    pub merged_confirmed: bool,
}

/// What to do this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoloStep {
    /// Add or remove the master service on this node's tor, or neither.
    pub action: SoloAction,
    /// Whether the publisher uploads merged descriptors (it must not while tor's own
    /// master descriptor, with PoW, is the one clients should get).
    pub publish_merged: bool,
}

/// The effect to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoloAction {
    /// Nothing to change.
    None,
    /// Host the master key on this node's tor (it publishes its own descriptor, with PoW).
    AddMaster,
    /// Stop hosting it.
    RemoveMaster,
}

/// How long to wait before switching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoloTimers {
    /// Alone this long before going single-node (a peer restarting must not flip modes).
    pub alone_after: Duration,
    /// After the merged descriptor is confirmed, keep the master service this long.
    pub drain: Duration,
}

impl Default for SoloTimers {
    fn default() -> Self {
        SoloTimers {
            alone_after: Duration::from_secs(crate::config::DEFAULT_SOLO_AFTER_SECS),
            drain: Duration::from_secs(crate::config::DEFAULT_SOLO_DRAIN_SECS),
        }
    }
}

/// Which descriptor is newest at the HSDirs: tor's own master descriptor or the last
/// merged one. One sequence orders the confirmations of both (`HS_DESC UPLOADED` of tor's
/// own uploads, confirmed merged publications); the latest wins, since each is built with
/// a newer revision than everything before it. Gives [`SoloInputs::master_uploaded`] and
/// [`SoloInputs::merged_confirmed`].
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    seq: u64,
    /// tor's last confirmed own upload since the service was added (0: none).
    own: u64,
    /// The last confirmed merged publication since then, and whether it listed other nodes.
    merged: Option<(u64, bool)>,
}

impl Uploads {
    /// The master service was just added: only what comes after counts.
    pub fn added(&mut self) {
        *self = Uploads::default();
    }

    /// tor confirmed an upload of its own master descriptor.
    pub fn tor_uploaded(&mut self) {
        self.seq += 1;
        self.own = self.seq;
    }

    /// A merged publication was confirmed; `lists_peers`: it listed other nodes.
    pub fn merged_confirmed_now(&mut self, lists_peers: bool) {
        self.seq += 1;
        self.merged = Some((self.seq, lists_peers));
    }

    /// tor's own descriptor is the newest.
    pub fn master_uploaded(&self) -> bool {
        self.own > self.merged.map_or(0, |(s, _)| s)
    }

    /// A merged descriptor listing other nodes is the newest.
    pub fn merged_confirmed(&self) -> bool {
        self.merged.is_some_and(|(s, peers)| peers && s > self.own)
    }
}

/// What the switch remembers between rounds.
#[derive(Debug, Clone, Default)]
pub struct SoloSwitch {
    alone_since: Option<Instant>,
    confirmed_since: Option<Instant>,
}

impl SoloSwitch {
    /// Decide this round.
    pub fn step(&mut self, now: Instant, i: &SoloInputs, t: &SoloTimers) -> SoloStep {
        let step = |action, publish_merged| SoloStep {
            action,
            publish_merged,
        };
        if !i.leader || !i.holds_master_key {
            *self = SoloSwitch::default();
            let action = if i.master_service {
                SoloAction::RemoveMaster
            } else {
                SoloAction::None
            };
            return step(action, i.leader);
        }
        if i.peers == 0 {
            self.confirmed_since = None;
            let since = *self.alone_since.get_or_insert(now);
            if !i.master_service {
                let due = now.saturating_duration_since(since) >= t.alone_after;
                let action = if due {
                    SoloAction::AddMaster
                } else {
                    SoloAction::None
                };
                return step(action, true);
            }
            // Merged descriptors until tor's own is out, so the address never goes dark.
            return step(SoloAction::None, !i.master_uploaded);
        }
        self.alone_since = None;
        if !i.master_service {
            self.confirmed_since = None;
            return step(SoloAction::None, true);
        }
        if !i.merged_confirmed {
            return step(SoloAction::None, true);
        }
        let since = *self.confirmed_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= t.drain {
            step(SoloAction::RemoveMaster, true)
        } else {
            step(SoloAction::None, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn leader(peers: usize, master_service: bool) -> SoloInputs {
        SoloInputs {
            leader: true,
            holds_master_key: true,
            peers,
            master_service,
            ..Default::default()
        }
    }

    #[test]
    fn alone_long_enough_the_node_hosts_the_master_and_publishes_merged_until_tors_own_is_up() {
        let t = SoloTimers::default();
        let t0 = Instant::now();
        let mut s = SoloSwitch::default();
        // With peers: cluster mode, merged descriptors.
        let r = s.step(t0, &leader(2, false), &t);
        assert_eq!((r.action, r.publish_merged), (SoloAction::None, true));
        // Alone, not long enough yet.
        let r = s.step(t0 + secs(1), &leader(0, false), &t);
        assert_eq!((r.action, r.publish_merged), (SoloAction::None, true));
        let r = s.step(t0 + secs(30), &leader(0, false), &t);
        assert_eq!(r.action, SoloAction::None, "29 s alone");
        let r = s.step(t0 + secs(31), &leader(0, false), &t);
        assert_eq!((r.action, r.publish_merged), (SoloAction::AddMaster, true));
        // Added, tor's own descriptor not uploaded yet: merged ones go on.
        let r = s.step(t0 + secs(32), &leader(0, true), &t);
        assert_eq!((r.action, r.publish_merged), (SoloAction::None, true));
        // Uploaded: the publisher stops (it would replace tor's descriptor and its PoW).
        let up = SoloInputs {
            master_uploaded: true,
            ..leader(0, true)
        };
        assert!(!s.step(t0 + secs(40), &up, &t).publish_merged);
    }

    #[test]
    fn peers_back_merged_first_then_the_master_service_goes_after_the_drain() {
        let t = SoloTimers::default();
        let t0 = Instant::now();
        let mut s = SoloSwitch::default();
        let back = leader(1, true);
        // Peers back: merged descriptors at once, the master service stays.
        let r = s.step(t0, &back, &t);
        assert_eq!((r.action, r.publish_merged), (SoloAction::None, true));
        // Confirmed: the drain starts; the service goes only after it.
        let ok = SoloInputs {
            merged_confirmed: true,
            ..back
        };
        assert_eq!(s.step(t0 + secs(5), &ok, &t).action, SoloAction::None);
        assert_eq!(s.step(t0 + secs(34), &ok, &t).action, SoloAction::None);
        let r = s.step(t0 + secs(35), &ok, &t);
        assert_eq!(
            (r.action, r.publish_merged),
            (SoloAction::RemoveMaster, true)
        );
        // Removed: cluster mode.
        let r = s.step(t0 + secs(36), &leader(1, false), &t);
        assert_eq!((r.action, r.publish_merged), (SoloAction::None, true));
    }

    /// A peer comes back while tor's descriptor is up: merged wins once confirmed; tor
    /// uploading again during the drain makes its own the newest until the next merged
    /// confirmation; a merged descriptor of the lone node alone never counts as return.
    #[test]
    fn the_newest_confirmed_upload_decides() {
        let mut u = Uploads::default();
        u.added();
        assert!(!u.master_uploaded() && !u.merged_confirmed());
        u.merged_confirmed_now(false);
        assert!(
            !u.master_uploaded(),
            "merged of the lone node, then nothing from tor"
        );
        u.tor_uploaded();
        assert!(u.master_uploaded() && !u.merged_confirmed());
        u.merged_confirmed_now(true);
        assert!(!u.master_uploaded() && u.merged_confirmed());
        // The peer flickers: nothing new is confirmed, the merged one stays newest.
        assert!(u.merged_confirmed());
        u.tor_uploaded();
        assert!(u.master_uploaded() && !u.merged_confirmed());
        u.merged_confirmed_now(true);
        assert!(u.merged_confirmed());
        // Added again: what came before does not count.
        u.added();
        assert!(!u.master_uploaded() && !u.merged_confirmed());
    }

    #[test]
    fn a_peer_flapping_resets_the_alone_timer() {
        let t = SoloTimers::default();
        let t0 = Instant::now();
        let mut s = SoloSwitch::default();
        s.step(t0, &leader(0, false), &t);
        s.step(t0 + secs(20), &leader(1, false), &t);
        let r = s.step(t0 + secs(40), &leader(0, false), &t);
        assert_eq!(r.action, SoloAction::None, "alone again only since 40 s");
        let r = s.step(t0 + secs(70), &leader(0, false), &t);
        assert_eq!(r.action, SoloAction::AddMaster);
    }

    #[test]
    fn losing_the_lease_or_tor_restarting_is_handled() {
        let t = SoloTimers::default();
        let t0 = Instant::now();
        let mut s = SoloSwitch::default();
        s.step(t0, &leader(0, false), &t);
        assert_eq!(
            s.step(t0 + secs(31), &leader(0, false), &t).action,
            SoloAction::AddMaster
        );
        // tor restarted: the ephemeral service is gone; still alone, add it again at once.
        assert_eq!(
            s.step(t0 + secs(60), &leader(0, false), &t).action,
            SoloAction::AddMaster
        );
        // The lease went to another node: stop hosting the master key at once.
        let follower = SoloInputs {
            leader: false,
            ..leader(0, true)
        };
        let r = s.step(t0 + secs(61), &follower, &t);
        assert_eq!(
            (r.action, r.publish_merged),
            (SoloAction::RemoveMaster, false)
        );
        // A node without the master key never hosts it.
        let worker = SoloInputs {
            holds_master_key: false,
            ..leader(0, false)
        };
        assert_eq!(s.step(t0 + secs(200), &worker, &t).action, SoloAction::None);
    }
}
