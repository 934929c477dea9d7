//! Restricted discovery in single-node mode: tor itself publishes the master descriptor,
//! so the clients of `service.authorized_clients_dir` are copied into tor's own
//! `HiddenServiceDir/authorized_clients/` (before tor starts, then whenever the directory
//! changes, followed by `SIGNAL RELOAD`, on which tor re-reads them and republishes).
//!
//! tor treats an empty `authorized_clients/` as "open to everyone", while an empty
//! `authorized_clients_dir` means "nobody" here (as in cluster mode): that case gets one
//! key nobody holds. Without `authorized_clients_dir`, stale files are removed, so turning
//! the restriction off really opens the address. (Cluster mode: `cluster/auth.rs`.)

use crate::client_auth::{client_file, read_clients, AUTH_SUFFIX};
use crate::config::Config;
use crate::err::{Error, Result};
use crate::keystore::{create_private_dir, write_atomic};
use crate::layout::Layout;
use rustbalance_hs::descriptor::{auth_line, ClientSecret};
use rustbalance_tor::TorSupervisor;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How often the directory is compared with tor's copy.
const POLL: Duration = Duration::from_secs(2);
/// Name of the key nobody holds (an empty list would open the address).
const NOBODY: &str = "rustbalance-nobody";

/// Bring tor's `authorized_clients/` in line with the config; true if a file changed.
pub fn sync_single_node(cfg: &Config, layout: &Layout) -> Result<bool> {
    if cfg.cluster.is_some() {
        return Ok(false);
    }
    let tor_dir = layout.master_hs_dir().join("authorized_clients");
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    if let Some(dir) = &cfg.service.authorized_clients_dir {
        for c in read_clients(dir)? {
            want.insert(c.name, format!("{}\n", auth_line(&c.key)));
        }
        if want.is_empty() {
            let k = ClientSecret::generate(&mut rand::rng()).public();
            want.insert(NOBODY.into(), format!("{}\n", auth_line(&k)));
        }
    }
    let have = existing(&tor_dir)?;
    let keep_nobody = want.len() == 1 && want.contains_key(NOBODY) && have.contains_key(NOBODY);
    let mut changed = false;
    for (name, text) in &want {
        if have.get(name) == Some(text) || (keep_nobody && name == NOBODY) {
            continue;
        }
        create_private_dir(&tor_dir)?;
        write_atomic(&client_file(&tor_dir, name), text.as_bytes(), 0o600)?;
        changed = true;
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        let f = client_file(&tor_dir, name);
        std::fs::remove_file(&f).map_err(|source| Error::Io {
            action: "cannot remove",
            path: f.clone(),
            source,
        })?;
        changed = true;
    }
    Ok(changed)
}

/// The `.auth` files tor has now (name → contents).
fn existing(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let fname = e.file_name();
        if let Some(name) = fname.to_str().and_then(|n| n.strip_suffix(AUTH_SUFFIX)) {
            let text = std::fs::read_to_string(e.path()).map_err(|source| Error::Io {
                action: "cannot read",
                path: e.path(),
                source,
            })?;
            out.insert(name.to_string(), text);
        }
    }
    Ok(out)
}

/// Single-node mode with `authorized_clients_dir`: follow the directory until aborted.
pub async fn watch_single_node(cfg: Config, layout: Layout, tor: std::sync::Arc<TorSupervisor>) {
    if cfg.cluster.is_some() || cfg.service.authorized_clients_dir.is_none() {
        return;
    }
    let mut pending_reload = false;
    loop {
        tokio::time::sleep(POLL).await;
        match sync_single_node(&cfg, &layout) {
            Ok(changed) => pending_reload |= changed,
            Err(e) => tracing::error!("restricted discovery: {e}; tor keeps its last client list"),
        }
        if pending_reload {
            if let Ok(ctl) = tor.control().await {
                if ctl.signal("RELOAD").await.is_ok() {
                    tracing::info!("restricted discovery: client list changed, tor reloaded");
                    pending_reload = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_auth::add_client;

    fn cfg(dir: &Path, clients: Option<&Path>) -> Config {
        let key = dir.join("key");
        std::fs::write(&key, b"x").unwrap();
        let extra = clients
            .map(|c| format!("authorized_clients_dir = {:?}\n", c.display().to_string()))
            .unwrap_or_default();
        let text = format!(
            "[node]\nname = \"n1\"\ndata_dir = \"{d}/data\"\n[service]\nmaster_key = \"{k}\"\n\
             {extra}[target]\nurl = \"tcp://127.0.0.1:8080\"\n",
            d = dir.display(),
            k = key.display()
        );
        toml::from_str(&text).unwrap()
    }

    fn names(layout: &Layout) -> Vec<String> {
        existing(&layout.master_hs_dir().join("authorized_clients"))
            .unwrap()
            .into_keys()
            .collect()
    }

    /// tor's copy follows the directory; an empty directory never opens the address; no
    /// `authorized_clients_dir` removes what an earlier config left.
    #[test]
    fn tor_gets_the_clients_and_never_an_empty_list() {
        let d = tempfile::tempdir().unwrap();
        let clients = d.path().join("clients");
        let layout = Layout::new(&d.path().join("data"));
        let c = cfg(d.path(), Some(&clients));
        let mut rng = rand::rng();
        // No client yet: one key nobody holds, written once.
        assert!(sync_single_node(&c, &layout).unwrap());
        assert_eq!(names(&layout), [NOBODY]);
        assert!(!sync_single_node(&c, &layout).unwrap());
        let alice = ClientSecret::generate(&mut rng).public();
        add_client(&clients, "alice", &alice).unwrap();
        assert!(sync_single_node(&c, &layout).unwrap());
        assert_eq!(names(&layout), ["alice"]);
        let f = client_file(&layout.master_hs_dir().join("authorized_clients"), "alice");
        assert_eq!(
            std::fs::read_to_string(f).unwrap().trim(),
            auth_line(&alice)
        );
        assert!(!sync_single_node(&c, &layout).unwrap());
        crate::client_auth::remove_client(&clients, "alice").unwrap();
        assert!(sync_single_node(&c, &layout).unwrap());
        assert_eq!(names(&layout), [NOBODY]);
        // Restriction turned off.
        assert!(sync_single_node(&cfg(d.path(), None), &layout).unwrap());
        assert!(names(&layout).is_empty());
    }
}
