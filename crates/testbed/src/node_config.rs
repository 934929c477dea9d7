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
    Ok(with_lab_tor(
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

/// `config` (a node config file's text) with `tor.debug_log` set to [`LAB_TOR_DEBUG_LOG`]
/// and `tor.instances = 1`: one tor per lab node whatever the machine's core count (unset,
/// a node on 4 cores or more would run several); a scenario that wants more sets it
/// (`ClusterNodeProc::set_option`).
pub fn with_lab_tor(config: &str) -> String {
    config.replacen(
        "[tor]\n",
        &format!("[tor]\ndebug_log = \"{LAB_TOR_DEBUG_LOG}\"\ninstances = 1\n"),
        1,
    )
}

/// `config` with `line` (`key = value`) in its `[section]`: replacing that key's line in
/// the section, or first in it; `None` without such a section.
pub fn set_option(config: &str, section: &str, line: &str) -> Option<String> {
    let head = format!("[{section}]\n");
    let start = config.find(&head)? + head.len();
    let end = config[start..]
        .find("\n[")
        .map_or(config.len(), |i| start + i + 1);
    let key = line.split('=').next().unwrap_or("").trim();
    let body: Vec<&str> = config[start..end].lines().collect();
    let same = |l: &&str| l.split('=').next().is_some_and(|k| k.trim() == key);
    let mut out = String::from(&config[..start]);
    if body.iter().any(same) {
        for l in &body {
            out.push_str(if same(l) { line } else { l });
            out.push('\n');
        }
    } else {
        out.push_str(line);
        out.push('\n');
        out.push_str(&config[start..end]);
    }
    out.push_str(&config[end..]);
    Some(out)
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

#[cfg(test)]
mod set_option_tests {
    use super::set_option;

    #[test]
    fn a_key_is_replaced_in_its_section_or_added_first() {
        let c = "[a]\nx = 1\n[tor]\ninstances = 1\ndebug_log = \"info\"\n\n[b]\ninstances = 7\n";
        assert_eq!(
            set_option(c, "tor", "instances = 2").unwrap(),
            "[a]\nx = 1\n[tor]\ninstances = 2\ndebug_log = \"info\"\n\n[b]\ninstances = 7\n"
        );
        assert_eq!(
            set_option(c, "a", "y = 2").unwrap(),
            "[a]\ny = 2\nx = 1\n[tor]\ninstances = 1\ndebug_log = \"info\"\n\n[b]\ninstances = 7\n"
        );
        assert_eq!(
            set_option(c, "b", "instances = 3").unwrap(),
            "[a]\nx = 1\n[tor]\ninstances = 1\ndebug_log = \"info\"\n\n[b]\ninstances = 3\n"
        );
        assert_eq!(set_option(c, "cluster", "solo = false"), None);
    }
}
