//! `rustbalance init | join | token show | token rotate`.

use crate::cli::{KeyProtection, NodeArgs};
use anyhow::{bail, Context, Result};
use rustbalance_hs::IdentityKey;
use rustbalance_node::config::{ClusterTemplate, MeshTemplate, Template};
use rustbalance_node::join::{request_join, valid_name, JoinParams, JoinToken};
use rustbalance_node::keystore::{create_private_dir, write_atomic, KeyFiles, Passphrase};
use rustbalance_node::layout::Layout;
use rustbalance_node::Config;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// File names inside the node directory.
const MASTER_KEY: &str = "master.key";
const CLUSTER_SECRET: &str = "cluster.secret";
const MESH_KEY: &str = "mesh.key";
const JOIN_TOKEN: &str = "join-token";

/// The [tor] settings taken from `--tor-from` (the lab's private network).
fn tor_settings(node: &NodeArgs) -> Result<(Vec<String>, bool)> {
    match &node.tor_from {
        None => Ok((Vec::new(), false)),
        Some(p) => {
            let c = Config::load(p)?;
            Ok((c.tor.extra_torrc.clone(), c.tor.testing_network))
        }
    }
}

fn config_path(dir: &Path, config: &Option<PathBuf>) -> Result<PathBuf> {
    let p = config
        .clone()
        .unwrap_or_else(|| dir.join("rustbalance.toml"));
    if p.exists() {
        bail!(
            "{} already exists; refusing to overwrite it (remove it first to start over)",
            p.display()
        );
    }
    Ok(std::path::absolute(p)?)
}

/// Validate `text` as a config, then write it atomically (0600).
fn write_config(path: &Path, text: &str) -> Result<Config> {
    let tmp = path.with_extension("toml.check");
    write_atomic(&tmp, text.as_bytes(), 0o600)?;
    let checked = Config::load(&tmp);
    let _ = std::fs::remove_file(&tmp);
    let cfg = checked?;
    write_atomic(path, text.as_bytes(), 0o600)?;
    Ok(cfg)
}

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

fn random_secret() -> Zeroizing<[u8; 32]> {
    let mut s = Zeroizing::new([0u8; 32]);
    rand::RngExt::fill(&mut rand::rng(), &mut s[..]);
    s
}

fn mesh_key(dir: &Path) -> Result<rustbalance_mesh::PublicKey> {
    let file = dir.join(MESH_KEY);
    let key = if file.exists() {
        rustbalance_mesh::PrivateKey::load(&file)?
    } else {
        let k = rustbalance_mesh::PrivateKey::generate();
        k.save(&file)?;
        k
    };
    Ok(key.public_key())
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
    let dir = std::path::absolute(dir).context("cannot resolve --dir")?;
    let config = config_path(&dir, config)?;
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
    create_private_dir(&dir)?;
    let (extra_torrc, testing_network) = tor_settings(node)?;
    let (key_file, passphrase_file) = write_master_key(&key, &dir, protection)?;
    let (cluster, mesh) = match endpoint {
        None => (None, None),
        Some(ep) => {
            let secret_file = dir.join(CLUSTER_SECRET);
            if !secret_file.exists() {
                write_atomic(&secret_file, &random_secret()[..], 0o600)?;
            }
            mesh_key(&dir)?;
            (
                Some(ClusterTemplate {
                    secret_file,
                    listen: SocketAddr::from(([0, 0, 0, 0], node.gossip_port)),
                    seeds: Vec::new(),
                    priority: 10,
                    cluster_id: None,
                }),
                Some(MeshTemplate {
                    interface: node.mesh_interface.clone(),
                    private_key_file: dir.join(MESH_KEY),
                    listen_port: ep.port(),
                    endpoint: Some(ep),
                    peers: Vec::new(),
                }),
            )
        }
    };
    let text = Template {
        name: name.to_string(),
        data_dir: dir.join("data"),
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
    let cfg = write_config(&config, &text)?;
    eprintln!("wrote {} (keys in {})", config.display(), dir.display());
    println!("{}", key.address());
    if let Some(c) = &cfg.cluster {
        let secret = Zeroizing::new(std::fs::read(&c.secret_file)?);
        let token = JoinToken::derive(key.address(), cfg.service.virtual_port, &secret, 0);
        let token_file = dir.join(JOIN_TOKEN);
        write_atomic(
            &token_file,
            format!("{}\n", *token.encode()).as_bytes(),
            0o600,
        )?;
        eprintln!();
        eprintln!(
            "start this node:   rustbalance run --config {}",
            config.display()
        );
        eprintln!(
            "join token (a secret; also in {}, 0600):",
            token_file.display()
        );
        println!("{}", *token.encode());
        eprintln!("on each new machine, put the token in a 0600 file and run:");
        eprintln!(
            "  rustbalance join --token-file TOKEN_FILE --dir DIR --target {target} --endpoint THAT_MACHINE_IP:{}",
            cfg.mesh.as_ref().map(|m| m.listen_port).unwrap_or(51820)
        );
    } else {
        eprintln!(
            "start it with: rustbalance run --config {}",
            config.display()
        );
        eprintln!("(a single-node service; add --endpoint IP:PORT to make it the first node of a cluster)");
    }
    Ok(())
}

fn read_token(file: &Path) -> Result<JoinToken> {
    let mut text = Zeroizing::new(String::new());
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the token from stdin")?;
    } else {
        let raw = Zeroizing::new(
            std::fs::read(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?,
        );
        text.push_str(&String::from_utf8_lossy(&raw));
    }
    Ok(JoinToken::parse(&text)?)
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(32)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
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
    let dir = std::path::absolute(dir).context("cannot resolve --dir")?;
    let config = config_path(&dir, config)?;
    if let Some(k) = &master_key {
        // Check the key now, not when the node starts: it must be the master's.
        let key = load_master_key(k, passphrase_file.as_deref())?;
        if key.address() != token.master {
            bail!(
                "{} is the key of {}, but the token is for {}",
                k.display(),
                key.address(),
                token.master
            );
        }
    }
    create_private_dir(&dir)?;
    let (extra_torrc, testing_network) = tor_settings(node)?;
    let wg_public = mesh_key(&dir)?;
    let layout = Layout::new(&dir.join("data"));
    create_private_dir(&layout.data_dir)?;
    create_private_dir(&layout.tor_dir())?;

    let rt = tokio::runtime::Runtime::new()?;
    let grant = rt.block_on(async {
        eprintln!("starting a tor client to reach {} ...", token.master);
        let torrc =
            rustbalance_node::torrc::join_client(&layout, std::process::id(), &extra_torrc)?;
        write_atomic(&layout.torrc(), torrc.render().as_bytes(), 0o600)?;
        let tor = rustbalance_node::supervisor::TorSupervisor::start(
            rustbalance_node::supervisor::TorSpec {
                binary: "tor".into(),
                torrc: layout.torrc(),
                control_port_file: layout.control_port_file(),
                log_file: layout.tor_log(),
                output_file: layout.tor_output(),
                pid_file: layout.tor_pid(),
                backoff_min: Duration::from_secs(1),
                backoff_max: Duration::from_secs(10),
            },
        );
        let result = async {
            let mut last = 255u8;
            tor.wait_running(Duration::from_secs(timeout), |s| {
                if s.bootstrap != last {
                    last = s.bootstrap;
                    eprintln!("  tor bootstrap {} %", s.bootstrap);
                }
            })
            .await?;
            let ctl = tor.control().await?;
            let socks = ctl
                .getinfo("net/listeners/socks")
                .await?
                .trim()
                .trim_matches('"')
                .parse::<SocketAddr>()
                .context("tor did not report its SOCKS port")?;
            let params = JoinParams {
                name: name.clone(),
                wg_public_key: wg_public.to_string(),
                endpoint,
            };
            let deadline = Instant::now() + Duration::from_secs(timeout);
            let mut attempt = 1;
            loop {
                eprintln!("asking the cluster to admit {name} (attempt {attempt}) ...");
                let left = deadline.saturating_duration_since(Instant::now());
                match request_join(socks, &token, &params, left.min(Duration::from_secs(120))).await
                {
                    Ok(g) => break Ok::<_, anyhow::Error>(g),
                    // Refusals are final; unreachability is retried until the deadline.
                    Err(e)
                        if e.to_string().contains("cannot reach")
                            && Instant::now() + Duration::from_secs(5) < deadline =>
                    {
                        eprintln!("  {e}; retrying in 5 s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        attempt += 1;
                    }
                    Err(e) => break Err(e.into()),
                }
            }
        }
        .await;
        tor.stop().await;
        result
    })?;
    eprintln!(
        "admitted by {} ({} member(s) listed)",
        grant.admitted_by,
        grant.members.len()
    );
    let secret = Zeroizing::new(
        hex::decode(&grant.cluster_secret)
            .context("the cluster secret in the answer is not hex")?,
    );
    let secret_file = dir.join(CLUSTER_SECRET);
    let generation = rustbalance_node::join::JoinGeneration::parse(&format!(
        "{} {}",
        grant.join_generation, grant.join_salt
    ))
    .context("the join generation in the answer is malformed")?;
    write_atomic(&secret_file, &secret, 0o600)?;
    write_atomic(
        &layout.data_dir.join("join-generation"),
        format!("{generation}\n").as_bytes(),
        0o600,
    )?;
    let text = Template {
        name: name.clone(),
        data_dir: layout.data_dir.clone(),
        master_key: master_key.map(std::path::absolute).transpose()?,
        passphrase_file: passphrase_file.map(std::path::absolute).transpose()?,
        master_address: Some(token.master.to_string()),
        virtual_port: token.port,
        target: target.to_string(),
        admin,
        extra_torrc,
        testing_network,
        cluster: Some(ClusterTemplate {
            secret_file,
            listen: SocketAddr::from(([0, 0, 0, 0], grant.gossip_port)),
            seeds: Vec::new(),
            priority,
            cluster_id: Some(grant.cluster_id.clone()),
        }),
        mesh: Some(MeshTemplate {
            interface: node.mesh_interface.clone(),
            private_key_file: dir.join(MESH_KEY),
            listen_port: endpoint.port(),
            endpoint: Some(endpoint),
            peers: grant
                .members
                .iter()
                .map(|m| (m.wg_public_key.clone(), m.endpoint))
                .collect(),
        }),
    }
    .render();
    write_config(&config, &text)?;
    eprintln!("wrote {}", config.display());
    eprintln!(
        "start this node:   rustbalance run --config {}",
        config.display()
    );
    println!("{}", token.master);
    Ok(())
}

fn admin_call(config: &Path, method: &str, path: &str) -> Result<()> {
    let body = admin_body(config, method, path)?;
    print!("{}", *body);
    Ok(())
}

/// The answer of the running node's admin endpoint to an authenticated request.
fn admin_body(config: &Path, method: &str, path: &str) -> Result<Zeroizing<String>> {
    let cfg = Config::load(config)?;
    let cookie_file = Layout::new(&cfg.node.data_dir).admin_cookie();
    let cookie = Zeroizing::new(std::fs::read_to_string(&cookie_file).with_context(|| {
        format!(
            "cannot read the admin cookie {} (is the node running? run this as its user or root)",
            cookie_file.display()
        )
    })?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = Zeroizing::new(
        rt.block_on(rustbalance_node::admin::request(
            cfg.admin.listen,
            method,
            path,
            Some(&cookie),
        ))
        .with_context(|| format!("the node on {} did not answer", cfg.admin.listen))?,
    );
    Ok(body)
}

pub fn token_show(config: &Path) -> Result<()> {
    admin_call(config, "GET", "/token")
}

pub fn token_rotate(config: &Path) -> Result<()> {
    admin_call(config, "POST", "/token/rotate")?;
    eprintln!("the old token is refused from now on (other nodes follow within seconds)");
    Ok(())
}

pub fn node_remove(config: &Path, who: &str) -> Result<()> {
    let ok = !who.is_empty()
        && who
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+/=".contains(&b));
    if !ok {
        bail!("{who:?} is neither a node name nor a WireGuard public key");
    }
    let before = admin_body(config, "GET", "/token")?;
    let answer = admin_body(config, "POST", &format!("/node/remove/{who}"))?;
    eprint!("{}", *answer);
    eprintln!(
        "its intro points leave the descriptor now; every member drops its WireGuard peer within \
         seconds; waiting for the token rotation ..."
    );
    let wait = rustbalance_node::join_node::ROTATE_AFTER_REMOVAL + Duration::from_secs(30);
    let t0 = Instant::now();
    // Another member may rotate at the same moment (two removals made on two members) and
    // the cluster keeps one of the two generations: print the new token once it has held
    // still for 3 s, so what is printed is the one that stays.
    let mut last = before.clone();
    let mut still = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = admin_body(config, "GET", "/token")?;
        if *now == *last {
            still += 1;
        } else {
            last = now;
            still = 0;
        }
        let rotated = *last != *before;
        let late = t0.elapsed() > wait;
        if rotated && (still >= 3 || late) {
            eprintln!("new join token (the old one is refused from now on):");
            print!("{}", *last);
            return Ok(());
        }
        if late {
            bail!(
                "the join token was not rotated within {} s: the removal is recorded, but \
                 rotate it yourself with `rustbalance token rotate`",
                wait.as_secs()
            );
        }
    }
}
