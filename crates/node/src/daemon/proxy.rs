//! The proxy phase: tor forwards the onion service's connections to it, and it connects
//! them to the target (through tor's SOCKS port for an onion target).

use crate::config::{Config, TargetUrl};
use crate::err::{Error, Result};
use crate::join::JoinService;
use rustbalance_proxy::{Mode, Proxy, ProxyConfig, ProxyHandle, ProxyVersion, Target};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Between two checks of the target in cluster mode, unless `target.health_check_secs`.
const DEFAULT_HEALTH_CHECK: Duration = Duration::from_secs(5);

/// Pick a free loopback port (for tor's SocksPort when the target is an onion).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|source| Error::NoFreePort { source })?;
    Ok(l.local_addr()
        .map_err(|source| Error::NoFreePort { source })?
        .port())
}

/// The proxy's configuration; `socks` is tor's SOCKS port, needed for an onion target.
fn proxy_config(cfg: &Config, socks: Option<SocketAddr>) -> Result<ProxyConfig> {
    let target = match (cfg.target_url()?, socks) {
        (TargetUrl::Tcp { host, port }, _) => Target::Tcp { host, port },
        (TargetUrl::Onion { address, port }, Some(socks)) => Target::Onion {
            address: address.to_string(),
            port,
            socks,
        },
        (TargetUrl::Onion { .. }, None) => {
            return Err(Error::Config {
                key: "target.url".into(),
                problem: "an onion:// target needs tor's SOCKS port, which was not set up".into(),
            })
        }
    };
    let t = cfg.target_section()?;
    let mut p = ProxyConfig::new(cfg.proxy.listen, target);
    p.mode = if t.mode == "http" {
        Mode::Http
    } else {
        Mode::Tcp
    };
    p.connect_timeout = Duration::from_secs(cfg.proxy.connect_timeout_secs);
    p.idle_timeout = Duration::from_secs(cfg.proxy.idle_timeout_secs);
    p.head_timeout = Duration::from_secs(cfg.proxy.head_timeout_secs);
    p.max_connections = cfg.proxy.max_connections;
    // Issue 15: the periodic target check, on by default in cluster mode (a target that
    // failed must be seen back without traffic, which a node out of the descriptor gets
    // none of); `rustbalance_proxy::health` adds the hysteresis.
    p.health_check_interval = match (t.health_check_secs, &cfg.cluster) {
        (Some(0), _) | (None, None) => None,
        (Some(s), _) => Some(Duration::from_secs(s)),
        (None, Some(_)) => Some(DEFAULT_HEALTH_CHECK),
    };
    // tor enforces the same number per circuit (`HiddenServiceMaxStreams`); the proxy's
    // own count applies when tor exports circuit ids.
    p.max_streams_per_circuit = cfg.proxy.max_streams_per_circuit as usize;
    p.expect_proxy_header = cfg.proxy.export_circuit_id;
    p.send_proxy = match cfg.proxy.proxy_protocol.as_str() {
        "v1" => Some(ProxyVersion::V1),
        "v2" => Some(ProxyVersion::V2),
        _ => None,
    };
    Ok(p)
}

/// Start the proxy (with the join endpoint on the master port when `join` is set);
/// returns it and tor's SOCKS port for an onion target.
pub(super) async fn start_proxy(
    cfg: &Config,
    join: Option<&Arc<JoinService>>,
    progress: &dyn Fn(&str),
) -> Result<(ProxyHandle, Option<SocketAddr>)> {
    let onion_target = matches!(cfg.target_url()?, TargetUrl::Onion { .. });
    let socks = if onion_target {
        Some(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
    } else {
        None
    };
    let mut pcfg = proxy_config(cfg, socks)?;
    if let Some(j) = join {
        pcfg.intercept = Some(j.clone());
    }
    let proxy = Proxy::start(pcfg).await.map_err(Error::Proxy)?;
    progress(&format!(
        "proxy listening on {} -> {}",
        proxy.local_addr(),
        cfg.target_section()?.url
    ));
    Ok((proxy, socks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_target: &str, cluster: bool) -> Config {
        let mut text = format!(
            "[node]\nname = \"n1\"\ndata_dir = \"/d\"\n[service]\n[target]\n\
             url = \"tcp://127.0.0.1:8080\"\n{extra_target}\n[proxy]\n\
             listen = \"127.0.0.1:9662\"\n[admin]\nlisten = \"127.0.0.1:9661\"\n"
        );
        if cluster {
            text += "[cluster]\nsecret_file = \"/d/cluster.secret\"\nlisten = \"127.0.0.1:9663\"\n";
        }
        toml::from_str(&text).expect("test config")
    }

    #[test]
    fn the_target_is_checked_by_default_in_cluster_mode_only() {
        let every = |extra: &str, cluster: bool| {
            proxy_config(&config(extra, cluster), None)
                .expect("proxy config")
                .health_check_interval
        };
        assert_eq!(every("", true), Some(DEFAULT_HEALTH_CHECK));
        assert_eq!(every("", false), None);
        assert_eq!(every("health_check_secs = 0", true), None);
        let two = Some(Duration::from_secs(2));
        assert_eq!(every("health_check_secs = 2", false), two);
    }
}
