//! Errors of a node.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong running a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown/mistyped keys.
    #[error("config {path}: {message}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// toml's message (names the key, line and column).
        message: String,
    },
    /// A config value is not allowed.
    #[error("config key {key}: {problem}")]
    Config {
        /// Dotted key.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// Onion-service core error (keys, descriptors).
    #[error(transparent)]
    Hs(#[from] rustbalance_hs::Error),
    /// Tor adapter error.
    #[error(transparent)]
    Tor(#[from] rustbalance_tor::Error),
    /// File-system error.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A sealed master key and no passphrase: neither a passphrase file nor the
    /// systemd credential.
    #[error(
        "{path} is a sealed (encrypted) master key and no passphrase was provided: set \
         service.master_key_passphrase_file, or give the node the systemd credential `{}` \
         (LoadCredential=)",
        crate::keystore::DEFAULT_CREDENTIAL
    )]
    PassphraseNeeded {
        /// The key file.
        path: PathBuf,
    },
    /// A sealed key file where only a plain key is read.
    #[error(
        "key file {path} is not a usable onion-service key: it is sealed (encrypted) and \
         needs a passphrase: set service.master_key_passphrase_file, or give the node the \
         systemd credential `{}` (LoadCredential= or LoadCredentialEncrypted=)",
        crate::keystore::DEFAULT_CREDENTIAL
    )]
    SealedKey {
        /// The key file.
        path: PathBuf,
    },
    /// A node directory already holds a master key (`init`, `onionbalance import`).
    #[error(
        "{path} already holds a master key; refusing to overwrite it (use another --dir, or \
         --master-key {path} to start from it)"
    )]
    MasterKeyExists {
        /// The key file found.
        path: PathBuf,
    },
    /// A descriptor file (`rustbalance descriptor inspect|merge`) is not usable.
    #[error("descriptor file {path}: {problem}")]
    DescriptorFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An Onionbalance config (`rustbalance onionbalance import`) cannot be imported.
    #[error("Onionbalance config {path}: {problem}")]
    Onionbalance {
        /// The config.yaml.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A passphrase file (or the systemd credential) is unusable.
    #[error("passphrase file {path}: {reason}")]
    Passphrase {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another node process runs on the same data directory (it holds the lock on its
    /// pid file).
    #[error(
        "another rustbalance ({}) runs on {data_dir}; stop it first",
        .pid.map_or_else(|| "its pid is not written yet".to_string(), |p| format!("pid {p}"))
    )]
    AlreadyRunning {
        /// The other process, as its pid file names it.
        pid: Option<u32>,
        /// The shared data directory.
        data_dir: PathBuf,
    },
    /// No loopback port was free for tor's SOCKS port.
    #[error("cannot find a free port for tor's SOCKS port: {source}; free some loopback ports")]
    NoFreePort {
        /// Why binding port 0 failed.
        #[source]
        source: std::io::Error,
    },
    /// The proxy (tor → target) could not start.
    #[error("proxy: {0}")]
    Proxy(#[source] rustbalance_proxy::Error),
    /// The admin endpoint could not listen.
    #[error("admin endpoint {listen}: {source}; is another process using admin.listen?")]
    Admin {
        /// `admin.listen`.
        listen: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Gossip could not start.
    #[error("gossip: {0}")]
    Gossip(#[source] rustbalance_cluster::ClusterError),
    /// The lease election refused its parameters.
    #[error("election: {0}")]
    Election(#[source] rustbalance_cluster::ClusterError),
    /// A node identity, member certificate or authority key file is unusable.
    #[error("{path}: {source}")]
    Membership {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        #[source]
        source: rustbalance_cluster::ClusterError,
    },
    /// A worker without a member certificate while signed gossip is required.
    #[error(
        "this node has no member certificate ({cert}) or authority key ({authority}), and \
         cluster.gossip_signatures is \"require\": join the cluster again to be certified, or \
         during an upgrade of an existing cluster set cluster.gossip_signatures = \"off\" \
         or \"accept-unsigned\" (docs/OPERATIONS.md, \"Upgrading to signed gossip\")"
    )]
    NotCertified {
        /// Where the certificate is expected.
        cert: std::path::PathBuf,
        /// Where the authority key is expected.
        authority: std::path::PathBuf,
    },
    /// A node made before signed gossip existed, without `cluster.gossip_signatures`.
    #[error(
        "this node was made before signed gossip existed (no {identity} yet): set \
         cluster.gossip_signatures = \"off\" while the cluster is upgraded, then \
         \"accept-unsigned\", then \"require\" (docs/OPERATIONS.md, \"Upgrading to signed \
         gossip\")"
    )]
    SignatureModeUnset {
        /// The identity file that did not exist.
        identity: std::path::PathBuf,
    },
    /// The WireGuard mesh could not be brought up.
    #[error("mesh: {0}")]
    Mesh(#[source] rustbalance_mesh::Error),
    /// The task bringing the mesh up panicked or was cancelled.
    #[error("mesh task: {0}")]
    MeshTask(#[source] tokio::task::JoinError),
    /// A thread panicked while it held the mesh; the node must restart.
    #[error("mesh lock poisoned (a thread panicked while it held the mesh); restart the node")]
    MeshPoisoned,
    /// A canary probe's stream broke.
    #[error("canary: the stream broke: {source}")]
    CanaryIo {
        /// What broke.
        #[source]
        source: std::io::Error,
    },
    /// A canary probe's stream closed with no byte.
    #[error("canary: the peer's proxy closed the stream without answering")]
    CanaryNoAnswer,
    /// A canary probe got no answer in time.
    #[error("canary: no answer within {after:?}")]
    CanaryTimeout {
        /// The probe's timeout.
        after: std::time::Duration,
    },
    /// tor has no consensus to read the network view from.
    #[error("tor has no microdesc consensus yet (is it bootstrapped?): {0}")]
    NoConsensus(#[source] rustbalance_tor::Error),
    /// The instance's tor has not made its descriptor yet.
    #[error("instance tor has no descriptor yet: {0}")]
    NoInstanceDescriptor(#[source] rustbalance_tor::Error),
    /// tor refused to fetch the instance's descriptor from the HSDirs.
    #[error("HSFETCH of the instance: {0}")]
    InstanceFetch(#[source] rustbalance_tor::Error),
    /// The instance's descriptor did not arrive from the HSDirs.
    #[error("the instance's descriptor could not be fetched from the HSDirs")]
    InstanceNotFetched,
    /// tor did not list its circuits.
    #[error("GETINFO circuit-status: {0}")]
    CircuitStatus(#[source] rustbalance_tor::Error),
    /// tor refused to upload a master descriptor.
    #[error("HSPOST for time period {period}: {source}")]
    Upload {
        /// The descriptor's time period.
        period: u64,
        /// tor's answer.
        #[source]
        source: rustbalance_tor::Error,
    },
    /// No HSDir confirmed a master descriptor.
    #[error("no HSDir confirmed the descriptor for time period {period}: {hsdirs}")]
    NotUploaded {
        /// The descriptor's time period.
        period: u64,
        /// Each HSDir's answer.
        hsdirs: String,
    },
    /// A member removal was refused (unknown member, this node itself, ...).
    #[error("{0}")]
    RemoveRefused(String),
    /// This node was removed from its cluster (`rustbalance node remove`): it stops and
    /// does not start again. `rustbalance run` exits with [`EXIT_REMOVED`].
    #[error("{0}")]
    Removed(String),
    /// A cluster task (gossip, intro points, publishing, join sync) ended unasked: the
    /// node left the lease and stopped; the service manager restarts it.
    #[error("{0}; this node left the lease and stopped (a bug: please report it with the log above); systemd restarts it")]
    TaskDied(crate::supervise::TaskDeath),
    /// Joining, the join endpoint, node removal.
    #[error(transparent)]
    Join(#[from] crate::join::JoinError),
}

impl Error {
    /// The control connection to tor broke (reconnect before trying again).
    pub fn is_tor(&self) -> bool {
        matches!(self, Error::Tor(_))
    }
}

/// Exit status of `rustbalance run` on a removed node (sysexits' EX_NOPERM); the systemd
/// unit lists it in `RestartPreventExitStatus=`, so a removed node is not restarted.
pub const EXIT_REMOVED: u8 = 77;

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
