//! `rustbalance`: see `rustbalance --help`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // A node's userspace WireGuard device runs in a child process: this same executable.
    if let Some(code) = rustbalance_mesh::device_process::main_if_requested() {
        return code;
    }
    rustbalance::cli::main()
}
