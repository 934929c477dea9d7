//! A compact, versioned encoding of intro points for sharing them between
//! nodes (gossip). Input from peers is hostile: decoding bounds every size,
//! validates every key and refuses any intro point tor would not have written
//! ([`super::intro_check`]) before anything is used.
//!
//! ```text
//! "RBI1" | u8 count (<= 20) | count × ( u8 nspec (2..=4) | nspec × linkspec
//!        (u8 type | u8 len | body) | ntor key [32] | auth key [32] | enc key [32] )
//! ```
//!
//! [`decode_intro_points_bytes`] reads the binary form (what fuzzers feed);
//! [`decode_intro_points`] is the base64 text that gossip carries.

use super::intro_check::{check_intro_point, MAX_LINK_SPECIFIERS};
use super::{IntroPointDesc, MAX_INTRO_POINTS};
use crate::err::{Error, Result};
use base64::Engine;
use tor_bytes::{Reader, Writer};
use tor_linkspec::EncodedLinkSpec;
use tor_llcrypto::pk::{curve25519, ed25519};

const MAGIC: &[u8; 4] = b"RBI1";
/// Largest encoded set accepted: 20 intro points with every link specifier
/// tor writes take 3,625 bytes.
pub const MAX_ENCODED_LEN: usize = 4096;

/// Encode the usable intro points of `ips` (the first 20 that pass
/// [`check_intro_point`]: what peers would refuse is not sent) to base64 text.
pub fn encode_intro_points(ips: &[IntroPointDesc]) -> String {
    let usable: Vec<&IntroPointDesc> = ips
        .iter()
        .filter(|ip| check_intro_point(ip).is_ok())
        .collect();
    write_points(&usable)
}

/// The encoding of `ips` as they are, unchecked: what a hostile member could send
/// (tests only). Counts and lengths over one byte wrap, as a raw writer's would.
#[cfg(any(test, feature = "testing"))]
pub fn encode_intro_points_unchecked(ips: &[IntroPointDesc]) -> String {
    write_points(&ips.iter().collect::<Vec<_>>())
}

/// The binary form of the first 20 of `ips`, in base64.
fn write_points(ips: &[&IntroPointDesc]) -> String {
    let ips = &ips[..ips.len().min(MAX_INTRO_POINTS)];
    let mut out: Vec<u8> = Vec::with_capacity(16 + ips.len() * 200);
    out.extend_from_slice(MAGIC);
    // At most MAX_INTRO_POINTS (20).
    out.push(ips.len() as u8);
    for ip in ips {
        // 2..=4 for checked points.
        out.push(ip.link_specifiers().len() as u8);
        for s in ip.link_specifiers() {
            // Writing into a Vec cannot fail except for a body over 255 bytes,
            // which no link specifier read with a one-byte length has.
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
pub fn decode_intro_points(text: &str) -> Result<Vec<IntroPointDesc>> {
    if text.len() > MAX_ENCODED_LEN.div_ceil(3) * 4 + 4 {
        return Err(bad(format!(
            "encoded intro points too long ({} bytes)",
            text.len()
        )));
    }
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim())
        .map_err(|e| bad(format!("not base64: {e}")))?;
    decode_intro_points_bytes(&raw)
}

fn bad(reason: String) -> Error {
    Error::BadIntroPoints { reason }
}

/// Decode the binary form (the base64-decoded text of [`decode_intro_points`]).
pub fn decode_intro_points_bytes(raw: &[u8]) -> Result<Vec<IntroPointDesc>> {
    if raw.len() > MAX_ENCODED_LEN {
        return Err(bad(format!(
            "encoded intro points too long ({} bytes)",
            raw.len()
        )));
    }
    let mut r = Reader::from_slice(raw);
    let magic: [u8; 4] = r.extract().map_err(|_| bad("truncated header".into()))?;
    if &magic != MAGIC {
        return Err(bad("unknown intro-point encoding (wrong version?)".into()));
    }
    let count = r.take_u8().map_err(|_| bad("truncated header".into()))? as usize;
    if count > MAX_INTRO_POINTS {
        return Err(bad(format!(
            "{count} intro points, at most {MAX_INTRO_POINTS} allowed"
        )));
    }
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let ip = decode_one(&mut r, index)?;
        check_intro_point(&ip).map_err(|fault| Error::UnusableIntroPoint { index, fault })?;
        out.push(ip);
    }
    if r.remaining() != 0 {
        return Err(bad(format!("{} trailing bytes", r.remaining())));
    }
    Ok(out)
}

/// Intro point `index` of the binary form.
fn decode_one(r: &mut Reader<'_>, index: usize) -> Result<IntroPointDesc> {
    let bad = |what: &str| bad(format!("intro point {index}: {what}"));
    let n = r.take_u8().map_err(|_| bad("truncated"))? as usize;
    if n == 0 || n > MAX_LINK_SPECIFIERS {
        return Err(bad(&format!(
            "{n} link specifiers (at most {MAX_LINK_SPECIFIERS})"
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
    IntroPointDesc::builder()
        .link_specifiers(specs)
        .ipt_kp_ntor(curve25519::PublicKey::from(ntor))
        .kp_hs_ipt_sid(sid.into())
        .kp_hss_ntor(curve25519::PublicKey::from(svc).into())
        .build()
        .map_err(|e| bad(&e.to_string()))
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
        assert!(decode_intro_points(&e)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        let mut magic = raw.clone();
        magic[3] = b'9';
        let e = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&magic);
        assert!(decode_intro_points(&e)
            .unwrap_err()
            .to_string()
            .contains("version"));
        let mut many = raw.clone();
        many[4] = 21;
        let e = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&many);
        assert!(decode_intro_points(&e)
            .unwrap_err()
            .to_string()
            .contains("at most 20"));
        assert!(decode_intro_points("!!!").is_err());
    }

    #[test]
    fn points_tor_would_not_write_are_refused_and_never_sent() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let good = fake_intro_point(&mut rng);
        // A member's point padded with a 255-byte specifier of an unknown type.
        let fat = crate::fixture::oversized_intro_point(&mut rng, 1);
        let e = decode_intro_points(&encode_intro_points_unchecked(&[good.clone(), fat.clone()]))
            .unwrap_err();
        assert!(
            matches!(e, Error::UnusableIntroPoint { index: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("tor writes"), "{e}");
        // Our own encoder leaves it out, so an honest advert is never refused.
        let enc = encode_intro_points(&[fat.clone(), good.clone()]);
        assert_eq!(decode_intro_points(&enc).unwrap().len(), 1);
        // Five specifiers: over the count before any is read.
        let mut raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encode_intro_points(&[good]))
            .unwrap();
        raw[5] = 5;
        let e = decode_intro_points_bytes(&raw).unwrap_err();
        assert!(e.to_string().contains("at most 4"), "{e}");
        // The longest honest advert fits the bound with room to spare.
        let full: Vec<_> = (0..20)
            .map(|_| crate::fixture::full_intro_point(&mut rng))
            .collect();
        let enc = encode_intro_points(&full);
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&enc)
            .unwrap();
        assert_eq!(raw.len(), 3_625);
        assert!(raw.len() <= MAX_ENCODED_LEN);
        assert_eq!(decode_intro_points(&enc).unwrap().len(), 20);
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
