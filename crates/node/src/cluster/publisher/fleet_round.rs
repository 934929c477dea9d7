//! Fleet PoW in a publish round: the healthy eligible members' adverts become the
//! publisher's fleet descriptors ([`super::super::fleet`]).

use super::*;

/// What fleet PoW put into a round.
#[derive(Default)]
pub(super) struct FleetRound {
    /// The adverts used (empty without fleet PoW).
    pub(super) fingerprint: String,
    /// Per time period, the nodes whose tors are in fleet descriptors.
    pub(super) nodes: BTreeMap<u64, Vec<String>>,
}

impl PublishCtx {
    /// Fleet PoW: give `p` this round's fleet descriptors (from the healthy eligible
    /// members' `fleet_pow` adverts); what they are made of, to notice changes.
    pub(super) async fn fleet_round(&self, p: &mut Publisher, view: &NetworkView) -> FleetRound {
        let Some(min_effort) = self.fleet_pow else {
            return FleetRound::default();
        };
        let entries = crate::cluster::roster::healthy_fleet(&self.membership).await;
        // A tor's `desc_current` is always for the first live slot's period.
        let first = view.time.live_slots(
            unix_secs(SystemTime::now()),
            view.consensus.valid_after_unix(),
        )[0]
        .period_num;
        let fetched = usize::from(view.hsdirs.n_replicas) * view.hsdirs.spread_fetch;
        let slots = crate::cluster::fleet::fleet_slots(
            &entries,
            first,
            fetched,
            min_effort,
            SystemTime::now(),
        );
        let nodes = crate::cluster::fleet::fleet_nodes(&entries, &slots);
        let mut fingerprint = String::from("fleet:");
        for (name, e) in &entries {
            fingerprint.push_str(name);
            fingerprint.push('=');
            fingerprint.push_str(&e.encode());
            fingerprint.push(';');
        }
        p.set_fleet(slots);
        FleetRound { fingerprint, nodes }
    }
}
