use zeroize::Zeroizing;

use super::*;
use crate::cert::{Authority, CertFields, CertRole};
use crate::identity::NodeIdentity;

struct Fixture {
    authority: Authority,
    id: NodeIdentity,
    peer: PeerId,
}

fn fixture() -> Fixture {
    Fixture {
        authority: Authority::from_seed(&Zeroizing::new([1; 32])),
        id: NodeIdentity::from_seed(&[2; 32]),
        peer: PeerId {
            node_id: "a".into(),
            generation: 7,
            addr: "10.0.0.1:1".parse().unwrap(),
        },
    }
}

impl Fixture {
    fn cert(&self) -> MemberCert {
        self.authority
            .certify(CertFields {
                name: "a".into(),
                role: CertRole::Worker,
                identity: self.id.public(),
                wireguard: None,
                onion: None,
                issued: 1,
                serial: 5,
            })
            .unwrap()
    }

    fn check(&self, mode: SignatureMode) -> SignatureCheck {
        SignatureCheck::new(Arc::new(Trust::new(self.authority.public(), mode)))
    }

    fn node(&self) -> DeltaOp {
        DeltaOp::Node {
            id: self.peer.clone(),
            last_gc_version: 0,
            from_version_excluded: 0,
        }
    }

    fn signed(&self, key: &str, value: &str, version: u64) -> DeltaOp {
        let ctx = ValueCtx {
            node: &self.peer.node_id,
            generation: self.peer.generation,
            addr: self.peer.addr,
            key,
            version,
        };
        raw(
            key,
            &signed::seal(&self.id, &ctx, Opened::Set(value)),
            version,
        )
    }

    fn cert_op(&self, version: u64) -> DeltaOp {
        self.signed(keys::CERT, &self.cert().encode(), version)
    }
}

fn raw(key: &str, value: &str, version: u64) -> DeltaOp {
    DeltaOp::KeyValue {
        key: key.into(),
        value: value.into(),
        version,
        status: KeyStatus::Set,
    }
}

#[test]
fn a_certified_node_with_signed_values_passes_unchanged() {
    let f = fixture();
    let check = f.check(SignatureMode::Require);
    let delta = vec![f.node(), f.cert_op(1), f.signed("k", "v", 2)];
    assert_eq!(check.screen(&delta), (None, Dropped::default()));
    // The certificate is remembered: later deltas need not carry it.
    let later = vec![f.node(), f.signed("k", "w", 3)];
    assert_eq!(check.screen(&later), (None, Dropped::default()));
}

#[test]
fn bad_values_are_removed_and_the_rest_kept() {
    let f = fixture();
    let check = f.check(SignatureMode::Require);
    let moved = match f.signed("k", "v", 2) {
        DeltaOp::KeyValue { value, .. } => raw("k", &value, 9),
        _ => unreachable!(),
    };
    let tomb = DeltaOp::KeyValue {
        key: "t".into(),
        value: String::new(),
        version: 11,
        status: KeyStatus::Delete,
    };
    let delta = vec![
        f.node(),
        f.cert_op(1),
        f.signed("k", "v", 2),
        raw("x", "plain", 3),
        moved,
        f.signed("k2", "v", 10),
        tomb,
        DeltaOp::SetMaxVersion(99),
    ];
    let (out, dropped) = check.screen(&delta);
    assert_eq!(
        out.unwrap(),
        vec![
            f.node(),
            f.cert_op(1),
            f.signed("k", "v", 2),
            f.signed("k2", "v", 10)
        ]
    );
    assert_eq!(
        (dropped.unsigned, dropped.bad_signature),
        (3, 1),
        "{dropped:?}"
    );
}

#[test]
fn uncertified_forged_and_reset_deltas_are_dropped_whole() {
    let f = fixture();
    let check = f.check(SignatureMode::Require);
    let other = PeerId {
        node_id: "b".into(),
        ..f.peer.clone()
    };
    let b_node = DeltaOp::Node {
        id: other,
        last_gc_version: 0,
        from_version_excluded: 0,
    };
    // No certificate for b; a's delta passes alongside.
    let delta = vec![b_node.clone(), raw("k", "v", 1), f.node(), f.cert_op(1)];
    let (out, dropped) = check.screen(&delta);
    assert_eq!(out.unwrap(), vec![f.node(), f.cert_op(1)]);
    assert_eq!(dropped.no_cert, 1);
    // a's certificate inside b's delta names another node.
    let (out, dropped) = check.screen(&[b_node, f.cert_op(1)]);
    assert_eq!((out.unwrap(), dropped.bad_cert), (vec![], 1));
    // A GC reset of a certified node.
    let reset = DeltaOp::Node {
        id: f.peer.clone(),
        last_gc_version: 50,
        from_version_excluded: 0,
    };
    let (out, dropped) = check.screen(&[reset]);
    assert_eq!((out.unwrap(), dropped.unsigned), (vec![], 1));
}

#[test]
fn revocation_applies_to_remembered_certificates() {
    let f = fixture();
    let check = f.check(SignatureMode::Require);
    assert_eq!(check.screen(&[f.node(), f.cert_op(1)]).0, None);
    check.trust().revoke_serial(5);
    let (out, dropped) = check.screen(&[f.node(), f.signed("k", "v", 2)]);
    assert_eq!((out.unwrap(), dropped.revoked), (vec![], 1));
    let (_, dropped) = check.screen(&[f.node(), f.cert_op(3)]);
    assert_eq!(dropped.revoked, 1);
}

#[test]
fn accept_unsigned_passes_only_nodes_never_certified() {
    let f = fixture();
    let check = f.check(SignatureMode::AcceptUnsigned);
    let legacy = vec![f.node(), raw("k", "v", 1)];
    assert_eq!(check.screen(&legacy), (None, Dropped::default()));
    // Envelopes without a known certificate are not legacy values.
    let (out, dropped) = check.screen(&[f.node(), f.signed("k", "v", 2)]);
    assert_eq!((out.unwrap(), dropped.no_cert), (vec![], 1));
    // Once a showed a certificate (any generation), unsigned deltas for it are refused.
    assert_eq!(check.screen(&[f.node(), f.cert_op(1)]).0, None);
    let newer = DeltaOp::Node {
        id: PeerId {
            generation: 8,
            ..f.peer.clone()
        },
        last_gc_version: 0,
        from_version_excluded: 0,
    };
    let (out, dropped) = check.screen(&[newer, raw("k", "v", 1)]);
    assert_eq!((out.unwrap(), dropped.no_cert), (vec![], 1));
}
