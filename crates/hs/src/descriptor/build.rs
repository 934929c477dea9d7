//! Build, sign and encrypt the master descriptor.

use super::layer::{repad, LayerKeys, SUPERENC_CONST, SUPERENC_PAD_MULTIPLE};
use super::{MAX_DESCRIPTOR_SIZE, MAX_INTRO_POINTS};
use crate::err::{Error, Result};
use crate::keys::IdentityKey;
use crate::time::{DescriptorSlot, TimeParams};
use base64::Engine;
use rand::{CryptoRng, Rng};
use std::time::{Duration, SystemTime};
use tor_cell::chancell::msg::HandshakeType;
use tor_hscrypto::ope::{AesOpeKey, SrvPeriodOffset};
use tor_hscrypto::pk::HsBlindIdKeypair;
use tor_llcrypto::pk::ed25519;
use tor_netdoc::doc::hsdesc::pow::PowParams;
use tor_netdoc::doc::hsdesc::{create_desc_sign_key_cert, HsDescBuilder, IntroPointDesc};
use tor_netdoc::NetdocBuilder;
use tor_protover::Protocols;
use zeroize::Zeroizing;

/// tor's default descriptor lifetime (`HS_DESC_DEFAULT_LIFETIME`, 3 hours).
pub const DEFAULT_LIFETIME_MINUTES: u16 = 180;
/// Lifetime of the descriptor-signing and intro-point certificates
/// (`HS_DESC_CERT_LIFETIME`, 54 hours).
const CERT_LIFETIME: Duration = Duration::from_secs(54 * 3600);
/// Prefix of the signed part of the outer document.
const OUTER_SIG_PREFIX: &[u8] = b"Tor onion service descriptor sig v3";
/// Largest plaintext tor's OPE accepts (`OPE_INPUT_MAX`).
const OPE_INPUT_MAX: u64 = 1 << 18;

/// What a master descriptor is built from.
pub struct BuildParams<'a> {
    /// The master identity key.
    pub master: &'a IdentityKey,
    /// The network's clock parameters.
    pub time: TimeParams,
    /// Which of the two live descriptors this is.
    pub slot: DescriptorSlot,
    /// Now (certificate expiry and revision counter derive from it).
    pub now: SystemTime,
    /// Intro points to list (at most [`MAX_INTRO_POINTS`]).
    pub intro_points: &'a [IntroPointDesc],
    /// `flow-control` to advertise, e.g. `("FlowCtrl=1-2", 31)`.
    pub flow_control: Option<(Protocols, u8)>,
    /// `pow-params` to carry, if any.
    pub pow_params: Option<&'a PowParams>,
    /// `descriptor-lifetime` in minutes.
    pub lifetime_minutes: u16,
    /// Restricted discovery: only these clients can decrypt the intro points
    /// (`None`: anyone who knows the address). Padded with fake entries
    /// ([`super::client_auth`]).
    pub auth_clients: Option<&'a [super::ClientAuthKey]>,
    /// The revision counter, when not tor's own for `now` ([`revision_counter`]): fleet
    /// PoW's counters above any tor's ([`above_tor_counter`]).
    pub revision: Option<u64>,
}

/// A built master descriptor.
#[derive(Debug, Clone)]
pub struct BuiltDescriptor {
    /// The descriptor text, ready for `HSPOST`.
    pub text: String,
    /// The blinded key it is published under (places it on the HSDir ring).
    pub blinded_key: [u8; 32],
    /// Its time period.
    pub period_num: u64,
    /// Its revision counter.
    pub revision: u64,
    /// Number of intro points in it.
    pub intro_count: usize,
    /// Intro points of [`BuildParams::intro_points`] left out (the last ones) to stay
    /// within the size limit ([`build_master_descriptor_within`]).
    pub dropped: usize,
}

/// Tor's revision counter for a descriptor built at `now` in `slot`: the OPE
/// encryption of the seconds since the slot's SR run began, keyed with
/// `SHA3-256("rev-counter-generation\0" | blinded secret key)` as C tor does
/// (so our counters compare with tor's own for the same key).
pub fn revision_counter(blinded: &HsBlindIdKeypair, slot: &DescriptorSlot, now: SystemTime) -> u64 {
    let mut secret = Zeroizing::new(Vec::with_capacity(65));
    secret.push(0u8); // tor hashes sizeof("rev-counter-generation"), i.e. with its NUL
    let exp: &ed25519::ExpandedKeypair = blinded.as_ref();
    secret.extend_from_slice(&exp.to_secret_key_bytes());
    let key = AesOpeKey::from_secret(&secret);
    let elapsed = crate::time::unix_secs(now)
        .saturating_sub(slot.srv_run_start)
        .min(OPE_INPUT_MAX - 1);
    key.encrypt(SrvPeriodOffset::from(elapsed as u32))
}

/// Where [`above_tor_counter`]s start: tor's OPE counters stay below 2^34
/// (`OPE_INPUT_MAX` inputs, each step at most 2^16), so every counter from here on is
/// above any a tor can upload for the same blinded key.
pub const ABOVE_TOR_COUNTER_BASE: u64 = 1 << 40;

/// A revision counter above any tor's for the same key, still growing with time:
/// [`ABOVE_TOR_COUNTER_BASE`] + `now` in Unix seconds. With fleet PoW every node's tor
/// holds the master key and uploads its own master descriptors with tor's counters; the
/// HSDirs keep the highest counter, so the publisher's must be above all of those.
pub fn above_tor_counter(now: SystemTime) -> u64 {
    ABOVE_TOR_COUNTER_BASE + crate::time::unix_secs(now)
}

/// Build, sign and encrypt a master descriptor; an error if it is over
/// [`MAX_DESCRIPTOR_SIZE`].
pub fn build_master_descriptor<R: Rng + CryptoRng>(
    p: &BuildParams<'_>,
    rng: &mut R,
) -> Result<BuiltDescriptor> {
    let built = build_any_size(p, rng)?;
    within(built, MAX_DESCRIPTOR_SIZE)
}

/// Build a master descriptor of at most `limit` bytes (capped at [`MAX_DESCRIPTOR_SIZE`]):
/// when listing every point of `p.intro_points` would make it larger, list the longest
/// prefix that fits. Callers order the points so that the last ones are the first to go
/// ([`super::select_intro_points`] puts the points of the nodes with the most last);
/// [`BuiltDescriptor::dropped`] says how many went. A descriptor's size only grows with
/// its intro points, so the prefix is found by bisection: one build when all fit, about
/// five more otherwise. An error only when even one intro point is too large.
pub fn build_master_descriptor_within<R: Rng + CryptoRng>(
    p: &BuildParams<'_>,
    limit: usize,
    rng: &mut R,
) -> Result<BuiltDescriptor> {
    let limit = limit.min(MAX_DESCRIPTOR_SIZE);
    let all = p.intro_points.len();
    let first = within(build_any_size(p, rng)?, limit);
    if !matches!(first, Err(Error::DescriptorTooLarge { .. })) {
        return first;
    }
    let with = |n: usize, rng: &mut R| {
        let q = BuildParams {
            intro_points: &p.intro_points[..n],
            flow_control: p.flow_control.clone(),
            ..*p
        };
        within(build_any_size(&q, rng)?, limit)
    };
    // Invariant: `all` points are too many; find the most that fit in 1..all.
    let (mut lo, mut hi) = (0, all);
    let mut best = None;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match with(mid, rng) {
            Ok(d) => {
                lo = mid;
                best = Some(d);
            }
            Err(Error::DescriptorTooLarge { .. }) => hi = mid,
            Err(e) => return Err(e),
        }
    }
    match best {
        Some(mut d) => {
            d.dropped = all - d.intro_count;
            Ok(d)
        }
        None => first,
    }
}

/// `built` if it is at most `limit` bytes.
fn within(built: BuiltDescriptor, limit: usize) -> Result<BuiltDescriptor> {
    if built.text.len() > limit {
        return Err(Error::DescriptorTooLarge {
            size: built.text.len(),
            limit,
        });
    }
    Ok(built)
}

/// Build, sign and encrypt a master descriptor, whatever its size.
fn build_any_size<R: Rng + CryptoRng>(p: &BuildParams<'_>, rng: &mut R) -> Result<BuiltDescriptor> {
    if p.intro_points.is_empty() {
        return Err(Error::NoIntroPoints);
    }
    if p.intro_points.len() > MAX_INTRO_POINTS {
        return Err(Error::Build(format!(
            "{} intro points given, clients accept at most {MAX_INTRO_POINTS}",
            p.intro_points.len()
        )));
    }
    let build_err = |what: &str, e: &dyn std::fmt::Display| Error::Build(format!("{what}: {e}"));
    let period = p.time.period(p.slot.period_num);
    let (blinded_pub, blinded_kp, subcred) = p
        .master
        .to_hs_keypair()
        .compute_blinded_key(period)
        .map_err(|e| build_err("key blinding failed", &e))?;
    let blinded_bytes: [u8; 32] = *blinded_pub.as_bytes();
    let subcred_bytes: [u8; 32] = *subcred.as_ref();
    let revision = p
        .revision
        .unwrap_or_else(|| revision_counter(&blinded_kp, &p.slot, p.now));

    let padded = match p.auth_clients {
        Some(real) => {
            super::client_auth::check_count(real.len())?;
            Some(super::client_auth::padded_clients(real, rng))
        }
        None => None,
    };
    let signing = ed25519::Keypair::generate(rng);
    let expiry = p.now + CERT_LIFETIME;
    let cert = create_desc_sign_key_cert(&signing.verifying_key(), &blinded_kp, expiry)
        .map_err(|e| build_err("signing-key certificate", &e))?;
    let formats = [HandshakeType::NTOR];
    let mut builder = HsDescBuilder::default()
        .blinded_id(&blinded_pub)
        .hs_desc_sign(&signing)
        .hs_desc_sign_cert(cert)
        .create2_formats(&formats)
        .auth_required(None)
        .is_single_onion_service(false)
        .intro_points(p.intro_points)
        .intro_auth_key_cert_expiry(expiry)
        .intro_enc_key_cert_expiry(expiry)
        .lifetime(p.lifetime_minutes.into())
        .revision_counter(revision.into())
        .subcredential(subcred)
        .flow_control(p.flow_control.clone())
        .auth_clients(padded.as_deref());
    if let Some(pp) = p.pow_params {
        builder = builder.pow_params(Some(pp));
    }
    let text = builder
        .build_sign(rng)
        .map_err(|e| build_err("encoding failed", &e))?;

    let keys = LayerKeys {
        blinded_key: &blinded_bytes,
        subcredential: &subcred_bytes,
        revision,
        string_const: SUPERENC_CONST,
    };
    let text = repad_superencrypted(&text, &keys, &signing, padded.is_none(), rng)?;
    Ok(BuiltDescriptor {
        text,
        blinded_key: blinded_bytes,
        period_num: p.slot.period_num,
        revision,
        intro_count: p.intro_points.len(),
        dropped: 0,
    })
}

/// Re-pad the superencrypted layer to C tor's 10,000-byte multiple and
/// re-sign the outer document.
fn repad_superencrypted<R: Rng + CryptoRng>(
    text: &str,
    keys: &LayerKeys<'_>,
    signing: &ed25519::Keypair,
    open: bool,
    rng: &mut R,
) -> Result<String> {
    const BEGIN: &str = "superencrypted\n-----BEGIN MESSAGE-----\n";
    const END: &str = "-----END MESSAGE-----\n";
    let internal = |what: &str| Error::Build(format!("unexpected builder output: {what}"));
    let b = text
        .find(BEGIN)
        .ok_or_else(|| internal("no superencrypted"))?
        + BEGIN.len();
    let e = b + text[b..]
        .find(END)
        .ok_or_else(|| internal("no END MESSAGE"))?;
    let sig = text[e..]
        .find("signature ")
        .ok_or_else(|| internal("no signature"))?
        + e;
    let b64 = base64::engine::general_purpose::STANDARD;
    let blob: String = text[b..e].split_whitespace().collect();
    let blob = b64.decode(blob).map_err(|_| internal("bad base64"))?;
    let plain = keys
        .decrypt(&blob)
        .ok_or_else(|| internal("MAC mismatch"))?;
    let plain = if open {
        super::client_auth::pad_open_layer(&plain, rng).ok_or_else(|| internal("auth-client"))?
    } else {
        plain
    };
    let blob = keys.encrypt(rng, &repad(&plain, SUPERENC_PAD_MULTIPLE));

    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..b]);
    for chunk in b64.encode(blob).as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).map_err(|_| internal("base64"))?);
        out.push('\n');
    }
    out.push_str(&text[e..sig]);
    let mut signed = OUTER_SIG_PREFIX.to_vec();
    signed.extend_from_slice(out.as_bytes());
    let s = signing.sign(&signed);
    out.push_str("signature ");
    out.push_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(s.to_bytes()));
    out.push('\n');
    Ok(out)
}
