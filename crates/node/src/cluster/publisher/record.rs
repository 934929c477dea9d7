//! How a publication is recorded: the log line, `last_publish` in gossip (its revision
//! time: election rule 8) and `/status`.

use super::*;

impl PublishCtx {
    /// Log a publication, gossip `last_publish` (its revision time, rule 8), update
    /// `/status`; returns its outcome and whether every slot reached an HSDir.
    pub(super) async fn record(
        &self,
        result: Result<Vec<SlotReport>>,
        intros: &HealthyIntros,
        (own_pow, fleet): (bool, BTreeMap<u64, Vec<String>>),
        now: SystemTime,
        reason: Reason,
        t0: Instant,
    ) -> (Outcome, bool) {
        let slots = match result {
            Ok(slots) => slots,
            Err(e) => {
                tracing::warn!(
                    "publishing failed: {e}; tried again with backoff; `rustbalance status` \
                     shows each HSDir's answer, `rustbalance doctor --config FILE` checks tor and the clock"
                );
                if let Ok(mut s) = self.status.lock() {
                    s.publish_failures += 1;
                }
                return (Outcome::Failed, false);
            }
        };
        let complete = slots.iter().all(|s| s.uploaded() == s.hsdirs.len());
        let any = require_uploaded(&slots).is_ok();
        tracing::info!(
            "published ({}): {} intro points from {} nodes{} in {:.1}s; HSDirs {}",
            reason.as_str(),
            intros
                .nodes
                .iter()
                .map(|i| i.intro_points.len())
                .sum::<usize>(),
            // Nodes, not entries: a turbo-mode node has one entry per tor.
            intros
                .nodes
                .iter()
                .map(|i| i.instance.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            if own_pow {
                " with PoW (own tor holds the master key)".to_string()
            } else if !fleet.is_empty() {
                format!(" with fleet PoW (tors of {fleet:?} by period)")
            } else {
                String::new()
            },
            t0.elapsed().as_secs_f64(),
            slots
                .iter()
                .map(|s| format!("{}/{}", s.uploaded(), s.hsdirs.len()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let value = gossip::last_publish(unix_secs(now), any);
        self.membership.set(gossip::LAST_PUBLISH, &value).await;
        if let Ok(mut s) = self.status.lock() {
            s.publishes += 1;
            if !any {
                s.publish_failures += 1;
            }
            s.last_publish = Some(PublishRecord {
                at: humantime::format_rfc3339_seconds(now).to_string(),
                reason: reason.as_str().to_string(),
                intro_points: intros
                    .nodes
                    .iter()
                    .map(|i| (i.instance.clone(), i.intro_points.len().min(20)))
                    .collect(),
                pow: own_pow || !fleet.is_empty(),
                fleet,
                slots,
            });
        }
        let outcome = if complete {
            Outcome::Complete
        } else {
            Outcome::Incomplete
        };
        (outcome, any)
    }
}
