//! The recent events of the status page: a small bounded ring that a sampler fills by
//! comparing successive `/status` documents (failover, a node joining, going down, coming
//! back or leaving, failed publications and uploads, tor's phase). Pure: the caller passes
//! the document and the time.

use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

/// How many events the ring keeps (the oldest go first).
pub const CAPACITY: usize = 64;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it was noticed (RFC 3339).
    pub at: String,
    /// `failover`, `publisher`, `joined`, `down`, `back`, `gone`, `publish-failed`,
    /// `upload-failed` or `tor`.
    pub kind: &'static str,
    /// What happened, in words (it names nodes: gossip text, escape it to show it).
    pub text: String,
}

/// What the events are told apart by, taken from one `/status` document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Snapshot {
    /// Member name → live.
    members: BTreeMap<String, bool>,
    /// Nodes advertising a lease.
    publishers: Vec<String>,
    publish_failures: u64,
    upload_failures: u64,
    tor_phase: String,
}

impl Snapshot {
    fn of(doc: &Value) -> Snapshot {
        let c = &doc["cluster"];
        let members = c["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| Some((m["name"].as_str()?.to_string(), m["live"] == true)))
                    .collect()
            })
            .unwrap_or_default();
        // A member that may not hold the lease (a worker) can advertise one; the
        // election ignores it, and so do the events (a worker toggling it would flush
        // the ring).
        let ineligible: Vec<&str> = c["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter(|m| m["eligible"] == false)
                    .filter_map(|m| m["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let publishers = c["lease_holders"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|p| p.as_str())
                    .filter(|p| !ineligible.contains(p))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Snapshot {
            members,
            publishers,
            publish_failures: c["publish_failures"].as_u64().unwrap_or(0),
            upload_failures: doc["uploads"]["failed"].as_u64().unwrap_or(0),
            tor_phase: super::render::text_of(&doc["tor"]["phase"]),
        }
    }
}

/// A member's events (joined, down, back, gone) are recorded at most [`MEMBER_BURST`] per
/// this long; the changes beyond are counted and told with its next recorded one. A
/// member that stops and resumes its heartbeats every second would otherwise flush the
/// ring.
pub const MEMBER_WINDOW: Duration = Duration::from_secs(60);
/// See [`MEMBER_WINDOW`].
pub const MEMBER_BURST: u32 = 3;

/// A member's events in the current window, and those held back.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    since: SystemTime,
    recorded: u32,
    held: u32,
}

/// The ring of recent events and the last document it saw.
#[derive(Debug, Default)]
pub struct EventLog {
    events: VecDeque<Event>,
    last: Option<Snapshot>,
    /// Per member: when its next event may be recorded.
    quiet: BTreeMap<String, Quiet>,
}

impl EventLog {
    /// Compare `doc` with the previous document and record what changed.
    pub fn observe(&mut self, doc: &Value, now: SystemTime) {
        let next = Snapshot::of(doc);
        let prev = self.last.take().unwrap_or_default();
        let at = humantime::format_rfc3339_seconds(now).to_string();
        for (kind, member, mut text) in changes(&prev, &next) {
            if let Some(name) = member {
                let q = self.quiet.entry(name).or_insert(Quiet {
                    since: now,
                    recorded: 0,
                    held: 0,
                });
                if now >= q.since + MEMBER_WINDOW {
                    q.since = now;
                    q.recorded = 0;
                }
                if q.recorded >= MEMBER_BURST {
                    q.held = q.held.saturating_add(1);
                    continue;
                }
                q.recorded += 1;
                if q.held > 0 {
                    text = format!("{text} ({} more change(s) before, not shown)", q.held);
                    q.held = 0;
                }
            }
            if self.events.len() == CAPACITY {
                self.events.pop_front();
            }
            self.events.push_back(Event {
                at: at.clone(),
                kind,
                text,
            });
        }
        // Members gone from the view and quiet again are forgotten (bounded by the view).
        self.quiet.retain(|name, q| {
            next.members.contains_key(name) || q.held > 0 || now < q.since + MEMBER_WINDOW
        });
        self.last = Some(next);
    }

    /// The events, newest first.
    pub fn recent(&self) -> Vec<Event> {
        self.events.iter().rev().cloned().collect()
    }
}

/// What differs between two snapshots, as events (kind, the member it is about, text).
fn changes(prev: &Snapshot, next: &Snapshot) -> Vec<(&'static str, Option<String>, String)> {
    let mut out = Vec::new();
    for (name, live) in &next.members {
        let m = Some(name.clone());
        match prev.members.get(name) {
            None if *live => out.push(("joined", m, format!("{name} joined"))),
            None => out.push(("joined", m, format!("{name} is known but not live"))),
            Some(true) if !live => out.push(("down", m, format!("{name} is down (no gossip)"))),
            Some(false) if *live => out.push(("back", m, format!("{name} is live again"))),
            _ => {}
        }
    }
    for name in prev.members.keys() {
        if !next.members.contains_key(name) {
            out.push((
                "gone",
                Some(name.clone()),
                format!("{name} left the member list (removed or forgotten)"),
            ));
        }
    }
    out.extend(
        cluster_changes(prev, next)
            .into_iter()
            .map(|(kind, text)| (kind, None, text)),
    );
    out
}

/// The changes that are not about one member: the lease, failures, tor.
fn cluster_changes(prev: &Snapshot, next: &Snapshot) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if prev.publishers != next.publishers {
        let (was, now) = (prev.publishers.join(", "), next.publishers.join(", "));
        out.push(match (was.is_empty(), now.is_empty()) {
            (true, false) => ("publisher", format!("{now} holds the publisher lease")),
            (false, true) => (
                "failover",
                format!("no publisher: {was} gave up or lost the lease"),
            ),
            _ => ("failover", format!("publisher {was} → {now}")),
        });
    }
    if next.publish_failures > prev.publish_failures {
        let n = next.publish_failures - prev.publish_failures;
        out.push((
            "publish-failed",
            format!("{n} descriptor publication(s) failed"),
        ));
    }
    if next.upload_failures > prev.upload_failures {
        let n = next.upload_failures - prev.upload_failures;
        out.push((
            "upload-failed",
            format!("{n} HSDir upload(s) refused or failed"),
        ));
    }
    if prev.tor_phase != next.tor_phase && !next.tor_phase.is_empty() {
        let was = if prev.tor_phase.is_empty() {
            "start"
        } else {
            &prev.tor_phase
        };
        out.push(("tor", format!("tor: {was} → {}", next.tor_phase)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(members: &[(&str, bool)], publishers: &[&str], fails: u64) -> Value {
        json!({
            "tor": {"phase": "running"},
            "uploads": {"failed": fails},
            "cluster": {
                "members": members.iter().map(|(n, l)| json!({"name": n, "live": l})).collect::<Vec<_>>(),
                "lease_holders": publishers,
                "publish_failures": 0,
            },
        })
    }

    fn kinds(log: &EventLog) -> Vec<(&'static str, String)> {
        log.recent()
            .into_iter()
            .rev()
            .map(|e| (e.kind, e.text))
            .collect()
    }

    #[test]
    fn a_failover_reads_as_a_story() {
        let t = SystemTime::UNIX_EPOCH;
        let mut log = EventLog::default();
        log.observe(&doc(&[("node1", true), ("node2", true)], &["node1"], 0), t);
        log.observe(&doc(&[("node1", true), ("node2", true)], &["node1"], 0), t);
        log.observe(&doc(&[("node1", false), ("node2", true)], &["node2"], 2), t);
        log.observe(&doc(&[("node2", true)], &["node2"], 2), t);
        let got = kinds(&log);
        let want: Vec<(&str, String)> = vec![
            ("joined", "node1 joined".into()),
            ("joined", "node2 joined".into()),
            ("publisher", "node1 holds the publisher lease".into()),
            ("tor", "tor: start → running".into()),
            ("down", "node1 is down (no gossip)".into()),
            ("failover", "publisher node1 → node2".into()),
            (
                "upload-failed",
                "2 HSDir upload(s) refused or failed".into(),
            ),
            (
                "gone",
                "node1 left the member list (removed or forgotten)".into(),
            ),
        ];
        assert_eq!(got, want);
        assert_eq!(log.recent()[0].at, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_ring_is_bounded() {
        let mut log = EventLog::default();
        for i in 0..(CAPACITY as u64 + 10) {
            log.observe(&doc(&[], &[], i), SystemTime::UNIX_EPOCH);
        }
        let recent = log.recent();
        assert_eq!(recent.len(), CAPACITY);
        assert!(
            recent.iter().all(|e| e.kind != "tor"),
            "the oldest went first"
        );
    }

    /// A worker (not publisher-eligible) that toggles a lease advert: the election
    /// ignores such a lease, and so does the ring (it would flush every real event).
    #[test]
    fn an_ineligible_members_lease_is_not_an_event() {
        let t = SystemTime::UNIX_EPOCH;
        let mut log = EventLog::default();
        let member =
            |name: &str, eligible: bool| json!({"name": name, "live": true, "eligible": eligible});
        let with = |holders: &[&str]| {
            json!({
                "tor": {"phase": "running"},
                "cluster": {
                    "members": [member("node1", true), member("rogue", false)],
                    "lease_holders": holders,
                },
            })
        };
        log.observe(&with(&["node1"]), t);
        let before = log.recent().len();
        for i in 0..(2 * CAPACITY) {
            let holders: &[&str] = if i % 2 == 0 {
                &["node1", "rogue"]
            } else {
                &["node1"]
            };
            log.observe(&with(holders), t);
        }
        assert_eq!(log.recent().len(), before, "{:?}", kinds(&log));
    }

    /// A member that stops and resumes its heartbeats every second (a compromised one
    /// can) is told a few times a minute; the failure recorded before stays in the ring.
    #[test]
    fn a_flapping_member_cannot_flush_the_ring() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut log = EventLog::default();
        log.observe(&doc(&[("node1", true), ("rogue", true)], &["node1"], 0), t0);
        log.observe(&doc(&[("node1", true), ("rogue", true)], &["node1"], 1), t0);
        for i in 0..600u64 {
            let live = i % 2 == 1;
            let t = t0 + Duration::from_secs(i + 1);
            log.observe(&doc(&[("node1", true), ("rogue", live)], &["node1"], 1), t);
        }
        let got = kinds(&log);
        assert!(
            got.iter().any(|(k, _)| *k == "upload-failed"),
            "the upload failure was flushed: {got:?}"
        );
        let rogue = got.iter().filter(|(_, t)| t.starts_with("rogue")).count();
        assert!(rogue <= 3 * 11, "{rogue} events about rogue");
        assert!(
            got.iter().any(|(_, t)| t.contains("more change(s) before")),
            "{got:?}"
        );
    }
}
