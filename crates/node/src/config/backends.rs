//! `[[backends]]`: fetch-mode backends, plain tor onion services configured as
//! Onionbalance instances (`HiddenServiceOnionbalanceInstance 1`), listed by address.
//! `rustbalance onionbalance import` writes them from Onionbalance's `config.yaml`.
//!
//! Publisher-eligible nodes fetch their descriptors from the HSDirs and list their intro
//! points in the master descriptor (`cluster/backends.rs`); a config with backends needs
//! a `[cluster]` (the publisher is elected, a cluster of one is fine).

use super::validate::invalid;
use crate::err::Result;
use rustbalance_hs::OnionAddress;
use serde::Deserialize;

/// One `[[backends]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// The instance's own onion address.
    pub address: String,
    /// A label for logs and status (Onionbalance's instance `name`).
    #[serde(default)]
    pub name: Option<String>,
}

/// Most backends: a descriptor lists at most 20 intro points, 3 per instance.
pub const MAX_BACKENDS: usize = 20;

/// Check the list: valid v3 addresses, none twice, none the master itself.
pub(super) fn check(backends: &[BackendSection], master: Option<&OnionAddress>) -> Result<()> {
    if backends.len() > MAX_BACKENDS {
        return Err(invalid(
            "backends",
            format!(
                "{} listed, at most {MAX_BACKENDS} (a descriptor lists at most 20 intro points)",
                backends.len()
            ),
        ));
    }
    let mut seen = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let key = format!("backends[{i}].address");
        let a = OnionAddress::parse(&b.address).map_err(|e| invalid(&key, e.to_string()))?;
        if Some(&a) == master {
            return Err(invalid(
                &key,
                "this is the master address itself; list the instances' own addresses",
            ));
        }
        if seen.contains(&a) {
            return Err(invalid(&key, format!("{a} is listed twice")));
        }
        seen.push(a);
    }
    Ok(())
}

/// The backends as `(name, address)`, named as `/status` and the metrics name them
/// (`crate::cluster::backends::names`). Call on a checked config.
pub fn named(backends: &[BackendSection]) -> Vec<(String, OnionAddress)> {
    let parsed: Vec<(Option<String>, OnionAddress)> = backends
        .iter()
        .filter_map(|b| Some((b.name.clone(), OnionAddress::parse(&b.address).ok()?)))
        .collect();
    crate::cluster::backends::names(&parsed)
}

/// The `[[backends]]` blocks for `(name, address)` pairs, ready to append to a config.
pub fn render(backends: &[(Option<String>, OnionAddress)]) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut s = String::from(
        "\n# Fetch-mode backends: plain tor onion services configured as Onionbalance\n\
         # instances (HiddenServiceOnionbalanceInstance 1), fetched from the HSDirs.\n",
    );
    for (name, addr) in backends {
        s += "\n[[backends]]\n";
        if let Some(n) = name {
            s += &format!("name = {}\n", q(n));
        }
        s += &format!("address = {}\n", q(&addr.to_string()));
    }
    s
}
