//! The gossip port: datagram authentication, then the chitchat payload check.

use std::sync::OnceLock;

use chitchat::{ChitchatMessage, Deserializable};
use rustbalance_cluster::auth::{MacKey, Opener, Rejection, Sealer, MAX_MESSAGE};
use rustbalance_cluster::validator::{Validator, Violation, MAX_INFLATED};
use rustbalance_cluster::wire::{self, Blocks, DecodeError};
use rustbalance_cluster::{ClusterError, ClusterSecret};

/// The receiver's clock (Unix ms) for `gossip_open`; seeds are sealed at this time.
pub const GOSSIP_NOW_MS: u64 = 1_795_000_000_000;

/// The cluster secret of the gossip targets.
pub fn gossip_secret() -> Result<ClusterSecret, ClusterError> {
    ClusterSecret::new(b"rustbalance fuzzing cluster secret".to_vec())
}

/// The cluster key of the gossip targets (seeds are sealed with it).
pub fn gossip_key() -> MacKey {
    static KEY: OnceLock<MacKey> = OnceLock::new();
    KEY.get_or_init(|| MacKey::derive(&gossip_secret().expect("a 34-byte secret is long enough")))
        .clone()
}

/// `Opener::open`: the first byte chooses between the rest as a datagram (the checks
/// before the MAC) and the rest as a body sealed with the cluster key and flagged as
/// compressed (what a member could send: reaches the inflating). No panic; what opens
/// fits the cap and opens only once.
pub fn gossip_open(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let datagram = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        Sealer::new(gossip_key(), 1).seal_body(GOSSIP_NOW_MS, true, rest)
    };
    let mut opener = Opener::new(gossip_key(), 30_000);
    if let Ok(payload) = opener.open(GOSSIP_NOW_MS, &datagram) {
        assert!(payload.len() <= MAX_MESSAGE, "{} bytes", payload.len());
        assert_eq!(
            opener.open(GOSSIP_NOW_MS, &datagram),
            Err(Rejection::Replayed)
        );
    }
}

/// The validator on any payload, checked against chitchat's own decoder: everything we
/// pass, chitchat reads; what we call undecodable, chitchat refuses too. (A payload we
/// refuse for a named reason may also be one chitchat refuses: the check stops at the
/// first reason.) What we decode encodes back to the same message.
pub fn gossip_delta(data: &[u8]) {
    let verdict = Validator::new("me", 5).check(data);
    if verdict != Err(Violation::OverCompressed) {
        let theirs = ChitchatMessage::deserialize(&mut &data[..]);
        match verdict {
            Ok(()) => assert!(theirs.is_ok(), "we pass what chitchat refuses: {theirs:?}"),
            Err(Violation::Undecodable) => {
                assert!(theirs.is_err(), "we refuse what chitchat reads: {theirs:?}")
            }
            Err(_) => {}
        }
    }
    match wire::decode(data, MAX_INFLATED) {
        Ok(msg) => {
            let again = wire::encode(&msg, Blocks::Raw);
            assert_eq!(wire::decode(&again, usize::MAX), Ok(msg));
        }
        Err(DecodeError::OverCompressed) => {
            assert_eq!(verdict, Err(Violation::OverCompressed));
        }
        Err(DecodeError::Invalid(_)) => assert_eq!(verdict, Err(Violation::Undecodable)),
    }
}
