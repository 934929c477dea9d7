//! `rustbalance`: see `rustbalance --help`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    rustbalance::cli::main()
}
