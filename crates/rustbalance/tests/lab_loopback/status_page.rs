//! The status page in a real browser (headless Chromium): two nodes; the follower's page
//! shows both nodes healthy and the other one publishing; the publisher is SIGKILLed and
//! the page shows it down, the follower publishing, its descriptors and the failover event.
//!
//! The screenshot of the publisher's page goes to the lab directory; with
//! `RB_STATUS_PAGE_PNG=docs/status-page.png` (a path from the repository root) it is
//! also copied there (how docs/status-page.png was made).

use anyhow::{bail, ensure, Context, Result};
use rustbalance_lab::Lab;
use rustbalance_testbed::{poll_until, prepare, wait_published, ClusterNodeProc};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Liveness bound of each wait (a takeover takes seconds: docs/BENCHMARKS.md).
const LIVENESS: Duration = Duration::from_secs(120);

pub async fn status_page(lab: Lab) -> Result<()> {
    ensure!(
        which("chromium").is_some(),
        "headless Chromium is needed (Debian package `chromium`; scripts/test.sh installs it)"
    );
    let (_master, mut nodes) = prepare(&lab, 2).await?;
    let r = watch_a_failover(&lab, &mut nodes).await;
    for n in nodes.iter_mut() {
        n.stop();
    }
    r
}

async fn watch_a_failover(lab: &Lab, nodes: &mut [ClusterNodeProc]) -> Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    for n in nodes.iter_mut() {
        n.start(bin, &lab.dir().join(format!("{}-page.log", n.name)))?;
    }
    let names = ["node1", "node2"];
    let p = wait_published(
        nodes,
        &[],
        SystemTime::UNIX_EPOCH,
        &names,
        Duration::from_secs(180),
    )
    .await?
    .node;
    let w = 1 - p;
    let (pub_name, watcher) = (nodes[p].name.clone(), nodes[w].name.clone());

    // The publisher's page: its descriptors on the HSDirs, both nodes' intro points.
    let (dom, took) = poll_until(
        "the publisher's page",
        LIVENESS,
        Duration::from_secs(1),
        async || {
            let dom = browse(lab, &nodes[p], None).await?;
            Ok(
                (dom.contains("data-published=\"yes\"") && dom.contains("confirmed"))
                    .then_some(dom),
            )
        },
    )
    .await?;
    eprintln!(
        "{pub_name}'s page shows its confirmed descriptors after {:.1}s",
        took.as_secs_f64()
    );
    ensure!(
        dom.contains(&format!("data-publisher=\"{pub_name}\"")),
        "{dom}"
    );
    let shot = lab.dir().join("status-page.png");
    browse(lab, &nodes[p], Some(&shot)).await?;
    keep_screenshot(&shot)?;

    // The follower's page: both nodes healthy, the other one publishing.
    let (_, took) = poll_until(
        "the follower's page, both healthy",
        LIVENESS,
        Duration::from_secs(1),
        async || {
            let dom = browse(lab, &nodes[w], None).await?;
            let ok = names.iter().all(|n| row(&dom, n) == Some("healthy"))
                && dom.contains(&format!("data-publisher=\"{pub_name}\""))
                && dom.contains("data-published=\"no\"");
            Ok(ok.then_some(()))
        },
    )
    .await?;
    eprintln!(
        "{watcher}'s page shows both nodes healthy after {:.1}s",
        took.as_secs_f64()
    );

    let pid = nodes[p].pid().context("the publisher's pid")?;
    nodes[p].kill();
    eprintln!("{pub_name} (pid {pid}) SIGKILLed");
    let (dom, took) = poll_until(
        "the follower's page after the failover",
        LIVENESS,
        Duration::from_secs(1),
        async || {
            let dom = browse(lab, &nodes[w], None).await?;
            let ok = matches!(row(&dom, &pub_name), None | Some("down"))
                && row(&dom, &watcher) == Some("healthy")
                && dom.contains(&format!("data-publisher=\"{watcher}\""))
                && dom.contains("data-published=\"yes\"")
                && dom.contains("data-kind=\"failover\"");
            Ok(ok.then_some(dom))
        },
    )
    .await?;
    eprintln!(
        "{watcher}'s page shows {pub_name} {:?}, itself publishing, its descriptors and the failover after {:.1}s",
        row(&dom, &pub_name).unwrap_or("gone"),
        took.as_secs_f64()
    );
    Ok(())
}

/// The health shown in node `name`'s row of the page, `None` without a row.
fn row<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let tag = format!("data-name=\"{name}\" data-health=\"");
    let rest = &dom[dom.find(&tag)? + tag.len()..];
    rest.split('"').next()
}

/// Open `node`'s page in headless Chromium through a fresh login link (a fresh profile
/// each time); the DOM Chromium built, or a screenshot into `shot`.
async fn browse(lab: &Lab, node: &ClusterNodeProc, shot: Option<&Path>) -> Result<String> {
    let cookie = rustbalance_node::layout::Layout::new(&node.data).admin_cookie();
    let url = rustbalance_node::admin::page_link(node.admin, &cookie).await?;
    let profile = tempfile::tempdir_in(lab.dir())?;
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .env("HOME", profile.path())
    .kill_on_drop(true);
    match shot {
        Some(p) => cmd
            .args(["--window-size=900,1300", "--hide-scrollbars"])
            .arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    // The login link is single-use and lives 60 s: it is on this command line only.
    cmd.arg(url.as_str());
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .context("chromium did not finish within 90 s")??;
    if !out.status.success() {
        bail!(
            "chromium failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copy the screenshot to `RB_STATUS_PAGE_PNG` (from the repository root), if set.
fn keep_screenshot(shot: &Path) -> Result<()> {
    let size = std::fs::metadata(shot)
        .context("chromium wrote no screenshot")?
        .len();
    eprintln!("screenshot {} ({size} bytes)", shot.display());
    if let Some(to) = std::env::var_os("RB_STATUS_PAGE_PNG") {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::copy(shot, root.join(to))?;
    }
    Ok(())
}

/// `prog` on `PATH`.
fn which(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}
