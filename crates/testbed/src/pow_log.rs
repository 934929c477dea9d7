//! tor's PoW verifications, counted in the logs lab tors write at `[rend]info` (a lab
//! node's `tor.debug_log`, [`crate::node_config::LAB_TOR_DEBUG_LOG`]).

use crate::ClusterNodeProc;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// tor's line for a solution it verified.
pub const POW_VERIFIED: &str = "PoW INTRODUCE2 request successfully verified";

/// How many lines of `path` contain `needle` (0 when it cannot be read).
pub fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// The solutions each node's tor verified since [`PowVerified::mark`].
pub struct PowVerified {
    /// Per node: its tor's debug log and the count at the mark.
    logs: Vec<(String, PathBuf, usize)>,
}

impl PowVerified {
    /// Start counting now, for `nodes`.
    pub fn mark(nodes: &[ClusterNodeProc]) -> PowVerified {
        let logs = nodes
            .iter()
            .map(|n| {
                let log = rustbalance_node::layout::Layout::new(&n.data).tor_debug_log();
                let at = count_lines(&log, POW_VERIFIED);
                (n.name.clone(), log, at)
            })
            .collect();
        PowVerified { logs }
    }

    /// Per node name, the solutions its tor verified since the mark.
    pub fn since(&self) -> BTreeMap<String, usize> {
        self.logs
            .iter()
            .map(|(n, log, at)| {
                (
                    n.clone(),
                    count_lines(log, POW_VERIFIED).saturating_sub(*at),
                )
            })
            .collect()
    }
}
