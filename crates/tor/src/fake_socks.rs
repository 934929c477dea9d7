//! An in-process fake of tor's SOCKS port, for tests of code that connects
//! through tor.
//!
//! [`FakeSocks`] listens on `127.0.0.1:0` and speaks the server side of
//! SOCKS5 as tor does: it accepts "no authentication" or username/password
//! (tor's stream-isolation credentials), then a `CONNECT` by domain name.
//! Every request is recorded as a [`SocksRequest`]; a routing function picks
//! what happens to it ([`Route`]). A client that breaks the protocol is
//! recorded as far as it got and dropped; the fake never panics on input.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake does with one `CONNECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Answer success and relay the stream to this address (like a reached
    /// onion service).
    To(SocketAddr),
    /// Answer success and echo every byte back.
    Echo,
    /// Answer this SOCKS reply code (e.g. `0x04` host unreachable, `0xF2`
    /// introduction failed) and close.
    Refuse(u8),
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    /// The authentication methods the client offered, in order.
    pub methods: Vec<u8>,
    /// The username, if the client authenticated (tor: the isolation key).
    pub user: Option<String>,
    /// The requested host name.
    pub host: String,
    /// The requested port.
    pub port: u16,
}

/// A running fake SOCKS port. Stops when dropped.
pub struct FakeSocks {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SocksRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

type Router = Arc<dyn Fn(&str, u16) -> Route + Send + Sync>;

impl FakeSocks {
    /// Listens on a free loopback port; `route` decides each `CONNECT`.
    pub async fn start(
        route: impl Fn(&str, u16) -> Route + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Router = Arc::new(route);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, route.clone(), log.clone()));
            }
        });
        Ok(Self { addr, seen, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request completed so far, in arrival order.
    pub fn requests(&self) -> Vec<SocksRequest> {
        lock(&self.seen).clone()
    }
}

impl Drop for FakeSocks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<Vec<SocksRequest>>) -> std::sync::MutexGuard<'_, Vec<SocksRequest>> {
    // A poisoned log only means another test thread panicked; the data is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(mut c: TcpStream, route: Router, log: Arc<Mutex<Vec<SocksRequest>>>) {
    let Ok(req) = handshake(&mut c).await else {
        return;
    };
    let decision = route(&req.host, req.port);
    lock(&log).push(req);
    let ok = [5, 0, 0, 1, 127, 0, 0, 1, 0, 0];
    match decision {
        Route::Refuse(code) => {
            let _ = c.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        }
        Route::Echo => {
            if c.write_all(&ok).await.is_ok() {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        }
        Route::To(target) => match TcpStream::connect(target).await {
            Ok(mut up) => {
                if c.write_all(&ok).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
                }
            }
            // tor answers "connection refused" when the service's port is closed.
            Err(_) => {
                let _ = c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
            }
        },
    }
}

/// Greeting, optional username/password, and the `CONNECT` request.
async fn handshake(c: &mut TcpStream) -> std::io::Result<SocksRequest> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut g = [0u8; 2];
    c.read_exact(&mut g).await?;
    if g[0] != 5 {
        return Err(bad("not SOCKS5"));
    }
    let mut methods = vec![0u8; usize::from(g[1])];
    c.read_exact(&mut methods).await?;
    // Like tor: username/password when offered (it carries the isolation key), else none.
    let method = if methods.contains(&2) {
        2
    } else if methods.contains(&0) {
        0
    } else {
        let _ = c.write_all(&[5, 0xFF]).await;
        return Err(bad("no acceptable method"));
    };
    c.write_all(&[5, method]).await?;
    let user = if method == 2 {
        let mut h = [0u8; 2];
        c.read_exact(&mut h).await?;
        let mut u = vec![0u8; usize::from(h[1])];
        c.read_exact(&mut u).await?;
        let mut pl = [0u8; 1];
        c.read_exact(&mut pl).await?;
        let mut p = vec![0u8; usize::from(pl[0])];
        c.read_exact(&mut p).await?;
        c.write_all(&[1, 0]).await?;
        Some(String::from_utf8_lossy(&u).into_owned())
    } else {
        None
    };
    let mut r = [0u8; 5];
    c.read_exact(&mut r).await?;
    if r[..4] != [5, 1, 0, 3] {
        let _ = c.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return Err(bad("not a CONNECT by domain name"));
    }
    let mut name = vec![0u8; usize::from(r[4])];
    c.read_exact(&mut name).await?;
    let mut port = [0u8; 2];
    c.read_exact(&mut port).await?;
    Ok(SocksRequest {
        methods,
        user,
        host: String::from_utf8_lossy(&name).into_owned(),
        port: u16::from_be_bytes(port),
    })
}
