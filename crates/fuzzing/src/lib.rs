#![doc = include_str!("../README.md")]
//!
//! A function panics only on a finding: a parser that panics, or a property that fails
//! (what decodes must encode back to the same thing; our reading of chitchat's format must
//! agree with chitchat's; a member keeps gossiping whatever it receives).

#![forbid(unsafe_code)]

mod apply;
mod control;
mod files;
mod gossip;
mod hs;
mod join;
mod mesh;
mod node;
mod onionbalance;
mod proxy;
mod restricted;
mod values;

/// The single-threaded tokio runtime every harness with sockets runs on.
fn new_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub use apply::{gossip_apply, raw_record, syn_record};
pub use control::control_reply;
pub use files::state_files;
pub use gossip::{gossip_delta, gossip_key, gossip_open, gossip_secret, GOSSIP_NOW_MS};
pub use hs::{
    consensus, descriptor_key, hs_descriptor, hs_layers, intro_points, key_files, DESCRIPTOR_NOW,
    SEAL_PASSPHRASE,
};
pub use join::{
    join_answer, join_classify, join_params, join_request, join_token,
    strict_prefix_of_a_join_line, JOIN_NOW,
};
pub use mesh::{mesh_peers, MESH_OWN_KEY};
pub use node::{admin_head, config_file, ADMIN_COOKIE};
pub use onionbalance::{onionbalance_config, render as render_onionbalance_config, OB_CONFIG_PATH};
pub use proxy::{http_input, proxy_http, proxy_v1};
pub use restricted::{client_auth, CLIENT_AUTH_ADDED};
pub use values::{gossip_values, values_input};

/// The check of one target: panics on a finding.
pub type Check = fn(&[u8]);

/// Every target, by name (the names of `fuzz/fuzz_targets/` and `fuzz/corpus/`).
pub const TARGETS: &[(&str, Check)] = &[
    ("gossip_open", gossip_open),
    ("gossip_delta", gossip_delta),
    ("gossip_apply", gossip_apply),
    ("gossip_values", gossip_values),
    ("mesh_peers", mesh_peers),
    ("hs_descriptor", hs_descriptor),
    ("hs_layers", hs_layers),
    ("intro_points", intro_points),
    ("consensus", consensus),
    ("key_files", key_files),
    ("proxy_v1", proxy_v1),
    ("proxy_http", proxy_http),
    ("control_reply", control_reply),
    ("join_request", join_request),
    ("join_answer", join_answer),
    ("join_classify", join_classify),
    ("admin_head", admin_head),
    ("config_file", config_file),
    ("state_files", state_files),
    ("client_auth", client_auth),
    ("onionbalance_config", onionbalance_config),
];
