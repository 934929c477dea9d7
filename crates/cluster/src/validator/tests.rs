use chitchat::{ChitchatMessage, Deserializable};

use super::*;
use crate::wire::{Blocks, KeyStatus};

fn peer(name: &str, generation: u64) -> PeerId {
    PeerId {
        node_id: name.into(),
        generation,
        addr: "10.0.0.1:10000".parse().unwrap(),
    }
}

fn node(name: &str, generation: u64) -> DeltaOp {
    DeltaOp::Node {
        id: peer(name, generation),
        last_gc_version: 0,
        from_version_excluded: 0,
    }
}

fn kv(version: u64) -> DeltaOp {
    DeltaOp::KeyValue {
        key: format!("k{version}"),
        value: "v".into(),
        version,
        status: KeyStatus::Set,
    }
}

fn check(delta: Vec<DeltaOp>) -> Result<(), Violation> {
    let bytes = wire::encode(&Message::Ack { delta }, Blocks::Raw);
    let verdict = Validator::new("me", 5).check(&bytes);
    if verdict.is_ok() {
        assert!(ChitchatMessage::deserialize(&mut bytes.as_slice()).is_ok());
    }
    verdict
}

#[test]
fn ordinary_deltas_pass() {
    assert_eq!(check(vec![]), Ok(()));
    assert_eq!(
        check(vec![node("a", 1), kv(1), kv(2), node("b", 1), kv(7)]),
        Ok(())
    );
    // chitchat's own use of SetMaxVersion: a node without keys.
    assert_eq!(check(vec![node("a", 1), DeltaOp::SetMaxVersion(9)]), Ok(()));
    // A max version above the keys does not trip anything.
    assert_eq!(
        check(vec![node("a", 1), kv(3), DeltaOp::SetMaxVersion(9)]),
        Ok(())
    );
    // This node's previous runs are gossiped back to it.
    assert_eq!(check(vec![node("me", 4), kv(1)]), Ok(()));
}

#[test]
fn a_max_version_below_a_key_is_refused() {
    let low = DeltaOp::SetMaxVersion(999);
    assert_eq!(
        check(vec![node("a", 1), kv(1_000), low.clone()]),
        Err(Violation::MaxVersionBelowKeys)
    );
    // The offending node need not be the last one.
    assert_eq!(
        check(vec![node("a", 1), kv(1_000), low, node("b", 1), kv(1)]),
        Err(Violation::MaxVersionBelowKeys)
    );
    // Lowered, then a smaller key: the bigger key is still applied.
    assert_eq!(
        check(vec![node("a", 1), kv(10), DeltaOp::SetMaxVersion(5), kv(7)]),
        Err(Violation::MaxVersionBelowKeys)
    );
}

#[test]
fn deltas_for_this_node_are_refused() {
    assert_eq!(check(vec![node("me", 5)]), Err(Violation::OwnNode));
    assert_eq!(check(vec![node("me", 6), kv(1)]), Err(Violation::OwnNode));
    let other_addr = DeltaOp::Node {
        id: PeerId {
            addr: "10.9.9.9:1".parse().unwrap(),
            ..peer("me", 5)
        },
        last_gc_version: 0,
        from_version_excluded: 0,
    };
    assert_eq!(check(vec![other_addr]), Err(Violation::OwnNode));
}

#[test]
fn what_chitchat_refuses_is_undecodable() {
    assert_eq!(check(vec![kv(1)]), Err(Violation::Undecodable));
    assert_eq!(
        check(vec![DeltaOp::SetMaxVersion(1)]),
        Err(Violation::Undecodable)
    );
    assert_eq!(
        check(vec![node("a", 1), kv(2), kv(2)]),
        Err(Violation::Undecodable)
    );
    assert_eq!(
        check(vec![node("a", 1), node("a", 1)]),
        Err(Violation::Undecodable)
    );
    assert_eq!(
        Validator::new("me", 1).check(b"junk"),
        Err(Violation::Undecodable)
    );
}

#[test]
fn a_bomb_is_over_compressed() {
    let mut delta = vec![node("a", 1)];
    delta.extend((1..=20).map(|v| DeltaOp::KeyValue {
        key: format!("k{v}"),
        value: "x".repeat(60_000),
        version: v,
        status: KeyStatus::Set,
    }));
    let bytes = wire::encode(&Message::Ack { delta }, Blocks::Zstd { block: 65_535 });
    assert!(bytes.len() < 4_096, "{}", bytes.len());
    assert_eq!(
        Validator::new("me", 1).check(&bytes),
        Err(Violation::OverCompressed)
    );
}
