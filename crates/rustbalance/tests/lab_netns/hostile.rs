//! A worker's process replaced by a hostile one (issue 13, lab proof), in a namespaced lab:
//! three publisher-eligible nodes `hos1`…`hos3` and a worker `hos4` that joined with a
//! token. `hos4`'s daemon is stopped by pid and `hostile_member.rs` takes its place in its
//! namespace with its real keys, certificate and cluster secret: it gossips a giant lease,
//! 20 intro keys of intro points tor never writes, forged removals of every member, and a
//! new WireGuard key in its `mesh` claim.
//!
//! Throughout, a client loop asks the master address through the lab client (a fresh
//! circuit per request) and counts answers. The test shows that the honest nodes keep
//! running (no forged removal taken), keep publishing, and publish a descriptor listing
//! only their own intro points (the giant lease does not make the holder yield, the
//! forged points count for nothing), and that requests keep being answered. Then
//! `rustbalance node remove hos4` on an honest node cuts the hostile member off although
//! it claims another WireGuard key: every mesh drops the peer its certificate binds, every
//! view drops it, and its gossip is dropped by identity while it keeps sending.

use super::hostile_member;
use anyhow::{ensure, Context, Result};
use rustbalance_lab::{Lab, LabProcess};
use rustbalance_testbed::cluster::ns::{join_ns_node, start_ns_cluster};
use rustbalance_testbed::{
    poll_until, published_nodes, publisher, wait_cluster_up, wait_published, NsNode,
};
use serde_json::Value;
use std::cell::Cell;
use std::ffi::OsString;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// Liveness bound of each step (the times are printed).
const LIVENESS: Duration = Duration::from_secs(240);
/// Requests counted in each measured phase.
const REQUESTS: u32 = 10;
const HONEST: [&str; 3] = ["hos1", "hos2", "hos3"];
const WORKER: &str = "hos4";

pub async fn a_hostile_worker_cannot_take_the_address_down(lab: Lab) -> Result<()> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    let mut nodes = Vec::new();
    let mut hostile = None;
    let r = story(&lab, bin, &mut nodes, &mut hostile).await;
    if let (Err(_), Some(h)) = (&r, &hostile) {
        let text = std::fs::read_to_string(h.log_file()).unwrap_or_default();
        eprintln!("--- hostile member log\n{text}");
    }
    if let Some(h) = hostile {
        h.stop()?;
    }
    for n in nodes.iter_mut() {
        n.stop(&lab)?;
    }
    r
}

/// Answers of the master address counted by a client loop.
#[derive(Clone, Default)]
struct Tally {
    ok: Rc<Cell<u32>>,
    total: Rc<Cell<u32>>,
    stop: Rc<Cell<bool>>,
}

impl Tally {
    /// Asks `url` again and again (a fresh circuit each time) until stopped.
    fn start(lab: &Lab, url: &str) -> Tally {
        let t = Tally::default();
        let (lab, url, c) = (lab.clone(), url.to_string(), t.clone());
        tokio::task::spawn_local(async move {
            while !c.stop.get() {
                let r = lab.http_get(&url, Duration::from_secs(30)).await;
                let ok =
                    matches!(&r, Ok(r) if r.status == 200 && r.text().contains("served by hos"));
                c.ok.set(c.ok.get() + u32::from(ok));
                c.total.set(c.total.get() + 1);
                if !ok {
                    // Not waiting for state: a pause before asking again.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        t
    }

    fn now(&self) -> (u32, u32) {
        (self.ok.get(), self.total.get())
    }

    /// Waits for `REQUESTS` more answers or failures after `from`; returns (ok, total) of
    /// those.
    async fn phase(&self, what: &str, from: (u32, u32)) -> Result<(u32, u32)> {
        poll_until(
            what,
            Duration::from_secs(900),
            Duration::from_millis(500),
            async || Ok((self.total.get() >= from.1 + REQUESTS).then_some(())),
        )
        .await?;
        let (ok, total) = self.now();
        Ok((ok - from.0, total - from.1))
    }
}

/// The public keys of `s`'s WireGuard peers.
fn mesh_peers(s: &Value) -> Vec<String> {
    s["mesh"]["peers"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| p["public_key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the live members in `s`'s view.
fn live_members(s: &Value) -> Vec<String> {
    s["cluster"]["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["live"] == true)
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every honest node's `/status` (an error naming the node that does not answer).
async fn statuses(nodes: &[NsNode]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for n in nodes {
        match n.status().await {
            Some(s) => out.push(s),
            None => anyhow::bail!("{} stopped answering /status", n.name),
        }
    }
    Ok(out)
}

async fn story(
    lab: &Lab,
    bin: &std::path::Path,
    nodes: &mut Vec<NsNode>,
    hostile: &mut Option<LabProcess>,
) -> Result<()> {
    let (master, started) = start_ns_cluster(lab, "hos", 3, bin, true)?;
    *nodes = started;
    let url = format!("http://{}/", master.address());
    wait_cluster_up(lab, nodes, &url, LIVENESS).await?;
    super::join_helpers::one_join_key(nodes).await?;
    let (_, token_text) = super::join_helpers::create_token(&nodes[0]).await?;
    let token_file = lab.dir().join("hostile-join-token");
    rustbalance_node::keystore::write_atomic(&token_file, token_text.as_bytes(), 0o600)?;
    let worker = join_ns_node(lab, WORKER, bin, &token_file, &nodes[0].config, |l| {
        eprintln!("{l}")
    })
    .await?;
    nodes.push(worker);
    let four = ["hos1", "hos2", "hos3", WORKER];
    let since = SystemTime::now() - Duration::from_secs(1);
    let p = wait_published(nodes, &[], since, &four, LIVENESS).await?;
    eprintln!(
        "{WORKER} joined as a worker; {} published all 4 nodes after {:.1}s",
        nodes[p.node].name,
        p.waited.as_secs_f64()
    );
    let client = Tally::start(lab, &url);

    // The worker's host is taken over: its daemon stops (by pid), the hostile member
    // starts in its namespace with its keys and claims a new WireGuard key.
    let mut worker = nodes.pop().expect("four nodes");
    let attack_from = client.now();
    worker.stop(lab)?;
    let claim = rustbalance_mesh::PrivateKey::generate()
        .public_key()
        .to_string();
    let args: Vec<OsString> = vec![
        hostile_member::FLAG.into(),
        worker.config.clone().into(),
        claim.clone().into(),
    ];
    let h = lab.spawn_program_in("hos4hostile", &worker.host, std::env::current_exe()?, &args)?;
    let log = h.log_file().to_path_buf();
    *hostile = Some(h);

    // The attack lands: the forged removals are gossiped, every honest node sees the
    // hostile member live with its giant lease, and its false clocks arrive (dropped as
    // stale, their timestamps still read).
    let (_, took) = poll_until(
        "the hostile member's lease at every honest node",
        LIVENESS,
        Duration::from_millis(500),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let mut all = text.contains("forged removals of") && text.contains("false clocks");
            for s in statuses(nodes).await? {
                let holders = s["cluster"]["lease_holders"].to_string();
                all &= holders.contains(WORKER) && live_members(&s).iter().any(|m| m == WORKER);
                all &= s["cluster"]["gossip"]["dropped_stale"].as_u64() > Some(0);
            }
            Ok(all.then_some(()))
        },
    )
    .await?;
    eprintln!(
        "attack landed {:.1}s after the takeover: forged removals gossiped, giant lease seen",
        took.as_secs_f64()
    );
    // The honest nodes keep publishing, their own intro points only: a follower is cut
    // off and healed under attack, and each change needs a new publication (a holder that
    // yielded to the giant lease would publish neither).
    let (holder, _) = publisher(nodes, &[])
        .await
        .context("no honest publisher once the giant lease landed")?;
    let f = (0..HONEST.len())
        .find(|i| *i != holder)
        .expect("3 honest nodes");
    let rest: Vec<&str> = HONEST.iter().copied().filter(|n| *n != HONEST[f]).collect();
    let cut_at = SystemTime::now();
    lab.cut(HONEST[f])?;
    let q = wait_published(nodes, &[f], cut_at, &rest, LIVENESS).await?;
    eprintln!(
        "under attack, {} cut off: {} published {rest:?} after {:.1}s: {}",
        HONEST[f],
        nodes[q.node].name,
        q.waited.as_secs_f64(),
        q.record["intro_points"]
    );
    let healed_at = SystemTime::now();
    lab.heal(HONEST[f])?;
    // In the default quorum mode (`live`) the cut-off node published alone, as
    // documented; after the heal the better-ranked holder keeps the lease and the other
    // withdraws (rule 6) once gossip shows it the other lease. Wait for that: exactly one
    // honest publisher, whose newest publication lists the three honest nodes.
    let healed_s = rustbalance_hs::time::unix_secs(healed_at);
    let p = rustbalance_testbed::sole_publisher(nodes, LIVENESS, |last| {
        rustbalance_testbed::at_unix(last) >= healed_s
            && published_nodes(last) == HONEST
            && rustbalance_testbed::confirmed(last)
    })
    .await?;
    eprintln!(
        "healed: {} alone publishes {HONEST:?} (no forged intro point) after {:.1}s: {}",
        nodes[p.node].name,
        p.waited.as_secs_f64(),
        p.record["intro_points"]
    );
    for (n, s) in nodes.iter().zip(statuses(nodes).await?) {
        let removed = s["join"]["removed"].as_array().map_or(0, Vec::len);
        ensure!(
            removed == 0,
            "{} took a forged removal: {}",
            n.name,
            s["join"]
        );
        // The false clocks did not make it call its own clock off (tolerance 2 s).
        let offset = s["cluster"]["clock_offset_ms"].as_i64();
        ensure!(
            offset.is_some_and(|o| o.abs() < 2_000),
            "{}: clock offset {offset:?} ms under false clocks (not publishing because: {})",
            n.name,
            s["cluster"]["not_publishing_because"]
        );
        eprintln!("{}: gossip counters {}", n.name, s["cluster"]["gossip"]);
    }
    // A new client's view: the lab client fetches the honest publication (a NEWNYM
    // alone may fetch an older descriptor from an HSDir the upload has not reached).
    rustbalance_testbed::client_cache::refetch_publication(
        lab,
        &master.address(),
        &p.record,
        LIVENESS,
    )
    .await?;
    let after = client.phase("requests under attack", client.now()).await?;
    let (ok, total) = (
        client.now().0 - attack_from.0,
        client.now().1 - attack_from.1,
    );
    eprintln!(
        "requests during the attack: {ok}/{total} ok ({}/{} after the client fetched the honest publication)",
        after.0, after.1
    );
    ensure!(
        after.0 * 2 >= after.1 && after.0 >= 1,
        "the master address stopped answering under attack: {}/{} ok",
        after.0,
        after.1
    );
    let still = publisher(nodes, &[]).await;
    ensure!(
        still
            .as_ref()
            .is_some_and(|(_, p)| published_nodes(p) == HONEST),
        "the last publication is not the honest one: {still:?}"
    );

    remove_the_hostile_member(lab, nodes, &client, &claim, hostile).await
}

/// `node remove hos4` on `hos1`: the hostile member, which claims `claim` as its
/// WireGuard key, is cut off by the key its certificate binds and by its identity.
async fn remove_the_hostile_member(
    lab: &Lab,
    nodes: &[NsNode],
    client: &Tally,
    claim: &str,
    hostile: &Option<LabProcess>,
) -> Result<()> {
    let real = rustbalance_mesh::PrivateKey::load(
        &lab.dir().join("rustbalance").join(WORKER).join("mesh.key"),
    )?
    .public_key()
    .to_string();
    for (n, s) in nodes.iter().zip(statuses(nodes).await?) {
        ensure!(
            mesh_peers(&s).contains(&real),
            "{}: no peer {real} before the removal",
            n.name
        );
    }
    let cfg = nodes[0].config.display().to_string();
    let removed_at = std::time::Instant::now();
    let (ok, out, err) = nodes[0]
        .cli(
            &["node", "remove", WORKER, "--config", &cfg],
            Duration::from_secs(120),
        )
        .await?;
    ensure!(ok, "node remove failed: {err}");
    eprintln!("node remove {WORKER}: {} {}", out.trim(), err.trim());
    ensure!(
        !format!("{out}{err}").contains(claim),
        "node remove took the claimed key {claim}"
    );
    let (_, took) = poll_until(
        "the hostile member cut off from every honest node",
        LIVENESS,
        Duration::from_millis(500),
        async || {
            let mut all = true;
            for s in statuses(nodes).await? {
                let peers = mesh_peers(&s);
                all &= peers.len() == 2
                    && !peers.contains(&real)
                    && !peers.contains(&claim.to_string());
                all &= !live_members(&s).iter().any(|m| m == WORKER);
                all &= s["cluster"]["gossip"]["dropped_revoked"].as_u64() > Some(0);
            }
            Ok(all.then_some(()))
        },
    )
    .await?;
    ensure!(
        hostile.as_ref().is_some_and(|h| h.is_alive()),
        "the hostile member died: nothing was shown"
    );
    eprintln!(
        "hostile member cut off {:.1}s after `node remove` (every mesh dropped {real}, no view shows it, its gossip dropped as revoked; it claimed {claim} and still runs)",
        removed_at.elapsed().as_secs_f64().max(took.as_secs_f64())
    );
    let last = publisher(nodes, &[]).await;
    ensure!(
        last.as_ref()
            .is_some_and(|(_, p)| published_nodes(p) == HONEST),
        "the publication after the removal lists {last:?}"
    );
    let after = client
        .phase("requests after the removal", client.now())
        .await?;
    client.stop.set(true);
    eprintln!("requests after the removal: {}/{} ok", after.0, after.1);
    ensure!(
        after.0 * 2 >= after.1 && after.0 >= 1,
        "the master address stopped answering after the removal: {}/{} ok",
        after.0,
        after.1
    );
    Ok(())
}
