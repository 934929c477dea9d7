//! The error type of the tor adapter.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while talking to or supervising tor.
///
/// Each variant names the command, file or process involved, and its message
/// reads as a sentence that says what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection to the control port could not be opened.
    #[error("cannot connect to tor's control port at {addr}: {source}; is tor running with `ControlPort {addr}`?")]
    Connect {
        /// Address we tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },

    /// Writing a command to, or reading a reply from, the control port failed.
    #[error("control port I/O failed during `{command}`: {source}")]
    Io {
        /// The command being sent (first line, without secrets).
        command: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },

    /// The control connection is gone (tor exited, or it sent garbage).
    #[error("tor's control connection closed before it answered `{command}` ({reason}); is tor still running?")]
    Closed {
        /// The command that was waiting for its reply.
        command: String,
        /// Why the connection ended, as far as we know.
        reason: String,
    },

    /// tor did not answer a command in time.
    #[error("tor did not answer `{command}` within {timeout:?}; it may be overloaded or hung")]
    Timeout {
        /// The command that was waiting for its reply.
        command: String,
        /// How long we waited.
        timeout: Duration,
    },

    /// tor answered with a non-2xx reply code.
    #[error("tor refused `{command}`: {code} {message}")]
    Refused {
        /// The command tor refused.
        command: String,
        /// tor's reply code (e.g. 552).
        code: u16,
        /// tor's reply text, all lines joined.
        message: String,
    },

    /// tor's reply did not have the shape the protocol promises.
    #[error("unexpected reply from tor to `{command}`: {detail}")]
    Protocol {
        /// The command whose reply was malformed.
        command: String,
        /// What was wrong.
        detail: String,
    },

    /// An argument cannot be sent safely (it contains a newline, space, ...).
    #[error("invalid argument for `{command}`: {detail}")]
    InvalidArgument {
        /// The command being built.
        command: String,
        /// What is wrong with the argument.
        detail: String,
    },

    /// None of the authentication methods tor offers is supported.
    #[error("tor offers control-port authentication methods [{offered}], but this client supports only NULL and SAFECOOKIE; configure `CookieAuthentication 1` (or no authentication on a loopback-only test tor)")]
    NoAuthMethod {
        /// The methods listed in tor's PROTOCOLINFO reply.
        offered: String,
    },

    /// The control cookie file could not be read or has the wrong size.
    #[error("cannot use tor's control cookie file {path}: {detail}; is this the DataDirectory of the tor we talk to, and may we read it?")]
    CookieFile {
        /// Path of the cookie file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// tor's SAFECOOKIE server hash did not match the cookie we read.
    #[error("tor's SAFECOOKIE server hash does not match cookie file {path}: the tor at this control port uses another cookie (wrong DataDirectory?), or something else answers on the port")]
    ServerHashMismatch {
        /// Path of the cookie file we used.
        path: PathBuf,
    },

    /// A program could not be started at all.
    #[error(
        "cannot start `{program}`: {source}; is it installed (Debian: `apt-get install tor`)?"
    )]
    Spawn {
        /// The program we tried to run.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A process exited (or never came up) during start.
    #[error("{name} failed to start: {detail}; last lines of {log}:\n{tail}")]
    StartFailed {
        /// Our name for the process (e.g. `relay r1`).
        name: String,
        /// What happened (exit status, missing pid file, ...).
        detail: String,
        /// The log file the tail comes from.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },

    /// A process we started is no longer running.
    #[error("{name} (pid {pid}) is no longer running; last lines of {log}:\n{tail}")]
    Died {
        /// Our name for the process.
        name: String,
        /// Its pid.
        pid: u32,
        /// The log file the tail comes from.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },

    /// Sending a signal to a process failed.
    #[error("cannot send {signal} to pid {pid}: {source}")]
    Signal {
        /// Signal name.
        signal: &'static str,
        /// Target pid.
        pid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A process survived SIGKILL.
    #[error("pid {pid} is still alive {waited:?} after SIGKILL; check it with `ps -p {pid}`")]
    Unkillable {
        /// The stubborn pid.
        pid: u32,
        /// How long we waited after SIGKILL.
        waited: Duration,
    },

    /// A torrc line cannot be rendered safely.
    #[error("torrc option `{option}`: {detail}")]
    TorrcLine {
        /// The option name.
        option: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The tor watchdog task ended (the node is shutting down).
    #[error("the tor watchdog has stopped; the node is shutting down")]
    SupervisorEnded,

    /// The supervised tor did not finish bootstrapping in time.
    #[error("tor did not bootstrap within {timeout:?} (at {percent} %, phase {phase}){last_exit}; check its network access and its log")]
    BootstrapTimeout {
        /// How long we waited.
        timeout: Duration,
        /// Bootstrap progress reached.
        percent: u8,
        /// The watchdog's phase at the deadline.
        phase: String,
        /// `"; last exit: ..."` when tor died meanwhile, else empty.
        last_exit: String,
    },

    /// The supervised tor has no control port (it is starting, restarting or stopped).
    #[error("tor's control port is not up; wait for tor to start (see the node's /status)")]
    ControlPortDown,

    /// The control connection's event stream was already taken by another reader.
    #[error("the control connection's event stream is already taken; open a new control connection for each event reader")]
    EventsTaken,
    /// The SOCKS5 exchange with tor's `SocksPort` failed (see [`crate::socks`]).
    #[error("{detail}")]
    Socks {
        /// What happened, as a sentence (`SOCKS error 0xF2: ...` for a reply).
        detail: String,
        /// tor's reply code, when it answered the CONNECT with an error.
        reply: Option<u8>,
    },

    /// The OS gave no free loopback port.
    #[error("cannot find a free {proto:?} port on 127.0.0.1: {source}")]
    FreePort {
        /// TCP or UDP.
        proto: crate::port::Proto,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    File {
        /// "read", "write", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
