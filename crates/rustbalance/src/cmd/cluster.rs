//! `rustbalance init | join | token create | token rotate | node remove`: arguments in,
//! node library calls, printing out.

use crate::cli::{KeyProtection, NodeArgs};
use anyhow::{bail, Context, Result};
use rustbalance_hs::IdentityKey;
use rustbalance_node::config::Template;
use rustbalance_node::join::client::{join_over_tor, read_token, save_grant, JoinRetry, JoinStep};
use rustbalance_node::join::command::AdminClient;
use rustbalance_node::join::setup::{host_name, tor_settings, NodeDir};
use rustbalance_node::join::{valid_name, JoinParams, JoinTimers, JoinToken};
use rustbalance_node::keystore::Passphrase;
use rustbalance_node::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Open an existing master key file, plain (tor's format) or sealed; a sealed one with
/// the passphrase in `passphrase_file` (read first, even for a plain key), else the
/// systemd credential.
fn load_master_key(path: &Path, passphrase_file: Option<&Path>) -> Result<IdentityKey> {
    let pass = Passphrase::read_now(passphrase_file)?;
    Ok(rustbalance_node::keystore::load_master(path, pass)?)
}

/// Write the master key as `protection` says; returns (key file, passphrase file for the config).
/// Never replaces a master key already in `dir`: that would lose the .onion address.
pub(crate) fn write_master_key(
    key: &IdentityKey,
    dir: &Path,
    protection: &KeyProtection,
) -> Result<(PathBuf, Option<PathBuf>)> {
    use rustbalance_node::keystore::{store_master, MasterStorage};
    let storage = if protection.plain_key {
        MasterStorage::Plain
    } else {
        let passphrase_file = protection
            .passphrase_file
            .clone()
            .context("--passphrase-file FILE or --plain-key is required")?;
        eprintln!("sealing the master key (argon2id, 64 MiB)...");
        MasterStorage::Sealed {
            passphrase_file,
            systemd_credential: protection.systemd_credential,
        }
    };
    let stored = store_master(key, dir, &storage)?;
    if protection.plain_key {
        eprintln!(
            "warning: the master key is stored unencrypted in {}",
            stored.key_file.display()
        );
    }
    Ok((stored.key_file, stored.passphrase_file))
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
    rustbalance_node::keystore::create_private_dir(&nd.layout().data_dir)?;
    rustbalance_node::keystore::identity::load_or_create(&nd.layout())?;
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
        target: Some(target.to_string()),
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
    let Some((token, token_file)) = nd.first_token(key, cfg)? else {
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
        "join token (a secret: admits one node, once, within an hour; also in {}, 0600; \
         make more with `rustbalance token create` on a running member):",
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
    rustbalance_node::keystore::create_private_dir(&nd.layout().data_dir)?;
    let identity = rustbalance_node::keystore::identity::load_or_create(&nd.layout())?;
    let (extra_torrc, testing_network) = tor_settings(node.tor_from.as_deref())?;
    let params = JoinParams {
        name: name.clone(),
        wg_public_key: nd.mesh_key()?.to_string(),
        endpoint,
        identity: identity.public().to_string(),
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
    save_grant(&layout, &nd.cluster_secret_file(), &grant, &params)?;
    let (cluster, mesh) = nd.joined_member(&grant, endpoint, priority, &node.mesh_interface);
    let text = Template {
        name,
        data_dir: layout.data_dir.clone(),
        master_key: master_key.map(std::path::absolute).transpose()?,
        passphrase_file: passphrase_file.map(std::path::absolute).transpose()?,
        master_address: Some(token.master.to_string()),
        virtual_port: token.port,
        target: Some(target.to_string()),
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

pub fn token_create(config: &Path, ttl: Duration) -> Result<()> {
    let token = AdminClient::new(config)?.create(ttl)?;
    eprintln!(
        "join token (a secret: admits one node, once; expires in {}):",
        humantime::format_duration(ttl)
    );
    print!("{}", *token);
    Ok(())
}

pub fn token_rotate(config: &Path) -> Result<()> {
    eprint!("{}", *AdminClient::new(config)?.rotate()?);
    Ok(())
}

pub fn node_remove(config: &Path, who: &str) -> Result<()> {
    let key = AdminClient::new(config)?.remove(who, &JoinTimers::default(), |answer| {
        eprint!("{answer}");
        eprintln!(
            "its intro points leave the descriptor now; every member drops its WireGuard peer \
             within seconds; waiting for the join key rotation ..."
        );
    })?;
    eprintln!(
        "join key rotated ({}): every token made before is void; make new ones with \
         `rustbalance token create`",
        key.trim()
    );
    Ok(())
}
