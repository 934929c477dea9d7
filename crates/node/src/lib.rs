#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod cluster_node;
pub mod config;
pub mod daemon;
pub mod err;
pub mod join;
pub mod join_node;
pub mod keystore;
pub mod layout;
pub mod metrics;
pub mod publisher;
pub mod supervisor;
pub mod torrc;

pub use config::Config;
pub use err::{Error, Result};
