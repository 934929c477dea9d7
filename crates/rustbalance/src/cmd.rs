//! Subcommand dispatch.

mod cluster;
mod descriptor;
mod keygen;
pub mod lab;
mod node;

use crate::cli::{Cli, Command, ConfigCmd, DescriptorCmd, NetworkArgs, NodeCmd, TokenCmd};
use anyhow::{bail, Result};
use rustbalance_hs::TimeParams;
use std::time::SystemTime;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => keygen::run(&out),
        Command::Descriptor(DescriptorCmd::Inspect {
            address,
            file,
            json,
            net,
        }) => descriptor::inspect(&address, &file, json, &net),
        Command::Descriptor(DescriptorCmd::Merge {
            master_key,
            instances,
            max_intro_points,
            carry_pow,
            out,
            net,
        }) => descriptor::merge(
            &master_key,
            &instances,
            max_intro_points,
            carry_pow,
            &out,
            &net,
        ),
        Command::Lab(cmd) => lab::run(cmd),
        Command::Run { config } => node::run(&config),
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
        Command::Token(TokenCmd::Show { config }) => cluster::token_show(&config),
        Command::Token(TokenCmd::Rotate { config }) => cluster::token_rotate(&config),
        Command::Node(NodeCmd::Remove { who, config }) => cluster::node_remove(&config, &who),
        Command::Config(ConfigCmd::Check { config }) => node::check(&config),
        Command::Status { config, json } => node::status(&config, json),
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
