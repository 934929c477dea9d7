//! `rustbalance onionbalance import`: Onionbalance's config.yaml and keys in, one
//! RustBalance node directory per service out (master key in the key store's formats,
//! 0600; rustbalance.toml), and a list of what was not carried over.
//!
//! Nothing is written until the whole Onionbalance config and every key in it were read
//! and checked; existing files are never overwritten; if writing fails half-way, the
//! directories this run created are removed again.

use super::cluster::write_master_key;
use crate::cli::KeyProtection;
use anyhow::{bail, Context, Result};
use rustbalance_node::join::setup::tor_settings;
use rustbalance_node::keystore::{create_private_dir, write_atomic};
use rustbalance_node::onionbalance::{load, service_config, ImportedService, ServicePlacement};
use rustbalance_node::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub fn import(
    config: &Path,
    out: &Path,
    target: Option<&str>,
    (admin, gossip): (SocketAddr, SocketAddr),
    protection: &KeyProtection,
    tor_from: Option<&Path>,
) -> Result<()> {
    let imported = load(config)?;
    let tor = tor_settings(tor_from)?;
    let out = std::path::absolute(out)?;
    let dirs: Vec<PathBuf> = imported
        .services
        .iter()
        .map(|s| out.join(s.address().to_string().trim_end_matches(".onion")))
        .collect();
    if let Some(d) = dirs.iter().find(|d| d.exists()) {
        bail!(
            "{} exists already; refusing to overwrite an earlier import (move it away or \
             give another --out)",
            d.display()
        );
    }
    create_private_dir(&out)?;
    let mut written = Vec::new();
    for (i, (svc, dir)) in imported.services.iter().zip(&dirs).enumerate() {
        let port = admin
            .port()
            .checked_add(i as u16)
            .context("--admin port too high")?;
        let admin = SocketAddr::new(admin.ip(), port);
        let gossip_port = gossip
            .port()
            .checked_add(i as u16)
            .context("--gossip port too high")?;
        let gossip = SocketAddr::new(gossip.ip(), gossip_port);
        let res = write_service(svc, dir, target, (admin, gossip), protection, &tor);
        written.push(dir.clone());
        if let Err(e) = res {
            for d in &written {
                // Only directories this run created (checked absent above).
                let _ = std::fs::remove_dir_all(d);
            }
            return Err(e.context(format!("importing {}", svc.address())));
        }
    }
    for (svc, dir) in imported.services.iter().zip(&dirs) {
        println!("{}", svc.address());
        println!("  from      {}", svc.key_path.display());
        println!("  config    {}", dir.join("rustbalance.toml").display());
        for inst in &svc.instances {
            let name = inst.name.as_deref().unwrap_or("-");
            println!("  backend   {} ({name})", inst.address);
        }
    }
    println!("\nNot carried over:");
    for l in &imported.leftovers {
        println!("  {}: {}", l.at, l.why);
    }
    match target {
        Some(t) => println!(
            "  [target] url: config.yaml does not say where the application listens (each \
             backend's torrc has its HiddenServicePort); the configs use --target {t}, so \
             the publishing node serves clients too"
        ),
        None => println!(
            "  [target]: none; each node is publisher-only, as Onionbalance (it fetches the \
             backends' descriptors and publishes the master descriptor; give --target to \
             make it serve clients too)"
        ),
    }
    println!(
        "\nA second publisher (no single point of failure): copy the master key, \
         cluster.secret and rustbalance.toml to another machine, give it its own node.name, \
         data_dir and cluster.listen, and list each node's gossip address in the other's \
         cluster.seeds (docs/ONIONBALANCE.md)."
    );
    Ok(())
}

/// One service's directory: the master key, then the config, checked by loading it.
fn write_service(
    svc: &ImportedService,
    dir: &Path,
    target: Option<&str>,
    (admin, gossip): (SocketAddr, SocketAddr),
    protection: &KeyProtection,
    tor: &(Vec<String>, bool),
) -> Result<()> {
    create_private_dir(dir)?;
    let (key_file, passphrase_file) = write_master_key(&svc.key, dir, protection)?;
    let secret_file = dir.join("cluster.secret");
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngExt::fill(&mut rand::rng(), &mut secret[..]);
    write_atomic(&secret_file, &secret[..], 0o600)?;
    let at = ServicePlacement {
        name: "publisher1".into(),
        data_dir: dir.join("data"),
        key_file,
        passphrase_file,
        target: target.map(str::to_string),
        admin,
        tor: tor.clone(),
        cluster: Some(rustbalance_node::config::ClusterTemplate::first_node(
            secret_file,
            gossip,
        )),
    };
    let cfg = dir.join("rustbalance.toml");
    write_atomic(&cfg, service_config(svc, &at).as_bytes(), 0o600)?;
    Config::load(&cfg).with_context(|| format!("the config written to {}", cfg.display()))?;
    Ok(())
}
