//! One canary probe: through this node's tor's SOCKS port to a peer's instance address,
//! on a circuit of its own, until the peer's proxy answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustbalance_tor::socks::{connect_via, Isolation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::err::{Error, Result};

/// What the probe sends: an HTTP `HEAD` request. An HTTP target answers it; a target of
/// another protocol that speaks first answers anyway. (A target that waits for bytes of
/// its own protocol and stays silent on this one fails the canary: use an HTTP target.)
const REQUEST: &[u8] = b"HEAD / HTTP/1.0\r\n\r\n";

/// Reaches `host:port` (a peer's instance address and the virtual port) through `socks`
/// with a fresh SOCKS user name (so a fresh circuit, never one a client or an earlier
/// probe built) and waits for the first byte of an answer, at most `timeout` in all.
/// Returns how long it took.
pub async fn probe(
    socks: SocketAddr,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let attempt = async {
        let mut s = connect_via(socks, host, port, &Isolation::fresh()).await?;
        s.write_all(REQUEST)
            .await
            .map_err(|source| Error::CanaryIo { source })?;
        let mut first = [0u8; 1];
        let n = s
            .read(&mut first)
            .await
            .map_err(|source| Error::CanaryIo { source })?;
        if n == 0 {
            return Err(Error::CanaryNoAnswer);
        }
        Ok(started.elapsed())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| Error::CanaryTimeout { after: timeout })?
}
