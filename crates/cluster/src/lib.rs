#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod election;
pub mod err;
pub mod keys;

pub use election::{
    Action, Election, ElectionConfig, Input, LeaseAdvert, Member, Millis, NodeId, Role,
};
pub use err::ClusterError;
