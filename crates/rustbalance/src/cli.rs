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
            std::process::ExitCode::FAILURE
        }
    }
}
