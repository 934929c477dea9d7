//! The hand-over from the join endpoint to the node: a request that passed every check
//! ([`Admission`]), and what admitting it gave ([`AdmitResult`]).

use super::error::JoinError;
use super::message::JoinGrant;
use super::removal::Removal;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// A request that passed every check, handed to the node to admit.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The request's nonce (gossiped, so that no node takes the request again).
    pub nonce: String,
    /// The new node's name.
    pub name: String,
    /// Its WireGuard public key (base64, validated by the admitter).
    pub wg_public_key: String,
    /// Its WireGuard endpoint.
    pub endpoint: SocketAddr,
    /// Its node identity's public key (text).
    pub identity: String,
    /// The id of the token it spent (hex), gossiped so that no member takes it again.
    pub token_id: String,
    /// When that token expires (Unix seconds): how long its id is kept.
    pub token_expires: u64,
}

/// Why an admission did not happen. [`AdmitError::Removed`] is answered `403 Forbidden` and
/// counted as `removed`; everything else `500` and counted as `failed`. The message is sent
/// to the joining node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// The key was removed from the cluster (`rustbalance node remove`).
    #[error(
        "{}; a removed machine joins again only wiped, with a new WireGuard key",
        .0.describe()
    )]
    Removed(Box<Removal>),
    /// The WireGuard public key does not parse.
    #[error("the WireGuard public key is not valid")]
    InvalidKey,
    /// The identity key does not parse.
    #[error("the node identity key is not valid (use the same RustBalance version on both sides)")]
    InvalidIdentity,
    /// This node holds no master key: it cannot certify.
    #[error(
        "this node does not hold the master key and cannot admit nodes; asking again over \
         another circuit reaches another node"
    )]
    NotEligible,
    /// Certifying failed.
    #[error("cannot certify the new node: {0}")]
    Certify(rustbalance_cluster::ClusterError),
    /// The identity is already a member's, under another name.
    #[error(
        "node identity {identity} already belongs to member {holder}; a new machine needs its \
         own identity (remove the node-identity.key file of a copied data directory)"
    )]
    IdentityOfAnotherNode {
        /// The identity asked for.
        identity: String,
        /// The member holding it.
        holder: String,
    },
    /// The WireGuard key is already a member's, under another name.
    #[error(
        "WireGuard key {key} already belongs to member {holder}; a new machine needs its own \
         key (remove the mesh.key file of a copied node directory and join again)"
    )]
    KeyOfAnotherNode {
        /// The key asked for.
        key: String,
        /// The member holding it.
        holder: String,
    },
    /// The name is already a member's, with another WireGuard key.
    #[error(
        "the name {name} is already taken by a member{}; join again with another \
         name (--name NAME)",
        if *.removed { " that was removed" } else { "" }
    )]
    NameTaken {
        /// The name asked for.
        name: String,
        /// Whether the member holding it was removed (names are not reused).
        removed: bool,
    },
    /// The mesh refused the new peer.
    #[error("cannot add the new node's WireGuard peer: {source}")]
    Mesh {
        /// Why.
        #[source]
        source: rustbalance_mesh::Error,
    },
    /// The node's own bookkeeping failed (mesh unusable, peers file not saved).
    #[error("{0}")]
    Node(#[from] JoinError),
}

/// What an [`Admitter`] returns.
pub type AdmitResult = std::result::Result<JoinGrant, AdmitError>;

/// Admits a new node: adds it to the mesh and returns the grant.
pub type Admitter =
    Arc<dyn Fn(Admission) -> Pin<Box<dyn Future<Output = AdmitResult> + Send>> + Send + Sync>;
