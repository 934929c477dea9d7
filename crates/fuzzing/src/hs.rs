//! Onion-service bytes: instance descriptors, gossiped intro points, the consensus and
//! microdescriptors, key files.

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use base64::Engine;
use rustbalance_hs::descriptor::{decode_intro_points, encode_intro_points, parse_descriptor};
use rustbalance_hs::ring::{parse_microdescs, Consensus, HsDirSet};
use rustbalance_hs::sealed::{sealed_address, SealParams};
use rustbalance_hs::time::{from_unix, TimeParams};
use rustbalance_hs::{IdentityKey, OnionAddress};
use tor_checkable::{SelfSigned, TimeBound};
use tor_netdoc::doc::hsdesc::{HsDescInner, HsDescMiddle};

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

/// `parse_descriptor` (outer layer, signature, both encrypted layers) on any text, and
/// what a fetch-mode backend's descriptor goes through after it: a descriptor that parses
/// is recorded as a backend's fetch and listed (`rustbalance_node::cluster::backends`),
/// as the backend task does with an `HS_DESC_CONTENT` event's text (the event itself is
/// `control_reply`'s).
pub fn hs_descriptor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now: SystemTime = from_unix(DESCRIPTOR_NOW);
    if let Ok(d) = parse_descriptor(text, address(), &TP, now) {
        use rustbalance_node::cluster::backends::{BackendTimers, Backends};
        let mut b = Backends::new(vec![("b".into(), *address())], BackendTimers::default());
        let t = std::time::Instant::now();
        b.take_due(t);
        b.fetched(address(), &d, t, now);
        let _ = (b.listed(t, now), b.status(t, now));
    }
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

/// `Consensus::parse` and `parse_microdescs` on any text (NUL separates the consensus from
/// the microdescriptors), then what the publisher does with them: the HSDir set, the
/// network's clock parameters, the live slots with their SRVs and the HSDirs responsible
/// for a descriptor in each. No panic.
pub fn consensus(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (cons, mds) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(c) = Consensus::parse(cons) else {
        return;
    };
    let dirs = HsDirSet::new(&c, &parse_microdescs(mds));
    for testing in [false, true] {
        let Ok(tp) = c.time_params(testing) else {
            continue;
        };
        for slot in tp.live_slots(DESCRIPTOR_NOW, c.valid_after_unix()) {
            let srv = c.srv_for(&tp, &slot);
            let _ = dirs.responsible(&[1; 32], slot.period_num, tp.period_minutes, &srv);
        }
    }
}

/// The passphrase of the sealed seeds of `key_files`.
pub const SEAL_PASSPHRASE: &[u8] = b"fuzz passphrase";

/// A key file in any format: `IdentityKey::from_bytes` (tor's secret key file, PKCS#8
/// PEM), then the sealed-file header (`sealed_address`) and, when its argon2 parameters
/// are the cheap test ones, `unseal` with [`SEAL_PASSPHRASE`] (dearer ones only cost time
/// within the limits the parser enforces). No panic; what opens has the header's address.
pub fn key_files(data: &[u8]) {
    let _ = IdentityKey::from_bytes(data);
    let Ok(address) = sealed_address(Path::new("fuzz"), data) else {
        return;
    };
    let cheap = SealParams::fast_for_tests();
    let u32_at = |i: usize| {
        data.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let params = (u32_at(16), u32_at(20), u32_at(24));
    if params == (Some(cheap.m_cost), Some(cheap.t_cost), Some(cheap.p_cost)) {
        if let Ok(key) = IdentityKey::unseal(data, SEAL_PASSPHRASE) {
            assert_eq!(key.address(), address, "unsealed a key of another address");
        }
    }
}

/// The descriptor's decrypted layers, which only the descriptor's key holder can put
/// behind a valid MAC and signature: the first byte chooses the middle layer
/// (`HsDescMiddle::parse`) or the inner one (`HsDescInner::parse`, then its certificate
/// checks), on the rest as text. These are arti's parsers, which `parse_descriptor`
/// runs after decrypting. No panic.
pub fn hs_layers(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 1 == 0 {
        let _ = HsDescMiddle::parse(text);
    } else if let Ok((_, inner)) = HsDescInner::parse(text) {
        let _ = inner.dangerously_assume_timely().check_signature();
    }
}
