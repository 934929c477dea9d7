#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod descriptor;
pub mod err;
#[cfg(any(test, feature = "testing"))]
pub mod fixture;
pub mod keys;
pub mod publish;
pub mod ring;
pub mod sealed;
pub mod time;

pub use address::OnionAddress;
pub use err::{Error, Result};
pub use keys::IdentityKey;
pub use time::TimeParams;
