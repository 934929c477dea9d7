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
        /// Log lines as text (for people) or JSON (one object per line, same
        /// fields; for log collectors). `RUST_LOG` sets the level.
        #[arg(long, value_enum, default_value_t, env = "RUSTBALANCE_LOG_FORMAT")]
        log_format: LogFormatArg,
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
    /// Make single-use join tokens, or void them all (asks the running node).
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
        /// Print a single-use login URL of the status page instead (open it in a
        /// browser within 60 s; see docs/OPERATIONS.md, "Status page").
        #[arg(long, conflicts_with = "json")]
        page_link: bool,
    },
    /// Check what breaks deployments and say how to fix each problem: tor's
    /// version and PoW support, the clock against tor's consensus, file modes
    /// and owners, the admin and proxy ports, the target, the WireGuard peers,
    /// the HSDirs that confirmed the last publication, disk space. Run it as
    /// the node's user or root; some checks need the node running. Exit
    /// status 0 only when no check fails.
    Doctor {
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON (a list of findings).
        #[arg(long)]
        json: bool,
    },
    /// (packaging) Write the man pages or the shell completions into DIR.
    #[command(hide = true)]
    Generate {
        /// What to write.
        #[arg(value_enum)]
        what: Generated,
        /// The directory to write into (created).
        dir: PathBuf,
    },
    /// Restricted discovery: manage the clients allowed to read the master
    /// descriptor ([service] authorized_clients_dir, tor's NAME.auth files).
    #[command(subcommand)]
    ClientAuth(ClientAuthCmd),
    /// Move from Onionbalance: read its config.yaml and keys, write RustBalance's.
    #[command(subcommand)]
    Onionbalance(OnionbalanceCmd),
    /// A private Tor network on this machine, for trying RustBalance and for
    /// end-to-end tests. Every process listens on 127.0.0.0/8 only and is
    /// stopped by its pid file.
    #[command(subcommand)]
    Lab(rustbalance_testbed::cli::LabCmd),
}

/// What `rustbalance generate` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Generated {
    /// Man pages (section 1), one per command.
    Man,
    /// bash, zsh and fish completions.
    Completions,
}

/// `rustbalance client-auth`.
#[derive(Subcommand, Debug)]
pub enum ClientAuthCmd {
    /// Authorize a client. Without --public-key-file a key pair is made and
    /// the line for the client's ClientOnionAuthDir (NAME.auth_private) is
    /// printed on stdout, once.
    Add {
        /// A name for the client (letters, digits, - and _).
        name: String,
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The client's own public key, as tor writes it
        /// (`descriptor:x25519:KEY`).
        #[arg(long, value_name = "FILE")]
        public_key_file: Option<PathBuf>,
    },
    /// Revoke a client: descriptors published from then on exclude it.
    Remove {
        /// The client's name.
        name: String,
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// List the authorized clients (name, public key).
    List {
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum OnionbalanceCmd {
    /// Read Onionbalance's v3 config.yaml and the master keys it names (PEM or
    /// tor's format), and write, per service, a directory OUT/ADDRESS with the
    /// master key (sealed with --passphrase-file, or --plain-key) and a
    /// rustbalance.toml listing the instances as [[backends]]. Prints what
    /// could not be carried over. Never overwrites anything; see
    /// docs/ONIONBALANCE.md.
    Import {
        /// Onionbalance's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where to write (one subdirectory per service).
        #[arg(long, value_name = "DIR", default_value = "rustbalance-import")]
        out: PathBuf,
        /// Where the publishing node itself forwards clients, to make it serve next to
        /// the backends (config.yaml does not say: each backend's torrc has its
        /// HiddenServicePort). Without it the node is publisher-only, as Onionbalance.
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// Gossip address of the first service's node (the cluster of publishers);
        /// each further service gets the next port.
        #[arg(long, default_value = "127.0.0.1:9700")]
        gossip: std::net::SocketAddr,
        /// Admin endpoint of the first service's node; each further service
        /// gets the next port.
        #[arg(long, default_value = "127.0.0.1:9661")]
        admin: std::net::SocketAddr,
        #[command(flatten)]
        key: KeyProtection,
        /// (testing) Take the [tor] section from this config file.
        #[arg(long, value_name = "FILE", hide = true)]
        tor_from: Option<PathBuf>,
    },
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
    /// Make a new join token: it admits one node, once, anywhere in the
    /// cluster, and expires after --ttl. A spent, expired or wrong token is
    /// answered alike (like any unknown path of the service).
    Create {
        /// The node's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// How long the token lives (e.g. 30m, 1h, 2days; at most 30 days).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Void every join token made so far, on every node within seconds.
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
    /// join key is rotated with a salt the removed machine never sees (every
    /// unspent token is void); the command waits for that. A removed machine that
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

/// `run --log-format`: the choices of [`rustbalance_node::logging::LogFormat`].
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormatArg {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, same fields as text.
    Json,
}

impl From<LogFormatArg> for rustbalance_node::logging::LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Text => Self::Text,
            LogFormatArg::Json => Self::Json,
        }
    }
}
