//! Benchmark target: a tiny keep-alive HTTP/1.1 server answering `/64k` with
//! a 64 KiB body and anything else with a 1 KiB body.
//!
//! `bench_target [LISTEN] [THREADS]` (default `127.0.0.1:0`, 1 thread); prints
//! `listening <addr>` once bound.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn response(len: usize) -> Vec<u8> {
    let mut r =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n")
            .into_bytes();
    r.extend((0..len).map(|i| b'a' + (i % 26) as u8));
    r
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .expect("LISTEN is host:port");
    let threads: usize = args
        .next()
        .map_or(1, |t| t.parse().expect("THREADS is a number"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = TcpListener::bind(listen).await?;
        println!("listening {}", l.local_addr()?);
        let (small, large) = (response(1024), response(64 * 1024));
        let (small, large): (&'static [u8], &'static [u8]) = (small.leak(), large.leak());
        loop {
            let (mut s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut len = 0;
                loop {
                    while let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
                        let body = if buf[..end].starts_with(b"GET /64k") {
                            large
                        } else {
                            small
                        };
                        if s.write_all(body).await.is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..len, 0);
                        len -= end + 4;
                    }
                    if len == buf.len() {
                        return;
                    }
                    match s.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
            });
        }
    })
}
