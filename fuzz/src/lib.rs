//! The checks behind every fuzz target, one function per target.
//!
//! `fuzz_targets/<name>.rs` hands libFuzzer's input to the function of the same name;
//! `tests/corpus.rs` runs the seed corpus (`corpus/<name>/`) through the same functions on
//! the stable toolchain, and writes that corpus (`cargo test -- --ignored write_seeds`).
//! A function panics only on a finding: a parser that panics, or a property that fails
//! (what decodes must encode back to the same thing; our reading of chitchat's format must
//! agree with chitchat's).

#![forbid(unsafe_code)]

mod control;
mod gossip;
mod hs;
mod proxy;

pub use control::control_reply;
pub use gossip::{gossip_delta, gossip_key, gossip_open, GOSSIP_NOW_MS};
pub use hs::{descriptor_key, hs_descriptor, intro_points, DESCRIPTOR_NOW};
pub use proxy::{http_input, proxy_http, proxy_v1};

/// The check of one target: panics on a finding.
pub type Check = fn(&[u8]);

/// Every target, by name (the names of `fuzz_targets/` and `corpus/`).
pub const TARGETS: &[(&str, Check)] = &[
    ("gossip_open", gossip_open),
    ("gossip_delta", gossip_delta),
    ("hs_descriptor", hs_descriptor),
    ("intro_points", intro_points),
    ("proxy_v1", proxy_v1),
    ("proxy_http", proxy_http),
    ("control_reply", control_reply),
];
