//! The HSDir hash ring: which relays store a descriptor.
//!
//! Input is what tor's control port returns: the microdescriptor-flavoured
//! consensus (`GETINFO dir/status-vote/current/consensus-microdesc`) and the
//! microdescriptors (`GETINFO md/all`), which carry the relays' ed25519 ids.
//! The selection mirrors C tor's `hs_get_responsible_hsdirs` (for storing):
//! for each replica `1..=hsdir_n_replicas`, take `hsdir_spread_store` relays
//! from the first relay whose index is `>=` the descriptor's index, skipping
//! relays already chosen.

use crate::err::{Error, Result};
use crate::time::{unix_secs, DescriptorSlot, SrvChoice, TimeParams};
use base64::Engine;
use sha2::Sha256;
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// One relay of the consensus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Nickname.
    pub nickname: String,
    /// RSA identity digest (what `HSPOST SERVER=` names, in hex).
    pub rsa_id: [u8; 20],
    /// SHA-256 digest of its microdescriptor.
    pub md_digest: [u8; 32],
    /// Flags (`s` line).
    pub flags: Vec<String>,
    /// Whether its protocol list supports v3 HSDir (`HSDir=2`); true when absent.
    pub hsdir_v3: bool,
}

impl Relay {
    /// Whether the relay has a flag.
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    /// Hex fingerprint, upper case, as tor prints it.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(self.rsa_id)
    }
}

/// The parts of a consensus the onion-service core needs.
#[derive(Debug, Clone)]
pub struct Consensus {
    /// `valid-after`.
    pub valid_after: SystemTime,
    /// `fresh-until`.
    pub fresh_until: SystemTime,
    /// `valid-until`.
    pub valid_until: SystemTime,
    /// `shared-rand-current-value`.
    pub srv_current: Option<[u8; 32]>,
    /// `shared-rand-previous-value`.
    pub srv_previous: Option<[u8; 32]>,
    /// `params`.
    pub params: BTreeMap<String, i64>,
    /// Relays, in consensus order.
    pub relays: Vec<Relay>,
}

fn bad(what: &'static str, reason: impl Into<String>) -> Error {
    Error::BadDirectoryDoc {
        what,
        reason: reason.into(),
    }
}

fn parse_time(s: &str) -> Result<SystemTime> {
    humantime::parse_rfc3339(&format!("{}Z", s.replace(' ', "T")))
        .map_err(|e| bad("consensus", format!("bad time {s:?}: {e}")))
}

fn b64_any(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s)
        .ok()
}

impl Consensus {
    /// Parse a microdescriptor-flavoured (or full) consensus.
    pub fn parse(text: &str) -> Result<Self> {
        let mut valid_after = None;
        let mut fresh_until = None;
        let mut valid_until = None;
        let mut srv_current = None;
        let mut srv_previous = None;
        let mut params = BTreeMap::new();
        let mut relays: Vec<Relay> = Vec::new();
        let mut pending: Option<Relay> = None;
        let srv = |rest: &str| -> Result<[u8; 32]> {
            // "NUM_REVEALS VALUE"
            let v = rest.split_whitespace().nth(1).unwrap_or("");
            b64_any(v)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| bad("consensus", format!("bad shared random value {rest:?}")))
        };
        for line in text.lines() {
            let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kw {
                "valid-after" => valid_after = Some(parse_time(rest)?),
                "fresh-until" => fresh_until = Some(parse_time(rest)?),
                "valid-until" => valid_until = Some(parse_time(rest)?),
                "shared-rand-current-value" => srv_current = Some(srv(rest)?),
                "shared-rand-previous-value" => srv_previous = Some(srv(rest)?),
                "params" => {
                    for kv in rest.split_whitespace() {
                        if let Some((k, v)) = kv.split_once('=') {
                            if let Ok(v) = v.parse() {
                                params.insert(k.to_string(), v);
                            }
                        }
                    }
                }
                "r" => {
                    relays.extend(pending.take());
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let id = f
                        .get(1)
                        .and_then(|s| b64_any(s))
                        .and_then(|b| <[u8; 20]>::try_from(b).ok())
                        .ok_or_else(|| bad("consensus", format!("bad r line {line:?}")))?;
                    pending = Some(Relay {
                        nickname: f[0].to_string(),
                        rsa_id: id,
                        md_digest: [0; 32],
                        flags: Vec::new(),
                        hsdir_v3: true,
                    });
                }
                "m" => {
                    if let Some(r) = pending.as_mut() {
                        let d = b64_any(rest.trim())
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .ok_or_else(|| bad("consensus", format!("bad m line {line:?}")))?;
                        r.md_digest = d;
                    }
                }
                "s" => {
                    if let Some(r) = pending.as_mut() {
                        r.flags = rest.split_whitespace().map(str::to_string).collect();
                    }
                }
                "pr" => {
                    if let Some(r) = pending.as_mut() {
                        r.hsdir_v3 = proto_supports(rest, "HSDir", 2);
                    }
                }
                "directory-footer" => break,
                _ => {}
            }
        }
        relays.extend(pending.take());
        Ok(Consensus {
            valid_after: valid_after.ok_or_else(|| bad("consensus", "no valid-after line"))?,
            fresh_until: fresh_until.ok_or_else(|| bad("consensus", "no fresh-until line"))?,
            valid_until: valid_until.ok_or_else(|| bad("consensus", "no valid-until line"))?,
            srv_current,
            srv_previous,
            params,
            relays,
        })
    }

    /// A consensus parameter, or `default`.
    pub fn param(&self, name: &str, default: i64) -> i64 {
        self.params.get(name).copied().unwrap_or(default)
    }

    /// The network's clock parameters.
    pub fn time_params(&self, testing_network: bool) -> Result<TimeParams> {
        TimeParams::from_consensus(
            self.valid_after,
            self.fresh_until,
            self.params.get("hsdir-interval").copied(),
            testing_network,
        )
    }

    /// The SRV a slot uses, or tor's "disaster" SRV when the consensus has none.
    pub fn srv_for(&self, tp: &TimeParams, slot: &DescriptorSlot) -> [u8; 32] {
        let v = match slot.srv {
            SrvChoice::Current => self.srv_current,
            SrvChoice::Previous => self.srv_previous,
        };
        v.unwrap_or_else(|| disaster_srv(tp.period_minutes, slot.period_num))
    }

    /// `valid-after` as Unix seconds.
    pub fn valid_after_unix(&self) -> u64 {
        unix_secs(self.valid_after)
    }
}

/// Whether a protocol list like `HSDir=1-2 Link=1-5` includes `name=version`.
fn proto_supports(list: &str, name: &str, version: u32) -> bool {
    list.split_whitespace()
        .filter_map(|e| e.split_once('='))
        .filter(|(n, _)| *n == name)
        .flat_map(|(_, ranges)| ranges.split(','))
        .any(|r| match r.split_once('-') {
            Some((a, b)) => matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if a <= version && version <= b),
            None => r.parse::<u32>() == Ok(version),
        })
}

/// tor's fallback SRV when the consensus has none:
/// `SHA3-256("shared-random-disaster" | INT_8(period_length) | INT_8(period_num))`.
pub fn disaster_srv(period_minutes: u32, period_num: u64) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"shared-random-disaster");
    h.update(u64::from(period_minutes).to_be_bytes());
    h.update(period_num.to_be_bytes());
    h.finalize().into()
}

/// Map microdescriptor digest → ed25519 identity, from `GETINFO md/all` text
/// (concatenated microdescriptors, each starting with `onion-key`).
pub fn parse_microdescs(text: &str) -> HashMap<[u8; 32], [u8; 32]> {
    let mut out = HashMap::new();
    let mut starts: Vec<usize> = text
        .match_indices("onion-key")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
        .collect();
    starts.push(text.len());
    for w in starts.windows(2) {
        let chunk = &text[w[0]..w[1]];
        let digest: [u8; 32] = Sha256::digest(chunk.as_bytes()).into();
        let ed = chunk.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some("id"), Some("ed25519"), Some(v)) => {
                    b64_any(v).and_then(|b| <[u8; 32]>::try_from(b).ok())
                }
                _ => None,
            }
        });
        if let Some(ed) = ed {
            out.insert(digest, ed);
        }
    }
    out
}

/// An HSDir on the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsDir {
    /// Nickname (for logs).
    pub nickname: String,
    /// Hex RSA fingerprint (for `HSPOST SERVER=`).
    pub fingerprint: String,
    /// ed25519 identity.
    pub ed25519_id: [u8; 32],
}

/// The HSDir-capable relays of a consensus with their ed25519 identities.
#[derive(Debug, Clone)]
pub struct HsDirSet {
    dirs: Vec<HsDir>,
    /// `hsdir_n_replicas`.
    pub n_replicas: u8,
    /// `hsdir_spread_store`.
    pub spread_store: usize,
    /// `hsdir_spread_fetch`: clients fetch from the first this many of each replica.
    pub spread_fetch: usize,
    /// Relays with the HSDir flag but no known ed25519 id (skipped).
    pub missing_ed25519: usize,
}

impl HsDirSet {
    /// Build from a consensus and its microdescriptors (digest → ed25519 id).
    pub fn new(consensus: &Consensus, ed_ids: &HashMap<[u8; 32], [u8; 32]>) -> Self {
        let mut missing = 0;
        let dirs = consensus
            .relays
            .iter()
            .filter(|r| r.has_flag("HSDir") && r.hsdir_v3)
            .filter_map(|r| match ed_ids.get(&r.md_digest) {
                Some(ed) => Some(HsDir {
                    nickname: r.nickname.clone(),
                    fingerprint: r.fingerprint(),
                    ed25519_id: *ed,
                }),
                None => {
                    missing += 1;
                    None
                }
            })
            .collect();
        HsDirSet {
            dirs,
            n_replicas: consensus.param("hsdir_n_replicas", 2).clamp(1, 16) as u8,
            spread_store: consensus.param("hsdir_spread_store", 4).clamp(1, 128) as usize,
            spread_fetch: consensus.param("hsdir_spread_fetch", 3).clamp(1, 128) as usize,
            missing_ed25519: missing,
        }
    }

    /// From an explicit list (tests, simulations).
    pub fn from_dirs(dirs: Vec<HsDir>, n_replicas: u8, spread_store: usize) -> Self {
        HsDirSet {
            dirs,
            n_replicas,
            spread_store,
            spread_fetch: 3.min(spread_store),
            missing_ed25519: 0,
        }
    }

    /// The usable HSDirs, in consensus order.
    pub fn dirs(&self) -> &[HsDir] {
        &self.dirs
    }

    /// Number of usable HSDirs.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// Whether there is no usable HSDir.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The HSDirs responsible for storing the descriptor of `blinded_pk` in
    /// time period `period_num` (of `period_minutes`), placed with `srv`.
    pub fn responsible(
        &self,
        blinded_pk: &[u8; 32],
        period_num: u64,
        period_minutes: u32,
        srv: &[u8; 32],
    ) -> Vec<HsDir> {
        self.walk(
            blinded_pk,
            period_num,
            period_minutes,
            srv,
            self.spread_store,
        )
    }

    /// The HSDirs clients fetch that descriptor from: the first `hsdir_spread_fetch` of
    /// each replica (tor picks one of them at random per fetch). A subset of
    /// [`HsDirSet::responsible`] (the same walk, stopped earlier).
    pub fn fetched_from(
        &self,
        blinded_pk: &[u8; 32],
        period_num: u64,
        period_minutes: u32,
        srv: &[u8; 32],
    ) -> Vec<HsDir> {
        let spread = self.spread_fetch.min(self.spread_store);
        self.walk(blinded_pk, period_num, period_minutes, srv, spread)
    }

    /// For each replica, the next `spread` HSDirs on the ring from its index that no
    /// earlier replica took.
    fn walk(
        &self,
        blinded_pk: &[u8; 32],
        period_num: u64,
        period_minutes: u32,
        srv: &[u8; 32],
        spread: usize,
    ) -> Vec<HsDir> {
        let mut ring: Vec<([u8; 32], &HsDir)> = self
            .dirs
            .iter()
            .map(|d| {
                (
                    node_index(&d.ed25519_id, srv, period_num, period_minutes),
                    d,
                )
            })
            .collect();
        ring.sort_by_key(|(k, _)| *k);
        let mut chosen: Vec<HsDir> = Vec::new();
        if ring.is_empty() {
            return chosen;
        }
        for replica in 1..=self.n_replicas {
            let idx = store_index(blinded_pk, replica, period_num, period_minutes);
            let start = ring.partition_point(|(k, _)| *k < idx) % ring.len();
            let mut i = start;
            let mut added = 0;
            while added < spread {
                let d = ring[i].1;
                if !chosen.contains(d) {
                    chosen.push(d.clone());
                    added += 1;
                }
                i = (i + 1) % ring.len();
                if i == start {
                    break;
                }
            }
        }
        chosen
    }
}

/// `SHA3-256("node-idx" | ed25519_id | SRV | INT_8(period_num) | INT_8(period_length))`.
pub fn node_index(
    ed25519_id: &[u8; 32],
    srv: &[u8; 32],
    period_num: u64,
    period_minutes: u32,
) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"node-idx");
    h.update(ed25519_id);
    h.update(srv);
    h.update(period_num.to_be_bytes());
    h.update(u64::from(period_minutes).to_be_bytes());
    h.finalize().into()
}

/// `SHA3-256("store-at-idx" | blinded_pk | INT_8(replica) | INT_8(period_length) | INT_8(period_num))`.
pub fn store_index(
    blinded_pk: &[u8; 32],
    replica: u8,
    period_num: u64,
    period_minutes: u32,
) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"store-at-idx");
    h.update(blinded_pk);
    h.update(u64::from(replica).to_be_bytes());
    h.update(u64::from(period_minutes).to_be_bytes());
    h.update(period_num.to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod test {
    use super::*;

    fn dir(i: u8) -> HsDir {
        HsDir {
            nickname: format!("r{i}"),
            fingerprint: hex::encode_upper([i; 20]),
            ed25519_id: [i; 32],
        }
    }

    #[test]
    fn picks_spread_times_replicas_distinct() {
        let set = HsDirSet::from_dirs((1..=20).map(dir).collect(), 2, 4);
        let got = set.responsible(&[9; 32], 100, 1440, &[5; 32]);
        assert_eq!(got.len(), 8);
        let mut fps: Vec<_> = got.iter().map(|d| d.fingerprint.clone()).collect();
        fps.sort();
        fps.dedup();
        assert_eq!(fps.len(), 8);
    }

    #[test]
    fn small_ring_never_loops_forever() {
        let set = HsDirSet::from_dirs((1..=3).map(dir).collect(), 2, 4);
        assert_eq!(set.responsible(&[9; 32], 100, 1440, &[5; 32]).len(), 3);
        let empty = HsDirSet::from_dirs(vec![], 2, 4);
        assert!(empty.responsible(&[9; 32], 100, 1440, &[5; 32]).is_empty());
    }

    #[test]
    fn first_after_index_is_chosen() {
        // Recompute the ring by hand: the first relay of replica 1 is the one
        // with the smallest node index >= the store index (wrapping).
        let set = HsDirSet::from_dirs((1..=10).map(dir).collect(), 1, 1);
        let (bk, tp, len, srv) = ([42u8; 32], 7, 8, [1u8; 32]);
        let target = store_index(&bk, 1, tp, len);
        let mut idx: Vec<_> = (1..=10u8)
            .map(|i| (node_index(&[i; 32], &srv, tp, len), i))
            .collect();
        idx.sort();
        let want = idx.iter().find(|(k, _)| *k >= target).unwrap_or(&idx[0]).1;
        assert_eq!(
            set.responsible(&bk, tp, len, &srv)[0].ed25519_id,
            [want; 32]
        );
    }

    #[test]
    fn protocol_ranges() {
        assert!(proto_supports("Cons=1-2 HSDir=1-2 Link=1-5", "HSDir", 2));
        assert!(proto_supports("HSDir=2", "HSDir", 2));
        assert!(!proto_supports("HSDir=1", "HSDir", 2));
        assert!(proto_supports("HSDir=1,2", "HSDir", 2));
    }

    const CONSENSUS: &str = "network-status-version 3 microdesc
vote-status consensus
valid-after 2026-11-22 05:00:00
fresh-until 2026-11-22 05:00:20
valid-until 2026-11-22 05:01:00
params hsdir_spread_store=3 foo=-2
shared-rand-previous-value 3 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
r test000a AAECAwQFBgcICQoLDA0ODxAREhM 2026-11-22 04:59:50 127.0.0.21 5000 0
m 8J+Ssu3tGI6rYZOGqsQo1HgNs2bN7l6xqT4pbm8oiVw
s Fast Guard HSDir Running Stable V2Dir Valid
pr Cons=1-2 HSDir=2
r test001a AQECAwQFBgcICQoLDA0ODxAREhM 2026-11-22 04:59:50 127.0.0.22 5000 0
m 8J+Ssu3tGI6rYZOGqsQo1HgNs2bN7l6xqT4pbm8oiVw
s Fast Running Valid
directory-footer
";

    #[test]
    fn parses_consensus() {
        let c = Consensus::parse(CONSENSUS).unwrap();
        assert_eq!(c.relays.len(), 2);
        assert!(c.relays[0].has_flag("HSDir") && !c.relays[1].has_flag("HSDir"));
        assert_eq!(c.param("hsdir_spread_store", 4), 3);
        assert_eq!(c.param("foo", 0), -2);
        assert_eq!(c.srv_previous.unwrap()[31], 31);
        assert!(c.srv_current.is_none());
        assert_eq!(c.time_params(true).unwrap(), TimeParams::testing(20));
        assert_eq!(
            c.relays[0].fingerprint(),
            "000102030405060708090A0B0C0D0E0F10111213"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(Consensus::parse("hello").is_err());
        assert!(Consensus::parse("valid-after 2026-13-99 00:00:00").is_err());
    }
}
