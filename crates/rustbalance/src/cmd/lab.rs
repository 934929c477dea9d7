//! `rustbalance lab ...`.

use crate::cli::{LabCmd, LabDir};
use anyhow::{bail, Context, Result};
use rustbalance_lab::{Lab, LabOptions, Progress};
use rustbalance_node::keystore::KeyFiles;
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
            LabCmd::Up { dir, relays, netns } => {
                let dir = dir.path("rustbalance-lab");
                let placement = if netns {
                    rustbalance_lab::Placement::namespace()
                } else {
                    rustbalance_lab::Placement::HostLoopback
                };
                let lab = Lab::create(&dir, LabOptions { relays, placement, ..Default::default() }).await?;
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
                let nodes = cluster_status(&lab, &st).await;
                if json {
                    let mut v = serde_json::to_value(&st)?;
                    v["nodes"] = serde_json::Value::Array(nodes);
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    for n in &nodes {
                        println!("node {}", n);
                    }
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
            LabCmd::Cluster { dir, nodes } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                start_cluster(&lab, nodes).await
            }
            LabCmd::Kill { dir, node } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                if lab.placement().netns().is_some() {
                    let n = lab.kill(&node)?;
                    println!("SIGKILLed {n} processes of {node}");
                    return Ok(());
                }
                kill_node(&lab, &node)
            }
            LabCmd::Cut { dir, node } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                lab.cut(&node)?;
                println!("{node} cut off");
                Ok(())
            }
            LabCmd::Heal { dir, node } => {
                let lab = Lab::open(dir.path("rustbalance-lab"))?;
                lab.heal(&node)?;
                println!("{node} reconnected");
                Ok(())
            }
            LabCmd::Target { listen, body } => {
                let l = tokio::net::TcpListener::bind(listen).await?;
                let response = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                loop {
                    let (mut s, _) = l.accept().await?;
                    let r = response.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = [0u8; 4096];
                        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
                        let _ = s.write_all(r.as_bytes()).await;
                    });
                }
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
            eprintln!("         {} started (target {}, log {}/{}.log)", n.name, n.target_addr, lab.dir().display(), n.name);
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
    node_config_with(lab, name, target, master_key, admin, None, None)
}

/// [`node_config`] with a `[cluster]` section.
pub fn node_config_with(
    lab: &Lab,
    name: &str,
    target: &str,
    master_key: Option<PathBuf>,
    admin: std::net::SocketAddr,
    cluster: Option<rustbalance_node::config::ClusterTemplate>,
    mesh: Option<rustbalance_node::config::MeshTemplate>,
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
        master_key: Some(master_key),
        passphrase_file: None,
        master_address: None,
        virtual_port: 80,
        target: format!("tcp://{target}"),
        admin,
        extra_torrc: extra,
        testing_network: true,
        cluster,
        mesh,
    }
    .render())
}

/// Config files of the lab's cluster nodes (`DIR/cluster/nodeN.toml`).
fn cluster_configs(lab: &Lab) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(lab.dir().join("cluster"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// name, pid, role and the nodes whose intro points the last published
/// descriptor lists, for each cluster node.
async fn cluster_status(lab: &Lab, st: &rustbalance_lab::LabStatus) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (name, path) in cluster_configs(lab) {
        let proc_ = st.processes.iter().find(|p| p.name == name);
        let status = match (lab.node_host(&name), rustbalance_node::Config::load(&path)) {
            // Namespaced: ask from inside the node's namespace.
            (Ok(host), _) => {
                let out = tokio::process::Command::new(&host.exec_prefix[0])
                    .args(&host.exec_prefix[1..])
                    .arg(std::env::current_exe().unwrap_or_default())
                    .args(["status", "--json", "--config"])
                    .arg(&path)
                    .output()
                    .await
                    .ok();
                out.filter(|o| o.status.success())
                    .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            }
            (Err(_), Ok(cfg)) => rustbalance_node::admin::get(cfg.admin.listen, "/status")
                .await
                .ok()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok()),
            _ => None,
        };
        let c = status
            .as_ref()
            .map(|s| s["cluster"].clone())
            .unwrap_or_default();
        out.push(serde_json::json!({
            "name": name,
            "pid": proc_.map(|p| p.pid),
            "alive": proc_.map(|p| p.alive).unwrap_or(false),
            "role": c["role"],
            "own_intro_points": c["own_intro_points"],
            "last_published_intro_points": c["last_publish"]["intro_points"],
        }));
    }
    out
}

async fn start_cluster(lab: &Lab, n: usize) -> Result<()> {
    if !lab.is_running()? {
        bail!(
            "the lab in {} is not running; start it with `rustbalance lab up`",
            lab.dir().display()
        );
    }
    if !cluster_configs(lab).is_empty() {
        bail!(
            "a cluster already exists in {}; `rustbalance lab down` first",
            lab.dir().display()
        );
    }
    let bin = std::env::current_exe().context("locate the rustbalance binary")?;
    if lab.placement().netns().is_some() {
        let (master, nodes) = crate::cluster_lab::start_ns_cluster(lab, n, &bin, true)?;
        let all: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (p, took) = crate::cluster_lab::wait_published(
            &nodes,
            None,
            std::time::SystemTime::UNIX_EPOCH,
            &all,
            Duration::from_secs(240),
        )
        .await?;
        eprintln!("[{:6.1}s] {} published the master descriptor with the intro points of {:?} (each node in its own namespace)", took.as_secs_f64(), nodes[p].name, all);
        println!("master address {}", master.address());
        println!("try: rustbalance lab curl --dir {} http://{}/   then: lab cut / lab heal / lab kill NODE", lab.dir().display(), master.address());
        return Ok(());
    }
    let mut targets = Vec::new();
    for i in 1..=n {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let args: Vec<std::ffi::OsString> = vec![
            "lab".into(),
            "target".into(),
            "--listen".into(),
            addr.to_string().into(),
            "--body".into(),
            format!("served by node{i}\n").into(),
        ];
        lab.spawn_program(&format!("target{i}"), &bin, &args)?;
        targets.push((addr, None));
    }
    let (master, mut nodes) = crate::cluster_lab::prepare_with(lab, targets)?;
    for node in &nodes {
        let args: Vec<std::ffi::OsString> =
            vec!["run".into(), "--config".into(), node.config.clone().into()];
        lab.spawn_program(&node.name, &bin, &args)?;
        eprintln!("started {} (config {})", node.name, node.config.display());
    }
    let all: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let (p, _) = crate::cluster_lab::wait_published(
        &nodes,
        None,
        std::time::SystemTime::UNIX_EPOCH,
        &all,
        Duration::from_secs(240),
    )
    .await?;
    eprintln!(
        "[{:6.1}s] {} published the master descriptor with the intro points of {:?}",
        t0.elapsed().as_secs_f64(),
        nodes[p].name,
        all
    );
    println!("master address {}", master.address());
    println!(
        "try: rustbalance lab curl --dir {} http://{}/",
        lab.dir().display(),
        master.address()
    );
    // The node processes belong to the lab now (stopped by `lab down`).
    for n in nodes.iter_mut() {
        n.forget();
    }
    Ok(())
}

fn kill_node(lab: &Lab, node: &str) -> Result<()> {
    let cfgs = cluster_configs(lab);
    let Some((_, path)) = cfgs.iter().find(|(n, _)| n == node) else {
        bail!(
            "no cluster node {node:?} in {} (have: {:?})",
            lab.dir().display(),
            cfgs.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
    };
    let cfg = rustbalance_node::Config::load(path)?;
    let st = lab.status()?;
    let pid = st
        .processes
        .iter()
        .find(|p| p.name == node && p.alive)
        .and_then(|p| p.pid);
    let tor = std::fs::read_to_string(cfg.node.data_dir.join("tor.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let mut killed = Vec::new();
    for p in [pid, tor].into_iter().flatten() {
        if let Some(id) = rustbalance_tor::ProcessId::of_pid(p) {
            id.kill()?;
            killed.push(p);
        }
    }
    if killed.is_empty() {
        bail!("{node} is not running");
    }
    println!("SIGKILLed {node} (pids {killed:?})");
    Ok(())
}
