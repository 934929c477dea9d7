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
    Removed(Removal),
    /// The WireGuard public key does not parse.
    #[error("the WireGuard public key is not valid")]
    InvalidKey,
    /// The key is the admitting node's own, under another name.
    #[error("that WireGuard key belongs to another node")]
    KeyOfAnotherNode,
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
