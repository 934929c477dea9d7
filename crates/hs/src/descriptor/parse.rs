//! Parse, decrypt and validate a descriptor knowing only its onion address.

use super::intro_check::{usable_intro_points, IntroPointFault};
use super::MAX_DESCRIPTOR_SIZE;
use crate::address::OnionAddress;
use crate::err::{Error, Result, SigningCertProblem};
use crate::time::{fmt_time, TimeParams};
use base64::Engine;
use std::time::SystemTime;
use tor_checkable::{TimeBound, TimeValidityError};
use tor_hscrypto::pk::{HsBlindId, HsIdKey};
use tor_netdoc::doc::hsdesc::pow::PowParams;
use tor_netdoc::doc::hsdesc::{HsDesc, IntroPointDesc};
use tor_protover::Protocols;

/// How many time periods either side of `now` are tried to find the one a
/// descriptor was made for.
const PERIOD_SEARCH: u64 = 2;

/// A decrypted, validated descriptor and what a client would see in it.
#[derive(Debug, Clone)]
pub struct ParsedDescriptor {
    /// The onion address it belongs to.
    pub address: OnionAddress,
    /// The time period it was made for.
    pub period_num: u64,
    /// The blinded key it is published under.
    pub blinded_key: [u8; 32],
    /// `revision-counter`.
    pub revision: u64,
    /// `descriptor-lifetime` in minutes.
    pub lifetime_minutes: u16,
    /// When the descriptor-signing-key certificate expires.
    pub signing_cert_expiry: SystemTime,
    /// Introduction points: those tor would write ([`super::intro_check`]).
    pub intro_points: Vec<IntroPointDesc>,
    /// Intro points left out of [`Self::intro_points`] (position, what is wrong).
    pub refused_intro_points: Vec<(usize, IntroPointFault)>,
    /// `flow-control` (protocol versions, sendme increment).
    pub flow_control: Option<(Protocols, u8)>,
    /// `pow-params` lines.
    pub pow_params: Vec<PowParams>,
    /// `single-onion-service`.
    pub single_onion: bool,
    /// Whether the service requires intro authentication (`intro-auth-required`).
    pub intro_auth_required: bool,
    /// Size in bytes.
    pub size: usize,
}

/// Parse, decrypt and validate `text` as a descriptor of `address`, valid at
/// `now`, for one of the time periods around `now` (periods of `tp`).
pub fn parse_descriptor(
    text: &str,
    address: &OnionAddress,
    tp: &TimeParams,
    now: SystemTime,
) -> Result<ParsedDescriptor> {
    parse_with(text, address, tp, now, None)
}

/// [`parse_descriptor`] for a descriptor restricted to authorized clients, decrypted as
/// the client holding `client` (what tor does with a `ClientOnionAuthDir` key).
pub fn parse_descriptor_as_client(
    text: &str,
    address: &OnionAddress,
    tp: &TimeParams,
    now: SystemTime,
    client: &super::ClientSecret,
) -> Result<ParsedDescriptor> {
    parse_with(text, address, tp, now, Some(&client.keypair()))
}

fn parse_with(
    text: &str,
    address: &OnionAddress,
    tp: &TimeParams,
    now: SystemTime,
    client: Option<&tor_hscrypto::pk::HsClientDescEncKeypair>,
) -> Result<ParsedDescriptor> {
    let bad = |reason: String| Error::BadDescriptor {
        address: address.to_string(),
        reason,
    };
    if text.len() > MAX_DESCRIPTOR_SIZE {
        return Err(Error::DescriptorTooLarge {
            size: text.len(),
            limit: MAX_DESCRIPTOR_SIZE,
        });
    }
    if !text.starts_with("hs-descriptor 3\n") {
        return Err(bad(
            "it does not start with \"hs-descriptor 3\" (not a v3 onion-service descriptor)".into(),
        ));
    }
    let signer = cert_signing_key(text).map_err(|p| bad(p.to_string()))?;
    let lifetime_minutes = outer_field(text, "descriptor-lifetime")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("missing or bad descriptor-lifetime".into()))?;

    let signing_cert_expiry =
        cert_expiry(text).ok_or_else(|| bad("descriptor-signing-key-cert is malformed".into()))?;
    if signing_cert_expiry < now {
        return Err(Error::DescriptorExpired {
            address: address.to_string(),
            expired: fmt_time(signing_cert_expiry),
            now: fmt_time(now),
        });
    }
    let id_key = HsIdKey::try_from(tor_hscrypto::pk::HsId::from(*address.public_key()))
        .map_err(|_| bad("the address is not a valid ed25519 point".into()))?;
    let centre = tp.period_at(now)?.interval_num();
    let first = centre.saturating_sub(PERIOD_SEARCH);
    let last = centre + PERIOD_SEARCH;
    // Nearest periods first: a live descriptor is almost always for the
    // current period or its neighbour, so usually one blinding suffices.
    let mut order: Vec<u64> = (first..=last).collect();
    order.sort_by_key(|n| (n.abs_diff(centre), *n < centre));
    let (period_num, blinded, subcred) = order
        .into_iter()
        .find_map(|n| {
            let (bk, sc) = id_key.compute_blinded_key(tp.period(n)).ok()?;
            (bk.as_bytes() == &signer).then_some((n, bk, sc))
        })
        .ok_or(Error::DescriptorNotForAddress {
            address: address.to_string(),
            first,
            last,
            period_minutes: tp.period_minutes,
        })?;
    let blinded_id: HsBlindId = blinded.id();
    let bound = HsDesc::parse_decrypt_validate(text, &blinded_id, &subcred, client)
        .map_err(|e| bad(describe_chain(&e)))?;
    bound.check_valid_at(&now).map_err(|e| match e {
        TimeValidityError::Expired(ago) => Error::DescriptorExpired {
            address: address.to_string(),
            expired: fmt_time(now - ago),
            now: fmt_time(now),
        },
        other => bad(format!("not valid at {}: {other}", fmt_time(now))),
    })?;
    let desc = bound.dangerously_assume_timely();
    let (intro_points, refused_intro_points) = usable_intro_points(desc.intro_points().to_vec());
    Ok(ParsedDescriptor {
        address: *address,
        period_num,
        blinded_key: signer,
        revision: *desc.revision(),
        lifetime_minutes,
        signing_cert_expiry,
        intro_points,
        refused_intro_points,
        flow_control: desc.flow_control().map(|(p, inc)| (p, inc.get())),
        pow_params: desc.pow_params().to_vec(),
        single_onion: desc.is_single_onion_service(),
        intro_auth_required: desc.requires_intro_authentication(),
        size: text.len(),
    })
}

/// "a: b: c" from an error and its sources.
fn describe_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The value of a one-line item of the outer document.
fn outer_field<'a>(text: &'a str, kw: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(kw).and_then(|r| r.strip_prefix(' ')))
        .map(str::trim)
}

/// The bytes of the `descriptor-signing-key-cert` object.
fn signing_cert_bytes(text: &str) -> std::result::Result<Vec<u8>, SigningCertProblem> {
    const BEGIN: &str = "-----BEGIN ED25519 CERT-----\n";
    let start = text
        .find("\ndescriptor-signing-key-cert\n-----BEGIN ED25519 CERT-----\n")
        .ok_or(SigningCertProblem::Missing)?;
    let body = &text[start..];
    let b = body.find(BEGIN).ok_or(SigningCertProblem::Missing)? + BEGIN.len();
    let e = body
        .find("-----END ED25519 CERT-----")
        .ok_or(SigningCertProblem::Unterminated)?;
    let b64: String = body[b..e].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| SigningCertProblem::NotBase64(e.to_string()))
}

/// The blinded key that signed the descriptor-signing-key certificate.
fn cert_signing_key(text: &str) -> std::result::Result<[u8; 32], SigningCertProblem> {
    let bytes = signing_cert_bytes(text)?;
    let cert = tor_cert::Ed25519Cert::decode(&bytes)
        .map_err(|e| SigningCertProblem::Malformed(e.to_string()))?
        .should_have_signing_key()
        .map_err(|e| SigningCertProblem::NoSigningKey(e.to_string()))?;
    <[u8; 32]>::try_from(cert.peek_signing_key().as_bytes())
        .map_err(|_| SigningCertProblem::Malformed("signing key is not 32 bytes".into()))
}

/// When the descriptor-signing-key certificate expires.
fn cert_expiry(text: &str) -> Option<SystemTime> {
    let bytes = signing_cert_bytes(text).ok()?;
    let cert = tor_cert::Ed25519Cert::decode(&bytes).ok()?;
    let (cert, _sig) = cert
        .should_have_signing_key()
        .ok()?
        .dangerously_split()
        .ok()?;
    Some(cert.dangerously_assume_timely().expiry())
}
