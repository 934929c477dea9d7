//! `rustbalance descriptor inspect|merge`.

use crate::cli::NetworkArgs;
use anyhow::{bail, Context, Result};
use base64::Engine;
use rustbalance_hs::descriptor::{
    build_master_descriptor, parse_descriptor, select_intro_points, BuildParams, InstanceIntros,
    IntroPointDesc, ParsedDescriptor, PowParams, Protocols, DEFAULT_LIFETIME_MINUTES,
    MAX_INTRO_POINTS,
};
use rustbalance_hs::time::{fmt_time, unix_secs};
use rustbalance_hs::{IdentityKey, OnionAddress, TimeParams};
use rustbalance_node::keystore::KeyFiles;
use serde::Serialize;
use std::path::Path;
use std::time::SystemTime;
use tor_linkspec::LinkSpec;

/// What `inspect` reports.
#[derive(Serialize)]
struct Inspect {
    address: String,
    period_num: u64,
    period_minutes: u32,
    blinded_key: String,
    revision: u64,
    lifetime_minutes: u16,
    signing_cert_expiry: String,
    size: usize,
    flow_control: Option<String>,
    pow_params: Vec<String>,
    single_onion_service: bool,
    intro_auth_required: bool,
    intro_points: Vec<IntroPoint>,
}

#[derive(Serialize)]
struct IntroPoint {
    link_specifiers: Vec<String>,
    onion_key_ntor: String,
    auth_key: String,
    enc_key_ntor: String,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
}

fn describe_intro(ip: &IntroPointDesc) -> IntroPoint {
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
    IntroPoint {
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

fn read_descriptor(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > 1_000_000 {
        bail!(
            "{} is {} bytes: not a descriptor (tor's limit is 50000)",
            path.display(),
            meta.len()
        );
    }
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(raw)
        .map_err(|_| anyhow::anyhow!("{} is not text: not a descriptor", path.display()))?;
    // Accept CRLF line endings (copied through other tools).
    Ok(text.replace("\r\n", "\n"))
}

fn parse_file(
    address: &str,
    path: &Path,
    tp: &TimeParams,
    now: SystemTime,
) -> Result<ParsedDescriptor> {
    let addr = OnionAddress::parse(address)?;
    let text = read_descriptor(path)?;
    parse_descriptor(&text, &addr, tp, now).with_context(|| format!("{}", path.display()))
}

pub fn inspect(address: &str, file: &Path, json: bool, net: &NetworkArgs) -> Result<()> {
    let tp = net.time_params()?;
    let d = parse_file(address, file, &tp, net.now())?;
    let out = Inspect {
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
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("address             {}", out.address);
    println!(
        "time period         {} ({} min)",
        out.period_num, out.period_minutes
    );
    println!("blinded key         {}", out.blinded_key);
    println!("revision counter    {}", out.revision);
    println!("lifetime            {} min", out.lifetime_minutes);
    println!("signing cert until  {}", out.signing_cert_expiry);
    println!("size                {} bytes", out.size);
    println!(
        "flow-control        {}",
        out.flow_control.as_deref().unwrap_or("(none)")
    );
    for p in &out.pow_params {
        println!("pow-params          {p}");
    }
    println!("intro points        {}", out.intro_points.len());
    for (i, ip) in out.intro_points.iter().enumerate() {
        println!("  [{i}] {}", ip.link_specifiers.join(", "));
        println!("      onion-key ntor {}", ip.onion_key_ntor);
    }
    Ok(())
}

pub fn merge(
    master_key: &Path,
    instances: &[String],
    max_intro_points: usize,
    carry_pow: bool,
    out: &Path,
    net: &NetworkArgs,
) -> Result<()> {
    if !(1..=MAX_INTRO_POINTS).contains(&max_intro_points) {
        bail!("--max-intro-points must be between 1 and {MAX_INTRO_POINTS} (clients reject more than {MAX_INTRO_POINTS})");
    }
    let tp = net.time_params()?;
    let now = net.now();
    let master = IdentityKey::load(master_key)?;
    let mut parsed = Vec::new();
    for spec in instances {
        let (addr, file) = spec
            .split_once('=')
            .with_context(|| format!("--instance {spec:?}: expected ADDRESS=FILE"))?;
        parsed.push(parse_file(addr, Path::new(file), &tp, now)?);
    }
    let intros: Vec<InstanceIntros> = parsed
        .iter()
        .map(|d| InstanceIntros {
            instance: d.address.to_string(),
            intro_points: d.intro_points.clone(),
        })
        .collect();
    let chosen = select_intro_points(&intros, max_intro_points).chosen;
    let ips: Vec<IntroPointDesc> = chosen.iter().map(|(_, ip)| ip.clone()).collect();
    // flow-control only if every instance advertises it (first one's value).
    let flow_control = if parsed.iter().all(|d| d.flow_control.is_some()) {
        parsed.first().and_then(|d| d.flow_control.clone())
    } else {
        None
    };
    let pow = if carry_pow {
        parsed.iter().find_map(|d| d.pow_params.first())
    } else {
        None
    };
    let t = unix_secs(now);
    let period = tp.period_at(now)?.interval_num();
    let slot = tp
        .live_slots(t, t - t % tp.voting_interval_secs)
        .into_iter()
        .find(|s| s.period_num == period)
        .context("internal: the current time period is always a live slot")?;
    let built = build_master_descriptor(
        &BuildParams {
            master: &master,
            time: tp,
            slot,
            now,
            intro_points: &ips,
            flow_control,
            pow_params: pow,
            lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
        },
        &mut rand::rng(),
    )?;
    rustbalance_node::keystore::write_atomic(out, built.text.as_bytes(), 0o644)?;
    let mut per: Vec<(String, usize)> = Vec::new();
    for (name, _) in &chosen {
        match per.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 += 1,
            None => per.push((name.clone(), 1)),
        }
    }
    eprintln!(
        "wrote {}: master {} period {} revision {} size {} bytes, {} intro points ({})",
        out.display(),
        master.address(),
        built.period_num,
        built.revision,
        built.text.len(),
        built.intro_count,
        per.iter()
            .map(|(n, c)| format!("{}…: {c}", &n[..8]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
