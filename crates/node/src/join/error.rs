//! What can go wrong joining a cluster, running the join endpoint, or removing a node.
//! Every message a person can cause says what to do; none echoes a token.

use rustbalance_hs::OnionAddress;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a text is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// Not `rbjoin2-...`.
    #[error("it does not start with {}-", super::token::TOKEN_PREFIX)]
    Prefix,
    /// A token of the multi-use kind older versions made.
    #[error(
        "it is an old multi-use token (rbjoin1-), which this version no longer takes; make a \
         single-use one with `rustbalance token create` on a member"
    )]
    OldFormat,
    /// The body is not base32.
    #[error("it is not base32 (was it cut or changed when copied?)")]
    NotBase32,
    /// The body decodes to the wrong number of bytes.
    #[error("it holds {got} bytes, a token holds {want} (was it cut when copied?)")]
    Length {
        /// Bytes decoded.
        got: usize,
        /// Bytes of a token.
        want: usize,
    },
    /// The 2-byte check does not match.
    #[error("its checksum does not match (a typo?)")]
    Checksum,
    /// The port is 0.
    #[error("its port is 0")]
    PortZero,
}

/// An error of the join code (wrapped in [`crate::Error::Join`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The text given as a token is not one.
    #[error("this is not a RustBalance join token: {problem}")]
    BadToken {
        /// What is wrong with it.
        problem: TokenProblem,
    },
    /// A saved JSON list (`mesh-removed.json`, `mesh-peers.json`) does not parse.
    #[error("{} is corrupt ({source}); {fix}", path.display())]
    CorruptList {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
        /// What to do about it.
        fix: &'static str,
    },
    /// The `join-generation` file holds something else.
    #[error(
        "{} does not hold a join generation (a number, optionally followed by 32 hex digits); \
         put 0 in it if unsure: gossip raises it to the cluster's",
        path.display()
    )]
    BadGenerationFile {
        /// The file.
        path: PathBuf,
    },
    /// tor's SOCKS port does not take connections (retried).
    #[error("cannot reach tor's SOCKS port {socks}: {source}")]
    SocksUnreachable {
        /// The SOCKS port.
        socks: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// tor could not open a stream to the master address (retried).
    #[error("cannot reach the cluster at {master}:{port} over Tor: {reason}")]
    ClusterUnreachable {
        /// The master address.
        master: OnionAddress,
        /// Its virtual port.
        port: u16,
        /// The SOCKS client's sentence.
        reason: String,
    },
    /// Writing the request to the stream failed.
    #[error("sending the join request failed: {source}")]
    Send {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading the answer failed.
    #[error("reading the join answer failed: {source}")]
    Receive {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the time given.
    #[error(
        "no answer from the cluster at {master} within {secs} s (is any node up? is this \
         machine's clock right?)"
    )]
    NoAnswer {
        /// The master address.
        master: OnionAddress,
        /// The time given.
        secs: u64,
    },
    /// The answer has no complete HTTP head.
    #[error("the cluster's answer broke off (no complete HTTP head); try again")]
    AnswerBrokeOff,
    /// The answer is not the join endpoint's (a 404, or the target answered).
    #[error(
        "the cluster did not take the join request ({status}{}): the token is wrong or was \
         rotated, or the service's target answered instead; ask for a current token \
         (`rustbalance token show` on a member)",
        if text.is_empty() { String::new() } else { format!(": {text}") }
    )]
    NotTaken {
        /// The HTTP status line.
        status: String,
        /// The start of the body, control characters removed.
        text: String,
    },
    /// A node that cannot admit (a worker, or one still starting) answered: another may.
    #[error("the node reached cannot admit ({status}): {text}")]
    TryElsewhere {
        /// The HTTP status line.
        status: String,
        /// The endpoint's reason.
        text: String,
    },
    /// The grant's member certificate is not the authority's, or not for this node.
    #[error(
        "the member certificate in the cluster's answer is not signed by its authority or \
         does not name this node's name, identity and WireGuard key; nothing was saved"
    )]
    CertMismatch,
    /// A privileged command reached a node without the master key.
    #[error(
        "this node does not hold the master key: run `rustbalance {what}` against a \
         publisher-eligible node (its --config)"
    )]
    NotEligible {
        /// The command.
        what: &'static str,
    },
    /// The join endpoint refused the request and said why.
    #[error("the cluster refused the join request ({status}): {text}")]
    Refused {
        /// The HTTP status line.
        status: String,
        /// The endpoint's reason.
        text: String,
    },
    /// The answer's MAC does not match the token and nonce.
    #[error(
        "the join answer is not authenticated by the token (a wrong token, or not a \
         RustBalance node answered)"
    )]
    Unauthenticated,
    /// The answer's body is not a grant.
    #[error("the join answer is malformed ({source})")]
    MalformedAnswer {
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A field of the grant is malformed.
    #[error("the {field} in the cluster's answer is malformed; use the same RustBalance version on both sides")]
    MalformedGrant {
        /// Which field.
        field: &'static str,
    },
    /// The cluster speaks another protocol version.
    #[error(
        "the cluster speaks join protocol {version} (this node speaks 1): use the same \
         RustBalance version"
    )]
    Version {
        /// Its version.
        version: u32,
    },
    /// tor did not say where its SOCKS port is.
    #[error("tor did not report its SOCKS port ({answer:?}); look at {}", log.display())]
    NoSocksPort {
        /// What `GETINFO net/listeners/socks` answered.
        answer: String,
        /// tor's log.
        log: PathBuf,
    },
    /// `node remove` was asked to remove the node it runs on.
    #[error("{who} is the node you asked; run `rustbalance node remove` on another member")]
    RemoveSelf {
        /// As given.
        who: String,
    },
    /// `node remove` was given a name nobody knows.
    #[error(
        "no member named {who:?} is known here (members: {}); give its WireGuard public key \
         instead (`rustbalance status --json` lists the mesh peers)",
        members.join(", ")
    )]
    UnknownMember {
        /// As given.
        who: String,
        /// The members known here.
        members: Vec<String>,
    },
    /// `node remove` was given something that is neither a name nor a key.
    #[error("{who:?} is neither a node name nor a WireGuard public key")]
    NotANodeOrKey {
        /// As given.
        who: String,
    },
    /// `token create --ttl` out of range.
    #[error("a token lives from 1 s to {max_days} days, not {secs} s; give another --ttl")]
    BadTtl {
        /// As asked, in seconds.
        secs: u64,
        /// The limit in days.
        max_days: u64,
    },
    /// The token did not change in time after a removal.
    #[error(
        "the join token was not rotated within {secs} s: the removal is recorded, but rotate \
         it yourself with `rustbalance token rotate`"
    )]
    NotRotated {
        /// How long we waited.
        secs: u64,
    },
    /// `init` or `join` would overwrite a config.
    #[error("{} already exists; refusing to overwrite it (remove it first to start over)", path.display())]
    ConfigExists {
        /// The config file.
        path: PathBuf,
    },
    /// The WireGuard key file cannot be read or written.
    #[error("WireGuard key {}: {source}", path.display())]
    MeshKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustbalance_mesh::Error,
    },
    /// The admin cookie cannot be read.
    #[error(
        "cannot read the admin cookie {} (is the node running? run this as its user or root): {source}",
        path.display()
    )]
    AdminCookie {
        /// The cookie file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin endpoint did not answer (or refused).
    #[error("the node on {listen} did not answer: {source}")]
    AdminUnreachable {
        /// The admin endpoint.
        listen: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A task holding a lock panicked.
    #[error("the node's {what} is unusable (a task using it panicked); restart the node")]
    Poisoned {
        /// What is unusable.
        what: &'static str,
    },
    /// Saving a file failed.
    #[error("cannot save {what}: {source}")]
    Save {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<crate::Error>,
    },
}

impl JoinError {
    /// Whether a join attempt that ended in this error is worth repeating: only when the
    /// cluster could not be reached or a node that cannot admit answered; refusals are
    /// final.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            JoinError::SocksUnreachable { .. }
                | JoinError::ClusterUnreachable { .. }
                | JoinError::TryElsewhere { .. }
        )
    }
}
