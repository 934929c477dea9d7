//! Subcommand dispatch.

mod client_auth;
mod cluster;
mod completions;
mod descriptor;
mod doctor;
mod keygen;
mod node;
mod onionbalance;

use crate::cli::{Cli, Command, ConfigCmd, NetworkArgs, NodeCmd, TokenCmd};
use crate::cli::{ClientAuthCmd, OnionbalanceCmd};
use anyhow::{bail, Result};
use rustbalance_hs::TimeParams;
use std::time::SystemTime;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => keygen::run(&out),
        Command::Descriptor(cmd) => descriptor::run(cmd),
        Command::Lab(cmd) => rustbalance_testbed::cli::run(cmd),
        Command::Run { config, log_format } => node::run(&config, log_format),
        Command::Init {
            dir,
            target,
            endpoint,
            config,
            name,
            admin,
            master_key,
            key,
            node,
        } => cluster::init(
            &dir,
            &target,
            endpoint,
            &config,
            &name,
            admin,
            master_key.as_deref(),
            &key,
            &node,
        ),
        Command::Join {
            token_file,
            dir,
            target,
            endpoint,
            config,
            name,
            admin,
            publisher_eligible: _,
            master_key,
            passphrase_file,
            priority,
            timeout,
            node,
        } => cluster::join(
            &token_file,
            &dir,
            &target,
            endpoint,
            &config,
            name,
            admin,
            master_key,
            passphrase_file,
            priority,
            timeout,
            &node,
        ),
        Command::Token(TokenCmd::Create { config, ttl }) => cluster::token_create(&config, ttl),
        Command::Token(TokenCmd::Rotate { config }) => cluster::token_rotate(&config),
        Command::Node(NodeCmd::Remove { who, config }) => cluster::node_remove(&config, &who),
        Command::Config(ConfigCmd::Check { config }) => node::check(&config),
        Command::Status {
            config,
            json,
            page_link,
        } => node::status(&config, json, page_link),
        Command::Doctor { config, json } => doctor::run(&config, json),
        Command::Generate { what, dir } => match what {
            crate::cli::Generated::Man => completions::man(&dir),
            crate::cli::Generated::Completions => completions::completions(&dir),
        },
        Command::ClientAuth(ClientAuthCmd::Add {
            name,
            config,
            public_key_file,
        }) => client_auth::add(&config, &name, public_key_file.as_deref()),
        Command::ClientAuth(ClientAuthCmd::Remove { name, config }) => {
            client_auth::remove(&config, &name)
        }
        Command::ClientAuth(ClientAuthCmd::List { config }) => client_auth::list(&config),
        Command::Onionbalance(OnionbalanceCmd::Import {
            config,
            out,
            target,
            gossip,
            admin,
            key,
            tor_from,
        }) => onionbalance::import(
            &config,
            &out,
            target.as_deref(),
            (admin, gossip),
            &key,
            tor_from.as_deref(),
        ),
    }
}

impl NetworkArgs {
    /// The clock parameters chosen on the command line.
    pub fn time_params(&self) -> Result<TimeParams> {
        Ok(match (self.period_minutes, self.testing_voting_interval) {
            (Some(0), _) => bail!("--period-minutes must be at least 1"),
            (Some(m), _) => TimeParams {
                voting_interval_secs: 3600,
                period_minutes: m,
            },
            (None, Some(v)) if !(10..=3600).contains(&v) => {
                bail!("--testing-voting-interval must be between 10 and 3600 seconds")
            }
            (None, Some(v)) => TimeParams::testing(v),
            (None, None) => TimeParams::REAL_NETWORK,
        })
    }

    /// `--time`, or now.
    pub fn now(&self) -> SystemTime {
        self.time
            .map(rustbalance_hs::time::from_unix)
            .unwrap_or_else(SystemTime::now)
    }
}
