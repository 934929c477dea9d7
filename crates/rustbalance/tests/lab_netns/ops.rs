//! Operator tooling on a live namespaced cluster (called from `cut_heal` once its
//! cluster is up, so that no extra Tor network or cluster boots for it):
//!
//! * every metric that `deploy/monitoring/` (alert rules, dashboard) names is
//!   exposed by the nodes' `/metrics`;
//! * `rustbalance doctor` passes on every node (exit status 0, no failed check,
//!   the HSDir check run on the publisher) — a real run of every check: tor,
//!   the clock against tor's consensus, files, ports, target, WireGuard peers.

use anyhow::{ensure, Context, Result};
use rustbalance_testbed::monitoring::{exposed_metrics, used_metrics};
use rustbalance_testbed::NsNode;
use std::collections::BTreeSet;
use std::time::Duration;

/// `GET /metrics` of `node`, from inside its namespace.
async fn metrics(node: &NsNode) -> Result<String> {
    let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&node.config)?)?;
    let admin = cfg["admin"]["listen"].as_str().context("admin.listen")?;
    let p = &node.host.exec_prefix;
    let out = tokio::process::Command::new(&p[0])
        .args(&p[1..])
        .args(["curl", "-sf", "--max-time", "10"])
        .arg(format!("http://{admin}/metrics"))
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "curl {admin}/metrics in {}: {}",
        node.name,
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn monitoring_and_doctor(nodes: &[NsNode]) -> Result<()> {
    let used = used_metrics()?;
    let mut exposed = BTreeSet::new();
    for n in nodes {
        exposed.extend(exposed_metrics(&metrics(n).await?));
    }
    let missing: Vec<&String> = used.difference(&exposed).collect();
    ensure!(
        missing.is_empty(),
        "deploy/monitoring uses metrics no live node exposes: {missing:?}"
    );
    eprintln!(
        "monitoring: all {} metrics of the rules and dashboard are live",
        used.len()
    );

    let mut hsdirs_checked = false;
    for n in nodes {
        let config = n.config.display().to_string();
        let (ok, out, err) = n
            .cli(
                &["doctor", "--json", "--config", &config],
                Duration::from_secs(60),
            )
            .await?;
        ensure!(ok, "doctor failed on {}:\n{out}\n{err}", n.name);
        let findings: serde_json::Value = serde_json::from_str(&out)?;
        let list = findings.as_array().context("doctor --json prints a list")?;
        let verdict = |check: &str| {
            list.iter()
                .filter(|f| f["check"] == check)
                .map(|f| f["verdict"].as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
        };
        for check in [
            "tor", "clock", "files", "admin", "proxy", "target", "mesh", "disk",
        ] {
            ensure!(
                verdict(check).iter().all(|v| v == "ok") && !verdict(check).is_empty(),
                "doctor on {}: {check} not ok: {out}",
                n.name
            );
        }
        hsdirs_checked |= verdict("hsdirs").iter().any(|v| v == "ok");
    }
    ensure!(
        hsdirs_checked,
        "doctor checked the HSDirs on no node (the publisher should)"
    );
    eprintln!("doctor: every check passes on {} nodes", nodes.len());
    Ok(())
}
