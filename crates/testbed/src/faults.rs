//! Faults the lab tests and the faults benchmark inject (issue 15), and what they read
//! back: signals to a node's tor or target by the pid files the lab and the nodes write,
//! the lab's relays with their fingerprints, and fetching a descriptor from one HSDir
//! alone (did a restarted HSDir get it back?).

use crate::node_config::node_dir;
use anyhow::{ensure, Context, Result};
use rustbalance_lab::{Lab, Role};
use rustbalance_tor::control::Event;
use rustbalance_tor::ControlClient;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The pid written in `file`.
pub fn read_pid(file: &Path) -> Result<u32> {
    std::fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("pid in {}", file.display()))
}

/// Sends `sig` (`-STOP`, `-CONT`, `-KILL`) to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    ensure!(ok, "kill {sig} {pid} failed");
    Ok(())
}

/// The pid file of node `name`'s tor (namespaced lab clusters: the node's data
/// directory under the lab).
pub fn ns_tor_pid_file(lab: &Lab, name: &str) -> PathBuf {
    node_dir(lab, name).join("data").join("tor.pid")
}

/// The pid of node `name`'s tor (namespaced lab clusters).
pub fn ns_tor_pid(lab: &Lab, name: &str) -> Result<u32> {
    read_pid(&ns_tor_pid_file(lab, name))
}

/// Sends `sig` to node `name`'s demo target (namespaced lab clusters: the lab process
/// `target<NAME>`): `-STOP` makes the node silent (its proxy still accepts streams, the
/// kernel completes the target's TCP handshakes, nothing answers), `-CONT` ends it.
pub fn signal_ns_target(lab: &Lab, name: &str, sig: &str) -> Result<()> {
    let file = lab
        .dir()
        .join("nodes")
        .join(format!("target{name}"))
        .join("pid");
    signal(read_pid(&file)?, sig)
}

/// `(name, fingerprint)` of the lab's relays (not the authorities: their restart would
/// stall the votes).
pub async fn relay_fingerprints(lab: &Lab) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for n in lab
        .nodes()
        .iter()
        .filter(|n| matches!(n.role, Role::Guard | Role::Exit))
    {
        let fp = lab.control(&n.name).await?.getinfo("fingerprint").await?;
        out.push((n.name.clone(), fp.trim().to_ascii_uppercase()));
    }
    Ok(out)
}

/// What the responsible HSDirs of a publication hold for `address`, asked one by one
/// through the lab client: how many answered, and how many distinct descriptors they hold.
/// An error if one holds more than `max_bytes`.
pub async fn held_at_hsdirs(
    lab: &Lab,
    address: &str,
    hsdirs: &std::collections::BTreeSet<String>,
    max_bytes: usize,
) -> anyhow::Result<(usize, usize)> {
    let mut fetch = HsDirFetch::connect(lab).await?;
    let mut held = std::collections::BTreeSet::new();
    let mut answered = 0;
    for fp in hsdirs {
        let text = fetch.fetch(address, fp, Duration::from_secs(30)).await?;
        if text.is_empty() {
            continue;
        }
        answered += 1;
        anyhow::ensure!(
            text.len() <= max_bytes,
            "HSDir {fp} holds {} bytes",
            text.len()
        );
        held.insert(text);
    }
    Ok((answered, held.len()))
}

/// The lab client asking one HSDir at a time for a descriptor (`HSFETCH SERVER=`).
pub struct HsDirFetch {
    ctl: ControlClient,
    events: UnboundedReceiver<Event>,
}

impl HsDirFetch {
    /// A control connection to the lab client listening for `HS_DESC_CONTENT`.
    pub async fn connect(lab: &Lab) -> Result<HsDirFetch> {
        let ctl = ControlClient::connect_authenticated(lab.client_control_addr()).await?;
        let events = ctl.take_events().context("events")?;
        ctl.setevents(&["HS_DESC_CONTENT"]).await?;
        Ok(HsDirFetch { ctl, events })
    }

    /// The descriptor of `address` (with or without `.onion`) that HSDir `fp` hands out,
    /// as text; empty when it has none or did not answer within `timeout`.
    pub async fn fetch(&mut self, address: &str, fp: &str, timeout: Duration) -> Result<String> {
        let addr = address.trim_end_matches(".onion");
        self.ctl.hsfetch(addr, &[fp]).await?;
        let events = &mut self.events;
        let text = tokio::time::timeout(timeout, async {
            while let Some(ev) = events.recv().await {
                if let Some(c) = ev.hs_desc_content() {
                    if c.address == addr && c.hsdir_fingerprint() == fp {
                        return Some(c.descriptor);
                    }
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        Ok(text.unwrap_or_default())
    }
}

/// The revision counter of a descriptor's outer layer (None: no descriptor).
pub fn revision(descriptor: &str) -> Option<u64> {
    descriptor
        .lines()
        .find_map(|l| l.strip_prefix("revision-counter "))
        .and_then(|v| v.trim().parse().ok())
}
