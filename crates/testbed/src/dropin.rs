//! Onionbalance's job done by RustBalance (issue 17): publisher-only node configs made
//! by `rustbalance onionbalance import`, and reading what Onionbalance itself does
//! from its log, for the lab scenario and the benchmark that runs both side by side.

use crate::log_watch::LogWatch;
use crate::node_config::node_config;
use anyhow::{ensure, Context, Result};
use rustbalance_lab::{Lab, LabProcess};
use rustbalance_node::keystore::write_atomic;
use rustbalance_tor::port::{free_port, Proto};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A free loopback address for `proto`.
pub fn loopback(proto: Proto) -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port(proto)?)))
}

/// `BIN onionbalance import --plain-key` of the Onionbalance `config` (for the master
/// `master`, with `.onion`) into `lab/NAME-import`, with the lab's `[tor]` section and
/// `gossip` as the node's gossip address; returns the config it wrote. Prints what the
/// import printed.
pub fn import(
    lab: &Lab,
    bin: &Path,
    name: &str,
    (config, master): (&Path, &str),
    gossip: SocketAddr,
) -> Result<PathBuf> {
    let out = lab.dir().join(format!("{name}-import"));
    // The lab's [tor] section (testing network, its authorities) for `--tor-from`.
    let tor_from = lab.dir().join(format!("{name}-tor.toml"));
    let text = node_config(
        lab,
        &format!("{name}tor"),
        "127.0.0.1:9",
        None,
        loopback(Proto::Tcp)?,
    )?;
    write_atomic(&tor_from, text.as_bytes(), 0o600)?;
    let admin = loopback(Proto::Tcp)?;
    let o = Command::new(bin)
        .args(["onionbalance", "import", "--plain-key", "--config"])
        .arg(config)
        .arg("--out")
        .arg(&out)
        .args([
            "--admin",
            &admin.to_string(),
            "--gossip",
            &gossip.to_string(),
        ])
        .arg("--tor-from")
        .arg(&tor_from)
        .output()?;
    let printed = String::from_utf8_lossy(&o.stdout);
    ensure!(
        o.status.success(),
        "import failed: {printed}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("`rustbalance onionbalance import` printed:\n{printed}");
    let dir = out.join(master.trim_end_matches(".onion"));
    Ok(dir.join("rustbalance.toml"))
}

/// The imported config with `name`, its own data directory, admin and gossip ports,
/// seeding `seed`, with election priority `priority`, and a `[target]` when given (a
/// node that serves clients itself next to the backends).
pub fn variant(
    imported: &Path,
    name: &str,
    (gossip, seed): (SocketAddr, SocketAddr),
    priority: i64,
    target: Option<SocketAddr>,
) -> Result<PathBuf> {
    let mut t: toml::Table = std::fs::read_to_string(imported)?.parse()?;
    let dir = imported.parent().context("config dir")?;
    let set = |t: &mut toml::Table, sec: &str, k: &str, v: toml::Value| -> Result<()> {
        t.get_mut(sec)
            .and_then(|s| s.as_table_mut())
            .with_context(|| format!("[{sec}] in the imported config"))?
            .insert(k.into(), v);
        Ok(())
    };
    set(&mut t, "node", "name", name.into())?;
    let data = dir.join(format!("data-{name}")).display().to_string();
    set(&mut t, "node", "data_dir", data.into())?;
    let admin = loopback(Proto::Tcp)?.to_string();
    set(&mut t, "admin", "listen", admin.into())?;
    set(&mut t, "cluster", "listen", gossip.to_string().into())?;
    set(&mut t, "cluster", "seeds", vec![seed.to_string()].into())?;
    set(&mut t, "cluster", "priority", priority.into())?;
    if let Some(target) = target {
        let mut sec = toml::Table::new();
        sec.insert("url".into(), format!("tcp://{target}").into());
        t.insert("target".into(), sec.into());
    }
    let path = dir.join(format!("{name}.toml"));
    write_atomic(&path, toml::to_string(&t)?.as_bytes(), 0o600)?;
    Ok(path)
}

/// Onionbalance's info line "We got 6 intros from 3 instances. ..." → 3.
pub fn ob_instances(line: &str) -> Option<usize> {
    let rest = line.split(" intros from ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Waits until Onionbalance's log (read through `watch`) shows a descriptor built from
/// `n` instances, for at most `timeout`; fails at once if the daemon dies.
pub async fn wait_ob_built_from(
    daemon: &LabProcess,
    watch: &mut LogWatch,
    n: usize,
    timeout: Duration,
) -> Result<()> {
    crate::poll_until(
        &format!("Onionbalance building a descriptor from {n} instances"),
        timeout,
        Duration::from_millis(500),
        async || {
            watch.poll();
            daemon.check_alive()?;
            Ok(watch
                .lines
                .iter()
                .any(|(_, l)| ob_instances(l) == Some(n))
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// What Onionbalance did after an instance died.
#[derive(Debug, Default, Clone, Copy)]
pub struct ObDrop {
    /// When its log first showed a descriptor built from fewer than `before` instances.
    pub built: Option<Instant>,
    /// When it then logged uploading it.
    pub uploaded: Option<Instant>,
}

/// Watches Onionbalance's log from line `mark` until it built a descriptor from fewer
/// than `before` instances and uploaded it, or `cap` passed since `killed`, or the
/// daemon died; `progress` gets a line every minute of waiting.
pub async fn watch_ob_drop(
    daemon: &LabProcess,
    watch: &mut LogWatch,
    (mark, before): (usize, usize),
    killed: Instant,
    cap: Duration,
    progress: impl Fn(&str),
) -> ObDrop {
    let mut d = ObDrop::default();
    let mut last_report = Instant::now();
    while killed.elapsed() < cap {
        watch.poll();
        for (t, l) in &watch.lines[mark..] {
            if d.built.is_none() && ob_instances(l).is_some_and(|n| n < before) {
                d.built = Some(*t);
            }
            if let Some(b) = d.built {
                if d.uploaded.is_none() && *t >= b && l.contains("Uploading ") {
                    d.uploaded = Some(*t);
                }
            }
        }
        if d.uploaded.is_some() {
            break;
        }
        if daemon.check_alive().is_err() {
            progress("Onionbalance died");
            break;
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            last_report = Instant::now();
            progress(&format!(
                "{:.0}s since the kill, Onionbalance still lists {before} instances",
                killed.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_count_from_onionbalance_log_line() {
        assert_eq!(
            ob_instances("We got 6 intros from 3 instances. We want 20 intros ourselves"),
            Some(3)
        );
        assert_eq!(ob_instances("Uploading descriptor for slot 0"), None);
    }
}
