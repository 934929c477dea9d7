//! Onionbalance compatibility: read an Onionbalance v3 setup (its `config.yaml` and the
//! master keys it names) and describe the RustBalance configs that replace it, one per
//! service.
//!
//! ```text
//!  config.yaml ─yaml::parse─▶ ObConfig ─load keys (PEM or tor's)─▶ Imported
//!  Imported ─service_config()─▶ rustbalance.toml text (+ [[backends]]) per service
//! ```
//!
//! Writing the files (key store formats, 0600, never overwriting) is the command's job
//! (`rustbalance onionbalance import`); nothing here writes to disk or prints a secret.

mod yaml;

pub use yaml::{parse, Leftover, ObConfig, ObInstance, ObService};

use crate::config::{render_backends, Template};
use crate::err::{Error, Result};
use crate::keystore::KeyFiles;
use rustbalance_hs::{IdentityKey, OnionAddress};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One Onionbalance service with its master key opened.
pub struct ImportedService {
    /// The master key (PEM or tor's format, as Onionbalance accepts them).
    pub key: IdentityKey,
    /// Where Onionbalance kept it.
    pub key_path: PathBuf,
    /// The backend instances.
    pub instances: Vec<ObInstance>,
}

impl ImportedService {
    /// The master address.
    pub fn address(&self) -> OnionAddress {
        self.key.address()
    }
}

/// A whole Onionbalance setup, read and checked.
pub struct Imported {
    /// Its services, in file order.
    pub services: Vec<ImportedService>,
    /// What is not carried over.
    pub leftovers: Vec<Leftover>,
}

/// Read `config` and open every key it names. Fails, naming the file and the entry, on
/// anything Onionbalance itself would refuse, and on a service listing its own master
/// address as an instance.
pub fn load(config: &Path) -> Result<Imported> {
    let text = std::fs::read_to_string(config).map_err(|source| Error::Io {
        action: "cannot read the Onionbalance config",
        path: config.to_path_buf(),
        source,
    })?;
    let parsed = parse(config, &text)?;
    let mut services = Vec::with_capacity(parsed.services.len());
    for (i, s) in parsed.services.into_iter().enumerate() {
        let key = IdentityKey::load(&s.key)?;
        let addr = key.address();
        if s.instances.iter().any(|x| x.address == addr) {
            return Err(Error::Onionbalance {
                path: config.to_path_buf(),
                problem: format!(
                    "services[{i}] lists its own master address {addr} as an instance; list \
                     the backends' own addresses (each backend's HiddenServiceDir/hostname)"
                ),
            });
        }
        if let Some(j) = services
            .iter()
            .position(|o: &ImportedService| o.address() == addr)
        {
            return Err(Error::Onionbalance {
                path: config.to_path_buf(),
                problem: format!(
                    "services[{j}] and services[{i}] have the same master key ({addr})"
                ),
            });
        }
        services.push(ImportedService {
            key,
            key_path: s.key,
            instances: s.instances,
        });
    }
    Ok(Imported {
        services,
        leftovers: parsed.leftovers,
    })
}

/// Where the node of an imported service keeps its things, and how it is reached.
pub struct ServicePlacement {
    /// `node.name`.
    pub name: String,
    /// `node.data_dir`.
    pub data_dir: PathBuf,
    /// `service.master_key`.
    pub key_file: PathBuf,
    /// `service.master_key_passphrase_file` (a sealed key read from a file).
    pub passphrase_file: Option<PathBuf>,
    /// `target.url`; `None`: a publisher-only node (no `[target]`).
    pub target: Option<String>,
    /// `admin.listen` (one port per service when several run on one machine).
    pub admin: SocketAddr,
    /// `tor.extra_torrc` and `tor.testing_network` (the lab's network).
    pub tor: (Vec<String>, bool),
    /// `[cluster]`: backends need one (the publisher is elected; a cluster of one node
    /// is fine, and more nodes join by copying the key, the secret and adding seeds).
    pub cluster: Option<crate::config::ClusterTemplate>,
}

/// The RustBalance config replacing Onionbalance for `svc`.
pub fn service_config(svc: &ImportedService, at: &ServicePlacement) -> String {
    let mut text = Template {
        name: at.name.clone(),
        data_dir: at.data_dir.clone(),
        master_key: Some(at.key_file.clone()),
        passphrase_file: at.passphrase_file.clone(),
        master_address: Some(svc.address().to_string()),
        virtual_port: 80,
        target: at.target.clone(),
        admin: at.admin,
        extra_torrc: at.tor.0.clone(),
        testing_network: at.tor.1,
        cluster: at.cluster.clone(),
        mesh: None,
    }
    .render();
    let backends: Vec<_> = svc
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.address))
        .collect();
    text += &render_backends(&backends);
    text
}

#[cfg(test)]
mod tests;
