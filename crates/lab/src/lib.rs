#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bandwidth;
mod err;
mod http;
mod keys;
mod lab;
pub mod net;
pub mod netns;
mod node;
pub mod onionbalance;
mod state;
mod target;

pub use err::{Error, Result};
pub use http::{http_get_via, HttpResponse};
pub use lab::{
    Lab, LabOptions, LabProcess, LabStatus, LabTor, Phase, ProcessStatus, Progress, StartReport,
    StopOnDrop, StopReport,
};
pub use net::{AddrBlock, Placement};
pub use netns::NodeHost;
pub use rustbalance_tor::Torrc;
pub use state::{Authority, NodeSpec, Role};
pub use target::DemoTarget;
