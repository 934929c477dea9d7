use chitchat::{ChitchatMessage, Deserializable};

use super::*;

fn peer(name: &str) -> PeerId {
    PeerId {
        node_id: name.into(),
        generation: 7,
        addr: "10.0.0.1:10000".parse().unwrap(),
    }
}

fn sample() -> Message {
    Message::SynAck {
        digest: vec![DigestEntry {
            id: PeerId {
                addr: "[fd00::1]:7946".parse().unwrap(),
                ..peer("n1")
            },
            heartbeat: 3,
            last_gc_version: 0,
            max_version: 9,
        }],
        delta: vec![
            DeltaOp::Node {
                id: peer("n0"),
                last_gc_version: 0,
                from_version_excluded: 0,
            },
            DeltaOp::KeyValue {
                key: "role".into(),
                value: "follower ".repeat(50),
                version: 1,
                status: KeyStatus::Set,
            },
            DeltaOp::KeyValue {
                key: "lease".into(),
                value: String::new(),
                version: 2,
                status: KeyStatus::DeleteAfterTtl,
            },
            DeltaOp::Node {
                id: peer("n2"),
                last_gc_version: 1,
                from_version_excluded: 0,
            },
            DeltaOp::SetMaxVersion(4),
        ],
    }
}

#[test]
fn what_we_write_we_read_and_chitchat_reads_too() {
    for blocks in [
        Blocks::Raw,
        Blocks::Zstd { block: 16_384 },
        Blocks::Zstd { block: 7 },
    ] {
        let msg = sample();
        let bytes = encode(&msg, blocks);
        assert_eq!(decode(&bytes, 1 << 20), Ok(msg), "{blocks:?}");
        let theirs = ChitchatMessage::deserialize(&mut bytes.as_slice());
        assert!(theirs.is_ok(), "{blocks:?}: {theirs:?}");
    }
    let syn = Message::Syn {
        cluster_id: "rustbalance".into(),
        digest: vec![],
    };
    let bytes = encode(&syn, Blocks::Raw);
    assert_eq!(decode(&bytes, 0), Ok(syn));
    assert!(ChitchatMessage::deserialize(&mut bytes.as_slice()).is_ok());
    assert_eq!(
        decode(&encode(&Message::BadCluster, Blocks::Raw), 0),
        Ok(Message::BadCluster)
    );
}

#[test]
fn every_truncation_fails_cleanly() {
    let bytes = encode(&sample(), Blocks::Zstd { block: 64 });
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n], 1 << 20).is_err(), "prefix of {n} bytes");
    }
}

#[test]
fn inflating_past_the_budget_stops_early() {
    let bytes = encode(&sample(), Blocks::Zstd { block: 16_384 });
    let content = delta_bytes(sample().delta()).len();
    assert!(decode(&bytes, content).is_ok());
    assert_eq!(
        decode(&bytes, content - 1),
        Err(DecodeError::OverCompressed)
    );
}

#[test]
fn junk_is_invalid() {
    assert_eq!(decode(b"", 10), Err(DecodeError::Invalid("truncated")));
    assert_eq!(
        decode(&[0x53, 0xb0, 0, 9], 10),
        Err(DecodeError::Invalid("message type"))
    );
    // An Ack whose only block has an unknown tag.
    assert_eq!(
        decode(&[0x53, 0xb0, 0, 2, 7, 0, 0], 10),
        Err(DecodeError::Invalid("block tag"))
    );
}
