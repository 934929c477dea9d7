//! The error type of the lab.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while creating, running or using a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tor or process error (start failure, early death, control port...).
    #[error(transparent)]
    Tor(#[from] rustbalance_tor::Error),

    /// The lab directory already runs a lab.
    #[error("lab already running in {dir}; run `rustbalance lab down --dir {dir}` first")]
    AlreadyRunning {
        /// The lab directory.
        dir: PathBuf,
    },

    /// The directory is not a lab directory (no `lab.json`).
    #[error("{dir} holds no lab (no lab.json); create one with `rustbalance lab up --dir {dir}`")]
    NoLab {
        /// The directory.
        dir: PathBuf,
    },

    /// The directory is not empty and is not a lab either.
    #[error(
        "{dir} is not empty and holds no lab.json; choose an empty or new directory for the lab"
    )]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },

    /// The lab exists but is not running.
    #[error("the lab in {dir} is not running; start it with `rustbalance lab up --dir {dir}`")]
    NotRunning {
        /// The lab directory.
        dir: PathBuf,
    },

    /// An address the lab needs is taken.
    #[error("{addr} is already in use ({detail}); another lab probably uses the address block {block}: stop it, or choose another block with `LabOptions::block` / another lab directory")]
    AddressInUse {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        detail: String,
        /// The lab's address block.
        block: String,
    },

    /// An address outside what the lab may use was requested.
    #[error("address {addr} is outside 127.0.0.0/8; the lab only ever listens on loopback (or in its own network namespaces)")]
    AddressNotAllowed {
        /// The refused address.
        addr: String,
    },

    /// Options that make no sense.
    #[error("invalid lab options: {0}")]
    Options(String),

    /// A name for an extra process is unusable or taken.
    #[error("lab process name `{name}`: {detail}")]
    Name {
        /// The name.
        name: String,
        /// What is wrong.
        detail: String,
    },

    /// No more addresses for extra processes in the lab's block.
    #[error("the lab's address block {block} has no free address left for `{name}`; stop the lab and start a new one")]
    AddressesExhausted {
        /// The block.
        block: String,
        /// The process that needed one.
        name: String,
    },

    /// A helper program (tor-gencert, onionbalance-config, ...) failed.
    #[error("`{program}` failed ({status}): {output}; is it installed (Debian: `apt-get install tor onionbalance`)?")]
    Helper {
        /// The program.
        program: String,
        /// Its exit status or spawn error.
        status: String,
        /// Its output (tail).
        output: String,
    },

    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}; last state: {last}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// The last observed state or error.
        last: String,
    },

    /// A file of the lab could not be read or written.
    #[error("cannot {action} {path}: {detail}")]
    File {
        /// "read", "write", "create directory", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS or parse error.
        detail: String,
    },

    /// An HTTP request through the lab client failed.
    #[error("GET {url} through the lab client failed: {detail}")]
    Http {
        /// The URL.
        url: String,
        /// What failed (SOCKS error, timeout, malformed response...).
        detail: String,
    },

    /// Network namespaces need privileges this process lacks.
    #[error("{action} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`); run as root, or use Placement::HostLoopback")]
    NeedsRoot {
        /// What was attempted.
        action: String,
    },

    /// An `ip` command or a namespace operation failed.
    #[error("cannot {action}: {detail}; leftovers of an earlier run show in `ip netns list` (names rbl-...): stop that lab with `Lab::open(DIR)?.stop()` or delete them with `ip netns del NAME`")]
    Netns {
        /// What was attempted (with the namespace name).
        action: String,
        /// The command's error output.
        detail: String,
    },

    /// A node-host operation on a lab without namespaces.
    #[error("{what} needs a lab in its own network namespace: create it with `LabOptions {{ placement: Placement::namespace(), .. }}` and start it")]
    NotNamespaced {
        /// The operation.
        what: String,
    },

    /// No node host of that name.
    #[error("the lab has no node host `{name}`; create it with `Lab::add_node_host`")]
    NoNodeHost {
        /// The name.
        name: String,
    },

    /// Namespaces of the lab survived a stop.
    #[error("after stopping, the network namespaces {names:?} still exist; delete them with `ip netns del NAME` (and check `ip netns pids NAME` for survivors)")]
    NetnsLeft {
        /// The namespaces.
        names: Vec<String>,
    },

    /// Something still listens on a lab address after stop.
    #[error("after stopping, {addrs:?} still accept connections (lab processes that listened there: {owners:?}); some lab process survived, or another program took the address: check `rustbalance lab status --dir {dir}`")]
    StillListening {
        /// The lab directory.
        dir: PathBuf,
        /// Addresses that still accept connections.
        addrs: Vec<SocketAddr>,
        /// The lab processes recorded on those addresses, with whether each still runs.
        owners: Vec<String>,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error::File`] from an I/O error.
pub(crate) fn file_err(action: &'static str, path: &std::path::Path, e: impl ToString) -> Error {
    Error::File {
        action,
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}
