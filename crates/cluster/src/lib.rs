#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod auth;
pub mod cert;
pub mod election;
pub mod elector;
pub mod err;
pub mod health;
pub mod identity;
pub mod keys;
pub mod membership;
pub mod node_bound;
pub mod signed;
pub mod simnet;
pub mod transport;
pub mod trust;
pub mod validator;
pub mod wire;

pub use auth::ClusterSecret;
pub use cert::{Authority, AuthorityKey, CertFields, CertRole, MemberCert, AUTHORITY_INFO};
pub use election::{
    revision_secs, Action, ClockOffsets, Election, ElectionConfig, Input, LeaseAdvert, Member,
    Millis, NodeId, QuorumMode, Role,
};
pub use elector::{Elector, ElectorHandle};
pub use err::ClusterError;
pub use health::GossipHealth;
pub use identity::{NodeIdentity, NodePublicKey};
pub use membership::{GossipAuth, Membership, MembershipConfig, MembershipWatch, NodeView};
pub use simnet::SimNet;
pub use transport::{Network, TransportCounters, UdpNetwork};
pub use trust::{SignatureMode, Trust};
