//! Benchmark proxy: `rustbalance-proxy` in Tcp mode with default limits.
//!
//! `bench_proxy TARGET [THREADS] [LISTEN] [BUFFER]` (default 2 worker threads,
//! `127.0.0.1:0`, the library's default buffer size); prints `listening <addr>` once bound, and the counters on
//! stderr when it gets SIGTERM or SIGINT.

use rustbalance_proxy::{Proxy, ProxyConfig, Target};
use std::net::SocketAddr;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target: SocketAddr = args
        .next()
        .ok_or("usage: bench_proxy TARGET [THREADS] [LISTEN] [BUFFER]")?
        .parse()?;
    let threads: usize = args.next().map_or(Ok(2), |t| t.parse())?;
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let buffer: Option<usize> = args.next().map(|b| b.parse()).transpose()?;
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let mut cfg = ProxyConfig::new(
            listen,
            Target::Tcp {
                host: target.ip().to_string(),
                port: target.port(),
            },
        );
        if let Some(b) = buffer {
            cfg.buffer_size = b;
        }
        let p = Proxy::start(cfg).await?;
        println!("listening {}", p.local_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let stats = p.stats();
        let report = p.shutdown(Duration::from_secs(1)).await;
        eprintln!("{:?}\n{report:?}", stats.snapshot());
        Ok(())
    })
}
