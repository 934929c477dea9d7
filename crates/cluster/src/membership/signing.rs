//! Signed gossip inside the membership: writing this node's values as signed envelopes,
//! reading values without their envelopes, and which nodes a view may show.

use std::collections::BTreeMap;
use std::sync::Arc;

use chitchat::NodeState;

use crate::cert::MemberCert;
use crate::err::ClusterError;
use crate::identity::NodeIdentity;
use crate::keys;
use crate::signed::{self, Opened, ValueCtx};
use crate::trust::{SignatureMode, Trust};

/// What a node needs to gossip signed values and check everyone else's.
#[derive(Clone, Debug)]
pub struct GossipAuth {
    /// This node's identity (secret).
    pub identity: Arc<NodeIdentity>,
    /// This node's certificate (its name and identity key must be this node's).
    pub cert: MemberCert,
    /// The authority key, revocations and mode, shared with whoever learns revocations.
    pub trust: Arc<Trust>,
}

impl GossipAuth {
    /// Checks that the certificate is valid for the node `name` and this identity.
    pub(crate) fn check(&self, name: &str) -> Result<(), ClusterError> {
        self.fits(&self.cert, name)
    }

    /// Checks that `cert` is valid for the node `name` and this identity.
    pub(crate) fn fits(&self, cert: &MemberCert, name: &str) -> Result<(), ClusterError> {
        let problem = if cert.identity() != self.identity.public() {
            "it certifies another identity key than this node's".to_string()
        } else {
            match self.trust.check(cert, name) {
                Ok(()) => return Ok(()),
                Err(r) => format!(
                    "{r:?} (certificate for {:?}, this node is {name:?}); have an eligible \
                     node certify this node again",
                    cert.name()
                ),
            }
        };
        Err(ClusterError::CertMismatch { problem })
    }
}

/// Sets `key` of this node's state to `opened`, signed for the version chitchat gives it.
/// Must run inside chitchat's lock (`with_chitchat`), so that the version is exact.
pub(crate) fn set_signed(
    state: &mut NodeState,
    identity: &NodeIdentity,
    generation: u64,
    key: &str,
    opened: Opened<'_>,
) {
    let current = state
        .get(key)
        .and_then(|env| signed::peek(env).ok())
        .map(|(o, _)| o);
    match (current, opened) {
        // Unchanged, or deleting what is not there.
        (Some(c), o) if c == o => return,
        (None, Opened::Deleted) => return,
        _ => {}
    }
    // chitchat gives a changed value the version max_version + 1 (`NodeState::set`).
    let version = state.max_version() + 1;
    let node_id = state.chitchat_id().node_id.clone();
    let ctx = ValueCtx {
        node: &node_id,
        generation,
        addr: state.chitchat_id().gossip_advertise_addr,
        key,
        version,
    };
    state.set(key, signed::seal(identity, &ctx, opened));
    debug_assert_eq!(
        state.get_versioned(key).map(|v| v.version),
        Some(version),
        "chitchat assigned another version than the one signed"
    );
}

/// A node's values as a view shows them: without envelopes (and without deleted keys) for
/// a signing node (one with a certificate), as they are for an unsigned one.
pub(crate) fn plain_state(state: &NodeState) -> BTreeMap<String, String> {
    let signing = state.get(keys::CERT).is_some();
    state
        .key_values()
        .filter_map(|(k, v)| {
            if !signing {
                return Some((k.to_owned(), v.to_owned()));
            }
            match signed::peek(v) {
                Ok((Opened::Set(p), _)) => Some((k.to_owned(), p.to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// Whether a view may show a node with this certificate (`None`: it showed none).
pub(crate) fn admitted(trust: Option<&Trust>, cert: Option<&MemberCert>) -> bool {
    match (trust, cert) {
        (None, _) => true,
        (Some(t), Some(c)) => !t.is_revoked(c),
        (Some(t), None) => t.mode() != SignatureMode::Require,
    }
}
