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
    /// Fleet PoW: give `p` this round's fleet descriptors for time period `period` (from
    /// the healthy eligible members' `fleet_pow` adverts); what they are made of, to notice
    /// changes.
    pub(super) async fn fleet_round(
        &self,
        p: &mut Publisher,
        view: &NetworkView,
        period: u64,
    ) -> FleetRound {
        let Some(min_effort) = self.fleet_pow else {
            return FleetRound::default();
        };
        let fleet = crate::cluster::roster::healthy_fleet(&self.membership).await;
        let fetched = usize::from(view.hsdirs.n_replicas) * view.hsdirs.spread_fetch;
        let slots = crate::cluster::fleet::fleet_slots(
            &fleet.adverts,
            period,
            fetched,
            min_effort,
            SystemTime::now(),
        );
        let nodes = crate::cluster::fleet::fleet_nodes(&fleet.adverts, &slots);
        p.set_fleet(slots);
        FleetRound {
            fingerprint: fleet.fingerprint,
            nodes,
        }
    }
}
