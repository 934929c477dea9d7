//! Node configs for the lab network: what `rustbalance lab node-config`
//! prints and what every lab cluster node runs with.

use anyhow::Result;
use rustbalance_lab::Lab;
use rustbalance_node::config::{ClusterTemplate, MeshTemplate, Template};
use rustbalance_node::keystore::KeyFiles;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where node `name`'s files live in the lab (`DIR/rustbalance/NAME`).
pub fn node_dir(lab: &Lab, name: &str) -> PathBuf {
    lab.dir().join("rustbalance").join(name)
}

/// A node config that joins `lab`'s network.
pub fn node_config(
    lab: &Lab,
    name: &str,
    target: &str,
    master_key: Option<PathBuf>,
    admin: SocketAddr,
) -> Result<String> {
    node_config_with(lab, name, target, master_key, admin, None, None)
}

/// [`node_config`] with a `[cluster]` section (and a `[mesh]` one).
pub fn node_config_with(
    lab: &Lab,
    name: &str,
    target: &str,
    master_key: Option<PathBuf>,
    admin: SocketAddr,
    cluster: Option<ClusterTemplate>,
    mesh: Option<MeshTemplate>,
) -> Result<String> {
    let base = node_dir(lab, name);
    let master_key = match master_key {
        Some(k) => k,
        None => {
            let dir = base.join("master");
            let file = dir.join(rustbalance_hs::keys::SECRET_KEY_FILE);
            if !file.exists() {
                rustbalance_hs::IdentityKey::generate(&mut rand::rng()).write_tor_dir(&dir)?;
            }
            file
        }
    };
    // A fixed admin port, so that `rustbalance status --config` finds it.
    let admin = if admin.port() == 0 {
        std::net::TcpListener::bind(admin)?.local_addr()?
    } else {
        admin
    };
    let mut extra = vec![
        "TestingTorNetwork 1".to_string(),
        "ClientUseIPv6 0".to_string(),
    ];
    extra.extend(
        lab.dir_authority_lines()
            .into_iter()
            .map(|l| format!("DirAuthority {l}")),
    );
    Ok(with_debug_log(
        &Template {
            name: name.to_string(),
            data_dir: base.join("data"),
            master_key: Some(master_key),
            passphrase_file: None,
            master_address: None,
            virtual_port: 80,
            target: Some(format!("tcp://{target}")),
            admin,
            extra_torrc: extra,
            testing_network: true,
            cluster,
            mesh,
        }
        .render(),
    ))
}

/// The second tor log every lab node writes (`tor.debug_log`, `DATA/tor-debug.log`):
/// introductions and descriptor builds, for the "alive, listed and silent" fault (issue 15).
pub const LAB_TOR_DEBUG_LOG: &str = "[rend]info";

/// `config` (a node config file's text) with `tor.debug_log` set to [`LAB_TOR_DEBUG_LOG`].
pub fn with_debug_log(config: &str) -> String {
    config.replacen(
        "[tor]\n",
        &format!("[tor]\ndebug_log = \"{LAB_TOR_DEBUG_LOG}\"\n"),
        1,
    )
}

/// A one-node cluster in `lab` (it publishes the master descriptor itself): `master`'s key
/// under `base/master`, a fresh cluster secret, free admin and gossip ports, the lab's
/// node config with a `[cluster]` section, changed by `edit` (it must keep the sections
/// it edits); written 0600 to `base/NAME.toml`, whose path is returned.
pub fn lone_cluster_node(
    lab: &Lab,
    name: &str,
    master: &rustbalance_hs::IdentityKey,
    target: SocketAddr,
    base: &std::path::Path,
    edit: impl FnOnce(String) -> Result<String>,
) -> Result<PathBuf> {
    use rustbalance_node::keystore::write_atomic;
    use rustbalance_tor::port::{free_port, Proto};
    master.write_tor_dir(&base.join("master"))?;
    let secret_file = base.join("cluster.secret");
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngExt::fill(&mut rand::rng(), &mut secret[..]);
    write_atomic(&secret_file, &secret[..], 0o600)?;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port(Proto::Tcp)?));
    let gossip = SocketAddr::from(([127, 0, 0, 1], free_port(Proto::Udp)?));
    let text = node_config_with(
        lab,
        name,
        &target.to_string(),
        Some(
            base.join("master")
                .join(rustbalance_hs::keys::SECRET_KEY_FILE),
        ),
        admin,
        Some(ClusterTemplate::first_node(secret_file, gossip)),
        None,
    )?;
    let text = edit(text)?;
    rustbalance_node::keystore::create_private_dir(&node_dir(lab, name))?;
    let config = base.join(format!("{name}.toml"));
    write_atomic(&config, text.as_bytes(), 0o600)?;
    Ok(config)
}
