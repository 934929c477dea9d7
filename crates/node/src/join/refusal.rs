//! Why the join endpoint refused a request: the HTTP status it answers, the counter it
//! raises and the sentence it sends back.

use super::admission::AdmitError;
use super::counters::JoinCounters;
use super::message::{MAX_BODY, MAX_SKEW};
use std::sync::atomic::AtomicU64;

/// A refused join request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("too many join requests; wait a minute")]
    RateLimited,
    #[error("request head too large")]
    HeadTooLarge,
    #[error("body of {0} bytes; the limit is {MAX_BODY}")]
    BodyTooLarge(usize),
    #[error("a join request needs a Content-Length")]
    LengthRequired,
    #[error("the request head broke off")]
    HeadBrokeOff,
    #[error("the request body broke off")]
    BodyBrokeOff,
    #[error("bytes after the request body")]
    TrailingBytes,
    #[error("the body is not a join request ({0})")]
    NotARequest(serde_json::Error),
    #[error("protocol version {0} (this node speaks 1)")]
    Version(u32),
    #[error("token not accepted")]
    BadToken,
    #[error(
        "the joining node's clock is {off} s off this node's (limit {} s): fix its time (NTP)",
        MAX_SKEW.as_secs()
    )]
    Stale { off: u64 },
    #[error("the nonce must be 32 hex characters")]
    BadNonce,
    #[error("replayed request")]
    Replayed,
    #[error("the node name must be 1-32 letters, digits, '-' or '_'")]
    BadName,
    #[error("this node is still starting; try again")]
    Starting,
    #[error(
        "this node does not hold the master key and cannot admit nodes; asking again over \
         another circuit reaches another node"
    )]
    NotEligible,
    #[error("{0}")]
    Admit(AdmitError),
    #[error("{0}")]
    Encode(serde_json::Error),
}

impl Refusal {
    /// The status line's code and reason.
    pub(crate) fn status(&self) -> &'static str {
        use Refusal::*;
        match self {
            RateLimited => "429 Too Many Requests",
            HeadTooLarge => "431 Request Header Fields Too Large",
            BodyTooLarge(_) => "413 Content Too Large",
            LengthRequired => "411 Length Required",
            BadToken | Stale { .. } | Replayed | Admit(AdmitError::Removed(_)) => "403 Forbidden",
            Admit(
                AdmitError::NameTaken { .. }
                | AdmitError::KeyOfAnotherNode { .. }
                | AdmitError::IdentityOfAnotherNode { .. },
            ) => "409 Conflict",
            Admit(AdmitError::NotEligible) => "503 Service Unavailable",
            Starting | NotEligible => "503 Service Unavailable",
            Admit(_) => "500 Internal Server Error",
            HeadBrokeOff | BodyBrokeOff | TrailingBytes | NotARequest(_) | Version(_)
            | BadNonce | BadName | Encode(_) => "400 Bad Request",
        }
    }

    /// The counter this refusal raises.
    pub(crate) fn counter<'a>(&self, c: &'a JoinCounters) -> &'a AtomicU64 {
        use Refusal::*;
        match self {
            RateLimited => &c.rate_limited,
            HeadTooLarge | BodyTooLarge(_) | LengthRequired => &c.oversized,
            BadToken => &c.bad_token,
            Stale { .. } => &c.stale,
            Replayed => &c.replayed,
            Admit(AdmitError::Removed(_)) => &c.removed,
            Admit(
                AdmitError::NameTaken { .. }
                | AdmitError::KeyOfAnotherNode { .. }
                | AdmitError::IdentityOfAnotherNode { .. },
            ) => &c.collision,
            NotEligible | Admit(AdmitError::NotEligible) => &c.not_eligible,
            Starting | Admit(_) => &c.failed,
            HeadBrokeOff | BodyBrokeOff | TrailingBytes | NotARequest(_) | Version(_)
            | BadNonce | BadName | Encode(_) => &c.malformed,
        }
    }
}
