//! Joining a cluster over Tor with one token, and everything a member does about joins:
//! single-use tokens, token rotation, admitted nodes' mesh peers, and node removal.
//!
//! A join token is one opaque string carrying the master address, its virtual port, a token
//! id (its expiry, random bytes and a tag) and a token secret, both minted from the
//! generation's *join key* (`HKDF-SHA256` of the cluster secret and the *join generation*:
//! a counter and a random salt). Every member checks a token from its id alone, without any
//! list of tokens; a spent token's id is gossiped (`join_spent`) so no member takes it again
//! before it expires; `token rotate` raises the generation, voiding every token made before.
//!
//! ```text
//!  new node ── tor SOCKS ──▶ master.onion:port ──▶ some node's tor ──▶ its proxy
//!     POST /.well-known/rustbalance/join/<path id>        │ Intercept::classify: path id
//!     {ts, nonce, name, wg key, endpoint, mac}             │ matches the current token?
//!                                                          ├─ no:  bytes go to the target untouched
//!                                                          └─ yes: JoinService::serve
//!                                 rate limit ─▶ body limit ─▶ MAC ─▶ clock ─▶ replay ─▶ admit
//!     ◀── 200 {cluster id, cluster secret, gossip port, members' WireGuard keys + endpoints}
//!         X-RustBalance-MAC: HMAC(token secret, "response" | nonce | body)
//! ```
//!
//! The path id is the token id, its tag checked in constant time: without a token nobody
//! can form one, and whatever does not match (wrong, expired, spent) is answered by the
//! target exactly as any other request — the endpoint reveals nothing to the
//! unauthenticated. The stream is
//! end-to-end encrypted by Tor and reaches only nodes listed in the descriptor signed with
//! the master key; the MACs bind both directions to the token and the request's nonce.
//! The master key is never sent.
//!
//! | module | what |
//! |---|---|
//! | [`token`] | [`JoinToken`], [`JoinKey`], [`JoinGeneration`], minting, MACs |
//! | [`spent`] | spent token ids, kept until they expire |
//! | [`message`] | request and grant formats, protocol limits |
//! | [`service`] | the join endpoint (with `limiter`, `replay`, `refusal`, [`counters`]) |
//! | [`admission`] | the endpoint's hand-over to the node |
//! | [`client`] | the joining side, `rustbalance join` over a temporary tor |
//! | [`command`] | `token create/rotate`, `node remove` against a running node |
//! | [`node`] | a member's join state: generation, removals, `node remove` |
//! | `grant` | admitting a node: mesh peer, gossip, the grant |
//! | `sync` | following gossip every `sync_interval` |
//! | [`setup`] | the node directory `init` and `join` write |
//! | [`removal`] | signed revocations, files, the removed marker |
//! | `target` | which member a removal is about (its certificate, not its claims) |
//! | [`peers`] | saved and admitted mesh peers |
//! | [`rotation`] | when to rotate, which generation wins, `node remove`'s wait |
//! | [`timers`] | the timers, as configuration |
//! | [`error`] | [`JoinError`] |

pub mod admission;
pub mod client;
pub mod command;
pub mod counters;
pub mod error;
mod grant;
mod limiter;
pub mod message;
pub mod node;
pub mod peer_gossip;
pub mod peers;
mod refusal;
pub mod removal;
mod replay;
pub mod rotation;
pub mod service;
pub mod setup;
pub mod spent;
mod sync;
mod target;
pub mod timers;
pub mod token;

pub use admission::{Admission, AdmitError, AdmitResult, Admitter};
pub use client::{build_request, read_response, request_join, JoinParams};
pub use counters::JoinCounters;
pub use error::{JoinError, TokenProblem};
pub use message::{
    valid_name, JoinGrant, JoinRequest, MemberInfo, MAX_BODY, MAX_SKEW, PATH_PREFIX,
};
pub use node::{JoinNode, JoinNodeParams};
pub(crate) use peers::mesh_key;
pub use peers::{load_saved_peers, SavedPeer};
pub use removal::{load_removals, refuse_if_removed, removed_marker, Removal};
pub use service::JoinService;
pub use timers::{JoinTimers, REMOVAL_GRACE, ROTATE_AFTER_REMOVAL, ROTATION_FALLBACK};
pub use token::{JoinGeneration, JoinKey, JoinToken, DEFAULT_TTL, MAX_TTL, TOKEN_PREFIX};

/// Test helpers other modules of the crate use (under the old `join_node::tests` path too).
#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use super::peers::tests::key;
}
