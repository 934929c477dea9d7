//! How far this node's clock is from the cluster's, read from gossip timestamps.
//!
//! Every gossip datagram carries its sender's Unix time in milliseconds under the MAC
//! ([`crate::auth`]). The transport records, per member address (below), `sent −
//! received` of every datagram whose MAC checked, stale ones included (a datagram more than the
//! transport's window off is dropped, but its timestamp is authentic and tells a node far
//! off why it hears nobody).
//!
//! The MAC proves only that the sender holds the cluster secret, so a hostile member (or
//! a removed one that still has it) can stamp any time and send from any port, and anyone
//! on the path can replay an old datagram. The estimate is built so that neither decides:
//!
//! - **One opinion per member.** Only samples from the gossip address a member of the
//!   view advertises, or a configured seed, count ([`ClockOffsets::offset_ms`] is given
//!   those addresses, and records nothing from other addresses), one per address:
//!   sending from many ports adds nothing and cannot crowd the members out. The seeds
//!   count from the start because a node whose clock is far off hears only stale
//!   datagrams and never learns a member. A member whose datagrams come from another
//!   address (NAT) is not counted; with no member counted there is no estimate and no
//!   skew is declared.
//! - **Replays cannot pull a peer behind.** A peer's opinion is the largest offset it
//!   showed over the last two windows of [`ClockOffsets::WINDOW_MS`]: a replayed datagram
//!   is always older (looks further behind) than the peer's live ones, and the least
//!   delayed datagram is also the most exact.
//! - **A majority, this node included.** This node counts itself with offset 0, and the
//!   estimate is the median of all the opinions; of an even number, the middle one closer
//!   to 0. So this node is called off only when a strict majority of the cluster, itself
//!   included, sees it off: in a 3-node cluster one hostile peer cannot do it, and in a
//!   2-node cluster neither node can tell which clock is wrong, so neither is called off
//!   (the health check's comparison with the consensus catches a clock behind the
//!   consensus or past its end).
//!
//! This holds against a hostile member where it has one opinion: over a WireGuard mesh
//! (source addresses bound to keys) with signed gossip required (no made-up members).
//! There it can hide a small cluster's skewed node (its opinion is one of the majority)
//! but cannot make an honest node ineligible; without a mesh it can spoof members'
//! addresses (docs/SECURITY.md, "The election against a hostile member"). The one-way
//! network delay
//! (milliseconds inside a mesh) makes every peer look that much behind, well under the
//! tolerance. Pure: the caller passes its clock in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// One source address's samples.
#[derive(Clone, Copy, Debug)]
struct Peer {
    /// The largest offset (its clock minus ours, ms) of the current window.
    best: i64,
    /// The largest offset of the window before (None: no sample in it).
    previous: Option<i64>,
    /// When the current window started (our Unix ms).
    window_start: u64,
    /// When the last sample arrived (our Unix ms).
    heard_at: u64,
}

impl Peer {
    fn opinion(&self) -> i64 {
        self.previous.map_or(self.best, |p| p.max(self.best))
    }
}

/// Clock offsets per source address. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ClockOffsets {
    peers: BTreeMap<SocketAddr, Peer>,
}

impl ClockOffsets {
    /// Samples older than this are ignored (and dropped).
    pub const MAX_AGE_MS: u64 = 60_000;
    /// At most this many addresses are remembered (the stalest go first).
    pub const MAX_PEERS: usize = 1024;
    /// A peer's opinion is its largest offset over the last two windows this long.
    pub const WINDOW_MS: u64 = 10_000;

    /// Records a datagram from `peer` stamped `sent_ms` (its clock) received at `now_ms`.
    pub fn record(&mut self, peer: SocketAddr, sent_ms: u64, now_ms: u64) {
        let offset = i128::from(sent_ms) - i128::from(now_ms);
        let offset = i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        if let Some(p) = self.peers.get_mut(&peer) {
            let elapsed = now_ms.saturating_sub(p.window_start);
            if elapsed < Self::WINDOW_MS {
                p.best = p.best.max(offset);
            } else {
                // The window before counts only if it is the one just ended.
                p.previous = (elapsed < 2 * Self::WINDOW_MS).then_some(p.best);
                p.best = offset;
                p.window_start = now_ms;
            }
            p.heard_at = now_ms;
            return;
        }
        if self.peers.len() >= Self::MAX_PEERS {
            self.peers
                .retain(|_, p| now_ms.saturating_sub(p.heard_at) < Self::MAX_AGE_MS);
            if self.peers.len() >= Self::MAX_PEERS {
                return;
            }
        }
        self.peers.insert(
            peer,
            Peer {
                best: offset,
                previous: None,
                window_start: now_ms,
                heard_at: now_ms,
            },
        );
    }

    /// This node's clock minus the cluster's, in ms (positive: this node is ahead), from
    /// the samples of `members` (the gossip addresses the view's other members
    /// advertise); `None` when none of them was heard within [`ClockOffsets::MAX_AGE_MS`].
    pub fn offset_ms(&self, now_ms: u64, members: &BTreeSet<SocketAddr>) -> Option<i64> {
        let mut opinions: Vec<i64> = members
            .iter()
            .filter_map(|a| self.peers.get(a))
            .filter(|p| now_ms.saturating_sub(p.heard_at) < Self::MAX_AGE_MS)
            .map(Peer::opinion)
            .collect();
        if opinions.is_empty() {
            return None;
        }
        opinions.push(0);
        opinions.sort_unstable();
        let n = opinions.len();
        let median = if n % 2 == 1 {
            opinions[n / 2]
        } else {
            let (a, b) = (opinions[n / 2 - 1], opinions[n / 2]);
            if a.unsigned_abs() <= b.unsigned_abs() {
                a
            } else {
                b
            }
        };
        Some(median.saturating_neg())
    }
}

#[cfg(test)]
mod tests {
    use super::ClockOffsets;
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    fn peer(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + i))
    }

    /// The members' advertised addresses: peers 0..n.
    fn members(n: u16) -> BTreeSet<SocketAddr> {
        (0..n).map(peer).collect()
    }

    #[test]
    fn a_node_whose_clock_is_ahead_sees_every_peer_behind() {
        let mut c = ClockOffsets::default();
        assert_eq!(c.offset_ms(1_000_000, &members(3)), None);
        for i in 0..3 {
            // Peers send at their time 1_000_000; we receive at 1_600_005 (10 min ahead).
            c.record(peer(i), 1_000_000, 1_600_005);
        }
        assert_eq!(c.offset_ms(1_600_100, &members(3)), Some(600_005));
    }

    #[test]
    fn one_skewed_peer_does_not_move_the_median() {
        let mut c = ClockOffsets::default();
        c.record(peer(0), 1_000_000, 1_000_004);
        c.record(peer(1), 1_000_010, 1_000_012);
        c.record(peer(2), 1_600_000, 1_000_001);
        // The middle of (-4, -2, 0 for this node, +599,999) closer to 0.
        assert_eq!(c.offset_ms(1_000_020, &members(3)), Some(0));
    }

    #[test]
    fn old_samples_are_ignored() {
        let mut c = ClockOffsets::default();
        c.record(peer(0), 0, 10_000);
        assert_eq!(
            c.offset_ms(10_000 + ClockOffsets::MAX_AGE_MS, &members(1)),
            None
        );
    }

    #[test]
    fn a_member_sending_from_many_ports_counts_once() {
        let mut c = ClockOffsets::default();
        for i in 0..3 {
            c.record(peer(i), 1_000_000, 1_000_003);
        }
        // A hostile member claims a clock 10 minutes ahead from 10 source ports.
        for port in 0..10 {
            c.record(peer(100 + port), 1_600_000, 1_000_003);
        }
        assert_eq!(c.offset_ms(1_000_010, &members(3)), Some(3));
    }

    #[test]
    fn one_hostile_peer_of_two_cannot_make_this_node_skewed() {
        let mut c = ClockOffsets::default();
        c.record(peer(0), 1_000_000, 1_000_002);
        c.record(peer(1), 1_600_000, 1_000_002);
        let off = c.offset_ms(1_000_010, &members(2)).expect("peers heard");
        assert!(off.abs() < 1_000, "offset {off}");
    }

    #[test]
    fn a_replayed_old_datagram_does_not_pull_a_peer_behind() {
        let mut c = ClockOffsets::default();
        for i in 0..3 {
            c.record(peer(i), 1_000_000, 1_000_002);
            // The same peer's datagram of five minutes ago, replayed (stale, MAC valid).
            c.record(peer(i), 700_000, 1_000_003);
        }
        let off = c.offset_ms(1_000_010, &members(3)).expect("peers heard");
        assert!(off.abs() < 1_000, "offset {off}");
    }

    #[test]
    fn in_a_two_node_cluster_neither_clock_is_called_off() {
        let mut c = ClockOffsets::default();
        c.record(peer(0), 400_000, 1_000_000);
        assert_eq!(c.offset_ms(1_000_010, &members(1)), Some(0));
    }

    #[test]
    fn one_hostile_peer_cannot_hide_this_nodes_skew_from_five() {
        let mut c = ClockOffsets::default();
        for i in 0..3 {
            c.record(peer(i), 1_000_000, 1_600_000);
        }
        // The hostile peer claims our clock.
        c.record(peer(3), 1_600_000, 1_600_000);
        assert_eq!(c.offset_ms(1_600_010, &members(4)), Some(600_000));
    }

    #[test]
    fn a_peer_opinion_follows_its_clock_after_two_windows() {
        let mut c = ClockOffsets::default();
        let w = ClockOffsets::WINDOW_MS;
        for i in 0..3 {
            c.record(peer(i), 1_000_000 + 600_000, 1_000_000);
        }
        assert_eq!(c.offset_ms(1_000_001, &members(3)), Some(-600_000));
        // The peers' clocks were corrected: their later samples are ~0.
        for t in [w, 2 * w, 3 * w] {
            for i in 0..3 {
                c.record(peer(i), 1_000_000 + t, 1_000_000 + t);
            }
        }
        assert_eq!(c.offset_ms(1_000_000 + 3 * w, &members(3)), Some(0));
    }
}
