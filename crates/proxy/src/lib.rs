#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod conn;
mod err;
mod health;
mod http;
mod intercept;
mod proxy;
pub mod proxy_protocol;
/// The SOCKS5 client (it lives in `rustbalance-tor`).
pub use rustbalance_tor::socks;
mod splice;
mod stats;
mod target;

pub use config::{
    Mode, ProxyConfig, ProxyVersion, Target, DEFAULT_BUFFER_SIZE, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_STREAMS_PER_CIRCUIT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_ONION_CONNECT_TIMEOUT,
};
pub use err::{Error, Result};
pub use health::{Health, HealthHandle};
pub use intercept::{Intercept, Verdict, MAX_INSPECT};
pub use proxy::{ConnectionInfo, Proxy, ProxyHandle, ShutdownReport};
pub use stats::{ProxyStats, StatsSnapshot};
