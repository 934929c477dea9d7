//! What a node trusts: the authority's public key and the members it revoked.
//!
//! One [`Trust`] is shared (in an `Arc`) by a node's gossip validator, its membership
//! views and whatever learns of revocations (signed revocations are checked and added by
//! the removal code, which owns their format). A certificate is accepted when the
//! authority signed it, it names the node it is found in, and neither its identity key
//! nor its serial is revoked.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::cert::{AuthorityKey, MemberCert};
use crate::identity::NodePublicKey;

/// How strictly gossip signatures are enforced (`[cluster] gossip_signatures`:
/// `"require"`, `"accept-unsigned"` or `"off"`). A [`Trust`] in mode `Off` behaves as
/// `AcceptUnsigned`; a node in mode `Off` normally runs without one (no
/// [`crate::GossipAuth`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureMode {
    /// Every node must be certified and every value signed (new clusters).
    #[default]
    Require,
    /// Migration: values of nodes that never showed a certificate pass unchecked (as
    /// before signatures existed); a node that showed one is held to it.
    AcceptUnsigned,
    /// Migration, first step: this node neither signs nor checks (gossip as before
    /// signatures existed). It still reads signed nodes' values.
    Off,
}

impl SignatureMode {
    /// The config value: `require`, `accept-unsigned` or `off`.
    pub fn parse(s: &str) -> Option<SignatureMode> {
        match s {
            "require" => Some(SignatureMode::Require),
            "accept-unsigned" => Some(SignatureMode::AcceptUnsigned),
            "off" => Some(SignatureMode::Off),
            _ => None,
        }
    }

    /// The config value [`SignatureMode::parse`] reads back.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMode::Require => "require",
            SignatureMode::AcceptUnsigned => "accept-unsigned",
            SignatureMode::Off => "off",
        }
    }
}

/// Why a certificate is not accepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CertRejection {
    /// Not signed by the authority.
    BadSignature,
    /// It certifies another name than the node it was found in.
    WrongName,
    /// Its identity key or serial was revoked.
    Revoked,
}

#[derive(Debug, Default)]
struct Revoked {
    identities: HashSet<[u8; 32]>,
    serials: HashSet<u64>,
}

/// The authority key, the revocations and the enforcement mode of one node.
#[derive(Debug)]
pub struct Trust {
    authority: AuthorityKey,
    mode: SignatureMode,
    revoked: RwLock<Revoked>,
}

impl Trust {
    /// Trust in `authority`, nothing revoked yet.
    pub fn new(authority: AuthorityKey, mode: SignatureMode) -> Trust {
        Trust {
            authority,
            mode,
            revoked: RwLock::new(Revoked::default()),
        }
    }

    /// The authority's public key.
    pub fn authority(&self) -> &AuthorityKey {
        &self.authority
    }

    /// The enforcement mode.
    pub fn mode(&self) -> SignatureMode {
        self.mode
    }

    /// Revokes every certificate of this identity key (call only for a revocation the
    /// authority signed).
    pub fn revoke_identity(&self, key: &NodePublicKey) {
        if let Ok(mut r) = self.revoked.write() {
            r.identities.insert(key.to_bytes());
        }
    }

    /// Revokes the certificate with this serial (call only for a revocation the
    /// authority signed).
    pub fn revoke_serial(&self, serial: u64) {
        if let Ok(mut r) = self.revoked.write() {
            r.serials.insert(serial);
        }
    }

    /// Whether `cert` was revoked. A poisoned lock counts as revoked (fail closed).
    pub fn is_revoked(&self, cert: &MemberCert) -> bool {
        self.revoked.read().map_or(true, |r| {
            r.identities.contains(&cert.identity().to_bytes()) || r.serials.contains(&cert.serial())
        })
    }

    /// Accepts `cert` for the node named `node`, or says why not.
    pub fn check(&self, cert: &MemberCert, node: &str) -> Result<(), CertRejection> {
        if cert.name() != node {
            return Err(CertRejection::WrongName);
        }
        if !cert.verify(&self.authority) {
            return Err(CertRejection::BadSignature);
        }
        if self.is_revoked(cert) {
            return Err(CertRejection::Revoked);
        }
        Ok(())
    }
}
