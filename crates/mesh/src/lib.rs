#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
pub mod backend;
mod config;
pub mod device_process;
mod err;
mod key;
mod mesh;

pub use addr::OverlayPrefix;
pub use backend::{BackendKind, FakeBackend, PeerStatus};
pub use config::{BackendChoice, MeshConfig, MeshPeer, DEFAULT_KEEPALIVE, DEFAULT_MTU};
pub use err::{BackendFailure, Error, Result};
pub use key::{PrivateKey, PublicKey};
pub use mesh::Mesh;
