//! Issue 17 item 4 on fetch-mode backends: a plain tor backend with restricted discovery
//! (`authorized_clients/` holding one client's key: its own descriptor is encrypted for
//! that client only) and a publisher-only node given that client's key in tor's
//! `ClientOnionAuthDir` format (`cluster.backends_client_auth_dir`):
//!
//! * the node decrypts the backend's descriptor and publishes the master descriptor
//!   listing it; the lab client (which holds no backend key) is served through the
//!   master address;
//! * the same client asking the backend's own address gets nothing usable: its tor
//!   refuses with SOCKS 0xF4 (the descriptor needs client authorization). An outsider
//!   who learns a restricted backend's address cannot reach it around the master.
//!
//! Durations below are liveness bounds only; the times printed are what is measured.

use anyhow::{bail, Context, Result};
use rustbalance_hs::descriptor::{auth_line, ClientSecret};
use rustbalance_hs::OnionAddress;
use rustbalance_lab::onionbalance::ObBackends;
use rustbalance_lab::Lab;
use rustbalance_node::keystore::{create_private_dir, write_atomic};
use rustbalance_testbed::dropin::{import, loopback, variant};
use rustbalance_testbed::{poll_until, wait_published, ClusterNodeProc};
use rustbalance_tor::port::Proto;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const SETUP: &str = "rstr";
const LIVENESS: Duration = Duration::from_secs(300);

pub async fn restricted_backend(lab: Lab) -> Result<()> {
    let secret = ClientSecret::generate(&mut rand::rng());
    let b = ObBackends::start_with(&lab, SETUP, 1, 1, &[auth_line(&secret.public())]).await?;
    let mut nodes = Vec::new();
    let r = scenario(&lab, &b, &secret, &mut nodes).await;
    for n in nodes.iter_mut() {
        n.stop();
    }
    b.stop()?;
    r
}

/// The imported config with `[cluster] backends_client_auth_dir` holding the client key
/// for the backend (directory 0700, file 0600).
fn with_key(config: &Path, backend: &OnionAddress, secret: &ClientSecret) -> Result<PathBuf> {
    let dir = config.parent().context("config dir")?.join("backend-keys");
    create_private_dir(&dir)?;
    let line = secret.auth_private_line(backend);
    write_atomic(
        &dir.join("backend.auth_private"),
        format!("{}\n", line.as_str()).as_bytes(),
        0o600,
    )?;
    let mut t: toml::Table = std::fs::read_to_string(config)?.parse()?;
    t.get_mut("cluster")
        .and_then(|c| c.as_table_mut())
        .context("[cluster]")?
        .insert(
            "backends_client_auth_dir".into(),
            dir.display().to_string().into(),
        );
    write_atomic(config, toml::to_string(&t)?.as_bytes(), 0o600)?;
    Ok(config.to_path_buf())
}

async fn scenario(
    lab: &Lab,
    b: &ObBackends,
    secret: &ClientSecret,
    nodes: &mut Vec<ClusterNodeProc>,
) -> Result<()> {
    let g = loopback(Proto::Udp)?;
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    let imported = import(lab, bin, SETUP, (&b.config, &b.master), g)?;
    // A cluster of one: its seed is a port nobody listens on.
    let c = variant(&imported, "rstrpub", (g, loopback(Proto::Udp)?), 10, None)?;
    let backend = OnionAddress::parse(&b.instances[0].address)?;
    let c = with_key(&c, &backend, secret)?;
    let none = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut n = ClusterNodeProc::from_config(&c, none)?;
    n.start(bin, &lab.dir().join("rstrpub.log"))?;
    nodes.push(n);

    let name = format!("backend/{}", b.instances[0].tor.name());
    let p = wait_published(nodes, &[], SystemTime::UNIX_EPOCH, &[&name], LIVENESS).await?;
    eprintln!(
        "the node decrypted the restricted backend's descriptor and published it {:.1}s after start",
        p.waited.as_secs_f64()
    );
    let master = format!("http://{}/", b.master);
    let (body, took) = poll_until(
        "the lab client served through the master address",
        LIVENESS,
        Duration::from_millis(500),
        async || match lab.http_get(&master, Duration::from_secs(30)).await {
            Ok(r) if r.status == 200 => Ok(Some(r.text())),
            Ok(r) => {
                eprintln!("  (master: HTTP {})", r.status);
                Ok(None)
            }
            Err(e) => {
                eprintln!("  (master: {e})");
                Ok(None)
            }
        },
    )
    .await?;
    eprintln!(
        "master address: {:?} after {:.1}s",
        body.trim(),
        took.as_secs_f64()
    );
    anyhow::ensure!(
        body.starts_with(&format!("served by {}", b.instances[0].tor.name())),
        "served by the wrong party: {body:?}"
    );

    // The backend's own address, asked by a client without its key.
    let own = format!("http://{}/", b.instances[0].address);
    let (err, took) = poll_until(
        "the lab client refused at the backend's own address (SOCKS 0xF4)",
        LIVENESS,
        Duration::from_secs(1),
        async || match lab.http_get(&own, Duration::from_secs(60)).await {
            Ok(r) => bail!(
                "a client without the key reached the restricted backend directly: {:?}",
                r.text()
            ),
            Err(e) if e.to_string().contains("0xF4") => Ok(Some(e.to_string())),
            Err(e) => {
                eprintln!("  (own address, not yet 0xF4: {e})");
                Ok(None)
            }
        },
    )
    .await?;
    eprintln!(
        "the backend's own address without a key: {err} ({:.1}s)",
        took.as_secs_f64()
    );
    Ok(())
}
