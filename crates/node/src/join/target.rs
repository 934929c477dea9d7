//! Which member `node remove NAME|KEY` is about: its name, the WireGuard key its
//! certificate binds, its identity and certificate serial, taken from gossip.

use super::error::JoinError;
use super::peers::{admitted_lines, mesh_key};
use rustbalance_cluster::{NodePublicKey, NodeView};
use rustbalance_mesh::PublicKey;

/// The member a removal is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Its name (`-` when only its key is known).
    pub(crate) name: String,
    /// The WireGuard key its certificate binds (else the one it gossips).
    pub(crate) key: PublicKey,
    /// Its identity, when certified.
    pub(crate) identity: Option<NodePublicKey>,
    /// Its certificate's serial (0: none).
    pub(crate) serial: u64,
}

/// `who` (a name or a WireGuard key) among the gossip `members`. A certified member is
/// taken from its certificate: its identity, serial and the WireGuard key the certificate
/// binds, whatever key it now claims in its `mesh` value. A key is looked up in the
/// certificates and the claims; a name in the members, then in the nodes they admitted.
pub(crate) fn resolve_member(
    members: &[NodeView],
    who: &str,
) -> std::result::Result<Target, JoinError> {
    let of_cert = |m: &NodeView| {
        let c = m.cert()?;
        let key = PublicKey::from_bytes(c.fields().wireguard?);
        Some(Target {
            name: m.node_id.clone(),
            key,
            identity: Some(c.identity()),
            serial: c.serial(),
        })
    };
    let of_claim = |m: &NodeView| {
        Some(Target {
            name: m.node_id.clone(),
            key: mesh_key(m)?.parse().ok()?,
            identity: None,
            serial: 0,
        })
    };
    let as_key = who.parse::<PublicKey>().ok();
    let found = members.iter().find_map(|m| {
        let t = of_cert(m).or_else(|| of_claim(m))?;
        let claimed = mesh_key(m).and_then(|k| k.parse::<PublicKey>().ok());
        let hit = m.node_id == who || as_key.is_some_and(|k| k == t.key || Some(k) == claimed);
        hit.then_some(t)
    });
    if let Some(t) = found {
        return Ok(t);
    }
    if let Some(key) = as_key {
        return Ok(Target {
            name: "-".into(),
            key,
            identity: None,
            serial: 0,
        });
    }
    for m in members {
        for line in admitted_lines(m) {
            if line.name == who {
                if let Ok(key) = line.key.parse() {
                    return Ok(Target {
                        name: who.to_string(),
                        key,
                        identity: line.cert.as_ref().map(|c| c.identity()),
                        serial: line.cert.as_ref().map_or(0, |c| c.serial()),
                    });
                }
            }
        }
    }
    Err(JoinError::UnknownMember {
        who: who.to_string(),
        members: members.iter().map(|m| m.node_id.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::peers::tests::key;
    use rustbalance_cluster::{keys, Authority, CertFields, CertRole, NodeIdentity};

    /// Issue 13 attack 5: removal was keyed on the WireGuard key a node claims in gossip; a
    /// hostile node that changed its claim kept its real (certified) peer on every member.
    #[test]
    fn a_changed_claim_does_not_move_the_removal_off_the_certified_key() {
        let authority = Authority::from_seed(&zeroize::Zeroizing::new([3u8; 32]));
        let (certified, claimed): (PublicKey, PublicKey) =
            (key().parse().unwrap(), key().parse().unwrap());
        let identity = NodeIdentity::generate().public();
        let cert = authority
            .certify(CertFields {
                name: "node2".into(),
                role: CertRole::Worker,
                identity,
                wireguard: Some(*certified.as_bytes()),
                onion: None,
                issued: 1,
                serial: 42,
            })
            .unwrap();
        let m = NodeView {
            node_id: "node2".into(),
            generation: 1,
            addr: "10.0.0.2:9663".parse().unwrap(),
            live: true,
            heartbeat: 0,
            state: [
                (keys::CERT.to_string(), cert.encode()),
                (keys::MESH.to_string(), format!("{claimed} 10.0.0.2:51820")),
            ]
            .into_iter()
            .collect(),
        };
        let members = vec![m];
        let want = Target {
            name: "node2".into(),
            key: certified,
            identity: Some(identity),
            serial: 42,
        };
        for who in [
            "node2".to_string(),
            claimed.to_string(),
            certified.to_string(),
        ] {
            assert_eq!(resolve_member(&members, &who).unwrap(), want, "{who}");
        }
        let e = resolve_member(&members, "node9").unwrap_err().to_string();
        assert!(e.contains("node9") && e.contains("node2"), "{e}");
    }
}
