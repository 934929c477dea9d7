//! Overlay addresses, derived from public data so that nobody has to plan them.
//!
//! * The cluster gets an IPv6 unique-local /64 (RFC 4193 style):
//!   `fd` + the first 40 bits of `SHA-256("rustbalance-mesh prefix v1\0" || cluster_id)` as the
//!   global ID, subnet ID `0000`. Every node of a cluster computes the same prefix from the
//!   cluster id (for example the master onion address), and two clusters almost surely get
//!   different ones.
//! * A node's interface ID is the first 64 bits of
//!   `SHA-256("rustbalance-mesh iid v1\0" || wireguard_public_key)`. If those 64 bits are a
//!   reserved interface ID (all zeros, the subnet-router anycast, or the RFC 5453 reserved
//!   subnet anycast range `fdff:ffff:ffff:ff80`..`ffff`), the next 64 bits of the hash are used
//!   instead, and so on.
//!
//! A node therefore has exactly one overlay address, known to anyone who knows its public key,
//! and a peer's WireGuard AllowedIPs is that address as a /128. With 64 hashed bits, the chance
//! that any two of `n` nodes collide is about `n² / 2^65` (10⁻¹⁶ for a thousand nodes).

use std::fmt;
use std::net::Ipv6Addr;

use sha2::{Digest, Sha256};

use crate::key::PublicKey;

const PREFIX_DOMAIN: &[u8] = b"rustbalance-mesh prefix v1\0";
const IID_DOMAIN: &[u8] = b"rustbalance-mesh iid v1\0";

/// The cluster's overlay /64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverlayPrefix([u8; 8]);

impl OverlayPrefix {
    /// Prefix length of the overlay network.
    pub const LEN: u8 = 64;

    /// The prefix of the cluster named `cluster_id`.
    pub fn for_cluster(cluster_id: &[u8]) -> Self {
        let h = Sha256::new()
            .chain_update(PREFIX_DOMAIN)
            .chain_update(cluster_id)
            .finalize();
        let mut p = [0u8; 8];
        p[0] = 0xfd;
        p[1..6].copy_from_slice(&h[..5]);
        // p[6..8]: subnet ID 0.
        Self(p)
    }

    /// The network address (`fdxx:xxxx:xxxx::`).
    pub fn network(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.0);
        Ipv6Addr::from(a)
    }

    /// The overlay address of the node holding `key`.
    pub fn addr_of(&self, key: &PublicKey) -> Ipv6Addr {
        let h = Sha256::new()
            .chain_update(IID_DOMAIN)
            .chain_update(key.as_bytes())
            .finalize();
        let iid = h
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_be_bytes(b)
            })
            .find(|&iid| !is_reserved_iid(iid))
            // Four independent 64-bit values all reserved: probability ~2^-220.
            .unwrap_or(1);
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.0);
        a[8..].copy_from_slice(&iid.to_be_bytes());
        Ipv6Addr::from(a)
    }

    /// Whether `addr` lies inside this /64.
    pub fn contains(&self, addr: &Ipv6Addr) -> bool {
        addr.octets()[..8] == self.0
    }
}

/// RFC 4291 subnet-router anycast (all zeros) and RFC 5453 reserved subnet anycast IDs.
fn is_reserved_iid(iid: u64) -> bool {
    iid == 0 || iid >= 0xfdff_ffff_ffff_ff80
}

impl fmt::Display for OverlayPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), Self::LEN)
    }
}

impl fmt::Debug for OverlayPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OverlayPrefix({self})")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn key(i: u32) -> PublicKey {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        PublicKey::from_bytes(b)
    }

    #[test]
    fn prefix_is_a_deterministic_ula() {
        let p = OverlayPrefix::for_cluster(b"cluster-a");
        assert_eq!(p, OverlayPrefix::for_cluster(b"cluster-a"));
        assert_ne!(p, OverlayPrefix::for_cluster(b"cluster-b"));
        let net = p.network();
        assert_eq!(net.octets()[0], 0xfd);
        assert_eq!(&net.octets()[6..], &[0u8; 10]);
        assert!(p.to_string().ends_with("::/64"), "{p}");
    }

    #[test]
    fn addresses_are_deterministic_distinct_and_inside_the_prefix() {
        let p = OverlayPrefix::for_cluster(b"x");
        let n = 20_000;
        let mut seen = HashSet::with_capacity(n);
        for i in 0..n as u32 {
            let a = p.addr_of(&key(i));
            assert_eq!(a, p.addr_of(&key(i)));
            assert!(p.contains(&a));
            assert!(!is_reserved_iid(u64::from_be_bytes(
                a.octets()[8..].try_into().unwrap()
            )));
            assert!(seen.insert(a), "collision at {i}");
        }
        // Same key, other cluster: same interface ID is fine, but the prefix differs.
        let q = OverlayPrefix::for_cluster(b"y");
        assert!(!p.contains(&q.addr_of(&key(0))));
    }

    #[test]
    fn known_answer() {
        // Pinned so that a change of the derivation (which would re-address every deployed
        // node) cannot go unnoticed.
        let p = OverlayPrefix::for_cluster(b"example.onion");
        let a = p.addr_of(&PublicKey::from_bytes([7u8; 32]));
        assert_eq!(p.to_string(), KA_PREFIX);
        assert_eq!(a.to_string(), KA_ADDR);
    }

    // Computed independently with Python hashlib.
    const KA_PREFIX: &str = "fd87:c083:e43e::/64";
    const KA_ADDR: &str = "fd87:c083:e43e:0:179:7911:86b1:a004";
}
