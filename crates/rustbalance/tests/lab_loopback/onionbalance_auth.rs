//! Restricted discovery end to end: a cluster node (`rustbalance run`, merged mode) whose
//! config has `authorized_clients_dir`, clients managed with `rustbalance client-auth`,
//! and the lab client (tor, `ExtendedErrors`) given keys over its control port
//! (`ONION_CLIENT_AUTH_ADD`, as a `ClientOnionAuthDir` file would).
//!
//! * without a key the client's tor refuses with SOCKS 0xF4 (needs client authorization);
//! * with Alice's key (printed by `client-auth add`) it reaches the master address;
//! * after `client-auth remove alice` the node republishes by itself, and the same client
//!   is refused with 0xF5 (client authorization refused);
//! * the descriptor is as large for two authorized clients as for one, and for 16 as for
//!   one.

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use rustbalance_hs::descriptor::{auth_line, ClientSecret};
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{DemoTarget, Lab};
use rustbalance_testbed::client_cache::Newnym;
use rustbalance_testbed::node_config::lone_cluster_node;
use rustbalance_testbed::{poll_until, wait_published, ClusterNodeProc, Publication};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const NAME: &str = "auth1";
/// Liveness bound only (a loaded 2-core machine must pass).
const LIVENESS: Duration = Duration::from_secs(180);

pub async fn restricted_discovery(lab: Lab) -> Result<()> {
    let master = IdentityKey::generate(&mut rand::rng());
    let target = DemoTarget::start(&format!("served by {NAME}\n")).await?;
    let config = write_config(&lab, &master, target.addr())?;
    let ctl =
        rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let mut node = ClusterNodeProc::from_config(&config, target.addr())?;
    node.target = Some(target);
    let r = scenario(&lab, &master, &config, &mut node, &ctl).await;
    node.stop();
    let _ = ctl
        .command(&format!(
            "ONION_CLIENT_AUTH_REMOVE {}",
            master.address().without_suffix()
        ))
        .await;
    r
}

/// A one-node cluster config (merged mode: the node publishes the master descriptor
/// itself) with `authorized_clients_dir`.
fn write_config(lab: &Lab, master: &IdentityKey, target: SocketAddr) -> Result<PathBuf> {
    let base = lab.dir().join("cluster-auth");
    let clients = base.join("authorized_clients");
    lone_cluster_node(lab, NAME, master, target, &base, |text| {
        let line = format!(
            "[service]\nauthorized_clients_dir = {}\n",
            toml_str(&clients.display().to_string())
        );
        ensure!(
            text.contains("[service]\n"),
            "the template has a [service] section"
        );
        Ok(text.replacen("[service]\n", &line, 1))
    })
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

fn rb(args: &[&str]) -> Result<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_rustbalance"))
        .args(args)
        .output()?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        bail!(
            "rustbalance {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(out)
}

/// `ONION_CLIENT_AUTH_ADD` for the printed `ADDR:descriptor:x25519:BASE32` line.
async fn give_client_key(ctl: &rustbalance_tor::ControlClient, line: &str) -> Result<()> {
    let parts: Vec<&str> = line.trim().split(':').collect();
    ensure!(parts.len() == 4 && parts[1] == "descriptor", "{line:?}");
    let raw = data_encoding::BASE32_NOPAD.decode(parts[3].to_ascii_uppercase().as_bytes())?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    // `command` fails unless tor answers 2xx.
    ctl.command(&format!("ONION_CLIENT_AUTH_ADD {} x25519:{b64}", parts[0]))
        .await?;
    Ok(())
}

/// NEWNYM: the client forgets its descriptors and, as tor does on NEWNYM
/// (`purge_ephemeral_client_auth`), every key given over the control port; so `key` (if
/// any) is given again afterwards, once tor has acted on it: tor only delays a NEWNYM
/// within 10 s of the last one, and a key given before a delayed NEWNYM would be purged by
/// it, so the whole spacing is waited first.
async fn newnym(ctl: &rustbalance_tor::ControlClient, key: Option<&str>) -> Result<()> {
    Newnym::assume_recent().send(ctl).await?;
    if let Some(k) = key {
        give_client_key(ctl, k).await?;
    }
    Ok(())
}

/// [`newnym`], then poll requests until one fails with SOCKS reply `code`. A request that
/// succeeds is a failure of the test: the descriptor was readable.
async fn refused_with(
    lab: &Lab,
    ctl: &rustbalance_tor::ControlClient,
    url: &str,
    code: &str,
    key: Option<&str>,
) -> Result<Duration> {
    newnym(ctl, key).await?;
    let (_, took) = poll_until(
        &format!("the lab client refused with {code}"),
        LIVENESS,
        Duration::from_secs(1),
        async || match lab.http_get(url, Duration::from_secs(60)).await {
            Ok(r) => bail!("reached the master address, it should not: {:?}", r.text()),
            Err(e) if e.to_string().contains(code) => Ok(Some(e.to_string())),
            Err(e) => {
                eprintln!("  (not yet {code}: {e})");
                Ok(None)
            }
        },
    )
    .await?;
    Ok(took)
}

/// Each slot's descriptor size less the decimal digits of its revision counter: the
/// counter is the one plaintext field whose length varies between publications (and
/// between the two slots of one), so it is not what the padding must hide.
fn slot_sizes(p: &Publication) -> Vec<u64> {
    p.record["slots"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let digits = s["revision"].as_u64()?.to_string().len() as u64;
                    Some(s["size"].as_u64()? - digits)
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn scenario(
    lab: &Lab,
    master: &IdentityKey,
    config: &Path,
    node: &mut ClusterNodeProc,
    ctl: &rustbalance_tor::ControlClient,
) -> Result<()> {
    let cfg = config.to_str().context("config path")?;
    // Alice: a key pair made by `client-auth add`; Bob: his own key, public half given.
    let alice_line = rb(&["client-auth", "add", "alice", "--config", cfg])?;
    let bob = ClientSecret::generate(&mut rand::rng());
    let bob_pub = config.with_file_name("bob.pub");
    std::fs::write(&bob_pub, auth_line(&bob.public()))?;
    rb(&[
        "client-auth",
        "add",
        "bob",
        "--config",
        cfg,
        "--public-key-file",
        bob_pub.to_str().context("path")?,
    ])?;
    let listed = rb(&["client-auth", "list", "--config", cfg])?;
    ensure!(listed.lines().count() == 2, "{listed}");

    let bin = Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    node.start(bin, &lab.dir().join(format!("{NAME}.log")))?;
    let first = wait_published(
        std::slice::from_ref(&*node),
        &[],
        SystemTime::UNIX_EPOCH,
        &[NAME],
        LIVENESS,
    )
    .await?;
    eprintln!(
        "restricted descriptors published after {:.1}s",
        first.waited.as_secs_f64()
    );
    let url = format!("http://{}/", master.address());

    let t = refused_with(lab, ctl, &url, "0xF4", None).await?;
    eprintln!(
        "client without a key: refused (SOCKS 0xF4) after {:.1}s",
        t.as_secs_f64()
    );

    newnym(ctl, Some(&alice_line)).await?;
    let (resp, took) = lab.wait_http(&url, "served by", LIVENESS).await?;
    eprintln!(
        "client with Alice's key: reached the master after {:.1}s: {:?}",
        took.as_secs_f64(),
        resp.text().trim()
    );

    let removed_at = SystemTime::now();
    let t_rm = Instant::now();
    rb(&["client-auth", "remove", "alice", "--config", cfg])?;
    let second = wait_published(
        std::slice::from_ref(&*node),
        &[],
        removed_at,
        &[NAME],
        LIVENESS,
    )
    .await?;
    eprintln!(
        "`client-auth remove alice`: republished after {:.1}s",
        t_rm.elapsed().as_secs_f64()
    );
    let (s1, s2) = (slot_sizes(&first), slot_sizes(&second));
    eprintln!("descriptor sizes: 2 clients {s1:?}, 1 client {s2:?}");
    ensure!(!s1.is_empty() && s1 == s2, "sizes differ: {s1:?} vs {s2:?}");

    let t = refused_with(lab, ctl, &url, "0xF5", Some(&alice_line)).await?;
    eprintln!(
        "client with the removed key: refused (SOCKS 0xF5) after {:.1}s",
        t.as_secs_f64()
    );

    // 16 clients publish a descriptor as large as 1 (the client list is padded to a
    // multiple of 16, the layer to a multiple of 10,000 bytes).
    let sixteen = add_public_clients(config, node, 2..17).await?;
    let s16 = slot_sizes(&sixteen);
    eprintln!("descriptor sizes: 1 client {s2:?}, 16 clients {s16:?}");
    ensure!(
        s16 == s2,
        "16 clients give another size than 1: {s16:?} vs {s2:?}"
    );
    Ok(())
}

/// `client-auth add client<i> --public-key-file` for every `i` in `range` (Bob is the
/// one client left before), then the node's first publication after the last one.
async fn add_public_clients(
    config: &Path,
    node: &ClusterNodeProc,
    range: std::ops::Range<usize>,
) -> Result<Publication> {
    let cfg = config.to_str().context("config path")?;
    let since = SystemTime::now();
    for i in range.clone() {
        let key = ClientSecret::generate(&mut rand::rng());
        let file = config.with_file_name(format!("client{i}.pub"));
        std::fs::write(&file, auth_line(&key.public()))?;
        rb(&[
            "client-auth",
            "add",
            &format!("client{i}"),
            "--config",
            cfg,
            "--public-key-file",
            file.to_str().context("path")?,
        ])?;
    }
    let listed = rb(&["client-auth", "list", "--config", cfg])?;
    ensure!(
        listed.lines().count() == range.end - 1,
        "after adding up to client{}: {listed}",
        range.end - 1
    );
    let p = wait_published(std::slice::from_ref(node), &[], since, &[NAME], LIVENESS).await?;
    eprintln!(
        "{} client(s): republished after {:.1}s",
        range.end - 1,
        p.waited.as_secs_f64()
    );
    Ok(p)
}
