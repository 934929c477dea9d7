//! The hostile worker of `hostile.rs`: a process that takes a stopped worker's place in
//! its network namespace, with everything a compromised worker host has (its config, the
//! cluster secret, its WireGuard key, its node identity and member certificate), and
//! speaks gossip over the worker's own WireGuard mesh. It is this test binary run again
//! (`lab_netns --hostile-member CONFIG CLAIMED_WG_KEY`) inside the namespace, as a lab
//! process (pid file, stopped by pid), so the honest nodes meet a real peer on the wire.
//!
//! What it gossips, all in its own (validly signed) state, re-announced every 2 s:
//!
//! * a **giant lease**: `ttl_ms` and `until_ms` of `u64::MAX / 4`, priority 0, `eligible =
//!   true`, `role = publisher` (issue 13, attack 3);
//! * **20 intro keys** (`intro/<name>`, `intro/<name>-2` … `-20`), each with intro points
//!   whose link specifiers tor never writes (a 255-byte one of an unknown type, from
//!   `rustbalance_hs::fixture::oversized_intro_point`: attack 2);
//! * **forged removals** (`mesh_removed`) of every other member it sees: one signed by an
//!   authority of its own making, one unsigned (attack 1);
//! * a **new WireGuard key** in its `mesh` claim (`CLAIMED_WG_KEY`), while it keeps using
//!   the key its certificate binds on the wire (attack 5: removal keyed on the claim);
//! * **false clocks**: datagrams stamped ten minutes ahead, sealed with the cluster key,
//!   sent to every member from [`CLOCK_PORTS`] other source ports (per-port clock samples
//!   once let it make every honest node call its own clock off and stop publishing).

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustbalance_cluster::auth::{MacKey, Sealer};
use rustbalance_cluster::{
    keys, Authority, ClusterSecret, LeaseAdvert, Membership, MembershipConfig, UdpNetwork,
};
use rustbalance_hs::descriptor::encode_intro_points_unchecked;
use rustbalance_hs::fixture::oversized_intro_point;
use rustbalance_node::cluster::credentials::{gossip_auth, Credentials};
use rustbalance_node::join_node::Removal;
use rustbalance_node::layout::Layout;
use rustbalance_node::Config;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// The first argument that makes the test binary the hostile member.
pub const FLAG: &str = "--hostile-member";

/// How many `intro/*` keys it gossips.
pub const INTRO_KEYS: usize = 20;

/// From how many source ports it sends false timestamps.
pub const CLOCK_PORTS: usize = 24;

/// `Some((config, claimed key))` when this process was started as the hostile member.
pub fn requested() -> Option<(String, String)> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match &a[..] {
        [flag, config, claim] if flag == FLAG => Some((config.clone(), claim.clone())),
        _ => None,
    }
}

/// Runs the hostile member until it is killed.
pub fn main(config: &str, claim: &str) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostile member: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Path::new(config), claim)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostile member: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `count` intro points padded with `extra` 255-byte link specifiers of unknown types
/// (the hostile fixture of `rustbalance_hs`), in the gossip encoding, unchecked.
fn oversized_intro_points(rng: &mut ChaCha20Rng, count: usize, extra: u8) -> String {
    let ips: Vec<_> = (0..count)
        .map(|_| oversized_intro_point(rng, extra))
        .collect();
    encode_intro_points_unchecked(&ips)
}

/// Forged removals of every member in `others` (name, WireGuard key): signed by `rogue`,
/// and unsigned.
fn forged_removals(rogue: &Authority, me: &str, at: u64, others: &[(String, String)]) -> String {
    let mut lines = Vec::new();
    for (name, key) in others {
        let Ok(public_key) = key.parse::<rustbalance_mesh::PublicKey>() else {
            continue;
        };
        let signed = Removal::signed(rogue, name, &public_key, None, 1, at, me);
        let mut unsigned = signed.clone();
        unsigned.signature.clear();
        lines.push(signed.line());
        lines.push(unsigned.line());
    }
    lines.join("\n")
}

async fn run(config: &Path, claim: &str) -> Result<()> {
    let cfg = Config::load(config)?;
    let name = cfg.node.name.clone();
    let layout = Layout::new(&cfg.node.data_dir);
    let c = cfg.cluster.clone().context("the node has no [cluster]")?;
    let m = cfg.mesh.clone().context("the node has no [mesh]")?;
    // The worker's own mesh, key and peers: the honest nodes take it for the worker.
    let (_mesh, listen, seeds) = rustbalance_node::daemon::bring_up_mesh(&m, &c, &layout).await?;
    let auth = gossip_auth(&Credentials {
        layout: &layout,
        name: &name,
        mode: c.gossip_signatures,
        master: None,
        instance: cfg.master_address()?,
        wireguard: None,
    })?
    .context("the worker has no gossip credentials")?;
    let secret = ClusterSecret::new(
        rustbalance_node::keystore::read_cluster_secret(&c.secret_file)?.to_vec(),
    )?;
    let mut mc = MembershipConfig::new(name.clone(), listen);
    mc.seeds = seeds;
    mc.cluster_id = c.cluster_id.clone();
    mc.phi_threshold = c.phi_threshold;
    mc.auth = Some(auth);
    let endpoint = m.endpoint.context("the worker has no mesh endpoint")?;
    let mut initial = vec![
        (keys::PRIORITY.to_string(), "0".to_string()),
        (keys::ELIGIBLE.to_string(), "true".to_string()),
        (keys::ROLE.to_string(), "publisher".to_string()),
        (keys::MESH.to_string(), format!("{claim} {endpoint}")),
    ];
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    for i in 1..=INTRO_KEYS {
        let key = match i {
            1 => keys::intro_points(&name),
            _ => keys::intro_points(&format!("{name}-{i}")),
        };
        initial.push((key, oversized_intro_points(&mut rng, 3, 1)));
    }
    let membership = Membership::start(mc, &secret, initial, &UdpNetwork).await?;
    eprintln!("hostile member {name} gossiping on {listen}, claiming WireGuard key {claim}");
    let rogue = Authority::from_seed(&zeroize::Zeroizing::new(rand::random::<[u8; 32]>()));
    let at = rustbalance_hs::time::unix_secs(SystemTime::now());
    let mut removed = String::new();
    let mut seq = 0;
    let mut sealer = Sealer::new(MacKey::derive(&secret), rand::random());
    let mut clock_sockets = Vec::new();
    for _ in 0..CLOCK_PORTS {
        clock_sockets.push(tokio::net::UdpSocket::bind((listen.ip(), 0)).await?);
    }
    let mut clock_sent = false;
    loop {
        seq += 1;
        let giant = LeaseAdvert {
            incarnation: 1,
            seq,
            ttl_ms: u64::MAX / 4,
            until_ms: u64::MAX / 4,
        };
        membership.set(keys::LEASE, &giant.encode()).await;
        let others: Vec<(String, String)> = membership
            .members()
            .await
            .iter()
            .filter(|v| v.node_id != name)
            .filter_map(|v| {
                let key = v.get(keys::MESH)?.split(' ').next()?.to_string();
                Some((v.node_id.clone(), key))
            })
            .collect();
        let lines = forged_removals(&rogue, &name, at, &others);
        if lines != removed && !lines.is_empty() {
            membership.set(keys::MESH_REMOVED, &lines).await;
            eprintln!(
                "hostile member: forged removals of {:?}",
                others.iter().map(|o| &o.0).collect::<Vec<_>>()
            );
            removed = lines;
        }
        let ahead = u64::try_from(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_millis(),
        )? + 600_000;
        let targets: Vec<std::net::SocketAddr> = membership
            .members()
            .await
            .iter()
            .filter(|v| v.node_id != name)
            .map(|v| v.addr)
            .collect();
        for sock in &clock_sockets {
            for to in &targets {
                let datagram = sealer.seal(ahead, b"a clock ten minutes ahead");
                sock.send_to(&datagram, to).await?;
            }
        }
        if !clock_sent && !targets.is_empty() {
            eprintln!(
                "hostile member: false clocks (+10 min) from {CLOCK_PORTS} ports to {targets:?}"
            );
            clock_sent = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
