//! Benchmark target of `bench/proxy.sh`: the lab's demo target in its
//! benchmark mode (`DemoTarget::bench`: keep-alive HTTP/1.1, `/64k` → a
//! 64 KiB body, anything else → 1 KiB).
//!
//! `bench_target [LISTEN] [THREADS]` (default `127.0.0.1:0`, 1 thread); prints
//! `listening <addr>` once bound.

use rustbalance_lab::DemoTarget;
use std::net::SocketAddr;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let threads: usize = args.next().map_or(Ok(1), |t| t.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let target = DemoTarget::bench(listen).await?;
        println!("listening {}", target.addr());
        target.run_forever().await;
        Ok(())
    })
}
