//! Running `rustbalance lab ...`: parses nothing, prints everything; the work is in
//! `rustbalance-lab` (the Tor network) and the rest of this crate (clusters, node
//! configs, the demo).

use super::{LabCmd, LabDir};
use crate::demo::progress_line;
use crate::lab_cluster::{self, Narrator};
use anyhow::{bail, Context, Result};
use rustbalance_lab::{DemoTarget, Lab, LabOptions, Placement};
use std::path::PathBuf;
use std::time::Duration;

impl LabDir {
    fn path(&self, default_name: &str) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(default_name))
    }

    fn open(&self) -> Result<Lab> {
        Ok(Lab::open(self.path("rustbalance-lab"))?)
    }
}

/// Progress on stderr, results on stdout.
struct Terminal;

impl Narrator for Terminal {
    fn progress(&self, line: &str) {
        eprintln!("{line}");
    }
    fn result(&self, line: &str) {
        println!("{line}");
    }
}

fn bin() -> Result<PathBuf> {
    std::env::current_exe().context("locate the rustbalance binary")
}

/// Run one `rustbalance lab` command to its end.
pub fn run(cmd: LabCmd) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        match cmd {
            LabCmd::Up { dir, relays, netns } => {
                up(dir.path("rustbalance-lab"), relays, netns).await
            }
            LabCmd::Status { dir, json } => status(&dir.open()?, json).await,
            LabCmd::Down { dir } => {
                let r = dir.open()?.stop_and_verify().await?;
                println!(
                    "stopped {} processes; nothing of the lab listens any more",
                    r.stopped.len()
                );
                Ok(())
            }
            LabCmd::Curl { dir, url, timeout } => {
                let r = dir
                    .open()?
                    .http_get(&url, Duration::from_secs(timeout))
                    .await?;
                print!("{}", r.text());
                if r.status != 200 {
                    bail!("HTTP status {}", r.status);
                }
                Ok(())
            }
            LabCmd::Cluster { dir, nodes } => {
                lab_cluster::start_cluster(&dir.open()?, nodes, &bin()?, &Terminal).await?;
                Ok(())
            }
            LabCmd::Kill { dir, node } => {
                println!("{}", lab_cluster::kill_node(&dir.open()?, &node)?);
                Ok(())
            }
            LabCmd::Cut { dir, node } => {
                dir.open()?.cut(&node)?;
                println!("{node} cut off");
                Ok(())
            }
            LabCmd::Heal { dir, node } => {
                dir.open()?.heal(&node)?;
                println!("{node} reconnected");
                Ok(())
            }
            LabCmd::Target { listen, body } => {
                DemoTarget::bind(listen, &body).await?.run_forever().await;
                Ok(())
            }
            LabCmd::NodeConfig {
                dir,
                name,
                target,
                master_key,
                admin,
            } => {
                let text = crate::node_config::node_config(
                    &dir.open()?,
                    &name,
                    &target,
                    master_key,
                    admin,
                )?;
                print!("{text}");
                Ok(())
            }
            LabCmd::Flood {
                dir,
                url,
                rate,
                count,
                duration,
                clients,
            } => flood(&dir.open()?, &url, rate, count, duration, clients).await,
            LabCmd::Demo {
                dir,
                requests,
                keep,
            } => {
                crate::demo::demo(
                    &dir.path("rustbalance-demo"),
                    &bin()?,
                    requests,
                    keep,
                    &Terminal,
                )
                .await
            }
        }
    })
}

/// `lab flood`: client tors up, the flood until it stops by itself (or SIGINT), the
/// client tors down, the report on stdout.
async fn flood(
    lab: &Lab,
    url: &str,
    rate: f64,
    count: u64,
    duration: u64,
    clients: usize,
) -> Result<()> {
    use crate::flood::{Flood, FloodClients, FloodPlan};
    let plan = FloodPlan::new(rate, count, Duration::from_secs(duration))?;
    if !(1..=16).contains(&clients) {
        bail!("--clients {clients}: give 1 to 16 client tors");
    }
    eprintln!("starting {clients} flood client tors");
    let tors = FloodClients::start(lab, "flood", clients, Duration::from_secs(180)).await?;
    eprintln!("flooding {url}: {rate}/s, at most {count} requests, for at most {duration} s");
    let f = Flood::spawn(tors.socks(), url.to_string(), plan)?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot watch SIGINT")?;
    while !f.is_finished() {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let report = f.finish().await?;
    tors.stop().await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn up(dir: PathBuf, relays: usize, netns: bool) -> Result<()> {
    let placement = if netns {
        Placement::namespace()
    } else {
        Placement::HostLoopback
    };
    let lab = Lab::create(
        &dir,
        LabOptions {
            relays,
            placement,
            ..Default::default()
        },
    )
    .await?;
    eprintln!("starting lab in {} ...", dir.display());
    let report = lab.start(|p| eprintln!("{}", progress_line(p))).await?;
    println!(
        "lab usable after {:.1}s; SOCKS {} (stop it with: rustbalance lab down --dir {})",
        report.total.as_secs_f64(),
        lab.socks_addr(),
        dir.display()
    );
    Ok(())
}

async fn status(lab: &Lab, json: bool) -> Result<()> {
    let st = lab.status()?;
    let nodes = lab_cluster::cluster_status(lab, &st, &bin().unwrap_or_default()).await;
    if json {
        let mut v = serde_json::to_value(&st)?;
        v["nodes"] = serde_json::Value::Array(nodes);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for n in &nodes {
            println!("node {}", n);
        }
        println!(
            "lab {} ({}), running: {}, SOCKS {}",
            st.dir.display(),
            st.block,
            st.running,
            st.socks
        );
        for p in &st.processes {
            println!("  {}", serde_json::to_string(p)?);
        }
    }
    Ok(())
}
