//! Slow clients and one circuit opening many streams (issue 14): a client can hold a
//! connection slot only for `head_timeout` before its head is in, and one tor circuit only
//! `max_streams_per_circuit` slots, so the global `max_connections` stays for everyone else.

use rustbalance_proxy::proxy_protocol::{encode_v1, ProxyAddrs};
use rustbalance_proxy::{Mode, Proxy, ProxyConfig, Target};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/echo.rs"]
mod echo;
#[path = "support/poll.rs"]
mod poll;
use echo::echo_server;
use poll::poll_until;

const T: Duration = Duration::from_secs(10);

fn cfg(target: SocketAddr) -> ProxyConfig {
    ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Target::Tcp {
            host: target.ip().to_string(),
            port: target.port(),
        },
    )
}

/// The line tor writes first with `HiddenServiceExportCircuitID haproxy`.
fn tor_line(circuit: u32) -> Vec<u8> {
    encode_v1(&ProxyAddrs::tor_circuit(circuit, 80))
}

/// One client on its own circuit: says hello, expects it back.
async fn served(p: SocketAddr, circuit: u32) -> bool {
    let go = async {
        let mut c = TcpStream::connect(p).await?;
        c.write_all(&[tor_line(circuit), b"hello".to_vec()].concat())
            .await?;
        c.shutdown().await?;
        let mut v = Vec::new();
        c.read_to_end(&mut v).await?;
        std::io::Result::Ok(v == b"hello")
    };
    matches!(tokio::time::timeout(T, go).await, Ok(Ok(true)))
}

/// 1,000 connections on one circuit that send tor's line and then nothing, against a
/// proxy that takes 600 connections in all: with the per-circuit cap (the default, 128)
/// the circuit gets 128 slots and every other client is served; without it (0) the slow
/// circuit fills every slot and the others are turned away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_streams_on_one_circuit_do_not_starve_the_others() {
    for cap in [rustbalance_proxy::DEFAULT_MAX_STREAMS_PER_CIRCUIT, 0] {
        let mut c = cfg(echo_server().await);
        c.expect_proxy_header = true;
        c.max_connections = 600;
        c.max_streams_per_circuit = cap;
        let p = Proxy::start(c).await.unwrap();
        let addr = p.local_addr();
        let mut slow = Vec::new();
        for _ in 0..1000 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&tor_line(7)).await.unwrap();
            slow.push(s);
        }
        let stats = p.stats();
        poll_until("the proxy saw every slow connection", T * 3, || {
            let s = stats.snapshot();
            s.accepted == 1000 && s.circuit_rejected + s.rejected + s.active == 1000
        })
        .await;
        let mut ok = 0;
        for i in 0..50 {
            ok += usize::from(served(addr, 100 + i).await);
        }
        let s = stats.snapshot();
        println!(
            "per-circuit cap {cap}: others served {ok}/50; slow circuit: {} open, {} closed by the circuit cap, {} by max_connections",
            s.active, s.circuit_rejected, s.rejected
        );
        if cap > 0 {
            assert_eq!(ok, 50, "other clients must be served");
            assert_eq!(s.circuit_rejected, 1000 - cap as u64);
            assert_eq!(
                p.connections()
                    .iter()
                    .filter(|c| c.circuit_id == Some(7))
                    .count(),
                cap
            );
        } else {
            assert_eq!(ok, 0, "without the cap the slow circuit takes every slot");
        }
        drop(slow);
    }
}

/// A client that starts a request head and stops is closed at `head_timeout` (Http mode),
/// long before `idle_timeout`.
#[tokio::test]
async fn a_slow_request_head_is_closed_at_the_head_timeout() {
    let mut c = cfg(echo_server().await);
    c.mode = Mode::Http;
    c.head_timeout = Duration::from_millis(200);
    assert_eq!(c.idle_timeout, Duration::from_secs(300));
    let p = Proxy::start(c).await.unwrap();
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    s.write_all(b"GET / HTT").await.unwrap();
    let mut v = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut v))
        .await
        .expect("a slow head held its slot past the head timeout")
        .unwrap();
    assert!(v.is_empty());
    assert_eq!(p.stats().snapshot().timeouts, 1);
}

/// tor's PROXY line must come within `head_timeout` too.
#[tokio::test]
async fn a_missing_proxy_line_is_closed_at_the_head_timeout() {
    let mut c = cfg(echo_server().await);
    c.expect_proxy_header = true;
    c.head_timeout = Duration::from_millis(200);
    let p = Proxy::start(c).await.unwrap();
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    s.write_all(b"PROXY TCP6 ").await.unwrap();
    let mut v = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut v))
        .await
        .expect("a stalled PROXY line held its slot past the head timeout")
        .unwrap();
    assert!(v.is_empty());
    assert_eq!(p.stats().snapshot().proxy_header_errors, 1);
}
