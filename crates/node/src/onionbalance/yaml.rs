//! Onionbalance's v3 `config.yaml`, read into typed values with the checks Onionbalance
//! itself makes (a `services` list; each with a `key` and at least one instance; each
//! instance with a valid v3 `address`) and a few it does not (an instance under two
//! services, two services with one key). What Onionbalance v3 reads and RustBalance
//! does not carry over is collected as [`Leftover`] notes, never silently dropped.
//!
//! The keys Onionbalance 0.2.2 reads in v3 mode: `services[].key` (a path, relative to
//! the config file's directory), `services[].instances[].address`, and the top-level
//! `status-socket-location`. `onionbalance-config` also writes an instance `name`
//! (a label only). Other top-level keys (`REFRESH_INTERVAL`, ...) are v2 settings that
//! v3 ignores.

use crate::err::{Error, Result};
use rustbalance_hs::OnionAddress;
use std::path::{Path, PathBuf};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// Most services and instances read: far above any real config, low enough that a
/// hostile file cannot make the import allocate without bound.
const MAX_ENTRIES: usize = 1000;

/// The parts of the file RustBalance uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObConfig {
    /// `services`, in file order.
    pub services: Vec<ObService>,
    /// What is in the file but not carried over.
    pub leftovers: Vec<Leftover>,
}

/// One `services` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObService {
    /// `key`, resolved against the config file's directory.
    pub key: PathBuf,
    /// `instances`, duplicates removed.
    pub instances: Vec<ObInstance>,
}

/// One `instances` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObInstance {
    /// `address`.
    pub address: OnionAddress,
    /// `name` (`onionbalance-config` writes `node1`, `node2`, ...).
    pub name: Option<String>,
}

/// Something in the file that the RustBalance config does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Where (`status-socket-location`, `services[1].instances[0].weight`, ...).
    pub at: String,
    /// Why it is not carried over and what replaces it.
    pub why: String,
}

/// Parse `text`, the contents of the config file `path` (used to resolve key paths
/// and in errors).
pub fn parse(path: &Path, text: &str) -> Result<ObConfig> {
    let err = |problem: String| Error::Onionbalance {
        path: path.to_path_buf(),
        problem,
    };
    if let Some(problem) = alias_in(text) {
        return Err(err(problem));
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| err(format!("not valid YAML: {e}")))?;
    let root = match docs.as_slice() {
        [one] => one,
        [] => return Err(err("the file is empty; an Onionbalance v3 config has a `services:` list (make one with onionbalance-config)".into())),
        _ => return Err(err("the file holds several YAML documents; Onionbalance reads one".into())),
    };
    let Yaml::Hash(top) = root else {
        return Err(err(
            "the top level is not a mapping; expected `services:` (an Onionbalance v3 config)"
                .into(),
        ));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = ObConfig {
        services: Vec::new(),
        leftovers: Vec::new(),
    };
    let mut services = None;
    for (k, v) in top {
        match k.as_str() {
            Some("services") => services = Some(v),
            Some("status-socket-location") => out.leftovers.push(Leftover {
                at: "status-socket-location".into(),
                why: "RustBalance has no unix status socket; each node serves its status as \
                      JSON over HTTP at [admin] listen (`rustbalance status --config FILE`)"
                    .into(),
            }),
            other => out.leftovers.push(Leftover {
                at: other.map_or_else(|| format!("{k:?}"), str::to_string),
                why: "not read by Onionbalance v3 (a v2 setting or unknown key); ignored".into(),
            }),
        }
    }
    let Some(services) = services else {
        return Err(err(
            "`services` is missing: an Onionbalance v3 config lists its services under \
             `services:` (did you make it with onionbalance-config?)"
                .into(),
        ));
    };
    let Yaml::Array(list) = services else {
        return Err(err("`services` is not a list".into()));
    };
    if list.is_empty() {
        return Err(err("`services` is empty: nothing to import".into()));
    }
    if list.len() > MAX_ENTRIES {
        return Err(err(format!("more than {MAX_ENTRIES} services")));
    }
    for (i, s) in list.iter().enumerate() {
        let svc = service(base, i, s, &mut out.leftovers).map_err(err)?;
        out.services.push(svc);
    }
    cross_checks(&out.services).map_err(err)?;
    Ok(out)
}

/// The first YAML alias (`*name`) in `text`, as the problem to report: aliases are refused
/// before the tree is built, because the loader copies the anchored node at every alias, so
/// nested aliases make a few hundred bytes expand to gigabytes ("billion laughs"; fuzz
/// target `onionbalance_config`). `onionbalance-config` writes none. Syntax errors are left
/// to the loader, which reports them.
fn alias_in(text: &str) -> Option<String> {
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::Alias(_), mark)) => {
                return Some(format!(
                    "line {}: a YAML alias (`*name`); write the value out in full (aliases \
                     are refused: each one copies its anchor, so a small file could expand \
                     without bound)",
                    mark.line()
                ))
            }
            Ok((Event::StreamEnd, _)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// One `services[i]` entry.
fn service(
    base: &Path,
    i: usize,
    s: &Yaml,
    leftovers: &mut Vec<Leftover>,
) -> std::result::Result<ObService, String> {
    let at = format!("services[{i}]");
    let Yaml::Hash(h) = s else {
        return Err(format!("{at} is not a mapping with `key` and `instances`"));
    };
    let mut key = None;
    let mut instances = None;
    for (k, v) in h {
        match k.as_str() {
            Some("key") => key = Some(v),
            Some("instances") => instances = Some(v),
            other => leftovers.push(Leftover {
                at: format!("{at}.{}", other.unwrap_or("?")),
                why: "not read by Onionbalance v3; ignored".into(),
            }),
        }
    }
    let key = match key {
        Some(Yaml::String(p)) if !p.trim().is_empty() => base.join(p.trim()),
        Some(_) => return Err(format!("{at}.key is not a file path")),
        None => {
            return Err(format!(
                "{at}.key is missing: each service names its master key file"
            ))
        }
    };
    let list = match instances {
        Some(Yaml::Array(l)) if !l.is_empty() => l,
        Some(Yaml::Array(_)) | Some(Yaml::Null) => {
            return Err(format!(
                "{at}.instances is empty: Onionbalance needs at least one backend instance"
            ))
        }
        Some(_) => return Err(format!("{at}.instances is not a list")),
        None => return Err(format!("{at}.instances is missing")),
    };
    if list.len() > MAX_ENTRIES {
        return Err(format!("{at}: more than {MAX_ENTRIES} instances"));
    }
    let mut out: Vec<ObInstance> = Vec::new();
    for (j, e) in list.iter().enumerate() {
        let inst = instance(&format!("{at}.instances[{j}]"), e, leftovers)?;
        if out.iter().any(|o| o.address == inst.address) {
            leftovers.push(Leftover {
                at: format!("{at}.instances[{j}]"),
                why: format!("{} is listed twice; imported once", inst.address),
            });
            continue;
        }
        out.push(inst);
    }
    Ok(ObService {
        key,
        instances: out,
    })
}

/// One `instances[j]` entry.
fn instance(
    at: &str,
    e: &Yaml,
    leftovers: &mut Vec<Leftover>,
) -> std::result::Result<ObInstance, String> {
    let Yaml::Hash(h) = e else {
        return Err(format!("{at} is not a mapping with `address`"));
    };
    let mut address = None;
    let mut name = None;
    for (k, v) in h {
        match (k.as_str(), v) {
            (Some("address"), Yaml::String(a)) => address = Some(a.clone()),
            (Some("address"), _) => return Err(format!("{at}.address is not a string")),
            (Some("name"), Yaml::String(n)) => name = Some(n.clone()),
            (Some("name"), Yaml::Integer(n)) => name = Some(n.to_string()),
            (Some("name"), _) => return Err(format!("{at}.name is not a string")),
            (other, _) => leftovers.push(Leftover {
                at: format!("{at}.{}", other.unwrap_or("?")),
                why: "not read by Onionbalance v3; ignored".into(),
            }),
        }
    }
    let address = address.ok_or_else(|| format!("{at}.address is missing"))?;
    if address.trim().is_empty() || address.contains('<') {
        return Err(format!(
            "{at}.address is not filled in ({address:?}): put the instance's onion address \
             (its HiddenServiceDir/hostname) there"
        ));
    }
    let address = OnionAddress::parse(&address).map_err(|e| format!("{at}.address: {e}"))?;
    Ok(ObInstance { address, name })
}

/// Checks across services: one key per service, one service per instance.
fn cross_checks(services: &[ObService]) -> std::result::Result<(), String> {
    for (i, a) in services.iter().enumerate() {
        for (j, b) in services.iter().enumerate().skip(i + 1) {
            if a.key == b.key {
                return Err(format!(
                    "services[{i}] and services[{j}] use the same key {}",
                    a.key.display()
                ));
            }
            if let Some(x) = a
                .instances
                .iter()
                .find(|x| b.instances.iter().any(|y| y.address == x.address))
            {
                return Err(format!(
                    "instance {} is listed under services[{i}] and services[{j}]; a tor \
                     instance serves one master address (its ob_config names one \
                     MasterOnionAddress)",
                    x.address
                ));
            }
        }
    }
    Ok(())
}
