//! tor's control port: reply lines, data blocks, keyword arguments and events.
//!
//! The reply reader is private to the tor crate, so `control_reply` drives a real
//! [`ControlClient`] against a fake control port that sends the input and closes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustbalance_tor::control::{established_intro_relays, parse_args, Circuit};
use rustbalance_tor::ControlClient;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

struct Harness {
    rt: Runtime,
    port: SocketAddr,
    /// What the fake control port sends to the next connection.
    script: Arc<Mutex<Vec<u8>>>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = crate::new_runtime();
        let script = Arc::new(Mutex::new(Vec::new()));
        let port = rt.block_on(fake_port(script.clone()));
        Harness { rt, port, script }
    })
}

async fn fake_port(script: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the fake control port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let bytes = script.lock().map(|b| b.clone()).unwrap_or_default();
            tokio::spawn(async move {
                let _ = s.write_all(&bytes).await;
                let _ = s.shutdown().await;
                // Keep the socket open a moment so the client reads everything.
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    addr
}

/// The input as everything tor says on one control connection: four commands read
/// their replies from it (the last, `GETINFO circuit-status`, into typed circuits), every event is parsed, every line's arguments too.
pub fn control_reply(data: &[u8]) {
    for line in String::from_utf8_lossy(data).lines() {
        let _ = (parse_args(line), Circuit::parse(line));
    }
    let h = harness();
    if let Ok(mut s) = h.script.lock() {
        *s = data.to_vec();
    }
    h.rt.block_on(async {
        let Ok(client) = ControlClient::connect(h.port).await else {
            return;
        };
        client.set_timeout(Duration::from_millis(500));
        let mut events = client.take_events();
        let _ = client.protocol_info().await;
        let _ = client.getinfo("version").await;
        let _ = client.bootstrap_progress().await;
        if let Ok(circuits) = client.circuit_status().await {
            let _ = established_intro_relays(&circuits, "abc");
        }
        if let Some(rx) = events.as_mut() {
            while let Ok(e) = rx.try_recv() {
                let _ = (e.hs_desc(), parse_args(e.text()));
                let _ = e.hs_desc_content().map(|c| c.hsdir_fingerprint());
            }
        }
    });
}
