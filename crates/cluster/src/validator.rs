//! The check every gossip payload passes after its MAC and before chitchat sees it.
//!
//! chitchat 0.11 trusts its peers. Reading its source, a message it decodes without error
//! can still hurt the receiver:
//!
//! * **The max-version assert** (`state.rs`, applying a node delta): after applying the
//!   keys of a node delta, chitchat asserts that the delta's max version is at least the
//!   node's max version. Applying a key raises the node's max version to the key's
//!   version, and the delta's max version is the last key's version unless a
//!   `SetMaxVersion` operation follows the keys. So the assert trips exactly when a
//!   `SetMaxVersion` lowers a node's max version below a key version of the same node
//!   delta (and that key is applied). The panic kills the gossip server task. This needs
//!   no knowledge of the receiver's state: we refuse any node delta whose final max
//!   version is below one of its key versions. chitchat never writes one (it only writes
//!   `SetMaxVersion` for a node delta without keys).
//! * **The monotonic assert** (`state.rs`, applying a delta): `(last gc version, max
//!   version)` of a node must not decrease. A delta that passes the check above cannot
//!   decrease it (an applied delta raises the max version; a reset raises the gc
//!   version), so it needs no guard of its own.
//! * **Deltas for the receiver itself**: chitchat applies a node delta for any node it
//!   knows, its own included. A peer could rewrite this node's keys and push its max
//!   version to `u64::MAX`, after which this node's next `set` overflows (a panic in
//!   debug builds, chitchat's `version > max_version` assert in release). We refuse node
//!   deltas for our node id with our generation or a later one. Older generations are
//!   legitimate: peers still gossip the state of this node's previous run.
//! * **Decompression bombs**: chitchat inflates every block of a delta (up to 64 KiB
//!   each) before it parses anything; thousands of tiny blocks fit in one datagram. We
//!   inflate under a budget of [`MAX_INFLATED`] bytes for the whole delta and stop there.
//!
//! We also refuse, as undecodable, what chitchat itself would refuse when it builds the
//! delta (a key before any node, key versions not increasing, a node twice), so that a
//! payload passes this check only if chitchat decodes it too.
//!
//! * **Too many nodes**: every digest entry a peer sends creates a node in chitchat, and
//!   chitchat computes the room left for a delta as `65,507 − 1 − size of its own
//!   digest`, which underflows once that digest passes 64 KiB. This check needs the
//!   receiver's state: it is [`crate::node_bound`]'s, run last on a message that passed
//!   everything else.
//!
//! With signed gossip ([`Validator::with_signatures`]), [`Validator::screen`] then checks
//! every node delta's certificate and value signatures ([`signatures`]) and removes what
//! fails.

mod signatures;

use std::collections::HashSet;
use std::sync::Arc;

pub use signatures::{Dropped, SignatureCheck};

use crate::node_bound::{Exceeded, NodeBound};
use crate::wire::{self, Blocks, DecodeError, DeltaOp, Message, PeerId};

/// Budget for a delta's inflated content. chitchat keeps a delta's *compressed* size
/// under one datagram; its inflated size depends on how well the gossiped values
/// compress. RustBalance's state per node is a few kilobytes; 1 MiB leaves a wide margin
/// and caps what one datagram can make a node allocate.
pub const MAX_INFLATED: usize = 1024 * 1024;

/// Why a payload was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Not a message chitchat would accept.
    Undecodable,
    /// The delta inflates past [`MAX_INFLATED`].
    OverCompressed,
    /// A node delta whose max version is below one of its key versions (chitchat's
    /// max-version assert).
    MaxVersionBelowKeys,
    /// A node delta for this node (this generation or a later one).
    OwnNode,
    /// A digest naming more or longer new nodes than [`crate::node_bound`] lets in.
    NodeBound(Exceeded),
}

/// Checks payloads for one node.
#[derive(Clone, Debug)]
pub struct Validator {
    nodes: Arc<NodeBound>,
    node_id: String,
    generation: u64,
    signatures: Option<Arc<SignatureCheck>>,
}

/// What [`Validator::screen`] lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Screened {
    /// The payload to give chitchat instead of the received one (something was removed);
    /// `None`: the received payload passes unchanged.
    pub payload: Option<Vec<u8>>,
    /// What the signature check removed.
    pub dropped: Dropped,
}

impl Validator {
    /// A validator for the node `node_id` running as `generation`.
    pub fn new(node_id: impl Into<String>, generation: u64) -> Validator {
        Validator {
            nodes: Arc::default(),
            node_id: node_id.into(),
            generation,
            signatures: None,
        }
    }

    /// This validator, also enforcing signed gossip with `check`.
    pub fn with_signatures(mut self, check: Arc<SignatureCheck>) -> Validator {
        self.signatures = Some(check);
        self
    }

    /// The bound on the nodes chitchat knows, shared by every clone of this validator.
    pub fn node_bound(&self) -> Arc<NodeBound> {
        self.nodes.clone()
    }

    /// Decodes `payload` and checks it; `Ok` means chitchat may have it. Not a pure
    /// function: a passing digest's new nodes count toward the [`NodeBound`].
    pub fn check(&self, payload: &[u8]) -> Result<(), Violation> {
        self.check_delta(&decode(payload)?)
    }

    /// [`Validator::check`], then the signature check (if enabled): `Err` drops the
    /// whole payload, `Ok` says what to hand chitchat.
    pub fn screen(&self, payload: &[u8]) -> Result<Screened, Violation> {
        let msg = decode(payload)?;
        self.check_delta(&msg)?;
        let Some(sig) = &self.signatures else {
            return Ok(Screened::default());
        };
        let (delta, dropped) = sig.screen(msg.delta());
        let payload = delta.map(|delta| {
            let msg = match msg {
                Message::SynAck { digest, .. } => Message::SynAck { digest, delta },
                Message::Ack { .. } => Message::Ack { delta },
                other => other,
            };
            wire::encode(&msg, Blocks::Raw)
        });
        Ok(Screened { payload, dropped })
    }

    fn check_delta(&self, msg: &Message) -> Result<(), Violation> {
        let mut seen: HashSet<&PeerId> = HashSet::new();
        let mut node: Option<NodeCheck> = None;
        for op in msg.delta() {
            match op {
                DeltaOp::Node { id, .. } => {
                    if let Some(done) = node.take() {
                        done.finish()?;
                    }
                    if !seen.insert(id) {
                        return Err(Violation::Undecodable);
                    }
                    if id.node_id == self.node_id && id.generation >= self.generation {
                        return Err(Violation::OwnNode);
                    }
                    node = Some(NodeCheck::default());
                }
                DeltaOp::KeyValue { version, .. } => {
                    let n = node.as_mut().ok_or(Violation::Undecodable)?;
                    if *version <= n.max_version {
                        return Err(Violation::Undecodable);
                    }
                    n.max_version = *version;
                    n.top_key = n.top_key.max(*version);
                }
                DeltaOp::SetMaxVersion(v) => {
                    node.as_mut().ok_or(Violation::Undecodable)?.max_version = *v;
                }
            }
        }
        node.map_or(Ok(()), NodeCheck::finish)?;
        self.nodes.admit(msg.digest()).map_err(Violation::NodeBound)
    }
}

fn decode(payload: &[u8]) -> Result<Message, Violation> {
    wire::decode(payload, MAX_INFLATED).map_err(|e| match e {
        DecodeError::OverCompressed => Violation::OverCompressed,
        DecodeError::Invalid(_) => Violation::Undecodable,
    })
}

/// One node delta, as chitchat builds it while reading.
#[derive(Default)]
struct NodeCheck {
    /// chitchat's running max version: the last key's version or `SetMaxVersion`.
    max_version: u64,
    /// The highest key version (a `SetMaxVersion` between keys lets a later key be lower).
    top_key: u64,
}

impl NodeCheck {
    fn finish(self) -> Result<(), Violation> {
        if self.max_version < self.top_key {
            Err(Violation::MaxVersionBelowKeys)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
