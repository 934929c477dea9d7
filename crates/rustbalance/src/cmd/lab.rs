//! `rustbalance lab ...`.

use crate::cli::{LabCmd, LabDir};
use crate::demo::MasterSetup;
use anyhow::{bail, Context, Result};
use rustbalance_lab::{Lab, LabOptions, Progress};
use rustbalance_node::publisher::require_uploaded;
use std::path::PathBuf;
use std::time::{Duration, Instant};

impl LabDir {
    fn path(&self, default_name: &str) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(default_name))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn show(p: &Progress) {
    eprintln!(
        "[{:6.1}s] {} ({})",
        p.elapsed.as_secs_f64(),
        p.phase,
        p.detail
    );
}

pub fn run(cmd: LabCmd) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        match cmd {
            LabCmd::Up { dir, relays } => {
                let dir = dir.path("rustbalance-lab");
                let lab = Lab::create(&dir, LabOptions { relays, ..Default::default() }).await?;
                eprintln!("starting lab in {} ...", dir.display());
                let report = lab.start(show).await?;
                println!(
                    "lab usable after {:.1}s; SOCKS {} (stop it with: rustbalance lab down --dir {})",
                    report.total.as_secs_f64(),
                    lab.socks_addr(),
                    dir.display()
                );
                Ok(())
            }
            LabCmd::Status { dir, json } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                let st = lab.status()?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&st)?);
                } else {
                    println!("lab {} ({}), running: {}, SOCKS {}", st.dir.display(), st.block, st.running, st.socks);
                    for p in &st.processes {
                        println!("  {}", serde_json::to_string(p)?);
                    }
                }
                Ok(())
            }
            LabCmd::Down { dir } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                let r = lab.stop_and_verify().await?;
                println!("stopped {} processes; nothing of the lab listens any more", r.stopped.len());
                Ok(())
            }
            LabCmd::Curl { dir, url, timeout } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                let r = lab.http_get(&url, Duration::from_secs(timeout)).await?;
                print!("{}", r.text());
                if r.status != 200 {
                    bail!("HTTP status {}", r.status);
                }
                Ok(())
            }
            LabCmd::NodeConfig { dir, name, target, master_key, admin } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                print!("{}", node_config(&lab, &name, &target, master_key, admin)?);
                Ok(())
            }
            LabCmd::Demo { dir, requests, keep } => demo(dir.path("rustbalance-demo"), requests, keep).await,
        }
    })
}

async fn demo(dir: PathBuf, requests: usize, keep: bool) -> Result<()> {
    let t0 = Instant::now();
    let at = || t0.elapsed().as_secs_f64();
    let lab = Lab::create(&dir, LabOptions::default()).await?;
    eprintln!("== 1/4 private Tor network in {}", dir.display());
    let result = async {
        lab.start(show).await?;
        eprintln!("== 2/4 two onion-service instances (own keys, HiddenServiceOnionbalanceInstance 1, PublishHidServDescriptors 0)");
        let setup = MasterSetup::start(&lab, "instance", 2).await?;
        for i in &setup.instances {
            eprintln!("         {} = {} -> {}", i.name, i.address, i.target.addr());
        }
        let descs = setup.instance_descriptors(Duration::from_secs(180)).await?;
        let t_desc = at();
        eprintln!(
            "[{t_desc:6.1}s] instance descriptors read over the control port: {} intro points",
            descs.iter().map(|d| d.intro_points.len().to_string()).collect::<Vec<_>>().join(" + ")
        );
        eprintln!("== 3/4 RustBalance merges and publishes the master descriptor for {}", setup.address());
        let mut publisher = setup.publisher().await?;
        let reports = publisher
            .publish(&descs, std::time::SystemTime::now(), Duration::from_secs(30), &mut rand::rng())
            .await?;
        for r in &reports {
            eprintln!(
                "[{:6.1}s] time period {} revision {}: {} intro points, {} bytes -> {}/{} HSDirs confirmed",
                at(), r.period_num, r.revision, r.intro_points, r.size, r.uploaded(), r.hsdirs.len()
            );
        }
        require_uploaded(&reports)?;
        eprintln!("== 4/4 a tor client reaches the master address");
        let (resp, took) = lab
            .wait_http(&setup.url(), "served by", Duration::from_secs(120))
            .await?;
        eprintln!(
            "[{:6.1}s] {} answered: {:?} ({:.1}s after the instance descriptors existed)",
            at(), setup.address(), resp.text().trim(), at() - t_desc
        );
        let _ = took;
        let split = setup.split(&lab, requests).await;
        println!("master address {}", setup.address());
        println!("{requests} requests on fresh circuits:");
        for (k, v) in &split {
            println!("  {v:3}  {k}");
        }
        if split.keys().filter(|k| k.starts_with("served by")).count() < 2 {
            eprintln!("note: not every instance answered this time (each client picks an intro point at random)");
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if keep && result.is_ok() {
        eprintln!(
            "lab left running; stop it with: rustbalance lab down --dir {}",
            dir.display()
        );
    } else {
        lab.stop_and_verify().await?;
        eprintln!("lab stopped");
    }
    result
}

/// A node config that joins `lab`'s network.
pub fn node_config(
    lab: &Lab,
    name: &str,
    target: &str,
    master_key: Option<PathBuf>,
    admin: std::net::SocketAddr,
) -> Result<String> {
    node_config_with(lab, name, target, master_key, admin, None)
}

/// [`node_config`] with a `[cluster]` section.
pub fn node_config_with(
    lab: &Lab,
    name: &str,
    target: &str,
    master_key: Option<PathBuf>,
    admin: std::net::SocketAddr,
    cluster: Option<rustbalance_node::config::ClusterTemplate>,
) -> Result<String> {
    let base = lab.dir().join("rustbalance").join(name);
    let master_key = match master_key {
        Some(k) => k,
        None => {
            let dir = base.join("master");
            let file = dir.join(rustbalance_hs::keys::SECRET_KEY_FILE);
            if !file.exists() {
                rustbalance_hs::IdentityKey::generate(&mut rand::rng()).write_tor_dir(&dir)?;
            }
            file
        }
    };
    // A fixed admin port, so that `rustbalance status --config` finds it.
    let admin = if admin.port() == 0 {
        std::net::TcpListener::bind(admin)?.local_addr()?
    } else {
        admin
    };
    let mut extra = vec![
        "TestingTorNetwork 1".to_string(),
        "ClientUseIPv6 0".to_string(),
    ];
    extra.extend(
        lab.dir_authority_lines()
            .into_iter()
            .map(|l| format!("DirAuthority {l}")),
    );
    Ok(rustbalance_node::config::Template {
        name: name.to_string(),
        data_dir: base.join("data"),
        master_key,
        target: format!("tcp://{target}"),
        admin,
        extra_torrc: extra,
        testing_network: true,
        cluster,
    }
    .render())
}
