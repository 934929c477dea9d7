//! The `rustbalance` command: CLI parsing and the wiring of the library
//! crates. Each subcommand lives in its own module under `cmd/`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;
