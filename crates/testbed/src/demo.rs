//! `rustbalance lab demo`: the main job end to end — a lab, a 3-node
//! RustBalance cluster serving one master address, a real tor client
//! reaching it, and the cluster surviving the publisher's death.
//!
//! ```text
//! 1/4 lab ─▶ 2/4 cluster published ─▶ 3/4 client split ─▶ 4/4 publisher SIGKILLed ─▶ takeover, split again
//! ```

use crate::clients::split;
use crate::cluster::publication::{published_nodes, publisher, wait_published};
use crate::cluster::{prepare, ClusterNodeProc};
use crate::harness::{with_lab_then, AfterBody};
use crate::lab_cluster::Narrator;
use anyhow::Result;
use rustbalance_lab::{Lab, LabOptions, Progress};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// The phase lines of a lab start, as the lab commands print them.
pub fn progress_line(p: &Progress) -> String {
    format!(
        "[{:6.1}s] {} ({})",
        p.elapsed.as_secs_f64(),
        p.phase,
        p.detail
    )
}

/// Runs the demo in `dir` (`bin`: the rustbalance binary the nodes run),
/// `requests` GETs per split; leaves the Tor lab running if `keep` (the
/// nodes always stop: their targets live in this process).
pub async fn demo(
    dir: &Path,
    bin: &Path,
    requests: usize,
    keep: bool,
    say: &dyn Narrator,
) -> Result<()> {
    let t0 = Instant::now();
    say.progress(&format!("== 1/4 private Tor network in {}", dir.display()));
    let after = if keep {
        AfterBody::Keep
    } else {
        AfterBody::Stop
    };
    let result = with_lab_then(
        dir,
        LabOptions::default(),
        |p| say.progress(&progress_line(p)),
        after,
        async |lab, _| {
            let mut nodes = Vec::new();
            let r = cluster_story(lab, bin, requests, say, t0, &mut nodes).await;
            // The nodes' targets live in this process: the nodes stop with it.
            for n in nodes.iter_mut() {
                n.stop();
            }
            r
        },
    )
    .await;
    match (&result, keep) {
        (Ok(()), true) => say.progress(&format!(
            "lab left running (nodes stopped); stop it with: rustbalance lab down --dir {}",
            dir.display()
        )),
        _ => say.progress("lab stopped"),
    }
    result
}

fn print_split(say: &dyn Narrator, title: &str, s: &std::collections::BTreeMap<String, usize>) {
    say.result(title);
    for (k, v) in s {
        say.result(&format!("  {v:3}  {k}"));
    }
}

/// Phases 2 to 4 on a started lab.
async fn cluster_story(
    lab: &Lab,
    bin: &Path,
    requests: usize,
    say: &dyn Narrator,
    t0: Instant,
    nodes: &mut Vec<ClusterNodeProc>,
) -> Result<()> {
    let at = || t0.elapsed().as_secs_f64();
    say.progress("== 2/4 a 3-node RustBalance cluster: each node runs its own tor (an instance of the master service), gossips its intro points, and the elected publisher uploads the merged descriptor");
    let (master, n) = prepare(lab, 3).await?;
    *nodes = n;
    for n in nodes.iter_mut() {
        n.start(bin, &lab.dir().join(format!("{}.log", n.name)))?;
        say.progress(&format!(
            "         {} started (target {}, log {}/{}.log)",
            n.name,
            n.target_addr,
            lab.dir().display(),
            n.name
        ));
    }
    let all = ["node1", "node2", "node3"];
    let first = wait_published(
        nodes,
        &[],
        SystemTime::UNIX_EPOCH,
        &all,
        Duration::from_secs(240),
    )
    .await?;
    let p = first.node;
    say.progress(&format!(
        "[{:6.1}s] {} is the publisher; master descriptor lists the intro points of {:?}",
        at(),
        nodes[p].name,
        all
    ));
    say.progress(&format!(
        "== 3/4 a tor client reaches the master address {}",
        master.address()
    ));
    let url = format!("http://{}/", master.address());
    let (resp, _) = lab
        .wait_http(&url, "served by", Duration::from_secs(120))
        .await?;
    say.progress(&format!(
        "[{:6.1}s] answered: {:?}",
        at(),
        resp.text().trim()
    ));
    let s = split(lab, &url, requests).await;
    say.result(&format!("master address {}", master.address()));
    print_split(say, &format!("{requests} requests on fresh circuits:"), &s);
    say.progress(&format!(
        "== 4/4 the publisher {} dies (SIGKILL, its tor too)",
        nodes[p].name
    ));
    let killed = SystemTime::now();
    nodes[p].kill();
    let rest: Vec<&str> = all.into_iter().filter(|n| *n != nodes[p].name).collect();
    let next = wait_published(nodes, &[p], killed, &rest, Duration::from_secs(60)).await?;
    say.progress(&format!(
        "[{:6.1}s] {} took over and published without {} after {:.1}s",
        at(),
        nodes[next.node].name,
        nodes[p].name,
        next.waited.as_secs_f64()
    ));
    if let Some((_, last)) = publisher(nodes, &[]).await {
        say.progress(&format!(
            "         published nodes now: {:?}",
            published_nodes(&last)
        ));
    }
    let s = split(lab, &url, requests).await;
    print_split(
        say,
        &format!("{requests} requests after the publisher died:"),
        &s,
    );
    Ok(())
}
