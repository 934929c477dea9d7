//! `rustbalance lab ...`: the command line of the private Tor lab, the demo and the
//! lab clusters. It is a subcommand of the `rustbalance` binary (the lab starts that same
//! binary for its nodes and demo targets) but lives here, with the rest of what exists
//! only to run labs, demos and benchmarks.

use clap::{Args, Subcommand};
use std::path::PathBuf;

mod run;
pub use run::run;

/// Where a lab lives.
#[derive(Args, Debug, Clone)]
pub struct LabDir {
    /// Lab directory (default: $TMPDIR/rustbalance-lab).
    #[arg(long, value_name = "DIR", env = "RUSTBALANCE_LAB_DIR")]
    pub dir: Option<PathBuf>,
}

/// `rustbalance lab` subcommands.
#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Generate keys and torrcs, start 3 directory authorities, the relays
    /// and a client, and return once the lab is usable (consensus with
    /// HSDir, Guard and Exit flags; client bootstrapped).
    Up {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// Number of relays (all HSDirs; half guards, half exits).
        #[arg(long, default_value_t = 6)]
        relays: usize,
        /// Run the Tor network in its own network namespace behind a bridge,
        /// so that cluster nodes get namespaces of their own (needed for
        /// `lab cut` / `lab heal`; root only).
        #[arg(long)]
        netns: bool,
    },
    /// Show every process of the lab: name, role, pid, alive, addresses.
    Status {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop every process of the lab (by pid file) and check nothing listens.
    Down {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
    },
    /// One HTTP GET through the lab client's SOCKS port (fresh circuit);
    /// prints the body.
    Curl {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// The URL, e.g. http://ADDRESS.onion/
        url: String,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Start an N-node RustBalance cluster on the running lab: one master
    /// address, each node with its own tor and its own demo target (which
    /// answers "served by NODE"). Returns once the first merged descriptor
    /// is published; the nodes keep running until `lab down`.
    Cluster {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
    /// SIGKILL a cluster node and its tor (a machine dying).
    Kill {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// The node's name (node1, node2, ...).
        node: String,
    },
    /// Cut a cluster node's network off (namespaced labs: `lab up --netns`).
    Cut {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// The node's name.
        node: String,
    },
    /// Reconnect a node cut off with `lab cut`.
    Heal {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// The node's name.
        node: String,
    },
    /// (internal) A demo HTTP target answering every request with BODY.
    #[command(hide = true)]
    Target {
        /// Address to listen on (loopback).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Response body.
        #[arg(long)]
        body: String,
    },
    /// Print a complete node config for the lab network (use it with
    /// `rustbalance run --config`).
    NodeConfig {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// Node name.
        #[arg(long)]
        name: String,
        /// The target, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        target: String,
        /// Master key file (default: a new key under the lab dir).
        #[arg(long, value_name = "FILE")]
        master_key: Option<PathBuf>,
        /// Admin endpoint.
        #[arg(long, default_value = "127.0.0.1:0")]
        admin: std::net::SocketAddr,
    },
    /// Flood an onion address with introductions from extra lab client tors
    /// (every request on a fresh circuit: one INTRODUCE each), paced and
    /// bounded in count and time; stops by itself and prints a JSON report.
    Flood {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// The URL, e.g. http://ADDRESS.onion/
        url: String,
        /// Requests started per second.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// At most this many requests.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// No request starts after this many seconds.
        #[arg(long, default_value_t = 600)]
        duration: u64,
        /// Extra client tors to flood from (named flood1..N).
        #[arg(long, default_value_t = 2)]
        clients: usize,
    },
    /// The main job end to end: a lab, a 3-node RustBalance cluster serving
    /// one master address, a real tor client reaching it, and the cluster
    /// surviving the publisher's death.
    Demo {
        /// The lab.
        #[command(flatten)]
        dir: LabDir,
        /// Requests to send to the master address at the end.
        #[arg(long, default_value_t = 20)]
        requests: usize,
        /// Leave the Tor lab running afterwards (stop it with `lab down`).
        #[arg(long)]
        keep: bool,
    },
}
