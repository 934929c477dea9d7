//! Anti-entropy for the master descriptor at the HSDirs, pure: when to ask the
//! responsible HSDirs what they hold, how to read each answer, and which HSDirs get our
//! descriptor again. The publish task asks (`HSFETCH SERVER=`) and re-uploads
//! (`+HSPOST SERVER=`); this module decides.
//!
//! ```text
//!  published ─▶ check due now ─▶ ask each HSDir of the fetchable slot ─▶ judge each copy
//!      ▲              ▲                                                   │
//!      │              └─ every `hsdir_check` while the lease is held ◀────┤
//!      │                                                                  ▼
//!      │                     Missing / Differs (and not refused before) ─▶ re-upload
//!      │                     refused (a higher revision is there) ─▶ remembered, left alone
//!      │                     Missing and responsible for the other slot ─▶ that slot too
//!  lease gone ─▶ nothing scheduled, refusals forgotten
//! ```
//!
//! Only one slot can be asked about: tor's `HSFETCH` always fetches the descriptor of the
//! client's current time period (`hs_get_time_period_num(0)`, from the consensus'
//! `valid-after`), whatever HSDir it is sent to. The other live slot is uploaded with every
//! publication but cannot be checked through tor's control port.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What one HSDir answered when asked for our descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `HS_DESC_CONTENT` with this text (empty: the HSDir had nothing).
    Held(String),
    /// `HS_DESC FAILED ... REASON=NOT_FOUND`: the HSDir has no descriptor for us.
    NotFound,
    /// `HS_DESC FAILED` for another reason (`BAD_DESC`, `QUERY_REJECTED`, `UNEXPECTED`).
    Failed(String),
    /// No answer within the wait.
    NoAnswer,
}

/// How an HSDir's copy compares with the descriptor we uploaded to it (`/status` shows
/// it in lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HsDirCopy {
    /// Exactly our latest text.
    Latest,
    /// Nothing (a restarted relay starts with an empty cache).
    Missing,
    /// Another text: an older one of ours, or another publisher's.
    Differs,
    /// The HSDir could not be asked; nothing to conclude.
    Unknown,
}

impl HsDirCopy {
    /// The word `/status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            HsDirCopy::Latest => "latest",
            HsDirCopy::Missing => "missing",
            HsDirCopy::Differs => "differs",
            HsDirCopy::Unknown => "unknown",
        }
    }
}

/// Judge one answer against our text for that slot.
pub fn judge(ours: &str, answer: &Answer) -> HsDirCopy {
    match answer {
        Answer::Held(t) if t.trim().is_empty() => HsDirCopy::Missing,
        Answer::Held(t) if same_text(t, ours) => HsDirCopy::Latest,
        Answer::Held(_) => HsDirCopy::Differs,
        Answer::NotFound => HsDirCopy::Missing,
        // Our tor could not decode what the HSDir serves: it is not our text.
        Answer::Failed(r) if r == "BAD_DESC" => HsDirCopy::Differs,
        Answer::Failed(_) | Answer::NoAnswer => HsDirCopy::Unknown,
    }
}

/// The same descriptor text, whatever the line endings the control port gave it.
fn same_text(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace("\r\n", "\n").trim_end().to_string();
    norm(a) == norm(b)
}

/// The HSDirs of another slot (`other`: its responsible HSDirs) that get that slot's text
/// again without being asked: those that had *nothing* for the checked slot lost their
/// whole cache (a restart), so they lost the other slot's copy too, which `HSFETCH`
/// cannot ask about. One that answered with another text is not presumed empty.
pub fn emptied(copies: &BTreeMap<String, HsDirCopy>, other: &[String]) -> Vec<String> {
    other
        .iter()
        .filter(|fp| copies.get(*fp) == Some(&HsDirCopy::Missing))
        .cloned()
        .collect()
}

/// Which of the live slots (by time period) `HSFETCH` can check: the one of tor's
/// current time period.
pub fn fetchable_slot(periods: &[u64], current_period: u64) -> Option<usize> {
    periods.iter().position(|p| *p == current_period)
}

/// The anti-entropy schedule and what it remembers between checks.
#[derive(Debug, Clone, Default)]
pub struct AntiEntropy {
    next: Option<Instant>,
    /// `(period, HSDir)` that refused our current text for that period.
    refused: BTreeSet<(u64, String)>,
}

impl AntiEntropy {
    /// A publication was made at `now`: check it at once (the HSDirs that did not confirm
    /// show up), and forget refusals of the texts it replaced.
    pub fn published(&mut self, now: Instant) {
        self.next = Some(now);
        self.refused.clear();
    }

    /// Whether a check is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|n| now >= n)
    }

    /// A check ended at `now`: the next one `every` later.
    pub fn checked(&mut self, now: Instant, every: Duration) {
        self.next = Some(now + every);
    }

    /// The lease is gone: nothing to check until this node publishes again.
    pub fn step_down(&mut self) {
        self.next = None;
        self.refused.clear();
    }

    /// `hsdir` refused our text for `period` (it holds a revision at least as high):
    /// it is not sent that text again.
    pub fn refused(&mut self, period: u64, hsdir: &str) {
        self.refused.insert((period, hsdir.to_string()));
    }

    /// The HSDirs of the slot of `period` that get `ours` again: those whose copy is
    /// missing or differs, except those that refused it before.
    pub fn repairs(
        &self,
        period: u64,
        ours: &str,
        answers: &BTreeMap<String, Answer>,
    ) -> Vec<String> {
        answers
            .iter()
            .filter(|(_, a)| matches!(judge(ours, a), HsDirCopy::Missing | HsDirCopy::Differs))
            .filter(|(fp, _)| !self.refused.contains(&(period, fp.to_string())))
            .map(|(fp, _)| fp.clone())
            .collect()
    }
}

/// One slot's HSDir coverage, as `/status` shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SlotCoverage {
    /// Time period of the slot.
    pub period_num: u64,
    /// Its responsible HSDirs.
    pub responsible: usize,
    /// Whether `HSFETCH` can check it (the slot of tor's current time period).
    pub checked: bool,
    /// HSDirs holding our latest text after the last check and its re-uploads (`None`:
    /// not checked).
    pub holding_latest: Option<usize>,
    /// Copies found missing at the last check.
    pub missing: usize,
    /// Copies found different at the last check.
    pub differs: usize,
    /// HSDirs that did not answer at the last check.
    pub unknown: usize,
    /// Re-uploads confirmed since this node started.
    pub reuploads: u64,
    /// Re-uploads refused since this node started.
    pub refused: u64,
    /// When the last check of this slot began asking the HSDirs (RFC 3339): every
    /// answer it reports came after that moment.
    pub last_check: Option<String>,
    /// Each HSDir at the last check: `latest`, `missing`, `differs` or `unknown`, with
    /// `, re-uploaded`, `, refused <reason>` or `, re-upload unconfirmed` after a repair.
    pub hsdirs: BTreeMap<String, String>,
}

impl SlotCoverage {
    /// Count the judged copies of one check; `repaired` HSDirs confirmed our text since.
    pub fn tally(&mut self, copies: &BTreeMap<String, HsDirCopy>, repaired: usize) {
        let n = |c: HsDirCopy| copies.values().filter(|v| **v == c).count();
        self.missing = n(HsDirCopy::Missing);
        self.differs = n(HsDirCopy::Differs);
        self.unknown = n(HsDirCopy::Unknown);
        self.holding_latest = Some(n(HsDirCopy::Latest) + repaired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "hs-descriptor 3\nrevision-counter 7\nsignature x\n";

    fn answers(list: &[(&str, Answer)]) -> BTreeMap<String, Answer> {
        list.iter()
            .map(|(fp, a)| (fp.to_string(), a.clone()))
            .collect()
    }

    #[test]
    fn judges_each_answer() {
        let held = |t: &str| Answer::Held(t.to_string());
        assert_eq!(judge(OURS, &held(OURS)), HsDirCopy::Latest);
        // The control port's CRLF and a missing final newline are the same text.
        let crlf = OURS.replace('\n', "\r\n");
        assert_eq!(judge(OURS, &held(crlf.trim_end())), HsDirCopy::Latest);
        assert_eq!(judge(OURS, &held("")), HsDirCopy::Missing);
        assert_eq!(judge(OURS, &Answer::NotFound), HsDirCopy::Missing);
        let older = OURS.replace("counter 7", "counter 6");
        assert_eq!(judge(OURS, &held(&older)), HsDirCopy::Differs);
        assert_eq!(
            judge(OURS, &Answer::Failed("BAD_DESC".into())),
            HsDirCopy::Differs
        );
        assert_eq!(
            judge(OURS, &Answer::Failed("UNEXPECTED".into())),
            HsDirCopy::Unknown
        );
        assert_eq!(judge(OURS, &Answer::NoAnswer), HsDirCopy::Unknown);
    }

    #[test]
    fn repairs_missing_and_different_copies_but_not_refusers() {
        let mut ae = AntiEntropy::default();
        let a = answers(&[
            ("AA", Answer::Held(OURS.into())),
            ("BB", Answer::NotFound),
            (
                "CC",
                Answer::Held("hs-descriptor 3\nrevision-counter 9\n".into()),
            ),
            ("DD", Answer::NoAnswer),
            ("EE", Answer::Held(String::new())),
        ]);
        assert_eq!(ae.repairs(5, OURS, &a), ["BB", "CC", "EE"]);
        // CC holds a higher revision and refused: left alone for this period...
        ae.refused(5, "CC");
        assert_eq!(ae.repairs(5, OURS, &a), ["BB", "EE"]);
        // ...not for another period's slot, and not after the next publication.
        assert_eq!(ae.repairs(6, OURS, &a), ["BB", "CC", "EE"]);
        ae.published(Instant::now());
        assert_eq!(ae.repairs(5, OURS, &a), ["BB", "CC", "EE"]);
    }

    #[test]
    fn checks_after_each_publication_then_every_interval_while_holding() {
        let t0 = Instant::now();
        let every = Duration::from_secs(600);
        let mut ae = AntiEntropy::default();
        assert!(!ae.due(t0), "nothing published: nothing to check");
        ae.published(t0);
        assert!(ae.due(t0));
        ae.checked(t0 + Duration::from_secs(3), every);
        assert!(!ae.due(t0 + Duration::from_secs(602)));
        assert!(ae.due(t0 + Duration::from_secs(603)));
        // A publication in between brings the check forward.
        ae.published(t0 + Duration::from_secs(100));
        assert!(ae.due(t0 + Duration::from_secs(100)));
        ae.refused(1, "AA");
        ae.step_down();
        assert!(!ae.due(t0 + Duration::from_secs(10_000)));
        assert!(ae.refused.is_empty());
    }

    #[test]
    fn an_emptied_hsdir_gets_the_unchecked_slot_too() {
        let copies: BTreeMap<String, HsDirCopy> = [
            ("AA", HsDirCopy::Missing),
            ("BB", HsDirCopy::Latest),
            ("CC", HsDirCopy::Differs),
            ("DD", HsDirCopy::Unknown),
            ("EE", HsDirCopy::Missing),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        let other: Vec<String> = ["AA", "BB", "CC", "DD", "FF"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // EE is not responsible for the other slot; FF was not asked.
        assert_eq!(emptied(&copies, &other), ["AA"]);
    }

    #[test]
    fn only_the_slot_of_the_current_period_is_fetchable() {
        assert_eq!(fetchable_slot(&[10, 11], 10), Some(0));
        assert_eq!(fetchable_slot(&[9, 10], 10), Some(1));
        assert_eq!(fetchable_slot(&[8, 9], 10), None);
    }

    #[test]
    fn tally_counts_repairs_as_holding() {
        let copies: BTreeMap<String, HsDirCopy> = [
            ("AA", HsDirCopy::Latest),
            ("BB", HsDirCopy::Missing),
            ("CC", HsDirCopy::Differs),
            ("DD", HsDirCopy::Unknown),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        let mut c = SlotCoverage::default();
        c.tally(&copies, 1);
        assert_eq!(
            (c.holding_latest, c.missing, c.differs, c.unknown),
            (Some(2), 1, 1, 1)
        );
    }
}
