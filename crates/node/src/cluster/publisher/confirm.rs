//! Which `HS_DESC` answers are the publisher's: its uploads' confirmations.

use super::*;

impl Publisher {
    /// Fill in `HS_DESC UPLOADED/FAILED` answers until all are in or time runs out.
    pub(super) async fn confirm(
        &mut self,
        addr: &str,
        reports: &mut [SlotReport],
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        // Per HSDir, tor's own uploads still waiting for their answer.
        let mut tor_own: BTreeMap<String, usize> = BTreeMap::new();
        let pending = |r: &[SlotReport]| {
            r.iter()
                .flat_map(|s| s.hsdirs.values())
                .any(|v| v == "NO ANSWER")
        };
        while pending(reports) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(ev)) = tokio::time::timeout(left, self.events.recv()).await else {
                break;
            };
            // 650 HS_DESC UPLOADED|FAILED <addr> <auth> <$FPR~nick> [<desc-id>] [REASON=...]
            let Some(h) = ev.hs_desc() else { continue };
            if h.address != addr || h.hsdir.is_empty() {
                continue;
            }
            // tor's own uploads of the master descriptor (single-node switch, fleet PoW)
            // begin with `UPLOAD` (an `HSPOST` sends none): their answer is not ours.
            let fpr = h.hsdir_fingerprint();
            if h.action == "FAILED" && hsdir_check::is_fetch_failure(h.reason.as_deref()) {
                // A late answer to an anti-entropy fetch, not to an upload.
                continue;
            }
            match h.action.as_str() {
                "UPLOAD" => {
                    *tor_own.entry(fpr).or_insert(0usize) += 1;
                    continue;
                }
                "UPLOADED" | "FAILED" => {
                    if let Some(n) = tor_own.get_mut(&fpr).filter(|n| **n > 0) {
                        *n -= 1;
                        continue;
                    }
                }
                _ => {}
            }
            let status = match h.action.as_str() {
                "UPLOADED" => "UPLOADED".to_string(),
                // A late answer to an anti-entropy fetch, not to this upload.
                "FAILED" if hsdir_check::is_fetch_failure(h.reason.as_deref()) => continue,
                "FAILED" => format!("FAILED {}", h.reason.as_deref().unwrap_or("")),
                _ => continue,
            };
            // An HSDir may hold both slots; fill the first slot still waiting on it.
            if let Some(v) = reports
                .iter_mut()
                .filter_map(|r| r.hsdirs.get_mut(&fpr))
                .find(|v| *v == "NO ANSWER")
            {
                *v = status;
            }
        }
    }
}
