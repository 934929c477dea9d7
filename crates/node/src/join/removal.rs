//! Removed nodes (`rustbalance node remove`): the record, its gossip line, its file, the
//! marker a removed node leaves, and the book of removals a member keeps — with the pure
//! decisions on them (which removals are new, which are recent enough to close joins,
//! when a removed node's WireGuard peer is dropped), all taking `now`.

use super::error::JoinError;
use super::message::valid_name;
use super::peers::load_list;
use crate::err::{Error, Result};
use crate::layout::Layout;
use rustbalance_mesh::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z): a removal line stamped later
/// is malformed (formatting such a time panics).
pub const LAST_TIME: u64 = 253_402_300_799;

/// A node removed from the cluster (`rustbalance node remove`): saved in
/// `mesh-removed.json`, gossiped in `mesh_removed`. Removals are never undone; a
/// removed machine comes back only wiped, with a new WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The removed node's name (`-` when only its key was known).
    pub name: String,
    /// Its WireGuard public key (base64): what removal is keyed on.
    pub public_key: String,
    /// When it was removed (Unix seconds, the remover's clock).
    pub at: u64,
    /// The member that removed it.
    pub by: String,
}

impl Removal {
    /// Its gossip line.
    pub(crate) fn line(&self) -> String {
        format!("{} {} {} {}", self.name, self.public_key, self.at, self.by)
    }

    /// One gossip line; `None` for anything malformed (what a peer sends is checked, not
    /// trusted to be well formed).
    pub fn parse_line(line: &str) -> Option<Removal> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 || !valid_name(f[0]) || !valid_name(f[3]) {
            return None;
        }
        f[1].parse::<PublicKey>().ok()?;
        let at = f[2].parse().ok().filter(|t| *t <= LAST_TIME)?;
        Some(Removal {
            name: f[0].to_string(),
            public_key: f[1].to_string(),
            at,
            by: f[3].to_string(),
        })
    }

    /// A sentence saying who removed whom when. Total for every `at` (a saved file or a
    /// peer may hold any number): times RFC 3339 cannot write are given as Unix seconds.
    pub fn describe(&self) -> String {
        let when = if self.at <= LAST_TIME {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(self.at);
            humantime::format_rfc3339_seconds(t).to_string()
        } else {
            format!("Unix time {}", self.at)
        };
        format!(
            "node {} (WireGuard key {}) was removed from the cluster by {} at {when}",
            self.name, self.public_key, self.by,
        )
    }

    /// Whether it was made less than `window` before Unix time `unix_now`: only then does
    /// learning it close the join endpoint and ask for a rotation (an older one had its
    /// rotation while this member was away).
    pub fn is_recent(&self, unix_now: u64, window: Duration) -> bool {
        unix_now.saturating_sub(self.at) < window.as_secs()
    }
}

/// The removals saved in `path` (missing file: none; a corrupt one is an error that names
/// the file).
pub fn load_removals(path: &Path) -> Result<Vec<Removal>> {
    load_list(
        path,
        "read removed nodes",
        "copy it from another member's data directory, or remove it (the members gossip their \
         removals back within seconds)",
    )
}

/// The marker a removed node leaves in its data directory.
pub fn removed_marker(data_dir: &Path) -> PathBuf {
    Layout::new(data_dir).removed_marker()
}

/// Refuse to start a node that was removed from its cluster ([`Error::Removed`]).
pub fn refuse_if_removed(data_dir: &Path) -> Result<()> {
    let marker = removed_marker(data_dir);
    match std::fs::read_to_string(&marker) {
        Ok(why) => Err(Error::Removed(format!(
            "{}; it does not start again ({}). To serve again, wipe this machine and join \
             with a fresh token (docs/OPERATIONS.md, \"Remove a node\")",
            why.trim(),
            marker.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "read",
            path: marker,
            source,
        }),
    }
}

/// Save `list` to `path` (0600, atomically).
pub(crate) fn save_removals(path: &Path, list: &[Removal]) -> std::result::Result<(), JoinError> {
    // Invariant: a list of strings and numbers always serializes.
    let json = serde_json::to_vec_pretty(list).unwrap_or_default();
    crate::keystore::write_atomic(path, &json, 0o600).map_err(|source| JoinError::Save {
        what: "the removed nodes",
        source: Box::new(source),
    })
}

/// The removals a member knows, by WireGuard key, with when it learned each.
#[derive(Debug, Default)]
pub(crate) struct RemovalBook {
    by_key: BTreeMap<String, (Removal, Instant)>,
}

impl RemovalBook {
    /// The saved removals, read at start at `now`: they took effect before, so their peers
    /// are due for dropping at once (learned `grace` ago).
    pub(crate) fn from_saved(list: Vec<Removal>, now: Instant, grace: Duration) -> RemovalBook {
        let long_ago = now.checked_sub(grace).unwrap_or(now);
        RemovalBook {
            by_key: list
                .into_iter()
                .map(|r| (r.public_key.clone(), (r, long_ago)))
                .collect(),
        }
    }

    /// Record `seen` at `now`; returns the ones not known before.
    pub(crate) fn learn(&mut self, seen: Vec<Removal>, now: Instant) -> Vec<Removal> {
        let mut new = Vec::new();
        for r in seen {
            if !self.by_key.contains_key(&r.public_key) {
                self.by_key.insert(r.public_key.clone(), (r.clone(), now));
                new.push(r);
            }
        }
        new
    }

    /// The removal of WireGuard key `key`, if it was removed.
    pub(crate) fn of(&self, key: &str) -> Option<&Removal> {
        self.by_key.get(key).map(|(r, _)| r)
    }

    /// Every removal, by key.
    pub(crate) fn list(&self) -> Vec<Removal> {
        self.by_key.values().map(|(r, _)| r.clone()).collect()
    }

    /// The keys whose WireGuard peer goes at `now`: learned at least `grace` ago (so the
    /// removal could still reach the node itself over the mesh before).
    pub(crate) fn peers_due(&self, now: Instant, grace: Duration) -> Vec<PublicKey> {
        self.by_key
            .values()
            .filter(|(_, learned)| now.saturating_duration_since(*learned) >= grace)
            .filter_map(|(r, _)| r.public_key.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::peers::tests::key;

    fn removal(at: u64) -> Removal {
        Removal {
            name: "node4".into(),
            public_key: key(),
            at,
            by: "node1".into(),
        }
    }

    #[test]
    fn removal_lines_round_trip_and_hostile_ones_are_refused() {
        let r = removal(1_790_000_000);
        assert_eq!(Removal::parse_line(&r.line()), Some(r.clone()));
        let k = r.public_key.clone();
        for bad in [
            String::new(),
            format!("node4 {k} 1790000000"),
            format!("node4 {k} 1790000000 node1 extra"),
            "node4 notakey 1790000000 node1".to_string(),
            format!("node4 {k} -1 node1"),
            format!("node4 {k} 1790000000 node 1"),
            format!("no/de {k} 1790000000 node1"),
            format!("{} {k} 1 node1", "n".repeat(33)),
            format!("node4  {k} 1 node1"),
        ] {
            assert_eq!(Removal::parse_line(&bad), None, "{bad:?}");
        }
        assert!(r.describe().contains("node4") && r.describe().contains("node1"));
    }

    /// Issue 14: one gossip line stamped after year 9999 made `describe` panic inside
    /// `sync_forever`, killing every member's sync task.
    #[test]
    fn removal_times_past_year_9999_neither_parse_nor_panic() {
        let k = key();
        let last = format!("node4 {k} {LAST_TIME} node1");
        let parsed = Removal::parse_line(&last).expect("the last writable second parses");
        assert!(parsed.describe().contains("9999-12-31T23:59:59Z"));
        for at in [LAST_TIME + 1, u64::MAX] {
            let line = format!("node4 {k} {at} node1");
            assert_eq!(Removal::parse_line(&line), None, "{line}");
            // A saved file may still hold one: describing it must not panic.
            let text = removal(at).describe();
            assert!(text.contains(&format!("Unix time {at}")), "{text}");
        }
    }

    #[test]
    fn only_recent_removals_count() {
        let window = Duration::from_secs(600);
        let r = removal(10_000);
        assert!(r.is_recent(10_000, window));
        assert!(r.is_recent(10_599, window));
        assert!(!r.is_recent(10_600, window));
        // A remover's clock ahead of ours: still recent.
        assert!(r.is_recent(9_000, window));
    }

    #[test]
    fn a_learned_removal_drops_its_peer_after_the_grace_saved_ones_at_once() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(5);
        let saved = removal(1);
        let mut book = RemovalBook::from_saved(vec![saved.clone()], t0, grace);
        assert_eq!(book.peers_due(t0, grace).len(), 1, "saved: dropped at once");
        let fresh = removal(2);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            book.learn(vec![fresh.clone(), saved.clone()], t1),
            vec![fresh.clone()]
        );
        assert!(
            book.learn(vec![fresh.clone()], t1).is_empty(),
            "learned once"
        );
        assert!(book.of(&fresh.public_key).is_some() && book.of(&saved.public_key).is_some());
        let due = |t| {
            book.peers_due(t, grace)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert!(!due(t1 + Duration::from_secs(4)).contains(&fresh.public_key));
        assert!(due(t1 + grace).contains(&fresh.public_key));
        assert_eq!(book.list().len(), 2);
    }

    #[test]
    fn removal_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mesh-removed.json");
        assert_eq!(load_removals(&f).unwrap(), Vec::new());
        let r = Removal {
            name: "-".into(),
            public_key: key(),
            at: 5,
            by: "node2".into(),
        };
        save_removals(&f, std::slice::from_ref(&r)).unwrap();
        assert_eq!(load_removals(&f).unwrap(), vec![r]);
        std::fs::write(&f, b"[{\"name\": ").unwrap();
        let e = load_removals(&f).unwrap_err().to_string();
        assert!(e.contains("mesh-removed.json is corrupt"), "{e}");

        refuse_if_removed(dir.path()).unwrap();
        std::fs::write(
            removed_marker(dir.path()),
            "node node4 was removed by node1\n",
        )
        .unwrap();
        match refuse_if_removed(dir.path()) {
            Err(Error::Removed(why)) => {
                assert!(why.contains("was removed by node1"), "{why}");
                assert!(why.contains("join with a fresh token"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
