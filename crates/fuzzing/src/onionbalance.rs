//! Onionbalance's `config.yaml` as `rustbalance onionbalance import` reads it
//! (`onionbalance::parse`; the key files it names go through `key_files`).

use std::fmt::Write;
use std::path::Path;

use rustbalance_node::onionbalance::{parse, ObConfig};

/// Where the fuzzed file claims to be (key paths resolve against its directory).
pub const OB_CONFIG_PATH: &str = "/etc/onionbalance/config.yaml";

/// The input is the file's text (bytes that are not UTF-8 replaced, as a reader of the
/// file would refuse them before). Properties, when it parses:
/// - bounded: every service, instance and leftover note comes from text in the file (no
///   more of them than bytes), at most 1000 services and 1000 instances each;
/// - Onionbalance's rules hold: at least one service, each with a key and at least one
///   instance, no instance twice, no key under two services;
/// - round trip: the services rendered as YAML parse to the same services.
pub fn onionbalance_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new(OB_CONFIG_PATH);
    let Ok(cfg) = parse(path, &text) else {
        return;
    };
    let instances: usize = cfg.services.iter().map(|s| s.instances.len()).sum();
    assert!(
        cfg.services.len() + instances + cfg.leftovers.len() <= text.len(),
        "{} services, {instances} instances, {} notes from {} bytes",
        cfg.services.len(),
        cfg.leftovers.len(),
        text.len()
    );
    assert!(!cfg.services.is_empty() && cfg.services.len() <= 1000);
    for (i, s) in cfg.services.iter().enumerate() {
        assert!(!s.instances.is_empty() && s.instances.len() <= 1000);
        for (j, x) in s.instances.iter().enumerate() {
            assert!(s.instances[..j].iter().all(|y| y.address != x.address));
            for o in &cfg.services[..i] {
                assert!(o.instances.iter().all(|y| y.address != x.address));
            }
        }
        assert!(cfg.services[..i].iter().all(|o| o.key != s.key));
    }
    let again = parse(path, &render(&cfg)).expect("rendered services parse");
    assert_eq!(
        again.services, cfg.services,
        "round trip changed the services"
    );
}

/// `cfg`'s services as an Onionbalance v3 `config.yaml` (every string double-quoted).
pub fn render(cfg: &ObConfig) -> String {
    let mut out = String::from("services:\n");
    for s in &cfg.services {
        let key = s.key.to_str().expect("a key path read from text is text");
        let _ = writeln!(out, "- key: {}\n  instances:", quoted(key));
        for x in &s.instances {
            let _ = writeln!(out, "  - address: {}", quoted(&x.address.to_string()));
            if let Some(n) = &x.name {
                let _ = writeln!(out, "    name: {}", quoted(n));
            }
        }
    }
    out
}

/// A YAML double-quoted scalar: printable ASCII as is, everything else escaped.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}
