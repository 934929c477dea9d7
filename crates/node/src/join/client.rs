//! The joining side: build the request, read and check the answer, and the whole
//! `rustbalance join` conversation over a temporary tor client.
//!
//! ```text
//!  join_over_tor: torrc ─▶ tor (supervised) ─▶ bootstrap ─▶ SOCKS port
//!     ─▶ request_join ──ok──▶ grant ─▶ tor stopped ─▶ save_grant (cluster secret,
//!            │                join-generation, member certificate, authority key)
//!            │ unreachable, or a worker answered (JoinError::is_retryable), and time left
//!            │   ─▶ wait retry_pause, again over a fresh circuit (another intro point)
//!            └ anything else (refused, wrong token, no answer) ─▶ error, tor stopped
//! ```

use super::error::JoinError;
use super::message::{head_end, header, JoinGrant, JoinRequest, MAC_HEADER, VERSION};
use super::node::save_generation;
use super::service::unix_now;
use super::token::{JoinGeneration, JoinToken};
use crate::err::{Error, Result};
use crate::keystore::{create_private_dir, write_atomic};
use crate::layout::Layout;
use crate::supervisor::TorSupervisor;
use rustbalance_cluster::{AuthorityKey, MemberCert};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// Largest response a joining node reads.
const MAX_RESPONSE: usize = 256 * 1024;

/// What a joining node says about itself.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// Its name.
    pub name: String,
    /// Its WireGuard public key (base64).
    pub wg_public_key: String,
    /// Its WireGuard endpoint as the other nodes reach it.
    pub endpoint: SocketAddr,
    /// Its node identity's public key (text).
    pub identity: String,
}

/// Build the request bytes (head and body) for `token` with a fresh nonce.
pub fn build_request(token: &JoinToken, p: &JoinParams, now: u64) -> (String, Vec<u8>) {
    let mut nonce = [0u8; 16];
    rand::RngExt::fill(&mut rand::rng(), &mut nonce[..]);
    let mut req = JoinRequest {
        v: VERSION,
        ts: now,
        nonce: hex::encode(nonce),
        name: p.name.clone(),
        wg_public_key: p.wg_public_key.clone(),
        endpoint: p.endpoint,
        identity: p.identity.clone(),
        mac: String::new(),
    };
    req.mac = hex::encode(token.request_mac(&req));
    // Invariant: a struct of strings, numbers and an address always serializes.
    let body = serde_json::to_vec(&req).unwrap_or_default();
    let mut bytes = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token.path(),
        token.master,
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    (req.nonce, bytes)
}

/// Check a join response and take the grant out of it.
pub fn read_response(
    token: &JoinToken,
    nonce: &str,
    raw: &[u8],
) -> std::result::Result<JoinGrant, JoinError> {
    let end = head_end(raw).ok_or(JoinError::AnswerBrokeOff)?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end..];
    let status = head.lines().next().unwrap_or("").to_string();
    if !status.starts_with("HTTP/1.1 200") {
        let text: String = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        return Err(if status.starts_with("HTTP/1.1 503") {
            // A worker or a node still starting: another node may answer.
            JoinError::TryElsewhere { status, text }
        } else if status.contains("404") || !status.starts_with("HTTP/1.1 4") {
            JoinError::NotTaken { status, text }
        } else {
            JoinError::Refused { status, text }
        });
    }
    let mac = header(&head, MAC_HEADER).unwrap_or_default();
    let want = token.response_mac(nonce, body);
    if !bool::from(want.ct_eq(&hex::decode(mac).unwrap_or_default())) {
        return Err(JoinError::Unauthenticated);
    }
    let grant: JoinGrant =
        serde_json::from_slice(body).map_err(|source| JoinError::MalformedAnswer { source })?;
    if grant.v != VERSION {
        return Err(JoinError::Version { version: grant.v });
    }
    Ok(grant)
}

/// Join over Tor: connect through tor's SOCKS port to the master address, send the request,
/// check the answer. Gives up after `timeout`.
///
/// Running out of time before the stream opens (tor found no working intro point or
/// rendezvous, e.g. through a stale descriptor) is [`JoinError::ClusterUnreachable`]:
/// nothing was sent, so asking again over a fresh circuit is safe. Running out of time after
/// the request was sent is [`JoinError::NoAnswer`], not retried: the token may be spent.
pub async fn request_join(
    socks: SocketAddr,
    token: &JoinToken,
    p: &JoinParams,
    timeout: Duration,
) -> std::result::Result<JoinGrant, JoinError> {
    let started = tokio::time::Instant::now();
    let open = async {
        let mut s = TcpStream::connect(socks)
            .await
            .map_err(|source| JoinError::SocksUnreachable { socks, source })?;
        // A circuit of its own: an attempt after a worker's answer goes over a new
        // rendezvous, through whichever intro point (node) tor picks this time.
        rustbalance_tor::socks::connect(
            &mut s,
            &token.master.to_string(),
            token.port,
            &rustbalance_tor::socks::Isolation::fresh(),
        )
        .await
        .map_err(|e| JoinError::ClusterUnreachable {
            master: token.master,
            port: token.port,
            reason: e.to_string(),
        })?;
        Ok(s)
    };
    let mut s = tokio::time::timeout(timeout, open).await.map_err(|_| {
        JoinError::ClusterUnreachable {
            master: token.master,
            port: token.port,
            reason: format!("tor opened no stream within {} s", timeout.as_secs()),
        }
    })??;
    let exchange = async {
        let (nonce, bytes) = build_request(token, p, unix_now());
        s.write_all(&bytes)
            .await
            .map_err(|source| JoinError::Send { source })?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut raw)
            .await
            .map_err(|source| JoinError::Receive { source })?;
        read_response(token, &nonce, &raw)
    };
    tokio::time::timeout_at(started + timeout, exchange)
        .await
        .map_err(|_| JoinError::NoAnswer {
            master: token.master,
            secs: timeout.as_secs(),
        })?
}

/// Read a token from `file` (`-`: standard input).
pub fn read_token(file: &Path) -> Result<JoinToken> {
    let mut text = Zeroizing::new(String::new());
    let read = if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read(file).map(|raw| text.push_str(&String::from_utf8_lossy(&Zeroizing::new(raw))))
    };
    read.map_err(|source| Error::Io {
        action: "cannot read the join token from",
        path: file.to_path_buf(),
        source,
    })?;
    Ok(JoinToken::parse(&text)?)
}

/// How `rustbalance join` tries.
#[derive(Debug, Clone)]
pub struct JoinRetry {
    /// The whole join (tor bootstrap included) gives up after this.
    pub timeout: Duration,
    /// Wait between attempts that could not reach the cluster.
    pub pause: Duration,
    /// Longest single attempt.
    pub attempt: Duration,
}

impl JoinRetry {
    /// Today's values: a 5 s pause, attempts of at most 120 s.
    pub fn new(timeout: Duration) -> JoinRetry {
        JoinRetry {
            timeout,
            pause: Duration::from_secs(5),
            attempt: Duration::from_secs(120),
        }
    }

    /// Whether to try again at `now` after `e`, with the deadline `deadline`: only when the
    /// cluster could not be reached and a pause still leaves time.
    pub fn again(&self, e: &JoinError, now: Instant, deadline: Instant) -> bool {
        e.is_retryable() && now + self.pause < deadline
    }
}

/// What [`join_over_tor`] is doing, for the operator.
#[derive(Debug)]
pub enum JoinStep<'a> {
    /// tor's bootstrap progressed (percent).
    Bootstrap(u8),
    /// Attempt number `n` to be admitted.
    Asking(u32),
    /// The attempt failed with `error`; another follows after `pause`.
    Retrying {
        /// Why the attempt failed.
        error: &'a JoinError,
        /// The wait before the next one.
        pause: Duration,
    },
}

/// `rustbalance join`: start a temporary tor client under `layout`, ask the cluster in
/// `token` to admit `params` (retrying while it cannot be reached), stop tor. `step` hears
/// what happens.
pub async fn join_over_tor(
    layout: &Layout,
    extra_torrc: &[String],
    token: &JoinToken,
    params: &JoinParams,
    retry: &JoinRetry,
    mut step: impl FnMut(JoinStep<'_>),
) -> Result<JoinGrant> {
    create_private_dir(&layout.data_dir)?;
    create_private_dir(&layout.tor_dir())?;
    let torrc = crate::torrc::join_client(layout, std::process::id(), extra_torrc)?;
    write_atomic(&layout.torrc(), torrc.render().as_bytes(), 0o600)?;
    let tor = TorSupervisor::start(layout.tor_spec("tor".into(), Duration::from_secs(10)));
    let result = ask(&tor, layout, token, params, retry, &mut step).await;
    tor.stop().await;
    result
}

/// Wait for tor, then ask until admitted, refused, or out of time.
async fn ask(
    tor: &TorSupervisor,
    layout: &Layout,
    token: &JoinToken,
    params: &JoinParams,
    retry: &JoinRetry,
    step: &mut impl FnMut(JoinStep<'_>),
) -> Result<JoinGrant> {
    let mut last = 255u8;
    tor.wait_running(retry.timeout, |s| {
        if s.bootstrap != last {
            last = s.bootstrap;
            step(JoinStep::Bootstrap(s.bootstrap));
        }
    })
    .await?;
    let socks = socks_port(tor, layout).await?;
    let deadline = Instant::now() + retry.timeout;
    let mut attempt = 1;
    loop {
        step(JoinStep::Asking(attempt));
        let left = deadline.saturating_duration_since(Instant::now());
        match request_join(socks, token, params, left.min(retry.attempt)).await {
            Ok(g) => return Ok(g),
            Err(e) if retry.again(&e, Instant::now(), deadline) => {
                step(JoinStep::Retrying {
                    error: &e,
                    pause: retry.pause,
                });
                tokio::time::sleep(retry.pause).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where the running tor's SOCKS port listens.
async fn socks_port(tor: &TorSupervisor, layout: &Layout) -> Result<SocketAddr> {
    let answer = tor.control().await?.getinfo("net/listeners/socks").await?;
    answer
        .trim()
        .trim_matches('"')
        .parse::<SocketAddr>()
        .map_err(|_| {
            JoinError::NoSocksPort {
                answer: answer.clone(),
                log: layout.tor_log(),
            }
            .into()
        })
}

/// Check the member certificate of a grant against the grant's authority key and what the
/// joiner asked for (`p`): it must be signed by that authority and bind its name, identity
/// and WireGuard key. The grant itself is authenticated by the token, which only holders of
/// the master key can mint.
pub fn check_cert(
    grant: &JoinGrant,
    p: &JoinParams,
) -> std::result::Result<(MemberCert, AuthorityKey), JoinError> {
    let authority =
        AuthorityKey::decode(&grant.authority).map_err(|_| JoinError::MalformedGrant {
            field: "authority key",
        })?;
    let cert = rustbalance_cluster::cert::parse(grant.cert.as_bytes()).map_err(|_| {
        JoinError::MalformedGrant {
            field: "member certificate",
        }
    })?;
    let wg = p.wg_public_key.parse::<rustbalance_mesh::PublicKey>().ok();
    let fits = cert.verify(&authority)
        && cert.name() == p.name
        && cert.identity().to_string() == p.identity
        && cert
            .fields()
            .wireguard
            .is_some_and(|k| Some(k) == wg.map(|w| *w.as_bytes()));
    if !fits {
        return Err(JoinError::CertMismatch);
    }
    Ok((cert, authority))
}

/// Keep what the grant gives a new node (`p`): the cluster secret in `secret_file`, the
/// join generation in the layout's `join-generation`, the member certificate and the
/// authority key (checked first, [`check_cert`]). Returns the generation.
pub fn save_grant(
    layout: &Layout,
    secret_file: &Path,
    grant: &JoinGrant,
    p: &JoinParams,
) -> Result<JoinGeneration> {
    let (cert, authority) = check_cert(grant, p)?;
    let secret = Zeroizing::new(hex::decode(&grant.cluster_secret).map_err(|_| {
        JoinError::MalformedGrant {
            field: "cluster secret",
        }
    })?);
    let generation =
        JoinGeneration::parse(&format!("{} {}", grant.join_generation, grant.join_salt)).ok_or(
            JoinError::MalformedGrant {
                field: "join generation",
            },
        )?;
    write_atomic(secret_file, &secret, 0o600)?;
    save_generation(&layout.join_generation(), &generation)?;
    crate::keystore::identity::write_cert(layout, &cert)?;
    crate::keystore::identity::write_authority(layout, &authority)?;
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::token::JoinKey;
    use rustbalance_hs::OnionAddress;

    fn master() -> OnionAddress {
        OnionAddress::from_public_key([7u8; 32])
    }

    #[test]
    fn only_unreachable_clusters_are_retried_while_time_is_left() {
        let r = JoinRetry::new(Duration::from_secs(60));
        let t = Instant::now();
        let deadline = t + Duration::from_secs(60);
        let unreachable = JoinError::ClusterUnreachable {
            master: master(),
            port: 80,
            reason: "general failure".into(),
        };
        let no_socks = JoinError::SocksUnreachable {
            socks: "127.0.0.1:9".parse().unwrap(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(r.again(&unreachable, t, deadline));
        assert!(r.again(&no_socks, t, deadline));
        assert!(
            !r.again(&unreachable, t + Duration::from_secs(55), deadline),
            "no time left"
        );
        for refusal in [
            JoinError::NotTaken {
                status: "HTTP/1.1 404 Not Found".into(),
                text: String::new(),
            },
            JoinError::Refused {
                status: "HTTP/1.1 403 Forbidden".into(),
                text: "removed".into(),
            },
            JoinError::NoAnswer {
                master: master(),
                secs: 60,
            },
            JoinError::Unauthenticated,
        ] {
            assert!(!r.again(&refusal, t, deadline), "{refusal}");
        }
        let worker = JoinError::TryElsewhere {
            status: "HTTP/1.1 503 Service Unavailable".into(),
            text: "this node does not hold the master key".into(),
        };
        assert!(
            r.again(&worker, t, deadline),
            "a worker answered: ask again"
        );
    }

    /// A SOCKS port that never opens the stream (a stale descriptor, a dead circuit)
    /// is an unreachable cluster, retried; a cluster that takes the request and never
    /// answers is no answer, not retried (the token may be spent).
    #[tokio::test]
    async fn a_stream_never_opened_is_retried_and_a_silent_cluster_is_not() {
        use rustbalance_tor::fake_socks::{FakeSocks, Route};
        let token = JoinKey::derive(b"secret", Some(b"salt"), &JoinGeneration::first(0))
            .mint(master(), 80, unix_now() + 600)
            .unwrap();
        let params = JoinParams {
            name: "node4".into(),
            wg_public_key: rustbalance_mesh::PrivateKey::generate()
                .public_key()
                .to_string(),
            endpoint: "10.0.0.4:51820".parse().unwrap(),
            identity: rustbalance_cluster::NodeIdentity::generate()
                .public()
                .to_string(),
        };
        let t = Duration::from_millis(300);

        /// A loopback listener that takes connections, keeps them open and says nothing.
        async fn mute_listener() -> std::net::SocketAddr {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                let mut kept = Vec::new();
                while let Ok((s, _)) = l.accept().await {
                    kept.push(s);
                }
            });
            addr
        }

        // Takes the TCP connection, never answers the SOCKS greeting.
        let mute_addr = mute_listener().await;
        let e = request_join(mute_addr, &token, &params, t)
            .await
            .unwrap_err();
        assert!(
            matches!(e, JoinError::ClusterUnreachable { .. }) && e.is_retryable(),
            "{e}"
        );

        // The stream opens, the far end reads the request and says nothing.
        let silent_addr = mute_listener().await;
        let socks = FakeSocks::start(move |_, _| Route::To(silent_addr))
            .await
            .unwrap();
        let e = request_join(socks.addr(), &token, &params, t)
            .await
            .unwrap_err();
        assert!(
            matches!(e, JoinError::NoAnswer { .. }) && !e.is_retryable(),
            "{e}"
        );
    }

    #[test]
    fn a_grant_is_saved_in_the_layout_with_its_checked_certificate() {
        use rustbalance_cluster::{Authority, CertFields, CertRole, NodeIdentity};
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        crate::keystore::create_private_dir(&layout.data_dir).unwrap();
        let secret_file = dir.path().join("cluster.secret");
        let g = JoinGeneration {
            n: 4,
            salt: vec![3; 16],
        };
        let authority = Authority::from_seed(&Zeroizing::new([5u8; 32]));
        let wg = rustbalance_mesh::PrivateKey::generate().public_key();
        let identity = NodeIdentity::generate().public();
        let params = JoinParams {
            name: "node4".into(),
            wg_public_key: wg.to_string(),
            endpoint: "10.0.0.4:51820".parse().unwrap(),
            identity: identity.to_string(),
        };
        let certify = |name: &str| {
            authority
                .certify(CertFields {
                    name: name.into(),
                    role: CertRole::Worker,
                    identity,
                    wireguard: Some(*wg.as_bytes()),
                    onion: None,
                    issued: 1,
                    serial: 2,
                })
                .unwrap()
                .encode()
        };
        let mut grant = JoinGrant {
            v: 1,
            cluster_id: "c".into(),
            cluster_secret: hex::encode(b"secret"),
            gossip_port: 9663,
            join_generation: g.n,
            join_salt: hex::encode(&g.salt),
            members: Vec::new(),
            admitted_by: "node1".into(),
            authority: authority.public().encode(),
            cert: certify("node4"),
        };
        assert_eq!(
            save_grant(&layout, &secret_file, &grant, &params).unwrap(),
            g
        );
        assert_eq!(std::fs::read(&secret_file).unwrap(), b"secret");
        let saved = std::fs::read_to_string(layout.join_generation()).unwrap();
        assert_eq!(JoinGeneration::parse(&saved), Some(g));
        let id = crate::keystore::identity::read_cert(&layout)
            .unwrap()
            .unwrap();
        assert_eq!(id.name(), "node4");
        assert_eq!(
            crate::keystore::identity::read_authority(&layout).unwrap(),
            Some(authority.public())
        );
        // Another node's certificate, or one by another authority: refused.
        grant.cert = certify("node5");
        let e = save_grant(&layout, &secret_file, &grant, &params).unwrap_err();
        assert!(e.to_string().contains("does not name this node"), "{e}");
        grant.cert = certify("node4");
        grant.authority = Authority::from_seed(&Zeroizing::new([6u8; 32]))
            .public()
            .encode();
        assert!(save_grant(&layout, &secret_file, &grant, &params).is_err());
        grant.authority = authority.public().encode();
        grant.join_salt = "zz".into();
        let e = save_grant(&layout, &secret_file, &grant, &params)
            .unwrap_err()
            .to_string();
        assert!(e.contains("join generation"), "{e}");
    }
}
