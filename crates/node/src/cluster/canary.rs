//! The end-to-end canary (issue 15, item 4): each node reaches every other node *through
//! Tor*, the way a client would, and gossips what it found.
//!
//! A probe goes through this node's own tor's SOCKS port to the peer's *instance*
//! address, on a circuit of its own (a fresh SOCKS user name per attempt), sends one
//! HTTP `HEAD` line and waits for the first byte of an answer ([`probe`]). It fails when
//! tor cannot reach the peer's intro points or rendezvous, when the peer's tor or proxy
//! does not answer, or after [`CanaryConfig::timeout`].
//!
//! This module is the pure part: per-peer verdicts with hysteresis ([`Canary`]), when to
//! probe next, the gossip encoding, and the two decisions taken on the gossiped results:
//!
//! - [`ejected`]: a node that a strict majority of its live peers report failing leaves
//!   the descriptor until fewer do (its intro points are not listed);
//! - [`Canary::dead_from_here`]: the *Tor witness* for the election: a member silent in
//!   gossip whose canary fails from here is dead, not behind a mesh partition.
//!
//! ```text
//!              fail ×fail_after                 ok ×pass_after
//!   Unknown ───────────────────▶ Fail ◀──────────────────────┐
//!      │ ok ×pass_after           │ ok ×pass_after           │ fail ×fail_after
//!      ▼                          ▼                          │
//!     Pass ◀───────────────────  Pass ───────────────────────┘
//! ```
//!
//! A verdict changes only after `fail_after` (or `pass_after`) results in a row that
//! disagree with it: one lost circuit never ejects a node, and a node that comes back
//! has to answer twice before it is listed again.

mod driver;
mod probe;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub(crate) use driver::socks_addr;
pub use driver::{canary_task, ejected_members, gossiped_reports, CanaryCtx};
pub use probe::probe;

/// The canary's timings (`docs/ELECTION.md`, "The Tor witness").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryConfig {
    /// Between two probes of a peer that passes.
    pub interval: Duration,
    /// Between two probes of a peer whose last probe failed or that is silent in gossip.
    pub retry: Duration,
    /// The longest one probe may take (circuit, introduction, rendezvous, first byte).
    pub timeout: Duration,
    /// Failures in a row that make a verdict `Fail`.
    pub fail_after: u32,
    /// Successes in a row that make a verdict `Pass`.
    pub pass_after: u32,
    /// A live peer is first probed this long after it began to advertise intro points
    /// ([`Canary::ready`]).
    pub settle: Duration,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            interval: Duration::from_secs(10),
            retry: Duration::from_secs(2),
            timeout: Duration::from_secs(15),
            fail_after: 2,
            pass_after: 2,
            settle: Duration::from_secs(10),
        }
    }
}

/// What this node concluded about one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Not enough probes yet.
    Unknown,
    /// The peer answers through Tor.
    Pass,
    /// The peer does not answer through Tor.
    Fail,
}

impl Verdict {
    /// `unknown`, `pass` or `fail` (the gossip and `/status` spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }

    fn parse(s: &str) -> Option<Verdict> {
        match s {
            "unknown" => Some(Verdict::Unknown),
            "pass" => Some(Verdict::Pass),
            "fail" => Some(Verdict::Fail),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Peer {
    verdict: Verdict,
    oks: u32,
    fails: u32,
    last_probe: Option<Instant>,
    /// When the current run of failures began (for logs and the lab's timing).
    failing_since: Option<Instant>,
}

impl Default for Peer {
    fn default() -> Self {
        Peer {
            verdict: Verdict::Unknown,
            oks: 0,
            fails: 0,
            last_probe: None,
            failing_since: None,
        }
    }
}

/// This node's canary state: one verdict per peer.
#[derive(Clone, Debug, Default)]
pub struct Canary {
    cfg: CanaryConfig,
    peers: BTreeMap<String, Peer>,
    /// Since when each live peer has advertised intro points.
    advertising: BTreeMap<String, Instant>,
}

impl Canary {
    /// No verdict yet on anybody.
    pub fn new(cfg: CanaryConfig) -> Canary {
        Canary {
            cfg,
            peers: BTreeMap::new(),
            advertising: BTreeMap::new(),
        }
    }

    /// Whether `peer` may be probed at all: a member silent in gossip always may (the
    /// Tor witness needs its verdict); a live one only once it has advertised intro
    /// points for [`CanaryConfig::settle`].
    ///
    /// Why: a tor client that asked an HSDir for an address asks that HSDir again only
    /// 15 minutes later (`REND_HID_SERV_DIR_REQUERY_PERIOD`, 5 s in a test network),
    /// and only a successful connection clears that memory. A probe sent before the
    /// peer's tor has uploaded its first descriptor fails at one HSDir; a failing probe
    /// is retried every `retry`, so about six of them would use up all six HSDirs
    /// clients fetch from, and this node's tor would refuse to fetch the peer for 15
    /// minutes: failed, then ejected if most peers did the same (docs/FIELD-NOTES.md).
    /// A peer advertises intro points once its tor has established them, and its tor
    /// uploads its descriptor at that moment; `settle` covers the upload.
    ///
    /// A live peer that advertises nothing is not probed, and what was concluded about
    /// it is dropped (its verdict reads `Unknown`): no probe would keep it fresh, and a
    /// stale `Fail` would make the Tor witness call it dead the moment it went silent.
    pub fn ready(&mut self, peer: &str, live: bool, advertises: bool, now: Instant) -> bool {
        if !advertises {
            self.advertising.remove(peer);
            if live {
                self.peers.remove(peer);
            }
            return !live;
        }
        let since = *self.advertising.entry(peer.to_owned()).or_insert(now);
        !live || now.saturating_duration_since(since) >= self.cfg.settle
    }

    /// Whether `peer` should be probed at `now`: never probed, or `interval` after the
    /// last probe (`retry` while it fails, is not yet decided, or is `silent` in gossip).
    pub fn due(&self, peer: &str, now: Instant, silent: bool) -> bool {
        let Some(p) = self.peers.get(peer) else {
            return true;
        };
        let Some(last) = p.last_probe else {
            return true;
        };
        let hurry = silent || p.fails > 0 || p.verdict != Verdict::Pass;
        let wait = if hurry {
            self.cfg.retry
        } else {
            self.cfg.interval
        };
        now.saturating_duration_since(last) >= wait
    }

    /// Records a probe of `peer` that ended at `now`; returns the new verdict when it
    /// changed.
    pub fn record(&mut self, peer: &str, ok: bool, now: Instant) -> Option<Verdict> {
        let p = self.peers.entry(peer.to_owned()).or_default();
        p.last_probe = Some(now);
        let before = p.verdict;
        if ok {
            p.oks = p.oks.saturating_add(1);
            p.fails = 0;
            p.failing_since = None;
            if p.oks >= self.cfg.pass_after {
                p.verdict = Verdict::Pass;
            }
        } else {
            p.fails = p.fails.saturating_add(1);
            p.oks = 0;
            p.failing_since.get_or_insert(now);
            if p.fails >= self.cfg.fail_after {
                p.verdict = Verdict::Fail;
            }
        }
        (p.verdict != before).then_some(p.verdict)
    }

    /// Every peer probed at least once.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// Forgets peers that are no longer members.
    pub fn retain(&mut self, members: &BTreeSet<String>) {
        self.peers.retain(|id, _| members.contains(id));
        self.advertising.retain(|id, _| members.contains(id));
    }

    /// The verdict on `peer` from here.
    pub fn verdict(&self, peer: &str) -> Verdict {
        self.peers.get(peer).map_or(Verdict::Unknown, |p| p.verdict)
    }

    /// Since when `peer`'s probes have been failing, if they are.
    pub fn failing_since(&self, peer: &str) -> Option<Instant> {
        self.peers.get(peer).and_then(|p| p.failing_since)
    }

    /// The Tor witness: `peer` fails its canary from here. For a member that is silent in
    /// gossip this tells a dead node (or one whose tor is down, which cannot publish)
    /// from one behind a mesh partition (which still answers through Tor).
    pub fn dead_from_here(&self, peer: &str) -> bool {
        self.verdict(peer) == Verdict::Fail
    }

    /// Every peer failing from here (the witness the election gets).
    pub fn failing(&self) -> BTreeSet<String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.verdict == Verdict::Fail)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The gossip value ([`CANARY_KEY`]): `peer=verdict` pairs separated by spaces,
    /// decided verdicts only.
    pub fn encode(&self) -> String {
        self.peers
            .iter()
            .filter(|(_, p)| p.verdict != Verdict::Unknown)
            .map(|(id, p)| format!("{id}={}", p.verdict.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The gossip key of a node's canary verdicts.
pub const CANARY_KEY: &str = "canary";
/// The gossip key of a node's instance onion address (what the others probe).
pub const INSTANCE_KEY: &str = "instance";

/// Reads a gossiped [`Canary::encode`] value; malformed pairs are skipped (a member can
/// only speak for what it saw, and a bad pair counts as no report).
pub fn decode(s: &str) -> BTreeMap<String, Verdict> {
    s.split_whitespace()
        .filter_map(|pair| {
            let (id, v) = pair.split_once('=')?;
            Some((id.to_owned(), Verdict::parse(v)?))
        })
        .collect()
}

/// The nodes that a strict majority of their live peers report failing. `reports` maps
/// each live reporter to its verdicts; `live` holds every live member. A node's peers
/// are the other live members; a reporter never counts for itself. Nor does a reporter
/// that fails every one of its two or more live peers: a canary that reaches nobody is
/// more likely broken itself (its tor, its clock: a node restarted with its clock ten
/// minutes off does exactly that) than all the others, and its verdicts must not tip
/// the majority against a node that one other peer happens to fail. The majority is
/// still of all live peers, so discounting a reporter never makes ejecting easier.
pub fn ejected(
    reports: &BTreeMap<String, BTreeMap<String, Verdict>>,
    live: &BTreeSet<String>,
) -> BTreeSet<String> {
    let fails_everyone = |reporter: &str, verdicts: &BTreeMap<String, Verdict>| {
        let peers: Vec<&String> = live.iter().filter(|p| *p != reporter).collect();
        peers.len() >= 2
            && peers
                .iter()
                .all(|p| verdicts.get(*p) == Some(&Verdict::Fail))
    };
    live.iter()
        .filter(|node| {
            let peers = live.iter().filter(|p| p != node).count();
            let failing = reports
                .iter()
                .filter(|(reporter, _)| *reporter != *node && live.contains(*reporter))
                .filter(|(reporter, verdicts)| !fails_everyone(reporter, verdicts))
                .filter(|(_, verdicts)| verdicts.get(*node) == Some(&Verdict::Fail))
                .count();
            peers > 0 && failing * 2 > peers
        })
        .cloned()
        .collect()
}
