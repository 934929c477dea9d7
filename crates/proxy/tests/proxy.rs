//! The proxy against in-process targets: echo servers, a fake SOCKS5 server
//! standing in for tor, and a fake HTTP onion service.

use rustbalance_proxy::proxy_protocol::{encode_v2, ProxyAddrs};
use rustbalance_proxy::{Mode, Proxy, ProxyConfig, ProxyHandle, ProxyVersion, Target};
use rustbalance_tor::fake_socks::{FakeSocks, Route};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "support/echo.rs"]
mod echo;
#[path = "support/poll.rs"]
mod poll;
use echo::{echo_on, echo_server};
use poll::poll_until;

const ONION: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.onion";
const T: Duration = Duration::from_secs(5);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A port nothing listens on (bound, then released).
async fn dead_port() -> SocketAddr {
    TcpListener::bind(any_port())
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn tcp_cfg(target: SocketAddr) -> ProxyConfig {
    ProxyConfig::new(
        any_port(),
        Target::Tcp {
            host: target.ip().to_string(),
            port: target.port(),
        },
    )
}

async fn start(cfg: ProxyConfig) -> ProxyHandle {
    Proxy::start(cfg).await.unwrap()
}

async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut v))
        .await
        .expect("read timed out")
        .unwrap_or(0);
    v
}

async fn roundtrip(p: &ProxyHandle, msg: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    c.write_all(msg).await.unwrap();
    c.shutdown().await.unwrap();
    read_to_end(&mut c).await
}

#[tokio::test]
async fn tcp_echo_with_half_close() {
    let p = start(tcp_cfg(echo_server().await)).await;
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    c.write_all(b"hello ").await.unwrap();
    let mut buf = [0u8; 6];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello ");
    c.write_all(b"world").await.unwrap();
    c.shutdown().await.unwrap(); // half-close: we can still read
    assert_eq!(read_to_end(&mut c).await, b"world");
    drop(c);
    // The counters are final once the connection is no longer active.
    poll_until("the connection ends", T, || {
        p.stats().snapshot().active == 0
    })
    .await;
    let s = p.stats().snapshot();
    assert_eq!(
        (s.accepted, s.active, s.bytes_to_target, s.bytes_to_client),
        (1, 0, 11, 11)
    );
    assert_eq!(p.health().up, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_integrity() {
    let p = start(tcp_cfg(echo_server().await)).await;
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let c = TcpStream::connect(p.local_addr()).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(data.len());
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(
        got == data,
        "16 MiB came back altered ({} bytes)",
        got.len()
    );
}

#[tokio::test]
async fn dead_target_closes_promptly_and_recovers() {
    let target = dead_port().await;
    let p = start(tcp_cfg(target)).await;
    // "Promptly": `read_to_end` gives up after `T` (5 s), below the 10 s connect timeout,
    // so a proxy that waited for the timeout instead of closing on refusal fails there.
    let t0 = Instant::now();
    assert_eq!(roundtrip(&p, b"x").await, b"");
    println!("closed after {:?}", t0.elapsed());
    assert_eq!(p.stats().snapshot().connect_errors, 1);
    let h = p.health();
    assert_eq!(h.up, Some(false));
    assert!(h
        .last_error
        .unwrap()
        .contains("cannot connect to the target"));

    // The target comes back on the same port: the proxy serves again.
    tokio::spawn(echo_on(TcpListener::bind(target).await.unwrap()));
    assert_eq!(roundtrip(&p, b"back").await, b"back");
    assert_eq!(p.health().up, Some(true));
}

/// A target that answers every connection with its own page naming what it received.
async fn own_pages_target() -> SocketAddr {
    let l = TcpListener::bind(any_port()).await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut v = Vec::new();
                let _ = s.read_to_end(&mut v).await;
                let page = format!("HTTP/1.1 400 Target Says No\r\n\r\ngot {} bytes", v.len());
                let _ = s.write_all(page.as_bytes()).await;
            });
        }
    });
    a
}

/// Issue 14: the proxy's own 400/431/502 pages told RustBalance apart from tor and the
/// target alone. A dead target now closes the stream without a byte (as it does in Tcp
/// mode), and heads the proxy cannot rewrite reach the target untouched, which answers them.
#[tokio::test]
async fn http_mode_has_no_pages_of_its_own() {
    let mut cfg = tcp_cfg(dead_port().await);
    cfg.mode = Mode::Http;
    let p = start(cfg).await;
    let t0 = Instant::now();
    let res = roundtrip(&p, b"GET / HTTP/1.1\r\nHost: m.onion\r\n\r\n").await;
    assert_eq!(
        String::from_utf8_lossy(&res),
        "",
        "a dead target must close, not answer"
    );
    // As in Tcp mode: the close comes from the refusal, not from the 10 s connect timeout.
    println!("closed after {:?}", t0.elapsed());
    assert_eq!(p.stats().snapshot().connect_errors, 1);

    let mut cfg = tcp_cfg(own_pages_target().await);
    cfg.mode = Mode::Http;
    let p = start(cfg).await;
    let bad = b"NOT HTTP AT ALL\r\n\r\n";
    let res = roundtrip(&p, bad).await;
    assert_eq!(
        String::from_utf8_lossy(&res),
        format!("HTTP/1.1 400 Target Says No\r\n\r\ngot {} bytes", bad.len())
    );
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let res = roundtrip(&p, huge.as_bytes()).await;
    assert_eq!(
        String::from_utf8_lossy(&res),
        format!(
            "HTTP/1.1 400 Target Says No\r\n\r\ngot {} bytes",
            huge.len()
        )
    );
    // A head cut short by the client's half-close reaches the target too.
    let cut = b"GET / HTTP/1.1\r\nHost: m";
    let res = roundtrip(&p, cut).await;
    assert_eq!(
        String::from_utf8_lossy(&res),
        format!("HTTP/1.1 400 Target Says No\r\n\r\ngot {} bytes", cut.len())
    );
    assert_eq!(p.stats().snapshot().http_errors, 3);
}

#[tokio::test]
async fn idle_timeout_closes_both_sides() {
    let mut cfg = tcp_cfg(echo_server().await);
    cfg.idle_timeout = Duration::from_millis(300);
    let p = start(cfg).await;

    // Traffic every 100 ms keeps the connection open past the timeout.
    let mut busy = TcpStream::connect(p.local_addr()).await.unwrap();
    let mut t0 = Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy.write_all(b".").await.unwrap();
        let mut b = [0u8; 1];
        busy.read_exact(&mut b).await.unwrap();
        t0 = Instant::now();
    }
    // Then silence: closed after idle (the watchdog checks every idle / 8). The lower bound
    // shows that traffic kept resetting the timer; the upper bound is the timeout firing,
    // which is what this test proves, so it stays, generous (10x idle) for a busy 2-core
    // host, and still below `read_to_end`'s own 5 s limit.
    assert_eq!(read_to_end(&mut busy).await, b"");
    let waited = t0.elapsed();
    println!("closed after {waited:?} of silence (idle timeout 300ms)");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    assert_eq!(p.stats().snapshot().timeouts, 1);
}

#[tokio::test]
async fn connection_limit_rejects_the_excess_at_once() {
    let mut cfg = tcp_cfg(echo_server().await);
    cfg.max_connections = 2;
    let p = start(cfg).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
        c.write_all(b"a").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        open.push(c);
    }
    // "At once": the two open connections stay open, so a third that was queued rather
    // than rejected would make `read_to_end` time out.
    let t0 = Instant::now();
    let mut third = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(read_to_end(&mut third).await, b"");
    println!("rejected after {:?}", t0.elapsed());
    let s = p.stats().snapshot();
    assert_eq!((s.accepted, s.active, s.rejected), (3, 2, 1));
    drop(open.pop());
    poll_until("a slot is free", T, || p.stats().snapshot().active == 1).await;
    assert_eq!(roundtrip(&p, b"ok").await, b"ok");
}

/// A target that records the first `n` bytes it receives, then echoes.
async fn recording_target(n: usize) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let l = TcpListener::bind(any_port()).await.unwrap();
    let a = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut v = vec![0u8; n];
        s.read_exact(&mut v).await.unwrap();
        let _ = tx.send(v);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    (a, rx)
}

#[tokio::test]
async fn tor_proxy_header_is_parsed_and_forwarded_as_v1() {
    let tor_line = b"PROXY TCP6 fc00:dead:beef:4dad::0:29 ::1 65535 42\r\n";
    let forwarded = b"PROXY TCP6 fc00:dead:beef:4dad::29 ::1 65535 42\r\n";
    let (target, got) = recording_target(forwarded.len() + 5).await;
    let mut cfg = tcp_cfg(target);
    cfg.expect_proxy_header = true;
    cfg.send_proxy = Some(ProxyVersion::V1);
    let p = start(cfg).await;
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    // tor's line and the client's first bytes in one segment.
    c.write_all(&[&tor_line[..], b"hello"].concat())
        .await
        .unwrap();
    let got = tokio::time::timeout(T, got).await.unwrap().unwrap();
    assert_eq!(got, [&forwarded[..], b"hello"].concat());
    let conns = p.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].circuit_id, Some(41));
}

#[tokio::test]
async fn tor_proxy_header_forwarded_as_v2_and_bad_lines_counted() {
    let v2 = encode_v2(&ProxyAddrs::tor_circuit(0xdead_beef, 80));
    let (target, got) = recording_target(v2.len() + 2).await;
    let mut cfg = tcp_cfg(target);
    cfg.expect_proxy_header = true;
    cfg.send_proxy = Some(ProxyVersion::V2);
    let p = start(cfg).await;
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    c.write_all(b"PROXY TCP6 fc00:dead:beef:4dad::dead:beef ::1 65535 80\r\n")
        .await
        .unwrap();
    c.write_all(b"hi").await.unwrap();
    assert_eq!(
        tokio::time::timeout(T, got).await.unwrap().unwrap(),
        [&v2[..], b"hi"].concat()
    );

    // No PROXY line (tor not configured for it): the connection is closed.
    assert_eq!(roundtrip(&p, b"GET / HTTP/1.1\r\n\r\n").await, b"");
    assert_eq!(p.stats().snapshot().proxy_header_errors, 1);
}

/// The shared fake tor SOCKS port: `ONION:80` goes to `backend`, anything
/// else gets "host unreachable".
async fn fake_socks(backend: SocketAddr) -> FakeSocks {
    FakeSocks::start(move |host, port| {
        if host == ONION && port == 80 {
            Route::To(backend)
        } else {
            Route::Refuse(4)
        }
    })
    .await
    .unwrap()
}

/// A fake onion web application: returns the request head it got and
/// answers with a redirect and cookies naming its own address.
async fn fake_onion_app() -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind(any_port()).await.unwrap();
    let a = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut v = Vec::new();
                let mut b = [0u8; 1024];
                while !v.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).await.unwrap();
                    assert!(n > 0);
                    v.extend_from_slice(&b[..n]);
                }
                let text = String::from_utf8(v).unwrap();
                let body_len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |n| n.trim().parse().unwrap());
                let have = text.len() - text.find("\r\n\r\n").unwrap() - 4;
                let mut body = vec![0u8; body_len - have];
                s.read_exact(&mut body).await.unwrap();
                tx.send(text).await.unwrap();
                let res = format!(
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: http://{ONION}/login?next=%2F\r\n\
                     Set-Cookie: sid=42; Domain={ONION}; Path=/; HttpOnly\r\nSet-Cookie: x=1; Domain=.{ONION}\r\n\
                     Connection: keep-alive\r\nContent-Length: 5\r\n\r\nmoved"
                );
                s.write_all(res.as_bytes()).await.unwrap();
                // A compliant server closes after answering `Connection: close`.
            });
        }
    });
    (a, rx)
}

#[tokio::test]
async fn http_mode_rewrites_through_socks() {
    let (app, mut heads) = fake_onion_app().await;
    let fake = fake_socks(app).await;
    let socks = fake.addr();
    let mut cfg = ProxyConfig::new(
        any_port(),
        Target::Onion {
            address: ONION.into(),
            port: 80,
            socks,
        },
    );
    cfg.mode = Mode::Http;
    cfg.public_host = Some("master.onion".into());
    let p = start(cfg).await;

    let t0 = Instant::now();
    let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
    c.write_all(
        b"POST /form HTTP/1.1\r\nHost: master.onion\r\nOrigin: http://master.onion\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await
    .unwrap();
    let res = String::from_utf8(read_to_end(&mut c).await).unwrap();
    println!("answered after {:?}", t0.elapsed());
    assert_eq!(
        res,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: http://master.onion/login?next=%2F\r\n\
         Set-Cookie: sid=42; Domain=master.onion; Path=/; HttpOnly\r\nSet-Cookie: x=1; Domain=.master.onion\r\n\
         Content-Length: 5\r\nConnection: close\r\n\r\nmoved"
    );
    let head = heads.recv().await.unwrap();
    assert_eq!(
        head,
        format!(
            "POST /form HTTP/1.1\r\nHost: {ONION}\r\nOrigin: http://{ONION}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
        )
    );
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].host.as_str(), seen[0].port), (ONION, 80));
    assert_eq!(seen[0].methods, [0], "SOCKS5, one method, no auth");
    assert_eq!(p.health().up, Some(true));
}

#[tokio::test]
async fn http_mode_socks_failure_closes_without_a_page() {
    let fake = fake_socks(dead_port().await).await;
    let socks = fake.addr();
    let other = ONION.replace('b', "c");
    let mut cfg = ProxyConfig::new(
        any_port(),
        Target::Onion {
            address: other,
            port: 80,
            socks,
        },
    );
    cfg.mode = Mode::Http;
    let p = start(cfg).await;
    let res = roundtrip(&p, b"GET / HTTP/1.1\r\nHost: m.onion\r\n\r\n").await;
    assert_eq!(res, b"");
    let err = p.health().last_error.unwrap();
    assert!(
        err.contains("host unreachable") && err.contains("cccccc….onion"),
        "{err}"
    );
}

#[tokio::test]
async fn graceful_drain_then_close() {
    let p = start(tcp_cfg(echo_server().await)).await;
    let addr = p.local_addr();
    // One connection finishes during the drain, one never does.
    let mut finishing = TcpStream::connect(addr).await.unwrap();
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    for c in [&mut finishing, &mut stuck] {
        c.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
    }
    let t0 = Instant::now();
    let shutdown = tokio::spawn(p.shutdown(Duration::from_millis(400)));
    // A fixed wait on purpose: the only outside sign of a closed listener is a refused
    // connection, and a probe that came before the close would be accepted and counted in
    // the shutdown report checked below.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
    // Still served while draining.
    finishing.write_all(b"y").await.unwrap();
    let mut b = [0u8; 1];
    finishing.read_exact(&mut b).await.unwrap();
    finishing.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut finishing).await, b"");
    let report = shutdown.await.unwrap();
    // The drain waits its 400 ms for the stuck connection, then closes it (within a 1 s
    // grace): both bounds are what this test proves; the upper one is generous.
    let took = t0.elapsed();
    println!("shutdown with a stuck connection took {took:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!((report.in_flight, report.drained, report.closed), (2, 1, 1));
    assert_eq!(
        read_to_end(&mut stuck).await,
        b"",
        "the stuck connection is closed"
    );

    // Nothing open: the drain returns at once.
    let p = start(tcp_cfg(echo_server().await)).await;
    let t0 = Instant::now();
    let r = p.shutdown(Duration::from_secs(10)).await;
    assert_eq!((r.in_flight, r.closed), (0, 0));
    // Proven here: the shutdown does not sit out its 10 s drain (generous bound: half).
    let took = t0.elapsed();
    println!("shutdown with nothing open took {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn active_health_probe_follows_the_target() {
    let l = TcpListener::bind(any_port()).await.unwrap();
    let target = l.local_addr().unwrap();
    let mut cfg = tcp_cfg(target);
    cfg.health_check_interval = Some(Duration::from_millis(50));
    let p = start(cfg).await;
    poll_until("a probe result", T, || p.health().source == Some("probe")).await;
    let h = p.health();
    assert_eq!((h.up, h.source), (Some(true), Some("probe")));
    drop(l);
    poll_until("a probe sees the target gone", T, || {
        p.health().up == Some(false)
    })
    .await;
    assert_eq!(p.health().source, Some("probe"));
}

#[tokio::test]
async fn invalid_configurations_are_refused_with_a_reason() {
    let socks: SocketAddr = "127.0.0.1:9050".parse().unwrap();
    let mut c = tcp_cfg("127.0.0.1:1".parse().unwrap());
    c.max_connections = 0;
    assert!(Proxy::start(c)
        .await
        .err()
        .unwrap()
        .to_string()
        .contains("max_connections"));
    let c = ProxyConfig::new(
        any_port(),
        Target::Onion {
            address: "short.onion".into(),
            port: 80,
            socks,
        },
    );
    assert!(Proxy::start(c)
        .await
        .err()
        .unwrap()
        .to_string()
        .contains("v3 address"));
    let busy = TcpListener::bind(any_port()).await.unwrap();
    let mut c = tcp_cfg("127.0.0.1:1".parse().unwrap());
    c.listen = busy.local_addr().unwrap();
    assert!(Proxy::start(c)
        .await
        .err()
        .unwrap()
        .to_string()
        .contains("cannot listen"));
}
