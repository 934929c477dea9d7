//! Errors of the onion-service core.
//!
//! Every variant reads as a sentence an operator can act on: what is wrong,
//! where, and (where there is one) what to do about it.

use std::path::PathBuf;

/// What can go wrong in the onion-service core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An onion address could not be parsed.
    #[error("invalid onion address {address:?}: {reason}")]
    BadAddress {
        /// The text that was given (addresses are public, so this is not a secret).
        address: String,
        /// Which part is wrong.
        reason: String,
    },

    /// A key could not be sealed (only with parameters outside the limits).
    #[error("cannot seal the master key: {reason}")]
    Seal {
        /// What is wrong.
        reason: String,
    },

    /// A sealed key file could not be opened: wrong passphrase, tampered, truncated,
    /// an unknown format version or parameters over the limits. (The path only names
    /// the file; this crate reads none.)
    #[error("cannot unseal {path}: {reason}")]
    Unseal {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A key file has the wrong format.
    #[error("key file {path} is not a usable onion-service key: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A descriptor is larger than tor accepts.
    #[error("descriptor is {size} bytes, over tor's limit of {limit} bytes")]
    DescriptorTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A descriptor could not be parsed, decrypted or validated.
    #[error("descriptor for {address} rejected: {reason}")]
    BadDescriptor {
        /// The onion address it was supposed to belong to.
        address: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A descriptor is for another onion address or another time period.
    #[error(
        "descriptor is not for {address} in time periods {first}..={last} \
         (period length {period_minutes} min): wrong address, or the clock/--time is off"
    )]
    DescriptorNotForAddress {
        /// The address we tried.
        address: String,
        /// First time period tried.
        first: u64,
        /// Last time period tried.
        last: u64,
        /// Period length used.
        period_minutes: u32,
    },

    /// A descriptor has expired.
    #[error("descriptor for {address} expired at {expired} (now {now})")]
    DescriptorExpired {
        /// The address.
        address: String,
        /// When it expired (RFC 3339).
        expired: String,
        /// The time it was checked at (RFC 3339).
        now: String,
    },

    /// Intro points gossiped by a node could not be read (malformed or over the limits).
    #[error("intro points refused: {reason}")]
    BadIntroPoints {
        /// What is wrong.
        reason: String,
    },

    /// A gossiped intro point is not one tor would write (see `descriptor::intro_check`).
    #[error("intro point {index} refused: {fault}")]
    UnusableIntroPoint {
        /// Its position in the list.
        index: usize,
        /// What is wrong with it.
        fault: crate::descriptor::IntroPointFault,
    },

    /// There is nothing to merge.
    #[error("no introduction points to publish: every instance descriptor was empty or missing")]
    NoIntroPoints,

    /// A consensus or microdescriptor document could not be used.
    #[error("bad {what}: {reason}")]
    BadDirectoryDoc {
        /// Which document ("consensus", "microdescriptor").
        what: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The consensus lacks a shared random value needed for the HSDir ring.
    #[error("the consensus has no {which} shared random value; wait for the next consensus")]
    MissingSrv {
        /// "current" or "previous".
        which: &'static str,
    },

    /// Building or signing a descriptor failed.
    #[error("could not build descriptor: {0}")]
    Build(String),

    /// A time outside the range the time-period arithmetic supports.
    #[error("time {0} is out of the supported range")]
    TimeOutOfRange(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
