#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
mod err;
pub mod fake;
pub mod fake_socks;
pub mod port;
pub mod process;
pub mod socks;
pub mod supervisor;
pub mod torrc;

pub use control::ControlClient;
pub use err::{Error, Result};
pub use process::{ProcessId, TorLaunch, TorProcess};
pub use supervisor::{TorPhase, TorSpec, TorStatus, TorSupervisor};
pub use torrc::Torrc;
