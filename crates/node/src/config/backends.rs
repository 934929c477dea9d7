//! `[[backends]]`: fetch-mode backends, plain tor onion services configured as
//! Onionbalance instances (`HiddenServiceOnionbalanceInstance 1`), listed by address.
//! `rustbalance onionbalance import` writes them from Onionbalance's `config.yaml`.
//!
//! This build reads and checks the list but does not fetch those descriptors yet: a node
//! whose config lists backends refuses to start ([`refuse_unsupported`]) rather than
//! silently serve without them.

use super::validate::invalid;
use crate::err::{Error, Result};
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

/// The error of a node started with backends this build cannot serve.
pub fn refuse_unsupported(backends: &[BackendSection]) -> Result<()> {
    if backends.is_empty() {
        return Ok(());
    }
    Err(Error::Config {
        key: "backends".into(),
        problem: format!(
            "{} fetch-mode backend(s) listed, but this build of RustBalance does not fetch \
             backend descriptors yet; keep Onionbalance running for them (docs/ONIONBALANCE.md)",
            backends.len()
        ),
    })
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
