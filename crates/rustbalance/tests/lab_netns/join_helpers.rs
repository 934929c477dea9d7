//! Helpers of the join scenario (`join.rs`): raw requests through the lab client, joins
//! from any member, refusal counters, identities for a machine that joins.

use anyhow::Result;
use rustbalance_hs::OnionAddress;
use rustbalance_lab::Lab;
use rustbalance_node::join::{request_join, JoinParams, JoinToken};
use rustbalance_testbed::{poll_until, NsNode};
use rustbalance_tor::socks::{self, Isolation};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send raw bytes to the master address through the lab client; returns the status line.
/// A worker's `503` (it cannot admit) is tried again over a fresh circuit, as `join` does;
/// so is a stream tor could not open (a failed circuit or introduction: SOCKS error).
pub(crate) async fn raw(
    socks: SocketAddr,
    master: &OnionAddress,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let mut status = String::new();
    let mut socks_error = None;
    for _ in 0..12 {
        let mut s = tokio::net::TcpStream::connect(socks).await?;
        if let Err(e) = socks::connect(&mut s, &master.to_string(), 80, &Isolation::fresh()).await {
            eprintln!("raw request: socks: {e}; again over a fresh circuit");
            socks_error = Some(e);
            continue;
        }
        socks_error = None;
        s.write_all(bytes).await?;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await??;
        status = String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        if !status.contains(" 503 ") {
            break;
        }
    }
    if let Some(e) = socks_error {
        anyhow::bail!("socks: {e} (12 attempts over fresh circuits)");
    }
    Ok(status)
}

/// `request_join` until a node that can admit answers: a worker's answer, or no stream
/// opened (a stale descriptor naming a stopped node, a failed circuit), is asked again
/// over a fresh circuit, as `rustbalance join` does.
pub(crate) async fn join_anywhere(
    socks: SocketAddr,
    token: &JoinToken,
    p: &JoinParams,
) -> std::result::Result<rustbalance_node::join::JoinGrant, rustbalance_node::join::JoinError> {
    let mut last = None;
    for _ in 0..12 {
        match request_join(socks, token, p, Duration::from_secs(60)).await {
            Err(e) if e.is_retryable() => {
                eprintln!("join attempt: {e}; again over a fresh circuit");
                last = Some(e)
            }
            other => return other,
        }
    }
    Err(last.unwrap_or(rustbalance_node::join::JoinError::AnswerBrokeOff))
}

/// Sum of one join counter over the nodes' `/status`.
pub(crate) async fn rejected(nodes: &[&NsNode], reason: &str) -> u64 {
    let mut n = 0;
    for node in nodes {
        if let Some(s) = node.status().await {
            n += s["join"]["rejected"][reason].as_u64().unwrap_or(0);
        }
    }
    n
}

/// A fresh node identity's public key (text), kept under the lab directory as `name`.
pub(crate) fn new_identity(lab: &Lab, name: &str) -> Result<String> {
    let dir = lab.dir().join("identities").join(name);
    rustbalance_node::keystore::create_private_dir(&dir)?;
    let layout = rustbalance_node::layout::Layout::new(&dir);
    Ok(
        rustbalance_node::keystore::identity::load_or_create(&layout)?
            .public()
            .to_string(),
    )
}

/// Waits until every member of a new cluster takes the same join key: the members salted
/// generation 0 at start and settle on one salt (the highest). A token made before that may
/// die with its salt.
pub(super) async fn one_join_key(nodes: &[NsNode]) -> Result<()> {
    poll_until(
        "every member on one join key",
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            let mut keys = Vec::new();
            for n in nodes.iter() {
                keys.push(key_of(n).await);
            }
            Ok((keys[0].is_some() && keys.iter().all(|k| *k == keys[0])).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// `token create` on `node`: the token and its text.
pub(super) async fn create_token(node: &NsNode) -> Result<(JoinToken, String)> {
    let cfg = node.config.display().to_string();
    let (ok, text, err) = node
        .cli(
            &["token", "create", "--ttl", "20m", "--config", &cfg],
            Duration::from_secs(10),
        )
        .await?;
    anyhow::ensure!(ok, "{}: token create failed: {err}", node.name);
    Ok((JoinToken::parse(&text)?, text))
}

/// The fingerprint of the join key `node` takes.
pub(crate) async fn key_of(node: &NsNode) -> Option<String> {
    node.status().await?["join"]["key"]
        .as_str()
        .map(str::to_string)
}
