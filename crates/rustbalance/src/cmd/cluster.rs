//! `rustbalance init | join | token show | token rotate | node remove`: arguments in,
//! node library calls, printing out.

use crate::cli::{KeyProtection, NodeArgs};
use anyhow::{bail, Context, Result};
use rustbalance_hs::IdentityKey;
use rustbalance_node::config::Template;
use rustbalance_node::join::client::{join_over_tor, read_token, save_grant, JoinRetry, JoinStep};
use rustbalance_node::join::command::AdminClient;
use rustbalance_node::join::setup::{host_name, tor_settings, NodeDir};
use rustbalance_node::join::{valid_name, JoinParams, JoinTimers, JoinToken};
use rustbalance_node::keystore::{KeyFiles, Passphrase};
use rustbalance_node::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of a sealed master key inside the node directory.
const MASTER_KEY: &str = "master.key";

/// Open an existing master key file, plain (tor's format) or sealed; a sealed one with
/// the passphrase in `passphrase_file` (read first, even for a plain key), else the
/// systemd credential.
fn load_master_key(path: &Path, passphrase_file: Option<&Path>) -> Result<IdentityKey> {
    let pass = Passphrase::read_now(passphrase_file)?;
    Ok(rustbalance_node::keystore::load_master(path, pass)?)
}

/// Write the master key as `protection` says; returns (key file, passphrase file for the config).
/// Never replaces a master key already in `dir`: that would lose the .onion address.
fn write_master_key(
    key: &IdentityKey,
    dir: &Path,
    protection: &KeyProtection,
) -> Result<(PathBuf, Option<PathBuf>)> {
    for existing in [
        dir.join(MASTER_KEY),
        dir.join("master")
            .join(rustbalance_hs::keys::SECRET_KEY_FILE),
    ] {
        if existing.exists() {
            bail!(
                "{} already holds a master key; refusing to overwrite it (use another --dir, \
                 or --master-key {} to start from it)",
                existing.display(),
                existing.display()
            );
        }
    }
    if protection.plain_key {
        let kd = dir.join("master");
        key.write_tor_dir(&kd)?;
        eprintln!(
            "warning: the master key is stored unencrypted in {}",
            kd.display()
        );
        return Ok((kd.join(rustbalance_hs::keys::SECRET_KEY_FILE), None));
    }
    let pf = protection
        .passphrase_file
        .as_ref()
        .context("--passphrase-file FILE or --plain-key is required")?;
    let pf = std::path::absolute(pf)?;
    let pass = rustbalance_node::keystore::passphrase_from_file(&pf)?;
    let file = dir.join(MASTER_KEY);
    eprintln!("sealing the master key (argon2id, 64 MiB)...");
    key.write_sealed(&file, &pass, rustbalance_hs::sealed::SealParams::default())?;
    Ok((file, (!protection.systemd_credential).then_some(pf)))
}

#[allow(clippy::too_many_arguments)]
pub fn init(
    dir: &Path,
    target: &str,
    endpoint: Option<SocketAddr>,
    config: &Option<PathBuf>,
    name: &str,
    admin: SocketAddr,
    master_key: Option<&Path>,
    protection: &KeyProtection,
    node: &NodeArgs,
) -> Result<()> {
    if !valid_name(name) {
        bail!("--name must be 1-32 letters, digits, '-' or '_'");
    }
    let nd = NodeDir::new(dir, config.as_deref())?;
    // Open the existing key before anything is written: a wrong passphrase or a corrupt
    // file leaves no half-made node behind.
    let key = match master_key {
        Some(p) => {
            let k = load_master_key(p, protection.passphrase_file.as_deref())
                .with_context(|| format!("cannot use --master-key {}", p.display()))?;
            eprintln!("starting from the existing master key of {}", k.address());
            k
        }
        None => IdentityKey::generate(&mut rand::rng()),
    };
    nd.create()?;
    let (extra_torrc, testing_network) = tor_settings(node.tor_from.as_deref())?;
    let (key_file, passphrase_file) = write_master_key(&key, &nd.dir, protection)?;
    let (cluster, mesh) = match endpoint {
        None => (None, None),
        Some(ep) => {
            let (c, m) = nd.first_member(ep, node.gossip_port, &node.mesh_interface)?;
            (Some(c), Some(m))
        }
    };
    let text = Template {
        name: name.to_string(),
        data_dir: nd.layout().data_dir,
        master_key: Some(key_file),
        passphrase_file,
        master_address: Some(key.address().to_string()),
        virtual_port: 80,
        target: target.to_string(),
        admin,
        extra_torrc,
        testing_network,
        cluster,
        mesh,
    }
    .render();
    let cfg = nd.write_config(&text)?;
    eprintln!(
        "wrote {} (keys in {})",
        nd.config.display(),
        nd.dir.display()
    );
    println!("{}", key.address());
    print_next_steps(&nd, &key, &cfg, target)
}

/// After `init`: how to start the node and, for a cluster, the first join token.
fn print_next_steps(nd: &NodeDir, key: &IdentityKey, cfg: &Config, target: &str) -> Result<()> {
    let Some((token, token_file)) = nd.first_token(key.address(), cfg)? else {
        eprintln!(
            "start it with: rustbalance run --config {}",
            nd.config.display()
        );
        eprintln!("(a single-node service; add --endpoint IP:PORT to make it the first node of a cluster)");
        return Ok(());
    };
    eprintln!();
    eprintln!(
        "start this node:   rustbalance run --config {}",
        nd.config.display()
    );
    eprintln!(
        "join token (a secret; also in {}, 0600):",
        token_file.display()
    );
    println!("{}", *token);
    eprintln!("on each new machine, put the token in a 0600 file and run:");
    eprintln!(
        "  rustbalance join --token-file TOKEN_FILE --dir DIR --target {target} --endpoint THAT_MACHINE_IP:{}",
        cfg.mesh.as_ref().map(|m| m.listen_port).unwrap_or(51820)
    );
    Ok(())
}

/// What `join` tells the operator while it works.
fn print_step(name: &str, step: JoinStep<'_>) {
    match step {
        JoinStep::Bootstrap(p) => eprintln!("  tor bootstrap {p} %"),
        JoinStep::Asking(n) => {
            eprintln!("asking the cluster to admit {name} (attempt {n}) ...")
        }
        JoinStep::Retrying { error, pause } => {
            eprintln!("  {error}; retrying in {} s", pause.as_secs())
        }
    }
}

/// Check the master key now, not when the node starts: it must be the master's.
fn check_master_key(file: &Path, passphrase_file: Option<&Path>, token: &JoinToken) -> Result<()> {
    let key = load_master_key(file, passphrase_file)?;
    if key.address() != token.master {
        bail!(
            "{} is the key of {}, but the token is for {}",
            file.display(),
            key.address(),
            token.master
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn join(
    token_file: &Path,
    dir: &Path,
    target: &str,
    endpoint: SocketAddr,
    config: &Option<PathBuf>,
    name: Option<String>,
    admin: SocketAddr,
    master_key: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    priority: u32,
    timeout: u64,
    node: &NodeArgs,
) -> Result<()> {
    let token = read_token(token_file)?;
    let name = name.unwrap_or_else(host_name);
    if !valid_name(&name) {
        bail!("--name must be 1-32 letters, digits, '-' or '_'");
    }
    let nd = NodeDir::new(dir, config.as_deref())?;
    if let Some(k) = &master_key {
        check_master_key(k, passphrase_file.as_deref(), &token)?;
    }
    nd.create()?;
    let (extra_torrc, testing_network) = tor_settings(node.tor_from.as_deref())?;
    let params = JoinParams {
        name: name.clone(),
        wg_public_key: nd.mesh_key()?.to_string(),
        endpoint,
    };
    let layout = nd.layout();
    let retry = JoinRetry::new(Duration::from_secs(timeout));
    eprintln!("starting a tor client to reach {} ...", token.master);
    let rt = tokio::runtime::Runtime::new()?;
    let grant = rt.block_on(join_over_tor(
        &layout,
        &extra_torrc,
        &token,
        &params,
        &retry,
        |s| print_step(&name, s),
    ))?;
    eprintln!(
        "admitted by {} ({} member(s) listed)",
        grant.admitted_by,
        grant.members.len()
    );
    save_grant(&layout, &nd.cluster_secret_file(), &grant)?;
    let (cluster, mesh) = nd.joined_member(&grant, endpoint, priority, &node.mesh_interface);
    let text = Template {
        name,
        data_dir: layout.data_dir.clone(),
        master_key: master_key.map(std::path::absolute).transpose()?,
        passphrase_file: passphrase_file.map(std::path::absolute).transpose()?,
        master_address: Some(token.master.to_string()),
        virtual_port: token.port,
        target: target.to_string(),
        admin,
        extra_torrc,
        testing_network,
        cluster: Some(cluster),
        mesh: Some(mesh),
    }
    .render();
    nd.write_config(&text)?;
    eprintln!("wrote {}", nd.config.display());
    eprintln!(
        "start this node:   rustbalance run --config {}",
        nd.config.display()
    );
    println!("{}", token.master);
    Ok(())
}

pub fn token_show(config: &Path) -> Result<()> {
    print!("{}", *AdminClient::new(config)?.token()?);
    Ok(())
}

pub fn token_rotate(config: &Path) -> Result<()> {
    print!("{}", *AdminClient::new(config)?.rotate()?);
    eprintln!("the old token is refused from now on (other nodes follow within seconds)");
    Ok(())
}

pub fn node_remove(config: &Path, who: &str) -> Result<()> {
    let token = AdminClient::new(config)?.remove(who, &JoinTimers::default(), |answer| {
        eprint!("{answer}");
        eprintln!(
            "its intro points leave the descriptor now; every member drops its WireGuard peer \
             within seconds; waiting for the token rotation ..."
        );
    })?;
    eprintln!("new join token (the old one is refused from now on):");
    print!("{}", *token);
    Ok(())
}
