//! The signature check of node deltas: a node's state may only be written by that node.
//!
//! For each node delta of a message, in this order:
//!
//! 1. **The node's certificate.** If the delta carries the node's `cert` key, it must be a
//!    signed envelope whose content parses ([`crate::cert::parse`]), is signed by the
//!    authority, names this node, is not revoked ([`Trust::check`]), and whose envelope
//!    signature verifies with the certificate's own identity key at this node, generation,
//!    key and version. A certificate that passes is remembered for `(node, generation)`.
//!    Otherwise the node's certificate is the one remembered from an earlier delta (still
//!    checked against revocations). A node delta without a usable certificate is dropped
//!    whole (*no cert*, *bad cert* or *revoked*), except in
//!    [`SignatureMode::AcceptUnsigned`] for a node that never showed a certificate under
//!    any generation and whose values are not envelopes: such a node is a not yet
//!    upgraded one, and its delta passes as before.
//! 2. **Each key-value** of a certified node must be a set (not a chitchat tombstone) whose
//!    envelope ([`crate::signed`]) verifies with the node's identity at this node,
//!    generation, key and version; else it is removed from the delta (*unsigned*,
//!    *bad signature*). A `SetMaxVersion` or a non-zero last-GC version is refused too:
//!    signing nodes never delete with chitchat, so their max version is always their
//!    highest key version and they never garbage-collect, while either field lets a peer
//!    freeze or reset another node's state without any signed value.
//!
//! What is removed is removed from the message, which is then encoded again for chitchat;
//! the rest of the message (other nodes, the digest) still applies, so that one bad value
//! held by an honest relay (a certificate revoked here but not yet there) does not cut
//! this node off from that relay.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::cert::{self, MemberCert};
use crate::keys;
use crate::signed::{self, EnvelopeFault, Opened, ValueCtx};
use crate::trust::{CertRejection, SignatureMode, Trust};
use crate::wire::{DeltaOp, KeyStatus, PeerId};

/// Generations remembered per node (a node restarting makes a new one).
const GENERATIONS_KEPT: usize = 4;
/// Nodes remembered. Entries only come from certificates the authority signed, so this
/// bounds memory against a flood of restarts, not against forgeries.
const NODES_KEPT: usize = 4096;

/// What the signature check removed from one message, by reason.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Node deltas without a certificate (or values of a certified node without one).
    pub no_cert: u64,
    /// Node deltas whose certificate is forged, for another name, or unreadable.
    pub bad_cert: u64,
    /// Node deltas whose certificate is revoked.
    pub revoked: u64,
    /// Values that are not signed envelopes (tombstones, `SetMaxVersion`, GC resets).
    pub unsigned: u64,
    /// Values whose signature does not verify (forged, moved, or replayed at another
    /// version).
    pub bad_signature: u64,
}

impl Dropped {
    /// Whether anything was removed.
    pub fn any(&self) -> bool {
        *self != Dropped::default()
    }
}

/// The signature check of one node (shared by its transport and tests).
#[derive(Debug)]
pub struct SignatureCheck {
    trust: Arc<Trust>,
    certs: Mutex<HashMap<String, BTreeMap<u64, MemberCert>>>,
}

/// What to do with one node delta.
enum Verdict {
    /// Keep it unchanged.
    Keep,
    /// Drop it whole.
    Drop,
    /// Keep the node and the operations marked `true`.
    Filter(Vec<bool>),
}

impl SignatureCheck {
    /// A check against `trust`.
    pub fn new(trust: Arc<Trust>) -> SignatureCheck {
        SignatureCheck {
            trust,
            certs: Mutex::new(HashMap::new()),
        }
    }

    /// The trust this check uses.
    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }

    /// Returns the delta without what fails (`None`: nothing failed) and what was removed.
    pub fn screen(&self, delta: &[DeltaOp]) -> (Option<Vec<DeltaOp>>, Dropped) {
        let mut dropped = Dropped::default();
        let mut out = Vec::with_capacity(delta.len());
        let mut changed = false;
        let mut i = 0;
        while i < delta.len() {
            let end = delta[i + 1..]
                .iter()
                .position(|op| matches!(op, DeltaOp::Node { .. }))
                .map_or(delta.len(), |p| i + 1 + p);
            let group = &delta[i..end];
            match self.node(group, &mut dropped) {
                Verdict::Keep => out.extend_from_slice(group),
                Verdict::Drop => changed = true,
                Verdict::Filter(keep) => {
                    changed = true;
                    if keep.iter().any(|k| *k) {
                        out.push(group[0].clone());
                        let kept = group[1..].iter().zip(&keep).filter(|(_, k)| **k);
                        out.extend(kept.map(|(op, _)| op.clone()));
                    }
                }
            }
            i = end;
        }
        (changed.then_some(out), dropped)
    }

    /// Checks one node delta: `group[0]` is the node, the rest its operations. (A delta
    /// passed the structural check before, so `group[0]` is a node.)
    fn node(&self, group: &[DeltaOp], dropped: &mut Dropped) -> Verdict {
        let Some(DeltaOp::Node {
            id,
            last_gc_version,
            ..
        }) = group.first()
        else {
            return Verdict::Keep;
        };
        let ops = &group[1..];
        let cert = match self.cert_of(id, ops) {
            Ok(Some(cert)) => cert,
            Ok(None) => return self.uncertified(id, ops, dropped),
            Err(reason) => {
                match reason {
                    CertRejection::Revoked => dropped.revoked += 1,
                    CertRejection::BadSignature | CertRejection::WrongName => dropped.bad_cert += 1,
                }
                return Verdict::Drop;
            }
        };
        if *last_gc_version != 0 {
            dropped.unsigned += 1;
            return Verdict::Drop;
        }
        let keep: Vec<bool> = ops
            .iter()
            .map(|op| match check_value(&cert, id, op) {
                Ok(()) => true,
                Err(EnvelopeFault::Unsigned) => {
                    dropped.unsigned += 1;
                    false
                }
                Err(EnvelopeFault::BadSignature) => {
                    dropped.bad_signature += 1;
                    false
                }
            })
            .collect();
        if keep.iter().all(|k| *k) {
            Verdict::Keep
        } else {
            Verdict::Filter(keep)
        }
    }

    /// A node delta of a node with no certificate known here.
    fn uncertified(&self, id: &PeerId, ops: &[DeltaOp], dropped: &mut Dropped) -> Verdict {
        let legacy = self.trust.mode() != SignatureMode::Require
            && !self.known_name(&id.node_id)
            && !ops.iter().any(
                |op| matches!(op, DeltaOp::KeyValue { value, .. } if signed::peek(value).is_ok()),
            );
        if legacy {
            Verdict::Keep
        } else {
            dropped.no_cert += 1;
            Verdict::Drop
        }
    }

    /// The node's certificate: the one in `ops` (checked and remembered), else the one
    /// remembered for this generation; `Ok(None)` when there is none.
    fn cert_of(&self, id: &PeerId, ops: &[DeltaOp]) -> Result<Option<MemberCert>, CertRejection> {
        let carried = ops.iter().find_map(|op| match op {
            DeltaOp::KeyValue {
                key,
                value,
                version,
                status: KeyStatus::Set,
            } if key == keys::CERT => Some((value, *version)),
            _ => None,
        });
        if let Some((envelope, version)) = carried {
            let cert = self.carried_cert(id, envelope, version)?;
            self.remember(id, &cert);
            return Ok(Some(cert));
        }
        let known = self.certs.lock().ok().and_then(|c| {
            c.get(&id.node_id)
                .and_then(|g| g.get(&id.generation))
                .cloned()
        });
        match known {
            Some(cert) if self.trust.is_revoked(&cert) => Err(CertRejection::Revoked),
            other => Ok(other),
        }
    }

    /// Checks the certificate carried in a node delta.
    fn carried_cert(
        &self,
        id: &PeerId,
        envelope: &str,
        version: u64,
    ) -> Result<MemberCert, CertRejection> {
        let Ok((Opened::Set(text), _)) = signed::peek(envelope) else {
            return Err(CertRejection::BadSignature);
        };
        let cert = cert::parse(text.as_bytes()).map_err(|_| CertRejection::BadSignature)?;
        self.trust.check(&cert, &id.node_id)?;
        let ctx = ValueCtx {
            node: &id.node_id,
            generation: id.generation,
            addr: id.addr,
            key: keys::CERT,
            version,
        };
        signed::open(&cert.identity(), &ctx, envelope).map_err(|_| CertRejection::BadSignature)?;
        Ok(cert)
    }

    fn remember(&self, id: &PeerId, cert: &MemberCert) {
        let Ok(mut certs) = self.certs.lock() else {
            return;
        };
        if certs.len() >= NODES_KEPT && !certs.contains_key(&id.node_id) {
            return;
        }
        let gens = certs.entry(id.node_id.clone()).or_default();
        gens.insert(id.generation, cert.clone());
        while gens.len() > GENERATIONS_KEPT {
            gens.pop_first();
        }
    }

    fn known_name(&self, name: &str) -> bool {
        self.certs.lock().map_or(true, |c| c.contains_key(name))
    }
}

/// Checks one operation of a certified node.
fn check_value(cert: &MemberCert, id: &PeerId, op: &DeltaOp) -> Result<(), EnvelopeFault> {
    let DeltaOp::KeyValue {
        key,
        value,
        version,
        status,
    } = op
    else {
        return Err(EnvelopeFault::Unsigned);
    };
    if *status != KeyStatus::Set {
        return Err(EnvelopeFault::Unsigned);
    }
    let ctx = ValueCtx {
        node: &id.node_id,
        generation: id.generation,
        addr: id.addr,
        key,
        version: *version,
    };
    signed::open(&cert.identity(), &ctx, value).map(|_| ())
}

#[cfg(test)]
mod tests;
