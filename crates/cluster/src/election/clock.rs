//! How far this node's clock is from the cluster's, read from gossip timestamps.
//!
//! Every gossip datagram carries its sender's Unix time in milliseconds under the MAC
//! ([`crate::auth`]). The transport records, per peer address, the latest
//! `sent − received` of a datagram whose MAC checked, stale ones included (a datagram
//! more than the transport's window off is dropped, but its timestamp is authentic and
//! tells a node far off why it hears nobody). This node's offset from the cluster is
//! minus the median of those per-peer offsets over the peers heard within
//! [`ClockOffsets::MAX_AGE_MS`]: when this node's clock is off, every peer looks off the
//! other way; when one peer is off, the median ignores it. The one-way network delay
//! (milliseconds inside a mesh) makes every peer look that much behind, well under the
//! tolerance. Pure: the caller passes its clock in.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Latest clock offset per peer. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ClockOffsets {
    /// Peer → (its clock minus ours, in ms; when we recorded it, our Unix ms).
    peers: BTreeMap<SocketAddr, (i64, u64)>,
}

impl ClockOffsets {
    /// Samples older than this are ignored (and dropped).
    pub const MAX_AGE_MS: u64 = 60_000;
    /// At most this many peers are remembered (the stalest go first).
    pub const MAX_PEERS: usize = 1024;

    /// Records a datagram from `peer` stamped `sent_ms` (its clock) received at `now_ms`.
    pub fn record(&mut self, peer: SocketAddr, sent_ms: u64, now_ms: u64) {
        let offset = i128::from(sent_ms) - i128::from(now_ms);
        let offset = i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        if !self.peers.contains_key(&peer) && self.peers.len() >= Self::MAX_PEERS {
            self.peers
                .retain(|_, (_, at)| now_ms.saturating_sub(*at) < Self::MAX_AGE_MS);
            if self.peers.len() >= Self::MAX_PEERS {
                return;
            }
        }
        self.peers.insert(peer, (offset, now_ms));
    }

    /// This node's clock minus the cluster's, in ms (positive: this node is ahead);
    /// `None` when no peer was heard within [`ClockOffsets::MAX_AGE_MS`].
    pub fn offset_ms(&self, now_ms: u64) -> Option<i64> {
        let mut offsets: Vec<i64> = self
            .peers
            .values()
            .filter(|(_, at)| now_ms.saturating_sub(*at) < Self::MAX_AGE_MS)
            .map(|(o, _)| *o)
            .collect();
        if offsets.is_empty() {
            return None;
        }
        offsets.sort_unstable();
        Some(offsets[offsets.len() / 2].saturating_neg())
    }
}

#[cfg(test)]
mod tests {
    use super::ClockOffsets;
    use std::net::SocketAddr;

    fn peer(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + i))
    }

    #[test]
    fn a_node_whose_clock_is_ahead_sees_every_peer_behind() {
        let mut c = ClockOffsets::default();
        assert_eq!(c.offset_ms(1_000_000), None);
        for i in 0..3 {
            // Peers send at their time 1_000_000; we receive at 1_600_005 (10 min ahead).
            c.record(peer(i), 1_000_000, 1_600_005);
        }
        assert_eq!(c.offset_ms(1_600_100), Some(600_005));
    }

    #[test]
    fn one_skewed_peer_does_not_move_the_median() {
        let mut c = ClockOffsets::default();
        c.record(peer(0), 1_000_000, 1_000_004);
        c.record(peer(1), 1_000_010, 1_000_012);
        c.record(peer(2), 1_600_000, 1_000_001);
        assert_eq!(c.offset_ms(1_000_020), Some(2));
    }

    #[test]
    fn old_samples_are_ignored() {
        let mut c = ClockOffsets::default();
        c.record(peer(0), 0, 10_000);
        assert_eq!(c.offset_ms(10_000 + ClockOffsets::MAX_AGE_MS), None);
    }
}
