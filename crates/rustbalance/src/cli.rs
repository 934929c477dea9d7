//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// High-availability load balancer for Tor v3 onion services.
///
/// One master .onion address served by many machines: every node runs tor
/// as an onion-service instance, and one publisher uploads a merged
/// descriptor, signed with the master key, that lists the intro points of
/// every healthy node.
#[derive(Parser, Debug)]
#[command(name = "rustbalance", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a new onion-service identity key in tor's format.
    ///
    /// Writes hs_ed25519_secret_key, hs_ed25519_public_key and hostname
    /// (each 0600, atomically) into DIR, which is created 0700, and prints
    /// the onion address. Refuses to overwrite an existing key.
    Keygen {
        /// Directory to write the key files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Inspect or build v3 onion-service descriptors offline.
    #[command(subcommand)]
    Descriptor(DescriptorCmd),
    /// Run a node: supervised tor, reverse proxy to the target, admin
    /// endpoint. Stops cleanly on SIGTERM/SIGINT.
    Run {
        /// The node's config file (see docs/CONFIG.md).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Create a new service on this machine: master key, config file.
    ///
    /// With --endpoint it is the first node of a cluster: it also writes the
    /// cluster secret and a WireGuard key, and prints the join token and the
    /// exact command that adds another machine. Without --endpoint it is a
    /// single-node service (tor publishes the master descriptor itself, with
    /// its PoW defences).
    ///
    /// The master key is sealed at rest (argon2id + XChaCha20-Poly1305) with
    /// the passphrase in --passphrase-file, unless --plain-key is given.
    Init {
        /// Directory for the keys and the node's data (created 0700).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Where clients are forwarded: tcp://HOST:PORT or onion://ADDRESS.onion:PORT.
        #[arg(long, value_name = "URL")]
        target: String,
        /// This machine's WireGuard endpoint as the other nodes reach it
        /// (IP:PORT, e.g. 192.0.2.10:51820). Makes the node cluster-ready.
        #[arg(long, value_name = "IP:PORT")]
        endpoint: Option<std::net::SocketAddr>,
        /// Config file to write (default: DIR/rustbalance.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Node name (letters, digits, - and _).
        #[arg(long, default_value = "node1")]
        name: String,
        /// Admin endpoint (status, metrics, token).
        #[arg(long, default_value = "127.0.0.1:9661")]
        admin: std::net::SocketAddr,
        /// Start from an existing master key instead of a new one, keeping the
        /// .onion address: tor's `hs_ed25519_secret_key` or a sealed key file
        /// (opened with --passphrase-file, else the systemd credential
        /// `master-passphrase`). For restoring a service whose nodes are all
        /// gone; it is stored again as --passphrase-file / --plain-key say.
        #[arg(long, value_name = "FILE")]
        master_key: Option<PathBuf>,
        #[command(flatten)]
        key: KeyProtection,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Add this machine to a running cluster, knowing only its join token.
    ///
    /// Starts a temporary tor, reaches the cluster at the master address over
    /// Tor, proves the token, and receives the cluster secret and every
    /// member's WireGuard key and endpoint; writes the config and keys, then
    /// exits: start the node with `rustbalance run --config FILE`. The token
    /// is read from a file or stdin, never from the command line. Worker
    /// nodes never receive the master key; --publisher-eligible nodes bring
    /// their own copy with --master-key.
    Join {
        /// File holding the token (`-`: read it from stdin).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// Directory for the keys and the node's data (created 0700).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Where clients are forwarded: tcp://HOST:PORT or onion://ADDRESS.onion:PORT.
        #[arg(long, value_name = "URL")]
        target: String,
        /// This machine's WireGuard endpoint as the other nodes reach it (IP:PORT).
        #[arg(long, value_name = "IP:PORT")]
        endpoint: std::net::SocketAddr,
        /// Config file to write (default: DIR/rustbalance.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Node name (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Admin endpoint (status, metrics, token).
        #[arg(long, default_value = "127.0.0.1:9661")]
        admin: std::net::SocketAddr,
        /// This node may publish: it holds a copy of the master key (--master-key).
        #[arg(long, requires = "master_key")]
        publisher_eligible: bool,
        /// The master key file (tor's, Onionbalance's PEM, or sealed).
        #[arg(long, value_name = "FILE", requires = "publisher_eligible")]
        master_key: Option<PathBuf>,
        /// Passphrase file of a sealed --master-key (unset: the systemd credential
        /// `master-passphrase`).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Election priority (lower publishes first).
        #[arg(long, default_value_t = 100)]
        priority: u32,
        /// Give up joining after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show or rotate the cluster's join token (asks the running node).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage the cluster's members (asks the running node).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Validate a config file and explain every problem.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Show a running node's status (from its admin endpoint).
    Status {
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A private Tor network on this machine, for trying RustBalance and for
    /// end-to-end tests. Every process listens on 127.0.0.0/8 only and is
    /// stopped by its pid file.
    #[command(subcommand)]
    Lab(LabCmd),
}

/// How `init` protects the master key on disk.
#[derive(Args, Debug, Clone)]
pub struct KeyProtection {
    /// Seal the master key with the passphrase in FILE (0600; one line).
    #[arg(long, value_name = "FILE", required_unless_present = "plain_key")]
    pub passphrase_file: Option<PathBuf>,
    /// The running node gets the passphrase as the systemd credential
    /// `master-passphrase` (LoadCredential=) instead of reading
    /// --passphrase-file: the config does not name the file.
    #[arg(long, requires = "passphrase_file")]
    pub systemd_credential: bool,
    /// Write the master key unencrypted (tor's own format).
    #[arg(long, conflicts_with_all = ["passphrase_file", "systemd_credential"])]
    pub plain_key: bool,
}

/// Settings of the node that `init` and `join` write into the config.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// WireGuard interface name.
    #[arg(long, default_value = "rb0")]
    pub mesh_interface: String,
    /// Gossip UDP port (on the WireGuard overlay).
    #[arg(long, default_value_t = 9663)]
    pub gossip_port: u16,
    /// (testing) Take the [tor] section (extra torrc lines, testing network)
    /// from this config file; the lab uses it for its private Tor network.
    #[arg(long, value_name = "FILE", hide = true)]
    pub tor_from: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Print the current join token.
    Show {
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Replace the join token across the cluster: the old one stops working
    /// on every node within seconds. Prints the new token.
    Rotate {
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Remove a member for good, alive or dead: its intro points leave the
    /// descriptor at once, within seconds every member drops its WireGuard
    /// peer and refuses its joins, and, if it still runs, it stops and will
    /// not start again (exit status 77). 15 s later, once it is cut off, the
    /// join token is rotated with a salt the removed machine never sees; the
    /// command waits for that and prints the new token. A removed machine that
    /// kept its files still holds the cluster secret (and, if eligible, the
    /// master key): wipe it.
    Remove {
        /// The member's node name, or its WireGuard public key.
        #[arg(value_name = "NAME|KEY")]
        who: String,
        /// The config file of the node to ask (any other member).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Check a config file; exit status 0 when it is valid.
    Check {
        /// The config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Where a lab lives.
#[derive(Args, Debug, Clone)]
pub struct LabDir {
    /// Lab directory (default: $TMPDIR/rustbalance-lab).
    #[arg(long, value_name = "DIR", env = "RUSTBALANCE_LAB_DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Generate keys and torrcs, start 3 directory authorities, the relays
    /// and a client, and return once the lab is usable (consensus with
    /// HSDir, Guard and Exit flags; client bootstrapped).
    Up {
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
        #[command(flatten)]
        dir: LabDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop every process of the lab (by pid file) and check nothing listens.
    Down {
        #[command(flatten)]
        dir: LabDir,
    },
    /// One HTTP GET through the lab client's SOCKS port (fresh circuit);
    /// prints the body.
    Curl {
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
        #[command(flatten)]
        dir: LabDir,
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
    /// SIGKILL a cluster node and its tor (a machine dying).
    Kill {
        #[command(flatten)]
        dir: LabDir,
        /// The node's name (node1, node2, ...).
        node: String,
    },
    /// Cut a cluster node's network off (namespaced labs: `lab up --netns`).
    Cut {
        #[command(flatten)]
        dir: LabDir,
        /// The node's name.
        node: String,
    },
    /// Reconnect a node cut off with `lab cut`.
    Heal {
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
    /// The main job end to end: a lab, a 3-node RustBalance cluster serving
    /// one master address, a real tor client reaching it, and the cluster
    /// surviving the publisher's death.
    Demo {
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

/// Which Tor network's clock to use.
#[derive(Args, Debug, Clone)]
pub struct NetworkArgs {
    /// Time to evaluate at, in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub time: Option<u64>,
    /// Time-period length in minutes (1440 on the real Tor network).
    #[arg(
        long,
        value_name = "MINUTES",
        conflicts_with = "testing_voting_interval"
    )]
    pub period_minutes: Option<u32>,
    /// A TestingTorNetwork with this voting interval in seconds (the lab uses
    /// 20, giving 8-minute time periods).
    #[arg(long, value_name = "SECONDS")]
    pub testing_voting_interval: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum DescriptorCmd {
    /// Decrypt a descriptor with its onion address alone and show what a
    /// client would see.
    Inspect {
        /// The onion address the descriptor belongs to (with or without .onion).
        #[arg(long, value_name = "ADDR")]
        address: String,
        /// The descriptor file (as tor's HSFETCH / GETINFO returns it).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Merge instance descriptors into one master descriptor.
    ///
    /// Reads each instance descriptor, checks it belongs to its address and
    /// is valid at --time, chooses intro points fairly across instances (at
    /// most --max-intro-points, never more than 20), and writes the master
    /// descriptor for the time period containing --time, signed with the
    /// master key.
    Merge {
        /// Master identity key: tor's hs_ed25519_secret_key or Onionbalance's PEM.
        #[arg(long, value_name = "FILE")]
        master_key: PathBuf,
        /// An instance descriptor, as ADDRESS=FILE (repeat for each instance).
        #[arg(long = "instance", value_name = "ADDR=FILE", required = true)]
        instances: Vec<String>,
        /// Most intro points to list (1..=20).
        #[arg(long, value_name = "N", default_value_t = 20)]
        max_intro_points: usize,
        /// Carry the pow-params line of the first instance that has one.
        #[arg(long)]
        carry_pow: bool,
        /// Where to write the master descriptor.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        net: NetworkArgs,
    },
}

/// Parse arguments, run, and turn errors into one line on stderr.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match crate::cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rustbalance: error: {e:#}");
            match e.downcast_ref::<rustbalance_node::Error>() {
                Some(rustbalance_node::Error::Removed(_)) => {
                    std::process::ExitCode::from(rustbalance_node::err::EXIT_REMOVED)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}
