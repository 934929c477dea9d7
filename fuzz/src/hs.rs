//! Onion-service bytes: instance descriptors and gossiped intro points.

use std::sync::OnceLock;
use std::time::SystemTime;

use base64::Engine;
use rustbalance_hs::descriptor::{decode_intro_points, encode_intro_points, parse_descriptor};
use rustbalance_hs::time::{from_unix, TimeParams};
use rustbalance_hs::{IdentityKey, OnionAddress};

/// The time (Unix seconds) descriptors are parsed at; seeds are built for it.
pub const DESCRIPTOR_NOW: u64 = 1_795_000_000;
const TP: TimeParams = TimeParams::REAL_NETWORK;

/// The instance key whose descriptors `hs_descriptor` parses.
pub fn descriptor_key() -> IdentityKey {
    IdentityKey::from_seed(&[7u8; 32])
}

fn address() -> &'static OnionAddress {
    static ADDRESS: OnceLock<OnionAddress> = OnceLock::new();
    ADDRESS.get_or_init(|| descriptor_key().address())
}

/// `parse_descriptor` (outer layer, signature, both encrypted layers) on any text.
pub fn hs_descriptor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now: SystemTime = from_unix(DESCRIPTOR_NOW);
    let _ = parse_descriptor(text, address(), &TP, now);
}

/// `decode_intro_points` on any text; the first byte chooses between base64 of the
/// rest (reaches the binary field parsers) and the rest as text (the base64 layer).
/// What decodes encodes back to the same text.
pub fn intro_points(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode & 1 == 0 {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(rest)
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    if let Ok(ips) = decode_intro_points(&text) {
        let encoded = encode_intro_points(&ips);
        let again = decode_intro_points(&encoded).expect("our own encoding decodes");
        assert_eq!(encode_intro_points(&again), encoded);
    }
}
