//! What an outsider learns from the master address, and what one abusive circuit can do
//! (issue 14), on a meshed 2-node cluster (nodes `probe1`, `probe2`) whose nodes serve the
//! join endpoint:
//!
//! * the join-path probe `POST /.well-known/rustbalance/join/ HTTP/1.0` (no path id) gets
//!   the target's own answer, like a request for any unknown path, instead of being held
//!   until the client gives up (both timings are printed; the assertion is on behaviour);
//! * a client holding 1,000 slow streams on one circuit (SOCKS isolation: one user name,
//!   one circuit) keeps at most `max_streams_per_circuit` (tor's `HiddenServiceMaxStreams`,
//!   128 by default, the circuit closed beyond it) open at the nodes, and other clients
//!   are served meanwhile.

use anyhow::Result;
use rustbalance_hs::OnionAddress;
use rustbalance_lab::Lab;
use rustbalance_testbed::cluster::ns::start_ns_cluster;
use rustbalance_testbed::{poll_until, wait_cluster_up, NsNode};
use rustbalance_tor::socks::{self, Isolation};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Streams one circuit may hold (the default `proxy.max_streams_per_circuit`).
const PER_CIRCUIT: u64 = rustbalance_node::config::DEFAULT_MAX_STREAMS_PER_CIRCUIT as u64;
const SLOW_STREAMS: usize = 1000;
const OTHER_CLIENTS: usize = 20;

pub async fn outsiders_learn_nothing_and_one_circuit_cannot_hog(lab: Lab) -> Result<()> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rustbalance"));
    let (master, mut nodes) = start_ns_cluster(&lab, "probe", 2, bin, true)?;
    let result = story(&lab, &master.address(), &nodes).await;
    for n in nodes.iter_mut() {
        n.stop(&lab)?;
    }
    result
}

/// One request on `isolation`'s circuit; returns the whole answer and how long it took
/// from the request's first byte (the circuit is already up).
async fn ask(
    socks: SocketAddr,
    master: &OnionAddress,
    isolation: &Isolation,
    req: &[u8],
) -> Result<(String, Duration)> {
    let mut s = socks::connect_via(socks, &master.to_string(), 80, isolation)
        .await
        .map_err(|e| anyhow::anyhow!("socks: {e}"))?;
    let t = Instant::now();
    s.write_all(req).await?;
    let mut out = Vec::new();
    // The client does not half-close: it waits for the answer as a browser does. Not a
    // speed bound: long enough for any loaded machine, shorter than the 300 s the proxy
    // held such a probe before.
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut out))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 120 s"))??;
    Ok((String::from_utf8_lossy(&out).into_owned(), t.elapsed()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn story(lab: &Lab, master: &OnionAddress, nodes: &[NsNode]) -> Result<()> {
    let url = format!("http://{master}/");
    wait_cluster_up(lab, nodes, &url, Duration::from_secs(240)).await?;
    for n in nodes {
        let s = n.status().await.unwrap_or_default();
        anyhow::ensure!(
            s["join"]["open"] == true,
            "{}: the join endpoint is not open",
            n.name
        );
    }
    let socks = lab.socks_addr();

    // (a) The join-path probe against an unknown path, alternating, on one circuit.
    let probe = b"POST /.well-known/rustbalance/join/ HTTP/1.0\r\n\r\n";
    let unknown = b"POST /no/such/path/ HTTP/1.0\r\n\r\n";
    let circuit = Isolation::fresh();
    ask(socks, master, &circuit, b"GET / HTTP/1.0\r\n\r\n").await?; // builds the circuit
    let (mut tp, mut tu) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (a, t) = ask(socks, master, &circuit, probe).await?;
        anyhow::ensure!(a.contains("served by probe"), "the probe got {a:?}");
        tp.push(t);
        let (a, t) = ask(socks, master, &circuit, unknown).await?;
        anyhow::ensure!(a.contains("served by probe"), "the unknown path got {a:?}");
        tu.push(t);
    }
    eprintln!(
        "join-path probe answered by the target in {:.3}s (median of 5; {:?}), an unknown path in {:.3}s ({:?})",
        median(tp.clone()).as_secs_f64(),
        tp,
        median(tu.clone()).as_secs_f64(),
        tu
    );

    // (b) 1,000 slow streams on one circuit, then other clients.
    let slow = Isolation::Credentials("slowloris".into());
    let mut held = Vec::new();
    let (mut opened, mut refused) = (0usize, 0usize);
    let t = Instant::now();
    while opened + refused < SLOW_STREAMS {
        let batch = (SLOW_STREAMS - opened - refused).min(50);
        let mut tries = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let (host, slow) = (master.to_string(), slow.clone());
            tries.spawn(async move {
                let mut s = socks::connect_via(socks, &host, 80, &slow).await.ok()?;
                // The start of a request head, never finished.
                s.write_all(b"GET / HTTP/1.1\r\nHost: ").await.ok()?;
                Some(s)
            });
        }
        while let Some(r) = tries.join_next().await {
            match r.ok().flatten() {
                Some(s) => {
                    opened += 1;
                    held.push(s);
                }
                None => refused += 1,
            }
        }
    }
    eprintln!(
        "slow client: {opened} of {SLOW_STREAMS} streams opened on one isolation in {:.1}s ({refused} refused)",
        t.elapsed().as_secs_f64()
    );
    // At the nodes, one circuit holds at most PER_CIRCUIT of them (tor closes a circuit
    // that goes over, and its streams with it).
    let mut active = Vec::new();
    poll_until(
        "the nodes hold at most one circuit's worth of the slow streams",
        Duration::from_secs(90),
        Duration::from_millis(500),
        async || {
            active.clear();
            for n in nodes {
                let s = n.status().await.unwrap_or_default();
                active.push(s["proxy"]["stats"]["active"].as_u64().unwrap_or(u64::MAX));
            }
            Ok((active.iter().sum::<u64>() <= PER_CIRCUIT).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; open at the nodes: {active:?}"))?;
    eprintln!("open at the nodes while the slow client holds its streams: {active:?}");
    // Each other client gets a second fresh circuit when its first attempt fails: one
    // lab circuit that cannot be built or introduced (seen once in CI: 19/20) is not the
    // slow client hogging the service, which would refuse or stall both attempts.
    let mut ok = 0;
    let t = Instant::now();
    for i in 0..OTHER_CLIENTS {
        for attempt in 1..=2 {
            let r = lab.http_get(&url, Duration::from_secs(60)).await;
            if r.as_ref()
                .is_ok_and(|r| r.text().contains("served by probe"))
            {
                ok += 1;
                break;
            }
            eprintln!(
                "  other client {i}, attempt {attempt}: {}",
                rustbalance_testbed::clients::outcome(&r)
            );
        }
    }
    eprintln!(
        "other clients (a fresh circuit each) while the slow client holds its streams: {ok}/{OTHER_CLIENTS} served in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        ok == OTHER_CLIENTS,
        "other clients served: {ok}/{OTHER_CLIENTS}"
    );
    drop(held);
    Ok(())
}
