//! A compact, versioned encoding of intro points for sharing them between
//! nodes (gossip). Input from peers is hostile: decoding bounds every size
//! and validates every key before anything is used.
//!
//! ```text
//! "RBI1" | u8 count (<= 20) | count × ( u8 nspec (1..=8) | nspec × linkspec
//!        (u8 type | u8 len | body) | ntor key [32] | auth key [32] | enc key [32] )
//! ```

use super::{IntroPointDesc, MAX_INTRO_POINTS};
use base64::Engine;
use tor_bytes::{Reader, Writer};
use tor_linkspec::EncodedLinkSpec;
use tor_llcrypto::pk::{curve25519, ed25519};

const MAGIC: &[u8; 4] = b"RBI1";
/// Largest encoded set accepted (20 intro points with generous link specifiers).
pub const MAX_ENCODED_LEN: usize = 8192;
const MAX_LINK_SPECS: usize = 8;

/// Encode intro points (at most 20) to base64 text.
pub fn encode_intro_points(ips: &[IntroPointDesc]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(16 + ips.len() * 200);
    out.extend_from_slice(MAGIC);
    let ips = &ips[..ips.len().min(MAX_INTRO_POINTS)];
    out.push(ips.len() as u8);
    for ip in ips {
        let specs = &ip.link_specifiers()[..ip.link_specifiers().len().min(MAX_LINK_SPECS)];
        out.push(specs.len() as u8);
        for s in specs {
            // Writing into a Vec cannot fail except for a body over 255 bytes,
            // which no link specifier from a parsed descriptor has.
            let _ = out.write(s);
        }
        out.extend_from_slice(ip.ipt_ntor_key().as_bytes());
        out.extend_from_slice(ip.ipt_sid_key().as_bytes());
        out.extend_from_slice(ip.svc_ntor_key().as_bytes());
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
}

/// Decode what [`encode_intro_points`] produced; any deviation is an error
/// that says what is wrong.
pub fn decode_intro_points(text: &str) -> Result<Vec<IntroPointDesc>, String> {
    if text.len() > MAX_ENCODED_LEN * 4 / 3 + 4 {
        return Err(format!(
            "encoded intro points too long ({} bytes)",
            text.len()
        ));
    }
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let mut r = Reader::from_slice(&raw);
    let magic: [u8; 4] = r.extract().map_err(|_| "truncated header".to_string())?;
    if &magic != MAGIC {
        return Err("unknown intro-point encoding (wrong version?)".into());
    }
    let count = r.take_u8().map_err(|_| "truncated header")? as usize;
    if count > MAX_INTRO_POINTS {
        return Err(format!(
            "{count} intro points, at most {MAX_INTRO_POINTS} allowed"
        ));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bad = |what: &str| format!("intro point {i}: {what}");
        let n = r.take_u8().map_err(|_| bad("truncated"))? as usize;
        if n == 0 || n > MAX_LINK_SPECS {
            return Err(bad(&format!(
                "{n} link specifiers (allowed 1..={MAX_LINK_SPECS})"
            )));
        }
        let mut specs = Vec::with_capacity(n);
        for _ in 0..n {
            let s: EncodedLinkSpec = r.extract().map_err(|_| bad("truncated link specifier"))?;
            s.parse()
                .map_err(|e| bad(&format!("bad link specifier: {e}")))?;
            specs.push(s);
        }
        let ntor: [u8; 32] = r.extract().map_err(|_| bad("truncated keys"))?;
        let sid: [u8; 32] = r.extract().map_err(|_| bad("truncated keys"))?;
        let svc: [u8; 32] = r.extract().map_err(|_| bad("truncated keys"))?;
        let sid = ed25519::PublicKey::from_bytes(&sid)
            .map_err(|_| bad("auth key is not an ed25519 point"))?;
        let ip = IntroPointDesc::builder()
            .link_specifiers(specs)
            .ipt_kp_ntor(curve25519::PublicKey::from(ntor))
            .kp_hs_ipt_sid(sid.into())
            .kp_hss_ntor(curve25519::PublicKey::from(svc).into())
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        out.push(ip);
    }
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes", r.remaining()));
    }
    Ok(out)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::fixture::fake_intro_point;
    use rand::SeedableRng;

    #[test]
    fn round_trip_and_hostile_input() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let ips: Vec<_> = (0..3).map(|_| fake_intro_point(&mut rng)).collect();
        let enc = encode_intro_points(&ips);
        let back = decode_intro_points(&enc).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in ips.iter().zip(&back) {
            assert_eq!(a.ipt_ntor_key().as_bytes(), b.ipt_ntor_key().as_bytes());
            assert_eq!(a.link_specifiers(), b.link_specifiers());
        }
        assert!(enc.len() < 3 * 250, "compact: {} bytes", enc.len());
        // Every truncation is an error, never a panic.
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&enc)
            .unwrap();
        for cut in 0..raw.len() {
            let t = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw[..cut]);
            assert!(decode_intro_points(&t).is_err(), "cut at {cut}");
        }
        // Trailing garbage, wrong magic, too many.
        let mut extra = raw.clone();
        extra.push(0);
        let e = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&extra);
        assert!(decode_intro_points(&e).unwrap_err().contains("trailing"));
        let mut magic = raw.clone();
        magic[3] = b'9';
        let e = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&magic);
        assert!(decode_intro_points(&e).unwrap_err().contains("version"));
        let mut many = raw.clone();
        many[4] = 21;
        let e = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&many);
        assert!(decode_intro_points(&e).unwrap_err().contains("at most 20"));
        assert!(decode_intro_points("!!!").is_err());
    }
}

/// The RSA identity (upper-case hex, as in tor's `circuit-status` paths) of the relay an
/// intro point is at, from its legacy-id link specifier.
pub fn intro_point_relay(ip: &tor_netdoc::doc::hsdesc::IntroPointDesc) -> Option<String> {
    ip.link_specifiers()
        .iter()
        .find_map(|s| match s.parse().ok()? {
            tor_linkspec::LinkSpec::RsaId(id) => Some(hex::encode_upper(id.as_bytes())),
            _ => None,
        })
}

#[cfg(test)]
mod relay_tests {
    use rand::SeedableRng;

    #[test]
    fn relay_fingerprint_of_a_fixture_intro_point() {
        let ip = crate::fixture::fake_intro_point(&mut rand_chacha::ChaCha20Rng::seed_from_u64(2));
        let fp = super::intro_point_relay(&ip).expect("fixture has an RSA id");
        assert_eq!(fp.len(), 40);
        assert!(fp
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
    }
}
