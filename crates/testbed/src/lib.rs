#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod client_cache;
pub mod clients;
pub mod cluster;
pub mod demo;
pub mod dropin;
pub mod faults;
pub mod flood;
pub mod harness;
pub mod instances;
pub mod lab_cluster;
pub mod log_watch;
pub mod monitoring;
pub mod node_config;
pub mod poll;
pub mod pow_log;
pub mod rend_count;
pub mod silent;
pub mod suite;

pub use cluster::publication::{
    at_unix, confirmed, listed_intro_points, published_nodes, publisher, sole_publisher,
    wait_cluster_up, wait_publication, wait_published, Publication, StatusSource,
};
pub use cluster::{
    prepare, prepare_named, prepare_with, start_all, stop_all, with_cluster, ClusterNodeProc,
    NsNode,
};
pub use harness::{with_lab, Started};
pub use poll::poll_until;
