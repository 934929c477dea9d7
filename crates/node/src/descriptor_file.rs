//! Descriptors as files, offline: what `rustbalance descriptor inspect` shows of one
//! (decrypted with its onion address alone) and how `descriptor merge` turns instance
//! descriptors into a signed master descriptor. The command only prints.

use crate::err::{Error, Result};
use rustbalance_hs::descriptor::{
    build_master_descriptor, common_flow_control, parse_descriptor, select_intro_points,
    BuildParams, BuiltDescriptor, InstanceIntros, IntroPointDesc, ParsedDescriptor, PowParams,
    Protocols, DEFAULT_LIFETIME_MINUTES, MAX_INTRO_POINTS,
};
use rustbalance_hs::time::{fmt_time, unix_secs};
use rustbalance_hs::{IdentityKey, OnionAddress, TimeParams};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tor_linkspec::LinkSpec;

/// A file larger than this is not a descriptor (tor's own limit is 50,000 bytes).
const MAX_FILE: u64 = 1_000_000;

/// What `inspect` reports of a descriptor.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The onion address it belongs to.
    pub address: String,
    /// Its time period.
    pub period_num: u64,
    /// The time-period length used.
    pub period_minutes: u32,
    /// The blinded key (hex).
    pub blinded_key: String,
    /// Its revision counter.
    pub revision: u64,
    /// `descriptor-lifetime`.
    pub lifetime_minutes: u16,
    /// When the descriptor signing key's certificate expires.
    pub signing_cert_expiry: String,
    /// Bytes.
    pub size: usize,
    /// The `flow-control` line, if any.
    pub flow_control: Option<String>,
    /// The `pow-params` lines.
    pub pow_params: Vec<String>,
    /// `single-onion-service`.
    pub single_onion_service: bool,
    /// `intro-auth-required`.
    pub intro_auth_required: bool,
    /// The intro points, in order.
    pub intro_points: Vec<IntroReport>,
}

/// One intro point as `inspect` shows it.
#[derive(Debug, Serialize)]
pub struct IntroReport {
    /// Link specifiers, one phrase each (`orport …`, `rsa-id $…`, `ed25519-id …`).
    pub link_specifiers: Vec<String>,
    /// The intro point's ntor onion key (base64).
    pub onion_key_ntor: String,
    /// The introduction authentication key (base64).
    pub auth_key: String,
    /// The service's ntor encryption key for this intro point (base64).
    pub enc_key_ntor: String,
}

fn b64(b: &[u8]) -> String {
    data_encoding::BASE64_NOPAD.encode(b)
}

fn describe_intro(ip: &IntroPointDesc) -> IntroReport {
    let link_specifiers = ip
        .link_specifiers()
        .iter()
        .map(|ls| match ls.parse() {
            Ok(LinkSpec::OrPort(a, p)) => format!("orport {}", std::net::SocketAddr::new(a, p)),
            Ok(LinkSpec::RsaId(id)) => format!("rsa-id ${}", hex::encode_upper(id.as_bytes())),
            Ok(LinkSpec::Ed25519Id(id)) => format!("ed25519-id {}", b64(id.as_bytes())),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("unparseable ({e})"),
        })
        .collect();
    IntroReport {
        link_specifiers,
        onion_key_ntor: b64(ip.ipt_ntor_key().as_bytes()),
        auth_key: b64(ip.ipt_sid_key().as_bytes()),
        enc_key_ntor: b64(ip.svc_ntor_key().as_bytes()),
    }
}

fn flow_control_text(fc: &Option<(Protocols, u8)>) -> Option<String> {
    fc.as_ref().map(|(p, inc)| format!("{p} sendme_inc={inc}"))
}

fn pow_text(p: &PowParams) -> String {
    match p {
        PowParams::V1(v1) => {
            let (seed, range) = v1.seed().as_ref().dangerously_into_parts();
            let exp = range.end().map(fmt_time).unwrap_or_default();
            format!(
                "v1 seed={seed} suggested-effort={} expires={exp}",
                u32::from(v1.suggested_effort())
            )
        }
        other => format!("{other:?}"),
    }
}

/// What `inspect` shows of `d` (parsed with `tp`).
pub fn report(d: &ParsedDescriptor, tp: &TimeParams) -> Report {
    Report {
        address: d.address.to_string(),
        period_num: d.period_num,
        period_minutes: tp.period_minutes,
        blinded_key: hex::encode(d.blinded_key),
        revision: d.revision,
        lifetime_minutes: d.lifetime_minutes,
        signing_cert_expiry: fmt_time(d.signing_cert_expiry),
        size: d.size,
        flow_control: flow_control_text(&d.flow_control),
        pow_params: d.pow_params.iter().map(pow_text).collect(),
        single_onion_service: d.single_onion,
        intro_auth_required: d.intro_auth_required,
        intro_points: d.intro_points.iter().map(describe_intro).collect(),
    }
}

fn bad_file(path: &Path, problem: impl Into<String>) -> Error {
    Error::DescriptorFile {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// A descriptor file's text. CRLF line endings (copied through other tools) and a last
/// line without its newline (editors, `echo -n`, copy and paste) are accepted: the
/// grammar ends every line with one.
pub fn read(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        action: "cannot read descriptor file",
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE {
        return Err(bad_file(
            path,
            format!("{len} bytes: not a descriptor (tor's limit is 50000)"),
        ));
    }
    let raw = std::fs::read(path).map_err(io)?;
    let text = String::from_utf8(raw).map_err(|_| bad_file(path, "not text: not a descriptor"))?;
    let mut text = text.replace("\r\n", "\n");
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Read and check the descriptor of `address` in `path`, valid at `now`.
pub fn parse_file(
    address: &str,
    path: &Path,
    tp: &TimeParams,
    now: SystemTime,
) -> Result<ParsedDescriptor> {
    let addr = OnionAddress::parse(address)?;
    let text = read(path)?;
    parse_descriptor(&text, &addr, tp, now).map_err(|e| bad_file(path, e.to_string()))
}

/// What `descriptor merge` is asked.
pub struct MergeRequest<'a> {
    /// The master key that signs.
    pub master: &'a IdentityKey,
    /// Each instance: its onion address and its descriptor file.
    pub instances: &'a [(String, PathBuf)],
    /// Most intro points to list (1..=20).
    pub max_intro_points: usize,
    /// Carry the pow-params line of the first instance that has one.
    pub carry_pow: bool,
    /// The network's clock.
    pub time: TimeParams,
    /// The time to build for.
    pub now: SystemTime,
}

/// A merged master descriptor and how many intro points each instance gave.
pub struct Merged {
    /// The signed descriptor.
    pub built: BuiltDescriptor,
    /// Instance address → intro points listed, in the order first chosen.
    pub per_instance: Vec<(String, usize)>,
}

/// Merge instance descriptors into the master descriptor of the time period holding
/// `now`: intro points chosen fairly across instances, `flow-control` only if every
/// instance has it.
pub fn merge(req: &MergeRequest<'_>) -> Result<Merged> {
    if !(1..=MAX_INTRO_POINTS).contains(&req.max_intro_points) {
        return Err(Error::Config {
            key: "--max-intro-points".into(),
            problem: format!(
                "must be between 1 and {MAX_INTRO_POINTS} (clients reject more than \
                 {MAX_INTRO_POINTS})"
            ),
        });
    }
    let tp = req.time;
    let parsed = req
        .instances
        .iter()
        .map(|(addr, file)| parse_file(addr, file, &tp, req.now))
        .collect::<Result<Vec<_>>>()?;
    let chosen =
        select_intro_points(&InstanceIntros::from_parsed(&parsed), req.max_intro_points).chosen;
    let ips: Vec<IntroPointDesc> = chosen.iter().map(|(_, ip)| ip.clone()).collect();
    let flow_control = common_flow_control(&parsed);
    let pow = if req.carry_pow {
        parsed.iter().find_map(|d| d.pow_params.first())
    } else {
        None
    };
    let t = unix_secs(req.now);
    let period = tp.period_at(req.now)?.interval_num();
    // The current time period is always among the live slots.
    let slot = tp
        .live_slots(t, t - t % tp.voting_interval_secs)
        .into_iter()
        .find(|s| s.period_num == period)
        .ok_or_else(|| Error::Config {
            key: "--time".into(),
            problem: format!("no live descriptor slot for time period {period}"),
        })?;
    let built = build_master_descriptor(
        &BuildParams {
            master: req.master,
            time: tp,
            slot,
            now: req.now,
            intro_points: &ips,
            flow_control,
            pow_params: pow,
            lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
            auth_clients: None,
            revision: None,
        },
        &mut rand::rng(),
    )?;
    let mut per_instance: Vec<(String, usize)> = Vec::new();
    for (name, _) in &chosen {
        match per_instance.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 += 1,
            None => per_instance.push((name.clone(), 1)),
        }
    }
    Ok(Merged {
        built,
        per_instance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rustbalance_hs::fixture::fake_instance_descriptor;
    use rustbalance_hs::time::from_unix;

    /// A descriptor file without its final newline (or with CRLF endings) parses
    /// like the original: `descriptor inspect` and `merge` both read through
    /// `parse_file`.
    #[test]
    fn a_descriptor_without_its_final_newline_is_accepted() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let now = 1_700_000_000;
        let tp = TimeParams::REAL_NETWORK;
        let slot = tp.live_slots(now, now - now % 3600)[0];
        let key = IdentityKey::generate(&mut rng);
        let text = fake_instance_descriptor(&key, tp, slot, from_unix(now), 3, &mut rng).unwrap();
        assert!(text.ends_with('\n'));
        let dir = tempfile::tempdir().unwrap();
        let addr = key.address().to_string();
        let variants = [
            ("as-is", text.clone()),
            ("no-final-newline", text.trim_end_matches('\n').to_string()),
            (
                "crlf-no-final",
                text.trim_end_matches('\n').replace('\n', "\r\n"),
            ),
        ];
        for (name, body) in variants {
            let f = dir.path().join(name);
            std::fs::write(&f, &body).unwrap();
            let d = parse_file(&addr, &f, &tp, from_unix(now))
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(d.intro_points.len(), 3, "{name}");
        }
    }

    /// Two instances of 3 intro points merge into one signed master descriptor of 6,
    /// 3 from each, that parses under the master address; a bad limit is refused.
    #[test]
    fn instances_merge_into_a_master_descriptor_that_parses() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let now = 1_700_000_000;
        let tp = TimeParams::REAL_NETWORK;
        let slot = tp
            .live_slots(now, now - now % 3600)
            .into_iter()
            .find(|s| s.period_num == tp.period_at(from_unix(now)).unwrap().interval_num())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut instances = Vec::new();
        for i in 0..2 {
            let key = IdentityKey::generate(&mut rng);
            let text =
                fake_instance_descriptor(&key, tp, slot, from_unix(now), 3, &mut rng).unwrap();
            let f = dir.path().join(format!("i{i}"));
            std::fs::write(&f, text).unwrap();
            instances.push((key.address().to_string(), f));
        }
        let master = IdentityKey::generate(&mut rng);
        let mut req = MergeRequest {
            master: &master,
            instances: &instances,
            max_intro_points: 20,
            carry_pow: false,
            time: tp,
            now: from_unix(now),
        };
        let m = merge(&req).unwrap();
        assert_eq!(m.built.intro_count, 6);
        assert_eq!(m.per_instance.iter().map(|(_, n)| n).sum::<usize>(), 6);
        assert!(m.per_instance.iter().all(|(_, n)| *n == 3));
        let back = parse_descriptor(&m.built.text, &master.address(), &tp, from_unix(now)).unwrap();
        assert_eq!(back.intro_points.len(), 6);
        req.max_intro_points = 21;
        assert!(merge(&req).is_err());
    }
}
