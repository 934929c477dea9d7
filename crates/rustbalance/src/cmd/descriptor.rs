//! `rustbalance descriptor inspect|merge`: prints what
//! [`rustbalance_node::descriptor_file`] finds and builds.

use crate::cli::{DescriptorCmd, NetworkArgs};
use anyhow::{Context, Result};
use rustbalance_hs::IdentityKey;
use rustbalance_node::descriptor_file::{self, MergeRequest};
use rustbalance_node::keystore::KeyFiles;
use std::path::{Path, PathBuf};

/// `rustbalance descriptor inspect|merge`.
pub fn run(cmd: DescriptorCmd) -> Result<()> {
    match cmd {
        DescriptorCmd::Inspect {
            address,
            file,
            json,
            net,
        } => inspect(&address, &file, json, &net),
        DescriptorCmd::Merge {
            master_key,
            instances,
            max_intro_points,
            carry_pow,
            out,
            net,
        } => merge(
            &master_key,
            &instances,
            max_intro_points,
            carry_pow,
            &out,
            &net,
        ),
    }
}

pub fn inspect(address: &str, file: &Path, json: bool, net: &NetworkArgs) -> Result<()> {
    let tp = net.time_params()?;
    let d = descriptor_file::parse_file(address, file, &tp, net.now())?;
    let out = descriptor_file::report(&d, &tp);
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
    let instances = instances
        .iter()
        .map(|spec| {
            let (addr, file) = spec
                .split_once('=')
                .with_context(|| format!("--instance {spec:?}: expected ADDRESS=FILE"))?;
            Ok((addr.to_string(), PathBuf::from(file)))
        })
        .collect::<Result<Vec<_>>>()?;
    let master = IdentityKey::load(master_key)?;
    let m = descriptor_file::merge(&MergeRequest {
        master: &master,
        instances: &instances,
        max_intro_points,
        carry_pow,
        time: net.time_params()?,
        now: net.now(),
    })?;
    rustbalance_node::keystore::write_atomic(out, m.built.text.as_bytes(), 0o644)?;
    eprintln!(
        "wrote {}: master {} period {} revision {} size {} bytes, {} intro points ({})",
        out.display(),
        master.address(),
        m.built.period_num,
        m.built.revision,
        m.built.text.len(),
        m.built.intro_count,
        m.per_instance
            .iter()
            .map(|(n, c)| format!("{}…: {c}", &n[..8]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
