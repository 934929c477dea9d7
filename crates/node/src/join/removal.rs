//! Removed nodes (`rustbalance node remove`): the revocation, its gossip line, its file,
//! the marker a removed node leaves, and the book of removals a member keeps — with the
//! pure decisions on them (which removals are new, which are recent enough to close joins,
//! when a removed node's WireGuard peer is dropped), all taking `now`.
//!
//! A removal is a **revocation signed by the authority** (only publisher-eligible nodes,
//! which hold the master key, can make one). It names the node's identity and certificate
//! serial, and the WireGuard key its certificate binds (not the one it claims in gossip):
//!
//! ```text
//! rbrevoke1 <name> <WireGuard key> <identity|-> <serial> <unix s> <removed by> <signature>
//! ```
//!
//! the signature (hex) being Ed25519 by the authority over [`REVOCATION_DOMAIN`] followed
//! by the line up to the space before it. Members take a gossiped removal only when the
//! authority signed it; a worker can no longer remove anyone, let alone everyone.

use super::error::JoinError;
use super::message::valid_name;
use super::peers::load_list;
use crate::err::{Error, Result};
use crate::layout::Layout;
use rustbalance_cluster::{Authority, AuthorityKey, NodePublicKey};
use rustbalance_mesh::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z): a removal line stamped later
/// is malformed (formatting such a time panics).
pub const LAST_TIME: u64 = 253_402_300_799;

/// Domain separation of the authority's revocation signatures.
pub const REVOCATION_DOMAIN: &[u8] = b"rustbalance revocation v1\0";
/// First field of a revocation line.
const TAG: &str = "rbrevoke1";

fn dash() -> String {
    "-".into()
}

/// A node removed from the cluster (`rustbalance node remove`): saved in
/// `mesh-removed.json`, gossiped in `mesh_removed`. Removals are never undone; a
/// removed machine comes back only wiped, with a new WireGuard key and identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The removed node's name (`-` when only its key was known).
    pub name: String,
    /// The WireGuard public key (base64) its certificate binds (for a node without one,
    /// the key it gossiped): the peer every member drops.
    pub public_key: String,
    /// Its node identity (`-` for a node without a certificate): what the gossip of every
    /// member refuses from then on.
    #[serde(default = "dash")]
    pub identity: String,
    /// Its certificate's serial (0: none).
    #[serde(default)]
    pub serial: u64,
    /// When it was removed (Unix seconds, the remover's clock).
    pub at: u64,
    /// The member that removed it.
    pub by: String,
    /// The authority's signature (hex; empty in files of versions before signed removals,
    /// which are kept but never taken from gossip).
    #[serde(default)]
    pub signature: String,
}

impl Removal {
    /// The signed part of its line.
    fn signed_part(&self) -> String {
        format!(
            "{TAG} {} {} {} {} {} {}",
            self.name, self.public_key, self.identity, self.serial, self.at, self.by
        )
    }

    /// A removal signed by `authority`.
    #[allow(clippy::too_many_arguments)]
    pub fn signed(
        authority: &Authority,
        name: &str,
        public_key: &PublicKey,
        identity: Option<NodePublicKey>,
        serial: u64,
        at: u64,
        by: &str,
    ) -> Removal {
        let mut r = Removal {
            name: name.to_string(),
            public_key: public_key.to_string(),
            identity: identity.map_or_else(dash, |i| i.to_string()),
            serial,
            at: at.min(LAST_TIME),
            by: by.to_string(),
            signature: String::new(),
        };
        r.signature = hex::encode(authority.sign(REVOCATION_DOMAIN, r.signed_part().as_bytes()));
        r
    }

    /// Whether `authority` signed it.
    pub fn verify(&self, authority: &AuthorityKey) -> bool {
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).is_ok()
            && authority.verify(REVOCATION_DOMAIN, self.signed_part().as_bytes(), &sig)
    }

    /// The identity it names, if any.
    pub fn identity_key(&self) -> Option<NodePublicKey> {
        NodePublicKey::decode(&self.identity).ok()
    }

    /// Its gossip line (also what a hostile member would forge: the lab's hostile worker).
    pub fn line(&self) -> String {
        format!("{} {}", self.signed_part(), self.signature)
    }

    /// One gossip line; `None` for anything malformed (what a peer sends is checked, not
    /// trusted to be well formed). The signature is checked by [`Removal::verify`].
    pub fn parse_line(line: &str) -> Option<Removal> {
        let f: Vec<&str> = line.split(' ').collect();
        let [tag, name, key, identity, serial, at, by, sig] = f[..] else {
            return None;
        };
        if tag != TAG || !valid_name(name) || !valid_name(by) || sig.len() != 128 {
            return None;
        }
        // Kept in its canonical spelling: keys are compared as text.
        let key = key.parse::<PublicKey>().ok()?;
        if identity != "-" {
            NodePublicKey::decode(identity).ok()?;
        }
        let at = at.parse().ok().filter(|t| *t <= LAST_TIME)?;
        Some(Removal {
            name: name.to_string(),
            public_key: key.to_string(),
            identity: identity.to_string(),
            serial: serial.parse().ok()?,
            at,
            by: by.to_string(),
            signature: sig.to_string(),
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

    /// The removal naming node identity `identity` (text), if it was removed.
    pub(crate) fn of_identity(&self, identity: &str) -> Option<&Removal> {
        self.by_key
            .values()
            .map(|(r, _)| r)
            .find(|r| r.identity != "-" && r.identity == identity)
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
pub(crate) mod tests {
    use super::*;
    use crate::join::peers::tests::key;

    /// The authority of the tests.
    pub(crate) fn authority() -> Authority {
        Authority::from_seed(&zeroize::Zeroizing::new([4u8; 32]))
    }

    /// The gossip line of the tests' authority removing `name` with WireGuard key `key`.
    pub(crate) fn line(name: &str, key: &str) -> String {
        let k: PublicKey = key.parse().unwrap();
        Removal::signed(&authority(), name, &k, None, 0, 1_795_000_000, "node1").line()
    }

    /// The same, signed by another authority.
    pub(crate) fn forged_line(name: &str, key: &str) -> String {
        let other = Authority::from_seed(&zeroize::Zeroizing::new([5u8; 32]));
        let k: PublicKey = key.parse().unwrap();
        Removal::signed(&other, name, &k, None, 0, 1_795_000_000, "node1").line()
    }

    fn removal(at: u64) -> Removal {
        let id = rustbalance_cluster::NodeIdentity::generate().public();
        let k: PublicKey = key().parse().unwrap();
        Removal::signed(&authority(), "node4", &k, Some(id), 7, at, "node1")
    }

    #[test]
    fn removal_lines_round_trip_and_hostile_ones_are_refused() {
        let r = removal(1_790_000_000);
        assert_eq!(Removal::parse_line(&r.line()), Some(r.clone()));
        assert!(r.verify(&authority().public()));
        let (k, id, sig) = (
            r.public_key.clone(),
            r.identity.clone(),
            r.signature.clone(),
        );
        let ok = format!("rbrevoke1 node4 {k} {id} 7 1790000000 node1 {sig}");
        assert_eq!(Removal::parse_line(&ok), Some(r.clone()));
        for bad in [
            String::new(),
            format!("node4 {k} 1790000000 node1"),
            format!("rbrevoke1 node4 {k} {id} 7 1790000000 node1"),
            format!("{ok} extra"),
            format!("rbrevoke1 node4 notakey {id} 7 1790000000 node1 {sig}"),
            format!("rbrevoke1 node4 {k} notanid 7 1790000000 node1 {sig}"),
            format!("rbrevoke1 node4 {k} {id} 7 -1 node1 {sig}"),
            format!("rbrevoke1 no/de {k} {id} 7 1790000000 node1 {sig}"),
            format!("rbrevoke1 node4 {k} {id} 7 1790000000 node1 {}", &sig[2..]),
        ] {
            assert_eq!(Removal::parse_line(&bad), None, "{bad:?}");
        }
        assert!(r.describe().contains("node4") && r.describe().contains("node1"));
    }

    /// Issue 13 attack 1: any member could gossip removals of every key. Only the
    /// authority's signature makes a removal; a changed field or another signer is refused.
    #[test]
    fn only_the_authority_signs_removals() {
        let r = removal(1_790_000_000);
        let auth = authority().public();
        let mut moved = r.clone();
        moved.name = "node2".into();
        assert!(
            !moved.verify(&auth),
            "another name under the same signature"
        );
        let forger = Authority::from_seed(&zeroize::Zeroizing::new([5u8; 32]));
        let k: PublicKey = r.public_key.parse().unwrap();
        let forged = Removal::signed(&forger, "node4", &k, r.identity_key(), 7, 1, "node2");
        assert!(!forged.verify(&auth));
        let mut unsigned = r.clone();
        unsigned.signature = String::new();
        assert!(!unsigned.verify(&auth));
    }

    /// Issue 14: one gossip line stamped after year 9999 made `describe` panic inside
    /// `sync_forever`, killing every member's sync task.
    #[test]
    fn removal_times_past_year_9999_neither_parse_nor_panic() {
        let r = removal(LAST_TIME);
        let parsed = Removal::parse_line(&r.line()).expect("the last writable second parses");
        assert!(parsed.describe().contains("9999-12-31T23:59:59Z"));
        for at in [LAST_TIME + 1, u64::MAX] {
            let line = r
                .line()
                .replace(&format!(" {LAST_TIME} "), &format!(" {at} "));
            assert_eq!(Removal::parse_line(&line), None, "{line}");
            // A saved file may still hold one: describing it must not panic.
            let mut saved = removal(1);
            saved.at = at;
            let text = saved.describe();
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
        let r = removal(5);
        save_removals(&f, std::slice::from_ref(&r)).unwrap();
        assert_eq!(load_removals(&f).unwrap(), vec![r]);
        // A file of the version before signed removals still loads.
        let k = key();
        std::fs::write(
            &f,
            format!("[{{\"name\": \"-\", \"public_key\": \"{k}\", \"at\": 5, \"by\": \"n\"}}]"),
        )
        .unwrap();
        let old = load_removals(&f).unwrap();
        assert_eq!(
            (old[0].identity.as_str(), old[0].signature.as_str()),
            ("-", "")
        );
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
