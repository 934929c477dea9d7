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
    #[error("cannot seal the master key: {problem}")]
    Seal {
        /// What is wrong.
        problem: SealedKeyProblem,
    },

    /// A sealed key file could not be opened: wrong passphrase, tampered, truncated,
    /// an unknown format version or parameters over the limits. (The path only names
    /// the file; this crate reads none.)
    #[error("cannot unseal {path}: {problem}")]
    Unseal {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        problem: SealedKeyProblem,
    },

    /// A key file has the wrong format.
    #[error("key file {path} is not a usable onion-service key: {problem}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: KeyFileProblem,
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

/// Why the bytes of a plain key file are not a usable ed25519 onion-service key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileProblem {
    /// tor's secret key file has the wrong length.
    #[error(
        "a tor hs_ed25519_secret_key file is 96 bytes, this one is {len} (truncated or corrupt)"
    )]
    TorSecretLength {
        /// Its length.
        len: usize,
    },
    /// The secret scalar is not a valid (clamped) ed25519 key.
    #[error("the secret scalar is not a valid ed25519 key")]
    InvalidScalar,
    /// tor's public key file was given instead of the secret one.
    #[error("this is tor's PUBLIC key file; give hs_ed25519_secret_key")]
    PublicKeyFile,
    /// A sealed key was given where a plain one was expected.
    #[error("it is sealed (encrypted): open it with its passphrase")]
    Sealed,
    /// Neither tor's format nor PEM.
    #[error(
        "unknown format: expected tor's hs_ed25519_secret_key (starts with \
         \"== ed25519v1-secret: type0 ==\") or a PEM \"BEGIN PRIVATE KEY\" file"
    )]
    UnknownFormat,
    /// A PEM file that is not UTF-8 text.
    #[error("PEM file is not valid text")]
    PemNotText,
    /// An encrypted PKCS#8 PEM file.
    #[error(
        "encrypted PEM keys are not supported; decrypt it first (openssl pkey -in KEY -out PLAIN)"
    )]
    PemEncrypted,
    /// Another PEM type than `PRIVATE KEY`.
    #[error("unsupported PEM type {0:?}")]
    PemType(String),
    /// A PEM file with nothing in it.
    #[error("empty PEM file")]
    PemEmpty,
    /// No END line.
    #[error("PEM file has no END PRIVATE KEY line (truncated?)")]
    PemUnterminated,
    /// The PEM body does not decode.
    #[error("PEM body is not valid base64: {0}")]
    PemBase64(String),
    /// The PEM body is another key type.
    #[error("PEM key is not a PKCS#8 ed25519 private key")]
    PemNotEd25519,
}

/// Why a descriptor's `descriptor-signing-key-cert` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningCertProblem {
    /// The item or its BEGIN line is missing.
    #[error("no descriptor-signing-key-cert")]
    Missing,
    /// No END line after the BEGIN line.
    #[error("descriptor-signing-key-cert has no END ED25519 CERT line (truncated?)")]
    Unterminated,
    /// The body does not decode.
    #[error("descriptor-signing-key-cert is not base64: {0}")]
    NotBase64(String),
    /// The bytes are not an ed25519 certificate.
    #[error("descriptor-signing-key-cert is malformed: {0}")]
    Malformed(String),
    /// The certificate does not name the key that signed it.
    #[error("descriptor-signing-key-cert has no signing-key extension: {0}")]
    NoSigningKey(String),
}

/// Why a sealed key file cannot be opened (or a key cannot be sealed). Never names
/// anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealedKeyProblem {
    /// Shorter than a sealed key.
    #[error("truncated: {len} bytes, a sealed key is {expected} bytes")]
    Truncated {
        /// Its length.
        len: usize,
        /// The length of every sealed key.
        expected: usize,
    },
    /// Longer than a sealed key.
    #[error("{len} bytes, a sealed key is exactly {expected} bytes (corrupt, or something was appended)")]
    TooLong {
        /// Its length.
        len: usize,
        /// The length of every sealed key.
        expected: usize,
    },
    /// No magic.
    #[error("not a sealed RustBalance key (no \"rustbalance-key\" magic)")]
    NotSealed,
    /// A format version this build does not read.
    #[error(
        "unknown sealed-key format version {found}: this RustBalance reads version {supported} \
         (was it sealed by a newer RustBalance?)"
    )]
    Version {
        /// The version in the file.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// An argon2 parameter outside the hard limits.
    #[error("argon2 {what} {value} outside {min}..={max}{unit} (corrupt or hostile file)")]
    Params {
        /// Which parameter ("lanes", "passes", "memory").
        what: &'static str,
        /// Its value.
        value: u32,
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
        /// Unit suffix (" KiB" or "").
        unit: &'static str,
    },
    /// argon2 refused its parameters or failed.
    #[error("argon2: {0}")]
    Argon2(String),
    /// AEAD authentication failed.
    #[error("wrong passphrase or the file is corrupt (authentication failed)")]
    Authentication,
    /// Encryption failed.
    #[error("encryption failed")]
    Encryption,
    /// The sealed secret is not a valid key.
    #[error("the sealed secret is not a valid ed25519 key (corrupt file)")]
    InvalidSecret,
    /// The header's public key is not the sealed key's.
    #[error("the public key in the header does not match the sealed secret key")]
    PublicKeyMismatch,
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
