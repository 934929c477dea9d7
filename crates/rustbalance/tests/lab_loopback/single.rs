//! One node (`rustbalance run`, named `solo`) in the lab: the watchdog, the
//! target going away and coming back, and a clean SIGTERM.

use anyhow::{ensure, Context, Result};
use rustbalance_lab::{DemoTarget, Lab};
use rustbalance_testbed::node_config::node_config;
use rustbalance_testbed::{poll_until, ClusterNodeProc};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BODY: &str = "served by solo\n";

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    ensure!(ok, "kill {sig} {pid}");
    Ok(())
}

/// Polls the node's `/status` until `ok` holds.
async fn wait_status(
    n: &ClusterNodeProc,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let mut last = None;
    let r = poll_until(what, timeout, Duration::from_millis(300), async || {
        let s = n.status().await;
        if s.as_ref().is_some_and(&ok) {
            return Ok(s);
        }
        last = s;
        Ok(None)
    })
    .await;
    Ok(r.with_context(|| format!("last status {last:?}"))?.0)
}

pub async fn single_node_in_the_lab(lab: Lab) -> Result<()> {
    let target = DemoTarget::start(BODY).await?;
    let config = lab.dir().join("solo.toml");
    let text = node_config(
        &lab,
        "solo",
        &target.addr().to_string(),
        None,
        "127.0.0.1:0".parse()?,
    )?;
    std::fs::write(&config, text)?;
    let mut n = ClusterNodeProc::from_config(&config, target.addr())?;
    n.start(
        Path::new(env!("CARGO_BIN_EXE_rustbalance")),
        &lab.dir().join("solo.log"),
    )?;
    n.target = Some(target);
    serve_and_recover(&lab, &mut n).await?;
    stop_cleanly(&mut n)
}

async fn serve_and_recover(lab: &Lab, n: &mut ClusterNodeProc) -> Result<()> {
    let st = wait_status(
        n,
        "tor bootstrapped and descriptor uploaded",
        Duration::from_secs(120),
        |s| s["tor"]["phase"] == "running" && s["uploads"]["uploaded"].as_u64().unwrap_or(0) > 0,
    )
    .await?;
    let master = st["master_address"].as_str().context("master_address")?;
    let url = format!("http://{master}/");
    let (_, took) = lab
        .wait_http(&url, "served by solo", Duration::from_secs(120))
        .await?;
    eprintln!(
        "reachable through the lab client ({:.1}s)",
        took.as_secs_f64()
    );

    // PoW on by default in single-node mode: tor's own descriptor carries pow-params.
    let port = std::fs::read_to_string(n.data.join("tor/control-port"))?;
    let ctl_addr: SocketAddr = port.trim().trim_start_matches("PORT=").parse()?;
    let ctl = rustbalance_tor::ControlClient::connect_authenticated(ctl_addr).await?;
    let master: rustbalance_hs::OnionAddress = master.parse()?;
    let view = rustbalance_node::publisher::network_view(&ctl, true).await?;
    let desc = rustbalance_node::publisher::instance_descriptor(
        &ctl,
        &master,
        &view.time,
        std::time::SystemTime::now(),
    )
    .await?;
    ensure!(
        !desc.pow_params.is_empty(),
        "HiddenServicePoWDefensesEnabled 1 must put pow-params in the descriptor"
    );
    eprintln!(
        "tor's descriptor carries pow-params ({} intro points)",
        desc.intro_points.len()
    );

    // Watchdog: SIGKILL tor.
    let old = n.tor_pid().context("tor pid file")?;
    let uploads_before = n
        .status()
        .await
        .and_then(|s| s["uploads"]["uploaded"].as_u64())
        .context("uploads in /status")?;
    signal(old, "-KILL")?;
    let t_kill = Instant::now();
    wait_status(n, "tor restarted", Duration::from_secs(60), |s| {
        s["tor"]["restarts"] == 1 && s["tor"]["phase"] == "running" && s["tor"]["pid"] != old
    })
    .await?;
    eprintln!(
        "tor restarted and bootstrapped {:.1}s after SIGKILL",
        t_kill.elapsed().as_secs_f64()
    );
    // The restarted tor publishes a new descriptor (new intro points) once its intro
    // circuits are up; wait for an HSDir to confirm it. Asking before that gets the dead
    // tor's descriptor, and an intro point may still hold the dead tor's intro circuit for
    // tens of seconds: it ACKs the INTRODUCE1 and the client then waits for a RENDEZVOUS2
    // that never comes (each such try hung until the 30 s per-try limit: the 36-38 s and
    // 219 s runs; docs/FIELD-NOTES.md "A restarted single-node tor").
    wait_status(
        n,
        "the restarted tor's descriptor uploaded",
        Duration::from_secs(120),
        |s| s["uploads"]["uploaded"].as_u64().unwrap_or(0) > uploads_before,
    )
    .await?;
    eprintln!(
        "restarted tor's descriptor uploaded {:.1}s after SIGKILL",
        t_kill.elapsed().as_secs_f64()
    );
    // The lab client still holds the dead tor's descriptor: ask as a new client would
    // (NEWNYM drops the client's descriptor cache, its intro-point failure cache and its
    // circuits), so that it fetches the new descriptor. 240 s only detects "never back".
    rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr())
        .await?
        .signal("NEWNYM")
        .await?;
    let (_, took) = lab
        .wait_http(&url, "served by solo", Duration::from_secs(240))
        .await?;
    eprintln!(
        "reachable again {:.1}s after SIGKILL (last try {:.1}s)",
        t_kill.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );

    // Target down: a prompt failure, never a hang; the node stays up.
    n.target = None;
    let t = Instant::now();
    let r = lab.http_get(&url, Duration::from_secs(30)).await;
    ensure!(
        r.as_ref().map(|r| r.status != 200).unwrap_or(true),
        "target is down: {r:?}"
    );
    let took = t.elapsed();
    eprintln!(
        "target down: client failed after {:.1}s",
        took.as_secs_f64()
    );
    // Not a speed claim: a hang would run into the 30 s request limit.
    ensure!(
        took < Duration::from_secs(20),
        "the failure must be prompt (not a hang), took {took:?}"
    );
    ensure!(
        n.status().await.is_some(),
        "node alive with its target down"
    );
    n.target = Some(DemoTarget::bind(n.target_addr, BODY).await?);
    lab.wait_http(&url, "served by solo", Duration::from_secs(60))
        .await?;
    eprintln!("target back: served again");
    Ok(())
}

/// SIGTERM: node and its tor gone within 10 s, nothing left listening.
fn stop_cleanly(n: &mut ClusterNodeProc) -> Result<()> {
    let tor = n.tor_pid();
    let t = Instant::now();
    let exit = n.terminate(Duration::from_secs(10));
    ensure!(exit.is_some(), "node did not exit within 10 s of SIGTERM");
    eprintln!(
        "SIGTERM: node exited after {:.1}s ({:?})",
        t.elapsed().as_secs_f64(),
        exit
    );
    if let Some(p) = tor {
        ensure!(!alive(p), "tor {p} still running after the node exited");
    }
    ensure!(
        std::net::TcpStream::connect_timeout(&n.admin, Duration::from_millis(500)).is_err(),
        "{} still listening",
        n.admin
    );
    Ok(())
}
