//! What travels over the join endpoint: the request a joining node sends, the grant it
//! gets back, and the protocol's limits.
//!
//! ```text
//!  POST /.well-known/rustbalance/join/<token id>
//!       {v, ts, nonce, name, wg key, endpoint, identity, mac}
//!  200 {v, cluster id, cluster secret, gossip port, generation, salt, members, admitted_by,
//!       authority, cert}
//!      X-RustBalance-MAC: HMAC(token secret, "response" | nonce | body)
//! ```

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Request path of the join endpoint, followed by the token's path id.
pub const PATH_PREFIX: &str = "/.well-known/rustbalance/join/";
/// Largest request body accepted.
pub const MAX_BODY: usize = 8 * 1024;
/// Clock difference tolerated between the joining node and the cluster.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// The response header carrying the response MAC.
pub(crate) const MAC_HEADER: &str = "x-rustbalance-mac";
/// The join protocol version both sides speak.
pub(crate) const VERSION: u32 = 1;

/// What a joining node sends (JSON body).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Protocol version (1).
    pub v: u32,
    /// Unix time of the request.
    pub ts: u64,
    /// 32 random hex characters, never reused.
    pub nonce: String,
    /// The joining node's name.
    pub name: String,
    /// Its WireGuard public key (base64).
    pub wg_public_key: String,
    /// Where its WireGuard listens, as the other nodes reach it.
    pub endpoint: SocketAddr,
    /// Its node identity's public key (what its member certificate binds).
    pub identity: String,
    /// HMAC of the fields above with the token secret (hex).
    pub mac: String,
}

/// One cluster member as a joining node learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node name.
    pub name: String,
    /// WireGuard public key (base64).
    pub wg_public_key: String,
    /// WireGuard endpoint.
    pub endpoint: SocketAddr,
}

/// What the cluster answers a valid join request with.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinGrant {
    /// Protocol version (1).
    pub v: u32,
    /// The cluster id (also the mesh's address prefix).
    pub cluster_id: String,
    /// The cluster secret (hex).
    pub cluster_secret: String,
    /// Gossip UDP port on the overlay.
    pub gossip_port: u16,
    /// The join generation the token belongs to.
    pub join_generation: u64,
    /// Its salt (hex; empty for an unsalted generation, and from older nodes).
    #[serde(default)]
    pub join_salt: String,
    /// Members reachable over the mesh (the admitting node first).
    pub members: Vec<MemberInfo>,
    /// The node that admitted the request.
    pub admitted_by: String,
    /// The authority's public key every member trusts.
    pub authority: String,
    /// The new node's member certificate, signed by the authority.
    pub cert: String,
}

impl std::fmt::Debug for JoinGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinGrant")
            .field("cluster_id", &self.cluster_id)
            .field("gossip_port", &self.gossip_port)
            .field("members", &self.members)
            .field("admitted_by", &self.admitted_by)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Drop for JoinGrant {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.cluster_secret);
    }
}

/// Node names: 1–32 of `[A-Za-z0-9_-]`.
pub fn valid_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The value of header `name` in an HTTP head (case-insensitive), if present.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Where the HTTP head in `buf` ends (the index after the blank line), once it is complete.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}
