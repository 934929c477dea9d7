//! `rustbalance lab ...`.

use crate::cli::{LabCmd, LabDir};
use anyhow::{bail, Context, Result};
use rustbalance_lab::{Lab, LabOptions, Progress};
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
    use crate::cluster_lab::{prepare, published_nodes, publisher, split, wait_published};
    let t0 = Instant::now();
    let at = || t0.elapsed().as_secs_f64();
    let lab = Lab::create(&dir, LabOptions::default()).await?;
    eprintln!("== 1/4 private Tor network in {}", dir.display());
    let mut nodes = Vec::new();
    let result = async {
        lab.start(show).await?;
        eprintln!("== 2/4 a 3-node RustBalance cluster: each node runs its own tor (an instance of the master service), gossips its intro points, and the elected publisher uploads the merged descriptor");
        let (master, n) = prepare(&lab, 3).await?;
        nodes = n;
        let bin = std::env::current_exe().context("locate the rustbalance binary")?;
        for n in nodes.iter_mut() {
            n.start(&bin, &lab.dir().join(format!("{}.log", n.name)))?;
            eprintln!("         {} started (target {}, log {}/{}.log)", n.name, n.target.addr(), lab.dir().display(), n.name);
        }
        let all = ["node1", "node2", "node3"];
        let (p, _) = wait_published(&nodes, None, std::time::SystemTime::UNIX_EPOCH, &all, Duration::from_secs(240)).await?;
        eprintln!("[{:6.1}s] {} is the publisher; master descriptor lists the intro points of {:?}", at(), nodes[p].name, all);
        eprintln!("== 3/4 a tor client reaches the master address {}", master.address());
        let url = format!("http://{}/", master.address());
        let (resp, _) = lab.wait_http(&url, "served by", Duration::from_secs(120)).await?;
        eprintln!("[{:6.1}s] answered: {:?}", at(), resp.text().trim());
        let s = split(&lab, &url, requests).await;
        println!("master address {}", master.address());
        println!("{requests} requests on fresh circuits:");
        for (k, v) in &s {
            println!("  {v:3}  {k}");
        }
        eprintln!("== 4/4 the publisher {} dies (SIGKILL, its tor too)", nodes[p].name);
        let killed = std::time::SystemTime::now();
        nodes[p].kill();
        let rest: Vec<&str> = all.into_iter().filter(|n| *n != nodes[p].name).collect();
        let (p2, took) = wait_published(&nodes, Some(p), killed, &rest, Duration::from_secs(60)).await?;
        eprintln!("[{:6.1}s] {} took over and published without {} after {:.1}s", at(), nodes[p2].name, nodes[p].name, took.as_secs_f64());
        if let Some((_, last)) = publisher(&nodes).await {
            eprintln!("         published nodes now: {:?}", published_nodes(&last));
        }
        let s = split(&lab, &url, requests).await;
        println!("{requests} requests after the publisher died:");
        for (k, v) in &s {
            println!("  {v:3}  {k}");
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // The nodes' targets live in this process: the nodes stop with it.
    for n in nodes.iter_mut() {
        n.stop();
    }
    if keep && result.is_ok() {
        eprintln!(
            "lab left running (nodes stopped); stop it with: rustbalance lab down --dir {}",
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
