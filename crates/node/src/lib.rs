#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod backend_auth;
pub mod client_auth;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod descriptor_file;
pub mod doctor;
pub mod err;
pub mod join;
pub mod keystore;
pub mod layout;
pub mod logging;
pub mod metrics;
pub mod onionbalance;
pub mod supervise;
pub mod torrc;

/// Old path of [`cluster::node`].
pub use cluster::node as cluster_node;
/// Old path of [`cluster::publisher`].
pub use cluster::publisher;
pub use config::Config;
pub use err::{Error, Result};
/// The old path of the member side of joining (now in [`join`]).
#[doc(hidden)]
pub use join as join_node;
/// The tor watchdog (it lives in `rustbalance_tor`).
pub use rustbalance_tor::supervisor;
