//! The public port's proxy: tor's PROXY v1 line, then (Http mode) the request head from
//! the client and the response head from the target, with their rewriting.
//!
//! The HTTP head parser and rewriter are private to the proxy crate, so `proxy_http`
//! drives a real [`Proxy`] on loopback: one connection per input, the client sending the
//! request part of the input, a fake target answering with the response part.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustbalance_proxy::proxy_protocol::{encode_v1, parse_v1, ProxyAddrs};
use rustbalance_proxy::{Mode, Proxy, ProxyConfig, ProxyHandle, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::time::timeout;

/// `parse_v1` on any line; a parsed address pair encodes and parses back to itself.
pub fn proxy_v1(data: &[u8]) {
    if let Ok(addrs @ ProxyAddrs::Tcp { .. }) = parse_v1(data) {
        let line = encode_v1(&addrs);
        assert_eq!(parse_v1(&line).ok(), Some(addrs), "{line:?}");
    }
}

/// Builds a `proxy_http` input: `flags` (bit 0: through the proxy that expects tor's
/// PROXY line), the request bytes, the target's response bytes.
pub fn http_input(flags: u8, request: &[u8], response: &[u8]) -> Vec<u8> {
    let len = u16::try_from(request.len()).unwrap_or(u16::MAX);
    let mut v = vec![flags];
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&request[..usize::from(len)]);
    v.extend_from_slice(response);
    v
}

struct Harness {
    rt: Runtime,
    /// Plain Http mode, and Http mode behind tor's PROXY line.
    proxies: [ProxyHandle; 2],
    /// What the fake target answers to the next connection.
    response: Arc<Mutex<Vec<u8>>>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = crate::new_runtime();
        let response = Arc::new(Mutex::new(Vec::new()));
        let proxies = rt.block_on(async {
            let target = fake_target(response.clone()).await;
            let start = |expect_proxy_header: bool| {
                let local = SocketAddr::from(([127, 0, 0, 1], 0));
                let mut cfg = ProxyConfig::new(
                    local,
                    Target::Tcp {
                        host: "127.0.0.1".into(),
                        port: target.port(),
                    },
                );
                cfg.mode = Mode::Http;
                cfg.expect_proxy_header = expect_proxy_header;
                cfg.public_host = expect_proxy_header.then(|| "master.onion".into());
                cfg.idle_timeout = Duration::from_secs(1);
                cfg.connect_timeout = Duration::from_secs(1);
                Proxy::start(cfg)
            };
            let plain = start(false).await.expect("the plain proxy starts");
            let behind_tor = start(true).await.expect("the PROXY-line proxy starts");
            [plain, behind_tor]
        });
        Harness {
            rt,
            proxies,
            response,
        }
    })
}

/// A target that reads what arrives first, answers with the current response, closes.
async fn fake_target(response: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the fake target");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = response.lock().map(|r| r.clone()).unwrap_or_default();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = timeout(Duration::from_millis(50), s.read(&mut buf)).await;
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// One request through the Http-mode proxy (see [`http_input`] for the layout).
pub fn proxy_http(data: &[u8]) {
    let [flags, l0, l1, rest @ ..] = data else {
        return;
    };
    let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
    let (request, response) = rest.split_at(len);
    let h = harness();
    if let Ok(mut r) = h.response.lock() {
        *r = response.to_vec();
    }
    let proxy = h.proxies[usize::from(flags & 1)].local_addr();
    h.rt.block_on(async {
        let Ok(mut c) = TcpStream::connect(proxy).await else {
            return;
        };
        let _ = c.write_all(request).await;
        let _ = c.shutdown().await;
        let mut answer = Vec::new();
        let _ = timeout(Duration::from_secs(3), c.read_to_end(&mut answer)).await;
    });
}
