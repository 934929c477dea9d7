//! `rbmesh-node`: bring up one mesh node and serve or probe over the overlay.
//!
//! A test and diagnostic helper (the integration test runs two of them in two network
//! namespaces); the daemon uses the library directly. The private key is read from a 0600
//! file, never from the command line. Output is one JSON object per line on stdout.
//!
//! ```text
//! rbmesh-node --ifname NAME --key-file PATH --port UDP_PORT --cluster ID
//!             [--backend auto|kernel|userspace] [--peer PUBKEY@IP:PORT]...
//!             serve                          # UDP echo + TCP byte sink on [overlay]:P
//!                                            # until stdin closes
//!           | probe --target [ADDR]:P [--bytes N]  # first packet / handshake / RTT /
//!                                                  # TCP throughput, then exit
//!           | churn [--rounds N]             # bring the mesh up and down N times while
//!                                            # other threads open and close fds; report
//!                                            # the rounds in which the UDP port was bound
//! ```

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustbalance_mesh::{BackendChoice, Mesh, MeshConfig, MeshPeer, PrivateKey};
use serde_json::json;

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    ifname: String,
    key_file: PathBuf,
    port: u16,
    cluster: String,
    backend: BackendChoice,
    peers: Vec<MeshPeer>,
    mode: String,
    target: Option<SocketAddr>,
    bytes: u64,
    rounds: u32,
}

fn parse_args() -> Res<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        ifname: String::new(),
        key_file: PathBuf::new(),
        port: 0,
        cluster: String::new(),
        backend: BackendChoice::Auto,
        peers: Vec::new(),
        mode: String::new(),
        target: None,
        bytes: 50 * 1024 * 1024,
        rounds: 20,
    };
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--ifname" => a.ifname = val()?,
            "--key-file" => a.key_file = val()?.into(),
            "--port" => a.port = val()?.parse()?,
            "--cluster" => a.cluster = val()?,
            "--backend" => a.backend = val()?.parse()?,
            "--peer" => {
                let v = val()?;
                let (key, ep) = v.split_once('@').ok_or("--peer wants PUBKEY@IP:PORT")?;
                a.peers.push(MeshPeer {
                    public_key: key.parse()?,
                    endpoint: ep.parse()?,
                });
            }
            "--target" => a.target = Some(val()?.parse()?),
            "--bytes" => a.bytes = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse()?,
            "serve" | "probe" | "churn" => a.mode = arg,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(a)
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    if let Some(code) = rustbalance_mesh::device_process::main_if_requested() {
        return code;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rbmesh-node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<()> {
    let a = parse_args()?;
    if a.mode == "churn" {
        return churn(&a);
    }
    let key = PrivateKey::load(&a.key_file)?;
    let mut cfg = MeshConfig::new(&a.ifname, &a.cluster, key, a.port, a.peers.clone());
    cfg.backend = a.backend;
    let started = Instant::now();
    let mesh = Mesh::up(cfg)?;
    emit(json!({
        "event": "up",
        "backend": mesh.backend_kind(),
        "ifname": mesh.interface(),
        "overlay": mesh.overlay_addr(),
        "public_key": mesh.public_key(),
        "up_ms": started.elapsed().as_secs_f64() * 1e3,
    }));
    let mut mesh = mesh;
    let outcome = match a.mode.as_str() {
        "serve" => serve(&mesh),
        "probe" => probe(&mut mesh, &a),
        _ => Err("say `serve` or `probe`".into()),
    };
    emit(json!({ "event": "status", "peers": mesh.peers_status()? }));
    mesh.down()?;
    emit(json!({ "event": "down" }));
    outcome
}

fn serve(mesh: &Mesh) -> Res<()> {
    let tcp = TcpListener::bind(SocketAddrV6::new(mesh.overlay_addr(), 0, 0, 0))?;
    let port = tcp.local_addr()?.port();
    let udp = UdpSocket::bind(SocketAddrV6::new(mesh.overlay_addr(), port, 0, 0))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            std::thread::spawn(move || sink(conn));
        }
    });
    emit(json!({ "event": "ready", "port": port }));
    // Run until the parent closes our stdin.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    Ok(())
}

/// Count bytes until EOF, answer with the count.
fn sink(mut conn: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let _ = conn.write_all(&total.to_be_bytes());
}

/// Runs the four measurements against `--target` and emits them as one `result` event.
fn probe(mesh: &mut Mesh, a: &Args) -> Res<()> {
    let target = a.target.ok_or("probe needs --target")?;
    let udp = UdpSocket::bind(SocketAddrV6::new(mesh.overlay_addr(), 0, 0, 0))?;
    udp.set_read_timeout(Some(Duration::from_millis(100)))?;

    let (first_packet, handshake) = first_contact(mesh, &udp, target)?;
    let handshake_ms = handshake.map(|d| d.as_secs_f64() * 1e3);
    let rtt_median = rtt_median_ms(&udp, target)?;
    let secs = tcp_throughput(target, a.bytes)?;
    let (blocked, rejoin) = peer_removal(mesh, &udp, target, &a.peers)?;

    emit(json!({
        "event": "result",
        "removed_peer_blocked": blocked,
        "rejoin_ms": rejoin.as_secs_f64() * 1e3,
        "first_packet_ms": first_packet.as_secs_f64() * 1e3,
        "handshake_ms": handshake_ms,
        "rtt_median_ms": rtt_median,
        "tcp_bytes": a.bytes,
        "tcp_secs": secs,
        "tcp_mbit_s": a.bytes as f64 * 8.0 / secs / 1e6,
    }));
    Ok(())
}

/// 1. First datagram: includes the WireGuard handshake (initiation + response) + one RTT.
///    Meanwhile another thread polls the peer status to see when the handshake completes.
///    Returns the time to the first echo and, if seen, to the completed handshake.
fn first_contact(
    mesh: &Mesh,
    udp: &UdpSocket,
    target: SocketAddr,
) -> Res<(Duration, Option<Duration>)> {
    let mut buf = [0u8; 64];
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while t0.elapsed() < Duration::from_secs(20) {
                let done = mesh
                    .peers_status()
                    .map(|ps| ps.iter().any(|p| p.last_handshake.is_some()))
                    .unwrap_or(false);
                if done {
                    return Some(t0.elapsed());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            None
        });
        let first = loop {
            udp.send_to(b"ping", target)?;
            if let Ok((n, _)) = udp.recv_from(&mut buf) {
                if &buf[..n] == b"ping" {
                    break t0.elapsed();
                }
            }
            if t0.elapsed() > Duration::from_secs(20) {
                return Err(format!("no answer from {target} over the overlay in 20 s").into());
            }
        };
        Ok((first, watcher.join().ok().flatten()))
    })
}

/// 2. RTT with an established session: the median of 20 echoes, in milliseconds.
fn rtt_median_ms(udp: &UdpSocket, target: SocketAddr) -> Res<Option<f64>> {
    let mut buf = [0u8; 64];
    let mut rtts = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        udp.send_to(b"rtt", target)?;
        if udp.recv_from(&mut buf).is_ok() {
            rtts.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    rtts.sort_by(f64::total_cmp);
    Ok(rtts.get(rtts.len() / 2).copied())
}

/// 3. TCP throughput: write `bytes`, the sink confirms the count. Returns the seconds taken.
fn tcp_throughput(target: SocketAddr, bytes: u64) -> Res<f64> {
    let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(10))?;
    let chunk = vec![0x5au8; 64 * 1024];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        conn.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    conn.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    conn.read_exact(&mut count)?;
    let secs = t.elapsed().as_secs_f64();
    let received = u64::from_be_bytes(count);
    if received != bytes {
        return Err(format!("sink got {received} bytes, sent {bytes}").into());
    }
    Ok(secs)
}

/// 4. Peer management on the live interface: without the peer nothing gets through;
///    with it back (set_peers), traffic resumes after a new handshake. Returns whether
///    traffic was blocked and how long the rejoin took.
fn peer_removal(
    mesh: &mut Mesh,
    udp: &UdpSocket,
    target: SocketAddr,
    peers: &[MeshPeer],
) -> Res<(bool, Duration)> {
    let mut buf = [0u8; 64];
    let peer_key = peers.first().ok_or("probe needs --peer")?.public_key;
    if !mesh.remove_peer(&peer_key)? {
        return Err("the peer was not configured".into());
    }
    let _ = udp.send_to(b"gone", target);
    let mut blocked = true;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        if udp
            .recv_from(&mut buf)
            .is_ok_and(|(n, _)| &buf[..n] == b"gone")
        {
            blocked = false;
        }
    }
    if !blocked {
        return Err("traffic still flowed after remove_peer".into());
    }
    mesh.set_peers(peers.to_vec())?;
    let t = Instant::now();
    let rejoin = loop {
        udp.send_to(b"back", target)?;
        if udp
            .recv_from(&mut buf)
            .is_ok_and(|(n, _)| &buf[..n] == b"back")
        {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(10) {
            return Err("no traffic after set_peers re-added the peer".into());
        }
    };
    Ok((blocked, rejoin))
}

/// Bring the mesh up and down `a.rounds` times while two threads open and close file
/// descriptors, as a busy daemon's other threads do. A device that comes up broken (it
/// re-binds its UDP sockets when configured, and defguard_boringtun 0.7.1 can panic doing
/// that when fd numbers are reused underneath it) must be caught by `Mesh::up`, never
/// handed out. Each round checks, apart from the mesh's own check, that the UDP port is
/// taken. Emits one `churn` event.
fn churn(a: &Args) -> Res<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let (mut listening, mut errors) = (0u32, Vec::new());
    std::thread::scope(|s| -> Res<()> {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let held: Vec<_> = (0..4)
                        .filter_map(|_| std::fs::File::open("/dev/null").ok())
                        .collect();
                    drop(held);
                    std::thread::yield_now();
                }
            });
        }
        let result = (|| -> Res<()> {
            for _ in 0..a.rounds {
                let key = PrivateKey::load(&a.key_file)?;
                let mut cfg = MeshConfig::new(&a.ifname, &a.cluster, key, a.port, a.peers.clone());
                cfg.backend = a.backend;
                match Mesh::up(cfg) {
                    Ok(mesh) => {
                        // boringtun binds with SO_REUSEADDR; a plain bind is refused while it
                        // holds the port.
                        if UdpSocket::bind(("0.0.0.0", a.port)).is_err() {
                            listening += 1;
                        }
                        mesh.down()?;
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    emit(json!({ "event": "churn", "rounds": a.rounds, "listening": listening, "errors": errors }));
    Ok(())
}
