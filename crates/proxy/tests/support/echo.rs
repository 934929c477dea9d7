//! The echo target shared by the proxy's test binaries (included with
//! `#[path]`; cargo does not build files under `tests/support/` on their own).

use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Copies every connection on `l` back to itself, half-close aware.
pub async fn echo_on(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

/// An echo server on a free loopback port.
pub async fn echo_server() -> SocketAddr {
    // Test support: a loopback bind only fails when the machine is out of ports.
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let a = l.local_addr().expect("local_addr of a bound listener");
    tokio::spawn(echo_on(l));
    a
}
