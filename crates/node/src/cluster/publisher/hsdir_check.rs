//! Anti-entropy at the HSDirs: the publisher asks each responsible HSDir what it holds
//! for the master address and uploads our latest descriptor again to those that lost it
//! (a restarted relay starts with an empty cache) or hold another text. What to check
//! and whom to repair is decided in [`crate::cluster::policy::AntiEntropy`].
//!
//! ```text
//!  HSFETCH <master> SERVER=each ─▶ HS_DESC FAILED REASON=NOT_FOUND ─┐
//!                                  HS_DESC_CONTENT (text or empty) ─┴▶ judge ─▶ +HSPOST SERVER=those
//!                                                                           ─▶ HS_DESC UPLOADED (repaired)
//!                                                                           ─▶ HS_DESC FAILED (refused: left alone)
//! ```
//!
//! tor's `HSFETCH` asks for the descriptor of its current time period only, so of the two
//! live slots only that one is checked; `/status` marks the other unchecked.

use super::{PublishCtx, Publisher};
use crate::cluster::policy::{self, Answer, AntiEntropy, HsDirCopy};
use crate::err::{Error, Result};
use rustbalance_hs::publish::SlotUpload;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// One slot of the latest publication: the text uploaded and to which HSDirs.
#[derive(Debug, Clone)]
pub struct PublishedSlot {
    /// Time period of the descriptor.
    pub period_num: u64,
    /// Its revision counter.
    pub revision: u64,
    /// The descriptor as uploaded.
    pub text: String,
    /// The responsible HSDirs (fingerprints).
    pub hsdirs: Vec<String>,
}

impl PublishedSlot {
    pub(super) fn of(up: &SlotUpload) -> PublishedSlot {
        PublishedSlot {
            period_num: up.slot.period_num,
            revision: up.descriptor.revision,
            text: up.descriptor.text.clone(),
            hsdirs: up.hsdirs.iter().map(|d| d.fingerprint.clone()).collect(),
        }
    }
}

/// What one check of one slot found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotCheck {
    /// Each HSDir's copy as found.
    pub copies: BTreeMap<String, HsDirCopy>,
    /// HSDirs given our text again that confirmed it.
    pub repaired: Vec<String>,
    /// HSDirs given our text again that refused it, with tor's reason.
    pub refused: BTreeMap<String, String>,
    /// HSDirs given our text again that did not answer in time.
    pub unconfirmed: Vec<String>,
}

impl SlotCheck {
    /// Add the findings of another descriptor of the same period (per-HSDir descriptors:
    /// their HSDirs do not overlap).
    pub fn merge(&mut self, other: SlotCheck) {
        self.copies.extend(other.copies);
        self.repaired.extend(other.repaired);
        self.refused.extend(other.refused);
        self.unconfirmed.extend(other.unconfirmed);
    }

    /// Each HSDir's state as `/status` shows it ([`policy::SlotCoverage::hsdirs`]).
    pub fn describe(&self) -> BTreeMap<String, String> {
        self.copies
            .iter()
            .map(|(fp, c)| {
                let after = if self.repaired.contains(fp) {
                    ", re-uploaded".to_string()
                } else if let Some(r) = self.refused.get(fp) {
                    format!(", refused {r}")
                } else if self.unconfirmed.contains(fp) {
                    ", re-upload unconfirmed".to_string()
                } else {
                    String::new()
                };
                (fp.clone(), format!("{}{after}", c.as_str()))
            })
            .collect()
    }
}

impl SlotCheck {
    /// The HSDirs of an unchecked slot given our text again, as `/status` shows them:
    /// `unchecked, re-uploaded`, `unchecked, still held` (refused: it had it) or
    /// `unchecked, re-upload unconfirmed`.
    pub fn describe_unchecked(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for fp in &self.repaired {
            out.insert(fp.clone(), "unchecked, re-uploaded".to_string());
        }
        for fp in self.refused.keys() {
            out.insert(fp.clone(), "unchecked, still held".to_string());
        }
        for fp in &self.unconfirmed {
            out.insert(fp.clone(), "unchecked, re-upload unconfirmed".to_string());
        }
        out
    }
}

/// `HS_DESC FAILED` reasons that answer a fetch, never an upload (tor's dirclient:
/// uploads fail with `UPLOAD_REJECTED` or `UNEXPECTED`).
pub(super) fn is_fetch_failure(reason: Option<&str>) -> bool {
    matches!(reason, Some("NOT_FOUND" | "QUERY_REJECTED" | "BAD_DESC"))
}

impl Publisher {
    /// The slots of the latest successful publication (empty before the first one, after
    /// a failed one, and on a publisher made anew after tor restarted).
    pub fn last_published(&self) -> &[PublishedSlot] {
        &self.last
    }

    /// Ask `slot`'s HSDirs what they hold (tor's current time period: call this for the
    /// slot [`policy::fetchable_slot`] names) and give our text again to those `ae` says,
    /// waiting up to `wait` for each step's answers.
    pub async fn check_slot(
        &mut self,
        slot: &PublishedSlot,
        ae: &AntiEntropy,
        wait: Duration,
    ) -> Result<SlotCheck> {
        let answers = self.fetch_copies(&slot.hsdirs, wait).await?;
        let mut check = SlotCheck {
            copies: answers
                .iter()
                .map(|(fp, a)| (fp.clone(), policy::judge(&slot.text, a)))
                .collect(),
            ..SlotCheck::default()
        };
        let again = ae.repairs(slot.period_num, &slot.text, &answers);
        if !again.is_empty() {
            self.repost(slot, &again, wait, &mut check).await?;
        }
        Ok(check)
    }

    /// `HSFETCH <master> SERVER=...` and each HSDir's answer, from `HS_DESC FAILED` and
    /// `HS_DESC_CONTENT` (tor's client cache keeps one descriptor, so it cannot tell what
    /// one HSDir holds; the event carries the HSDir's own text).
    async fn fetch_copies(
        &mut self,
        hsdirs: &[String],
        wait: Duration,
    ) -> Result<BTreeMap<String, Answer>> {
        // Drop stale events (late upload confirmations were counted or given up on).
        while self.events.try_recv().is_ok() {}
        let addr = self.master.address().without_suffix();
        self.ctl.hsfetch(&addr, hsdirs).await?;
        let mut answers: BTreeMap<String, Answer> = hsdirs
            .iter()
            .map(|fp| (fp.clone(), Answer::NoAnswer))
            .collect();
        let mut reasons: BTreeMap<String, String> = BTreeMap::new();
        let deadline = Instant::now() + wait;
        while answers.values().any(|a| *a == Answer::NoAnswer) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(ev)) = tokio::time::timeout(left, self.events.recv()).await else {
                break;
            };
            if let Some(h) = ev.hs_desc() {
                if h.address == addr && h.action == "FAILED" {
                    reasons.insert(h.hsdir_fingerprint(), h.reason.unwrap_or_default());
                }
                continue;
            }
            let Some(c) = ev.hs_desc_content() else {
                continue;
            };
            let fp = c.hsdir_fingerprint();
            let Some(a) = answers.get_mut(&fp).filter(|_| c.address == addr) else {
                continue;
            };
            *a = match (
                c.descriptor.is_empty(),
                reasons.get(&fp).map(String::as_str),
            ) {
                (false, _) => Answer::Held(c.descriptor),
                (true, Some("NOT_FOUND") | None) => Answer::NotFound,
                (true, Some(r)) => Answer::Failed(r.to_string()),
            };
        }
        Ok(answers)
    }

    /// Give `slot`'s text again to `hsdirs` without asking them first (see
    /// [`policy::emptied`]); the answers, with no copies judged.
    pub async fn give_again(
        &mut self,
        slot: &PublishedSlot,
        hsdirs: &[String],
        wait: Duration,
    ) -> Result<SlotCheck> {
        let mut check = SlotCheck::default();
        self.repost(slot, hsdirs, wait, &mut check).await?;
        Ok(check)
    }

    /// `+HSPOST SERVER=...` of `slot`'s text to `hsdirs` and their answers into `check`.
    async fn repost(
        &mut self,
        slot: &PublishedSlot,
        hsdirs: &[String],
        wait: Duration,
        check: &mut SlotCheck,
    ) -> Result<()> {
        while self.events.try_recv().is_ok() {}
        let addr = self.master.address().without_suffix();
        self.ctl
            .hspost(&slot.text, hsdirs, Some(&addr))
            .await
            .map_err(|source| Error::Upload {
                period: slot.period_num,
                source,
            })?;
        let mut pending: Vec<String> = hsdirs.to_vec();
        let deadline = Instant::now() + wait;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(ev)) = tokio::time::timeout(left, self.events.recv()).await else {
                break;
            };
            let Some(h) = ev.hs_desc() else { continue };
            let fp = h.hsdir_fingerprint();
            if h.address != addr || !pending.contains(&fp) {
                continue;
            }
            match h.action.as_str() {
                "UPLOADED" => check.repaired.push(fp.clone()),
                "FAILED" if !is_fetch_failure(h.reason.as_deref()) => {
                    check
                        .refused
                        .insert(fp.clone(), h.reason.unwrap_or_default());
                }
                _ => continue,
            }
            pending.retain(|p| *p != fp);
        }
        check.unconfirmed = pending;
        Ok(())
    }
}

impl PublishCtx {
    /// Ask the HSDirs of every descriptor of the fetchable period (one, or one per HSDir
    /// group) and repair them; the findings merged, and whether the tor connection broke.
    async fn check_period(
        &self,
        p: &mut Publisher,
        ae: &AntiEntropy,
        entries: &[&PublishedSlot],
    ) -> (Option<SlotCheck>, bool) {
        let mut all = SlotCheck::default();
        for entry in entries {
            match p.check_slot(entry, ae, self.timers.hsdir_fetch).await {
                Ok(c) => all.merge(c),
                Err(e) => {
                    tracing::warn!(
                        "could not ask the HSDirs for our descriptor of period {}: {e}; \
                         asked again in {}s",
                        entry.period_num,
                        self.timers.hsdir_check.as_secs()
                    );
                    return (None, e.is_tor());
                }
            }
        }
        (Some(all), false)
    }

    /// Give each descriptor of an unchecked period again to its HSDirs that lost the
    /// checked period's copy ([`policy::emptied`]); what was given, and whether the tor
    /// connection broke.
    async fn give_period_again(
        &self,
        p: &mut Publisher,
        check: &SlotCheck,
        entries: &[&PublishedSlot],
    ) -> (SlotCheck, bool) {
        let mut given_all = SlotCheck::default();
        for entry in entries {
            let emptied = policy::emptied(&check.copies, &entry.hsdirs);
            if emptied.is_empty() {
                continue;
            }
            match p.give_again(entry, &emptied, self.timers.hsdir_fetch).await {
                Ok(given) => {
                    log_given(entry, &given);
                    given_all.merge(given);
                }
                Err(e) => {
                    tracing::warn!(
                        "could not upload our descriptor of period {} again: {e}",
                        entry.period_num
                    );
                    return (given_all, e.is_tor());
                }
            }
        }
        (given_all, false)
    }

    /// One anti-entropy check of the latest publication: the fetchable slot's HSDirs are
    /// asked and repaired, every slot's coverage goes to `/status`, each repair is logged
    /// (info; a refusal at warn). Returns whether the tor connection broke.
    pub(super) async fn check_hsdirs(&self, p: &mut Publisher, ae: &mut AntiEntropy) -> bool {
        // The check's time is when it began asking: every answer it reports came later
        // (stamping the end let an answer from before an HSDir's restart pass as after).
        let started = SystemTime::now();
        let slots = p.last_published().to_vec();
        if slots.is_empty() {
            ae.checked(Instant::now(), self.timers.hsdir_check);
            return false;
        }
        let view = match p.view().await {
            Ok(v) => v,
            Err(e) => return e.is_tor(),
        };
        let current = view.time.current_period(view.consensus.valid_after_unix());
        // Per-HSDir descriptors: several entries (each its text and its HSDirs) per period.
        let mut periods: Vec<u64> = Vec::new();
        for s in &slots {
            if !periods.contains(&s.period_num) {
                periods.push(s.period_num);
            }
        }
        let of_period = |period: u64| -> Vec<&PublishedSlot> {
            slots.iter().filter(|s| s.period_num == period).collect()
        };
        let fetchable = policy::fetchable_slot(&periods, current);
        let before = self
            .status
            .lock()
            .map(|s| s.hsdir_coverage.clone())
            .unwrap_or_default();
        let (check, mut broken) = match fetchable {
            Some(i) => self.check_period(p, ae, &of_period(periods[i])).await,
            None => (None, false),
        };
        let mut coverage = Vec::new();
        let (mut repaired, mut refused) = (0u64, 0u64);
        for (i, period) in periods.iter().enumerate() {
            let entries = of_period(*period);
            let first = entries[0];
            let mut cov = before
                .iter()
                .find(|c| c.period_num == *period)
                .cloned()
                .unwrap_or_default();
            cov.period_num = *period;
            cov.responsible = entries.iter().map(|e| e.hsdirs.len()).sum();
            cov.checked = fetchable == Some(i);
            cov.holding_latest = None;
            cov.hsdirs.clear();
            match &check {
                Some(check) if cov.checked => {
                    log_check(first, check);
                    for fp in check.refused.keys() {
                        ae.refused(*period, fp);
                    }
                    cov.tally(&check.copies, check.repaired.len());
                    cov.hsdirs = check.describe();
                    cov.reuploads += check.repaired.len() as u64;
                    cov.refused += check.refused.len() as u64;
                    cov.last_check = Some(humantime::format_rfc3339_seconds(started).to_string());
                    repaired += check.repaired.len() as u64;
                    refused += check.refused.len() as u64;
                }
                Some(check) if !broken => {
                    let given_all;
                    (given_all, broken) = self.give_period_again(p, check, &entries).await;
                    if given_all != SlotCheck::default() {
                        cov.hsdirs = given_all.describe_unchecked();
                        cov.reuploads += given_all.repaired.len() as u64;
                        repaired += given_all.repaired.len() as u64;
                    }
                }
                _ => {}
            }
            coverage.push(cov);
        }
        if let Ok(mut s) = self.status.lock() {
            s.hsdir_coverage = coverage;
            s.hsdir_reuploads += repaired;
            s.hsdir_reupload_refusals += refused;
        }
        ae.checked(Instant::now(), self.timers.hsdir_check);
        broken
    }
}

/// A line per HSDir given an unchecked slot again because it had lost the checked one.
fn log_given(slot: &PublishedSlot, given: &SlotCheck) {
    for fp in &given.repaired {
        tracing::info!(
            "HSDir {fp} had lost our descriptors (a restart?): uploaded the one for period {} \
             (revision {}) again too, confirmed",
            slot.period_num,
            slot.revision
        );
    }
    for (fp, reason) in &given.refused {
        tracing::info!(
            "HSDir {fp} still held our descriptor for period {} ({reason})",
            slot.period_num
        );
    }
}

/// A line per repair (info), per refusal (warn), and one when HSDirs did not answer.
fn log_check(slot: &PublishedSlot, check: &SlotCheck) {
    for fp in &check.repaired {
        let found = check.copies.get(fp).copied().unwrap_or(HsDirCopy::Unknown);
        tracing::info!(
            "HSDir {fp} held {} of our descriptor for period {} (revision {}): uploaded it again, confirmed",
            match found {
                HsDirCopy::Missing => "no copy",
                _ => "another copy",
            },
            slot.period_num,
            slot.revision
        );
    }
    for (fp, reason) in &check.refused {
        tracing::warn!(
            "HSDir {fp} refused our descriptor for period {} (revision {}) given again: {reason}; \
             it holds a revision at least as high (another publisher with a faster clock?); \
             left alone until the next publication, `rustbalance status` shows the coverage",
            slot.period_num,
            slot.revision
        );
    }
    for fp in &check.unconfirmed {
        tracing::info!(
            "HSDir {fp} did not confirm our descriptor for period {} given again; asked again at the next check",
            slot.period_num
        );
    }
    let unknown = check
        .copies
        .values()
        .filter(|c| **c == HsDirCopy::Unknown)
        .count();
    if unknown > 0 {
        tracing::debug!(
            "{unknown} HSDir(s) did not answer the check of period {}",
            slot.period_num
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustbalance_hs::IdentityKey;
    use rustbalance_tor::fake::FakeTor;
    use rustbalance_tor::ControlClient;

    const OURS: &str = "hs-descriptor 3\nrevision-counter 7\nsignature ours\n";
    const WAIT: Duration = Duration::from_secs(5);

    async fn publisher(fake: &FakeTor) -> Publisher {
        let ctl = ControlClient::connect_authenticated(fake.addr())
            .await
            .unwrap();
        let key = IdentityKey::generate(&mut rand::rng());
        Publisher::new(ctl, key, true, 20).await.unwrap()
    }

    fn slot(hsdirs: &[&str]) -> PublishedSlot {
        PublishedSlot {
            period_num: 5,
            revision: 7,
            text: OURS.to_string(),
            hsdirs: hsdirs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn gives_our_text_again_to_the_hsdirs_that_lost_it() {
        let fake = FakeTor::start().await.unwrap();
        fake.serve_hsdirs(true);
        fake.set_hsdir_copy("AA", Some(OURS));
        fake.set_hsdir_copy("CC", Some("hs-descriptor 3\nrevision-counter 6\n"));
        // BB restarted: it holds nothing.
        let mut p = publisher(&fake).await;
        let s = slot(&["AA", "BB", "CC"]);
        let check = p
            .check_slot(&s, &AntiEntropy::default(), WAIT)
            .await
            .unwrap();
        assert_eq!(check.copies["AA"], HsDirCopy::Latest);
        assert_eq!(check.copies["BB"], HsDirCopy::Missing);
        assert_eq!(check.copies["CC"], HsDirCopy::Differs);
        assert_eq!(check.repaired, ["BB", "CC"]);
        let shown = check.describe();
        assert_eq!(shown["AA"], "latest");
        assert_eq!(shown["BB"], "missing, re-uploaded");
        assert_eq!(shown["CC"], "differs, re-uploaded");
        assert!(check.refused.is_empty() && check.unconfirmed.is_empty());
        for fp in ["AA", "BB", "CC"] {
            assert_eq!(fake.hsdir_copy(fp).as_deref(), Some(OURS), "{fp}");
        }
        let posts = fake.posts();
        assert_eq!(posts.len(), 1, "one upload, to the two that needed it");
        assert_eq!(posts[0].servers, ["BB", "CC"]);
        let fetch = fake
            .commands()
            .into_iter()
            .find(|c| c.starts_with("HSFETCH"))
            .unwrap();
        assert!(fetch.ends_with(" SERVER=AA SERVER=BB SERVER=CC"), "{fetch}");
        // Everyone holds it now: the next check uploads nothing.
        let again = p
            .check_slot(&s, &AntiEntropy::default(), WAIT)
            .await
            .unwrap();
        assert!(again.repaired.is_empty());
        assert!(again.copies.values().all(|c| *c == HsDirCopy::Latest));
        assert_eq!(fake.posts().len(), 1);
    }

    #[tokio::test]
    async fn a_refusing_hsdir_is_reported_and_left_alone() {
        let fake = FakeTor::start().await.unwrap();
        fake.serve_hsdirs(true);
        let newer = "hs-descriptor 3\nrevision-counter 9\nsignature theirs\n";
        fake.set_hsdir_copy("AA", Some(newer));
        fake.refuse_uploads("AA");
        let mut p = publisher(&fake).await;
        let s = slot(&["AA"]);
        let mut ae = AntiEntropy::default();
        let check = p.check_slot(&s, &ae, WAIT).await.unwrap();
        assert_eq!(check.copies["AA"], HsDirCopy::Differs);
        assert_eq!(check.refused["AA"], "UPLOAD_REJECTED");
        assert_eq!(check.describe()["AA"], "differs, refused UPLOAD_REJECTED");
        assert!(check.repaired.is_empty());
        assert_eq!(fake.hsdir_copy("AA").as_deref(), Some(newer));
        // The publish task remembers the refusal: the next check asks but does not upload.
        ae.refused(s.period_num, "AA");
        let again = p.check_slot(&s, &ae, WAIT).await.unwrap();
        assert_eq!(again.copies["AA"], HsDirCopy::Differs);
        assert!(again.refused.is_empty() && again.repaired.is_empty());
        assert_eq!(fake.posts().len(), 1);
    }

    #[tokio::test]
    async fn a_silent_hsdir_is_unknown_and_not_uploaded_to() {
        let fake = FakeTor::start().await.unwrap();
        // Not playing the HSDirs: HSFETCH is answered `250 OK` and nothing else.
        let mut p = publisher(&fake).await;
        let check = p
            .check_slot(
                &slot(&["AA"]),
                &AntiEntropy::default(),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
        assert_eq!(check.copies["AA"], HsDirCopy::Unknown);
        assert!(fake.posts().is_empty());
    }

    #[tokio::test]
    async fn an_unchecked_slot_is_given_again_without_asking() {
        let fake = FakeTor::start().await.unwrap();
        fake.serve_hsdirs(true);
        // BB still holds it: a real HSDir refuses the same revision.
        fake.refuse_uploads("BB");
        let mut p = publisher(&fake).await;
        let given = p
            .give_again(&slot(&["AA", "BB"]), &["AA".into(), "BB".into()], WAIT)
            .await
            .unwrap();
        assert!(!fake.commands().iter().any(|c| c.starts_with("HSFETCH")));
        assert_eq!(fake.hsdir_copy("AA").as_deref(), Some(OURS));
        let shown = given.describe_unchecked();
        assert_eq!(shown["AA"], "unchecked, re-uploaded");
        assert_eq!(shown["BB"], "unchecked, still held");
    }

    #[test]
    fn fetch_answers_are_not_upload_answers() {
        assert!(is_fetch_failure(Some("NOT_FOUND")));
        assert!(!is_fetch_failure(Some("UPLOAD_REJECTED")));
        assert!(!is_fetch_failure(None));
    }
}
