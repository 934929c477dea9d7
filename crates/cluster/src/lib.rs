#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod auth;
pub mod election;
pub mod elector;
pub mod err;
pub mod health;
pub mod keys;
pub mod membership;
pub mod simnet;
pub mod transport;
pub mod validator;
pub mod wire;

pub use auth::ClusterSecret;
pub use election::{
    Action, Election, ElectionConfig, Input, LeaseAdvert, Member, Millis, NodeId, Role,
};
pub use elector::Elector;
pub use err::ClusterError;
pub use health::GossipHealth;
pub use membership::{Membership, MembershipConfig, MembershipWatch, NodeView};
pub use simnet::SimNet;
pub use transport::{Network, TransportCounters, UdpNetwork};
