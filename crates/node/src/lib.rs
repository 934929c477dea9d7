#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod cluster_node;
pub mod config;
pub mod daemon;
pub mod err;
pub mod join;
pub mod layout;
pub mod metrics;
pub mod publisher;
pub mod supervisor;
pub mod torrc;

/// The old path of the member side of joining (now in [`join`]), kept so that callers
/// elsewhere keep compiling.
#[doc(hidden)]
pub use join as join_node;

pub use config::Config;
pub use err::{Error, Result};
