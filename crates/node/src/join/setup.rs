//! The node directory `rustbalance init` and `rustbalance join` fill: the config (checked
//! before it is written), the cluster secret, the WireGuard key, the first join token, and
//! the `[cluster]`/`[mesh]` parts of the config for a first member or a joined one. The
//! master key's files belong to the key store, not here.

use super::error::JoinError;
use super::message::JoinGrant;
use super::node::save_generation;
use super::service::unix_now;
use super::token::{JoinGeneration, JoinKey, DEFAULT_TTL, JOIN_SECRET_INFO};
use crate::config::{ClusterTemplate, Config, MeshTemplate};
use crate::err::{Error, Result};
use crate::keystore::{create_private_dir, write_atomic};
use crate::layout::Layout;
use rustbalance_hs::IdentityKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File names inside the node directory.
const CLUSTER_SECRET: &str = "cluster.secret";
const MESH_KEY: &str = "mesh.key";
const JOIN_TOKEN: &str = "join-token";

/// A node directory being set up, and the config file it gets.
#[derive(Debug, Clone)]
pub struct NodeDir {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// The config file (absolute; `DIR/rustbalance.toml` unless given).
    pub config: PathBuf,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|source| Error::Io {
        action: "cannot resolve",
        path: p.to_path_buf(),
        source,
    })
}

impl NodeDir {
    /// `dir` with config file `config`; refuses a config that exists already.
    pub fn new(dir: &Path, config: Option<&Path>) -> Result<NodeDir> {
        let dir = absolute(dir)?;
        let config = config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join("rustbalance.toml"));
        if config.exists() {
            return Err(JoinError::ConfigExists { path: config }.into());
        }
        Ok(NodeDir {
            config: absolute(&config)?,
            dir,
        })
    }

    /// Create the directory (0700).
    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.dir)
    }

    /// The node's data directory.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.dir.join("data"))
    }

    /// The cluster secret's file.
    pub fn cluster_secret_file(&self) -> PathBuf {
        self.dir.join(CLUSTER_SECRET)
    }

    /// The WireGuard private key's file.
    pub fn mesh_key_file(&self) -> PathBuf {
        self.dir.join(MESH_KEY)
    }

    /// The WireGuard public key, the key made now unless the directory has one.
    pub fn mesh_key(&self) -> Result<rustbalance_mesh::PublicKey> {
        let file = self.mesh_key_file();
        let err = |source| JoinError::MeshKey {
            path: file.clone(),
            source,
        };
        let key = if file.exists() {
            rustbalance_mesh::PrivateKey::load(&file).map_err(err)?
        } else {
            let k = rustbalance_mesh::PrivateKey::generate();
            k.save(&file).map_err(err)?;
            k
        };
        Ok(key.public_key())
    }

    /// A first member's `[cluster]` and `[mesh]`: a fresh cluster secret (unless one is
    /// there), a WireGuard key, WireGuard on `endpoint`, gossip on `gossip_port`.
    pub fn first_member(
        &self,
        endpoint: SocketAddr,
        gossip_port: u16,
        interface: &str,
    ) -> Result<(ClusterTemplate, MeshTemplate)> {
        let secret_file = self.cluster_secret_file();
        if !secret_file.exists() {
            let mut s = Zeroizing::new([0u8; 32]);
            rand::RngExt::fill(&mut rand::rng(), &mut s[..]);
            write_atomic(&secret_file, &s[..], 0o600)?;
        }
        self.mesh_key()?;
        Ok((
            ClusterTemplate {
                secret_file,
                listen: SocketAddr::from(([0, 0, 0, 0], gossip_port)),
                seeds: Vec::new(),
                priority: 10,
                cluster_id: None,
                quorum: None,
                gossip_signatures: None,
            },
            self.mesh(endpoint, interface, Vec::new()),
        ))
    }

    /// A joined node's `[cluster]` and `[mesh]`, from its grant.
    pub fn joined_member(
        &self,
        grant: &JoinGrant,
        endpoint: SocketAddr,
        priority: u32,
        interface: &str,
    ) -> (ClusterTemplate, MeshTemplate) {
        let peers = grant
            .members
            .iter()
            .map(|m| (m.wg_public_key.clone(), m.endpoint))
            .collect();
        (
            ClusterTemplate {
                secret_file: self.cluster_secret_file(),
                listen: SocketAddr::from(([0, 0, 0, 0], grant.gossip_port)),
                seeds: Vec::new(),
                priority,
                cluster_id: Some(grant.cluster_id.clone()),
                quorum: None,
                gossip_signatures: None,
            },
            self.mesh(endpoint, interface, peers),
        )
    }

    fn mesh(
        &self,
        endpoint: SocketAddr,
        interface: &str,
        peers: Vec<(String, SocketAddr)>,
    ) -> MeshTemplate {
        MeshTemplate {
            interface: interface.to_string(),
            private_key_file: self.mesh_key_file(),
            listen_port: endpoint.port(),
            endpoint: Some(endpoint),
            peers,
        }
    }

    /// Check `text` as a config, then write it atomically (0600).
    pub fn write_config(&self, text: &str) -> Result<Config> {
        let tmp = self.config.with_extension("toml.check");
        write_atomic(&tmp, text.as_bytes(), 0o600)?;
        let checked = Config::load(&tmp);
        let _ = std::fs::remove_file(&tmp);
        let cfg = checked?;
        write_atomic(&self.config, text.as_bytes(), 0o600)?;
        Ok(cfg)
    }

    /// The first join token of the cluster in `cfg` serving `master` (single use, valid for
    /// [`DEFAULT_TTL`]), also written to `DIR/join-token` (0600); `None` without
    /// `[cluster]`. Generation 0 gets a random salt here, saved in the data directory, so
    /// the token cannot be derived from the cluster secret alone. Returns the token and
    /// its file.
    pub fn first_token(
        &self,
        master: &IdentityKey,
        cfg: &Config,
    ) -> Result<Option<(Zeroizing<String>, PathBuf)>> {
        let Some(c) = &cfg.cluster else {
            return Ok(None);
        };
        let secret = Zeroizing::new(std::fs::read(&c.secret_file).map_err(|source| Error::Io {
            action: "read cluster secret",
            path: c.secret_file.clone(),
            source,
        })?);
        let layout = Layout::new(&cfg.node.data_dir);
        create_private_dir(&layout.data_dir)?;
        let generation = JoinGeneration::salted(0);
        save_generation(&layout.join_generation(), &generation)?;
        let tokens = master.derive_secret(JOIN_SECRET_INFO);
        let key = JoinKey::derive(&secret, Some(&tokens[..]), &generation);
        let expires = unix_now() + DEFAULT_TTL.as_secs();
        // Invariant: a key with the master key's secret always mints.
        let Some(token) = key.mint(master.address(), cfg.service.virtual_port, expires) else {
            unreachable!("an eligible join key mints")
        };
        let token = token.encode();
        let file = self.dir.join(JOIN_TOKEN);
        write_atomic(&file, format!("{}\n", *token).as_bytes(), 0o600)?;
        Ok(Some((token, file)))
    }
}

/// The `[tor]` settings (`extra_torrc`, `testing_network`) of the config in `from`, if
/// given (the lab's private network).
pub fn tor_settings(from: Option<&Path>) -> Result<(Vec<String>, bool)> {
    match from {
        None => Ok((Vec::new(), false)),
        Some(p) => {
            let c = Config::load(p)?;
            Ok((c.tor.extra_torrc.clone(), c.tor.testing_network))
        }
    }
}

/// A node name from `/etc/hostname` (its name characters, at most 32), else `node`.
pub fn host_name() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_config_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let nd = NodeDir::new(dir.path(), None).unwrap();
        assert_eq!(nd.config, dir.path().join("rustbalance.toml"));
        std::fs::write(&nd.config, "x").unwrap();
        let e = NodeDir::new(dir.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("already exists") && e.contains("remove it first"),
            "{e}"
        );
    }

    #[test]
    fn the_mesh_key_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let nd = NodeDir::new(dir.path(), None).unwrap();
        let k = nd.mesh_key().unwrap();
        assert_eq!(nd.mesh_key().unwrap(), k);
    }
}
