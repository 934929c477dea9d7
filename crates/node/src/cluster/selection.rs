//! Which intro points go into the master descriptor: slots are shared over *nodes*, not
//! over gossip keys, so a member that lists many keys or many points gets no more than any
//! other member. Pure: the publisher hands in the healthy nodes' intro points
//! (`roster::HealthyIntros::nodes`, one entry per `intro/*` key, named after its node,
//! nodes in name order) and gets the chosen points back, in the order in which they are
//! given up when a descriptor is over the size limit.
//!
//! ```text
//!  entries of one node ─▶ its first MAX_INSTANCES_PER_NODE keys (in key order) count, the rest
//!                         are ignored
//!  all nodes ─▶ hs select_intro_points: repeats dropped (same auth key: the first kept),
//!               and points on a relay a chosen point is on (clients use only the first);
//!               each node at most its fair share ceil(max / nodes) of the `max` slots;
//!               round robin over nodes in name order, each node's points in its order
//!  ─▶ Selection (chosen, and what was left out and why, for the log)
//! ```
//!
//! What a hostile member can still do: fill its own share with dead points (intro points
//! whose keys it made up, or points at its own tor). That is its right as a member, and the
//! share bounds it; see `docs/SECURITY.md`, "Bounded damage from a bad member".

use rustbalance_hs::descriptor::{select_intro_points, InstanceIntros, IntroPointDesc};
use rustbalance_hs::publish::SlotUpload;

/// Most `intro/*` keys (tor instances) of one node that count: `tor.instances` at most
/// ([`crate::config::MAX_TOR_INSTANCES`]: `intro/<node name>`, `intro/<node name>.tor<k>`),
/// and one more for a renamed key during an upgrade. However many count, the node's points
/// together get no more than its fair share.
pub const MAX_INSTANCES_PER_NODE: usize = crate::config::MAX_TOR_INSTANCES + 1;

/// The intro points chosen for the master descriptor, and what was left out.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `(node, intro point)` in round-robin order: the last belong to the nodes with the
    /// most, and go first when a descriptor must list fewer.
    pub chosen: Vec<(String, IntroPointDesc)>,
    /// Per node, `intro/*` keys ignored over [`MAX_INSTANCES_PER_NODE`].
    pub extra_instances: Vec<(String, usize)>,
    /// Points left out as repeats of another (same auth key).
    pub duplicates: usize,
    /// Per node, distinct points left out over its fair share (or over `max`).
    pub left_out: Vec<(String, usize)>,
    /// Per node, points left out because a chosen point is on the same relay (clients
    /// only ever use the first point listed on a relay).
    pub same_relay: Vec<(String, usize)>,
    /// The fair share: the most points one node may have.
    pub share: usize,
}

/// Choose at most `max` intro points from `nodes` (see the module documentation).
pub fn choose(nodes: &[InstanceIntros], max: usize) -> Selection {
    let (counted, extra) = counted_keys(nodes);
    let counted: Vec<InstanceIntros> = counted.into_iter().cloned().collect();
    let s = select_intro_points(&counted, max);
    Selection {
        chosen: s.chosen,
        extra_instances: extra,
        duplicates: s.duplicates,
        left_out: s.left_out,
        same_relay: s.same_relay,
        share: s.share,
    }
}

/// The entries of `nodes` that count (each node's first [`MAX_INSTANCES_PER_NODE`] keys,
/// in key order), and per node how many keys over that are ignored.
fn counted_keys(nodes: &[InstanceIntros]) -> (Vec<&InstanceIntros>, Vec<(String, usize)>) {
    let mut counted: Vec<&InstanceIntros> = Vec::with_capacity(nodes.len());
    let mut extra: Vec<(String, usize)> = Vec::new();
    for e in nodes {
        let already = counted.iter().filter(|c| c.instance == e.instance).count();
        if already < MAX_INSTANCES_PER_NODE {
            counted.push(e);
        } else {
            match extra.iter_mut().find(|(n, _)| *n == e.instance) {
                Some(x) => x.1 += 1,
                None => extra.push((e.instance.clone(), 1)),
            }
        }
    }
    (counted, extra)
}

/// How many distinct intro points `nodes` offer in all, counting only the keys that count
/// ([`MAX_INSTANCES_PER_NODE`]), repeats once, points on one relay each (each can go into a
/// different per-HSDir descriptor).
pub fn distinct_points(nodes: &[InstanceIntros]) -> usize {
    let (counted, _) = counted_keys(nodes);
    let keys: std::collections::HashSet<[u8; 32]> = counted
        .iter()
        .flat_map(|e| e.intro_points.iter().map(|p| p.ipt_sid_key().to_bytes()))
        .collect();
    keys.len()
}

/// Per-HSDir descriptors: `windows` choices of at most `max` points each. Window `j` is
/// [`choose`] over the same nodes with the round robin starting `j` nodes further on and
/// each node's points turned by `j`, so every window keeps the fair-share guarantee of a
/// merged descriptor (a member with many points gets no more than its share of any
/// window), and the points a window leaves out (over a node's share, or on a relay another
/// point of the window is on) differ from window to window.
pub fn choose_windows(nodes: &[InstanceIntros], windows: usize, max: usize) -> Vec<Selection> {
    let mut names: Vec<&str> = Vec::new();
    for e in nodes {
        if !names.contains(&e.instance.as_str()) {
            names.push(&e.instance);
        }
    }
    (0..windows.max(1))
        .map(|j| {
            let first = if names.is_empty() { 0 } else { j % names.len() };
            let order: Vec<&str> = names[first..]
                .iter()
                .chain(&names[..first])
                .copied()
                .collect();
            // Each node's entries (its tors, turbo mode) turned by `j` too: the merge
            // interleaves them from the first, so a node whose share is below its number
            // of tors has each tor in some window, not its first ones only.
            let turned: Vec<InstanceIntros> = order
                .iter()
                .flat_map(|n| {
                    let mut mine: Vec<&InstanceIntros> =
                        nodes.iter().filter(|e| e.instance == *n).collect();
                    let k = j % mine.len().max(1);
                    mine.rotate_left(k);
                    mine
                })
                .map(|e| {
                    let mut points = e.intro_points.clone();
                    if !points.is_empty() {
                        let k = j % points.len();
                        points.rotate_left(k);
                    }
                    InstanceIntros {
                        instance: e.instance.clone(),
                        intro_points: points,
                    }
                })
                .collect();
            choose(&turned, max)
        })
        .collect()
}

impl Selection {
    /// The chosen intro points, in order.
    pub fn points(&self) -> Vec<IntroPointDesc> {
        self.chosen.iter().map(|(_, ip)| ip.clone()).collect()
    }

    /// How many points each node has in `range` of [`Self::chosen`], in order of appearance.
    pub fn per_node(&self, range: std::ops::Range<usize>) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for (name, _) in self.chosen.get(range).unwrap_or_default() {
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 += 1,
                None => out.push((name.clone(), 1)),
            }
        }
        out
    }

    /// Log what was left out of the choice: repeats and extra keys are signs of a bad
    /// member (honest nodes never send them); points over a node's share are normal in
    /// large clusters.
    pub fn log(&self) {
        if !self.extra_instances.is_empty() {
            tracing::warn!(
                "intro points: ignoring intro/* keys over {MAX_INSTANCES_PER_NODE} per node: {} \
                 (honest nodes never send them: check those nodes' version and remove them \
                 with `rustbalance node remove` if they are not yours)",
                fmt_counts(&self.extra_instances)
            );
        }
        if self.duplicates > 0 {
            tracing::warn!(
                "intro points: {} repeated intro points dropped (the same auth key listed twice; \
                 two nodes sharing one data directory do this: give each node its own, with \
                 `rustbalance join`)",
                self.duplicates
            );
        }
        if !self.same_relay.is_empty() {
            tracing::info!(
                "intro points: left out {} (on a relay another chosen point is on: a client \
                 only ever introduces through the first point listed on a relay)",
                fmt_counts(&self.same_relay)
            );
        }
        if !self.left_out.is_empty() {
            tracing::info!(
                "intro points: over the fair share of {} per node, left out {}",
                self.share,
                fmt_counts(&self.left_out)
            );
        }
    }

    /// Log the intro points a descriptor of `plan` left out to stay within the size limit
    /// (the last of [`Self::chosen`]: those of the nodes with the most).
    pub fn log_fitted(&self, plan: &[SlotUpload]) {
        for up in plan.iter().filter(|u| u.descriptor.dropped > 0) {
            let kept = up.descriptor.intro_count;
            tracing::warn!(
                "descriptor for period {} would be over the size limit: published with {kept} \
                 intro points, dropped {} ({}); clients still reach the nodes listed; if a node is \
                 missing for long, check its intro points in `rustbalance status`",
                up.slot.period_num,
                up.descriptor.dropped,
                fmt_counts(&self.per_node(kept..self.chosen.len()))
            );
        }
    }
}

/// `a: 2, b: 5`.
fn fmt_counts(c: &[(String, usize)]) -> String {
    c.iter()
        .map(|(n, k)| format!("{n}: {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "selection/tests.rs"]
pub(crate) mod tests;
