//! `rustbalance run | init | config check | status`.

use anyhow::{Context, Result};
use rustbalance_node::Config;
use std::path::Path;

pub fn run(config: &Path, log_format: crate::cli::LogFormatArg) -> Result<()> {
    let cfg = Config::load(config)?;
    rustbalance_node::logging::init(log_format.into());
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        rustbalance_node::daemon::run(cfg, shutdown, |line| tracing::info!("{line}")).await
    })?;
    Ok(())
}

pub fn check(config: &Path) -> Result<()> {
    let cfg = Config::load(config)?;
    // The master key must open (a sealed one with its passphrase) before the node starts.
    rustbalance_node::daemon::load_master(&cfg)?;
    let mode = match (&cfg.cluster, &cfg.service.master_key) {
        (None, _) => "single node",
        (Some(_), Some(_)) => "cluster node, publisher-eligible",
        (Some(_), None) => "cluster worker",
    };
    println!(
        "{}: valid ({mode}); master address {}",
        config.display(),
        cfg.master_address()?
    );
    Ok(())
}

pub fn status(config: &Path, json: bool, page_link: bool) -> Result<()> {
    let cfg = Config::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cookie = rustbalance_node::layout::Layout::new(&cfg.node.data_dir).admin_cookie();
    if page_link {
        let url = rt
            .block_on(rustbalance_node::admin::page_link(
                cfg.admin.listen,
                &cookie,
            ))
            .with_context(|| {
                format!(
                    "no login link from the node on {} (is `rustbalance run` running, and may \
                     this user read {}?)",
                    cfg.admin.listen,
                    cookie.display()
                )
            })?;
        println!("{}", *url);
        eprintln!(
            "open it within 60 s; it works once (over an SSH tunnel, forward the admin port)"
        );
        if !cfg.admin.listen.ip().is_loopback() {
            eprintln!(
                "warning: admin.listen {} is not loopback: this link and the session cookie \
                 travel in clear text; use an SSH tunnel to a loopback admin endpoint",
                cfg.admin.listen
            );
        }
        return Ok(());
    }
    let body = rt
        .block_on(rustbalance_node::admin::status(cfg.admin.listen, &cookie))
        .with_context(|| {
            format!(
                "no status from the node on {} (is `rustbalance run` running, and may this \
                 user read {}?)",
                cfg.admin.listen,
                cookie.display()
            )
        })?;
    if json {
        print!("{body}");
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    println!("node            {}", v["node"].as_str().unwrap_or("?"));
    println!(
        "master address  {}",
        v["master_address"].as_str().unwrap_or("?")
    );
    println!("mode            {}", v["mode"].as_str().unwrap_or("?"));
    println!(
        "tor             {} (pid {}, bootstrap {} %, restarts {})",
        v["tor"]["phase"], v["tor"]["pid"], v["tor"]["bootstrap"], v["tor"]["restarts"]
    );
    if v["target"].is_null() {
        println!("proxy, target   none (publisher-only node)");
    } else {
        println!(
            "proxy           {} {}",
            v["proxy"]["listen"], v["proxy"]["stats"]
        );
        println!(
            "target          {} {}",
            v["target"]["url"], v["target"]["health"]
        );
    }
    for b in v["cluster"]["backends"].as_array().into_iter().flatten() {
        println!(
            "backend         {} {}: {} intro points, fetched {} s ago, probe {}{}",
            b["name"].as_str().unwrap_or("?"),
            if b["listed"] == true {
                "listed"
            } else {
                "NOT listed"
            },
            b["intro_points"],
            b["fetch_age_secs"],
            b["probe"].as_str().unwrap_or("?"),
            b["not_listed_because"]
                .as_str()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        );
    }
    println!("uploads         {}", v["uploads"]);
    Ok(())
}
