//! Which `pow-params` a master descriptor may carry: only those that the tor behind
//! every listed intro point can verify.
//!
//! A client solves the puzzle over the blinded key of the descriptor it fetched and the
//! seed in it. A tor checks a solution over the blinded key of *its own* descriptor (the
//! one each intro point was picked for) and over *its own* seeds. So `pow-params` in a
//! master descriptor verify only when every intro point listed belongs to one tor whose
//! own descriptor was made for the master identity: a tor that holds the master key.
//!
//! A cluster node's tor is an instance with its own key. Its `pow-params` therefore never
//! go into the master descriptor, not even when it is the only node left: at suggested
//! effort 0 clients do not solve and nothing shows, but once tor raises the effort (under
//! a flood) every solving client's introduction fails to verify and is dropped (tor logs
//! "Invalid PoW cell extension." with `ProtocolWarnings 1`). That copy was the old
//! "single-node fallback"; the lab case `lab_loopback/pow.rs` shows both behaviours.
//!
//! ```text
//!  own tor's descriptor made for the master address?  ─no──▶ none
//!        └─yes─▶ every intro point in the descriptor is this node's? ─no──▶ none
//!                  └─yes─▶ its own pow-params
//! ```

use rustbalance_hs::descriptor::{InstanceIntros, ParsedDescriptor, PowParams};
use rustbalance_hs::OnionAddress;

/// The `pow-params` of this node's own tor, with the identity of the descriptor they
/// came from (the key their blinded key derives from; the parser checked that).
#[derive(Debug, Clone)]
pub struct OwnPow {
    /// The first `pow-params` line of the descriptor.
    pub params: PowParams,
    /// The onion address the descriptor was made for.
    pub made_for: OnionAddress,
}

impl OwnPow {
    /// The PoW parameters of `d` (this node's tor's own descriptor), if it has any.
    pub fn of(d: &ParsedDescriptor) -> Option<OwnPow> {
        d.pow_params.first().map(|p| OwnPow {
            params: p.clone(),
            made_for: d.address,
        })
    }
}

/// The `pow-params` the master descriptor of `master` may carry when it lists `intros`
/// and this node is `own_name` with its tor's `own` PoW parameters: its own, only when
/// its tor holds the master key and every intro point listed is this node's; else none.
pub fn master_pow(
    intros: &[InstanceIntros],
    own_name: &str,
    own: Option<&OwnPow>,
    master: &OnionAddress,
) -> Option<PowParams> {
    let own = own?;
    let verifiable = own.made_for == *master && intros.iter().all(|i| i.instance == own_name);
    verifiable.then(|| own.params.clone())
}

/// The suggested effort of `p` (0 for a scheme this build does not know).
pub fn suggested_effort(p: &PowParams) -> u32 {
    match p {
        PowParams::V1(v1) => v1.suggested_effort().into(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::roster::{intros_of, tests::node};
    use crate::join_node::tests::key;
    use rand::SeedableRng;
    use rustbalance_hs::descriptor::parse_descriptor;
    use rustbalance_hs::fixture::{fake_pow_params, pow_descriptor};
    use rustbalance_hs::time::TimeParams;
    use rustbalance_hs::IdentityKey;
    use std::time::{Duration, SystemTime};

    /// The descriptor `key`'s tor would publish with PoW at `effort`, parsed as the
    /// intro task reads it.
    fn own_descriptor(key: &IdentityKey, effort: u32) -> ParsedDescriptor {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(16);
        let time = TimeParams::testing(20);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let secs = rustbalance_hs::time::unix_secs(now);
        let slot = time.live_slots(secs, secs)[0];
        let pow = fake_pow_params(effort, now + Duration::from_secs(7200), &mut rng);
        let text = pow_descriptor(key, time, slot, now, &pow, &mut rng).unwrap();
        parse_descriptor(&text, &key.address(), &time, now).unwrap()
    }

    /// The bug of issue 16: the last cluster node standing copied its instance tor's
    /// pow-params into the master descriptor. Its tor verifies solutions over the
    /// instance's blinded key, clients solve over the master's: every solving client
    /// failed once tor raised the effort.
    #[test]
    fn an_instance_tors_pow_params_never_reach_the_master_descriptor() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let master = IdentityKey::generate(&mut rng);
        let instance = IdentityKey::generate(&mut rng);
        let d = own_descriptor(&instance, 12);
        let own = OwnPow::of(&d).expect("the instance descriptor carries pow-params");
        assert_eq!(suggested_effort(&own.params), 12);
        let (k1, k2) = (key(), key());
        let alone = intros_of(vec![node("node1", &k1, &[])]);
        let both = intros_of(vec![node("node1", &k1, &[]), node("node2", &k2, &[])]);
        let m = master.address();
        // Alone (the old fallback copied them here) and with others: none.
        assert!(master_pow(&alone.nodes, "node1", Some(&own), &m).is_none());
        assert!(master_pow(&both.nodes, "node1", Some(&own), &m).is_none());
    }

    #[test]
    fn a_tor_holding_the_master_key_keeps_its_pow_params_only_alone() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let master = IdentityKey::generate(&mut rng);
        let d = own_descriptor(&master, 12);
        let own = OwnPow::of(&d).expect("the descriptor carries pow-params");
        let (k1, k2) = (key(), key());
        let alone = intros_of(vec![node("node1", &k1, &[])]);
        let both = intros_of(vec![node("node1", &k1, &[]), node("node2", &k2, &[])]);
        let other = intros_of(vec![node("node2", &k2, &[])]);
        let m = master.address();
        assert!(master_pow(&alone.nodes, "node1", Some(&own), &m).is_some());
        // Another node's intro points cannot verify this tor's seed.
        assert!(master_pow(&both.nodes, "node1", Some(&own), &m).is_none());
        assert!(master_pow(&other.nodes, "node1", Some(&own), &m).is_none());
        // No PoW of its own: none.
        assert!(master_pow(&alone.nodes, "node1", None, &m).is_none());
    }
}
