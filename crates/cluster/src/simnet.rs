//! An in-process datagram network for tests and simulations (the fake of
//! [`crate::transport::Network`]).
//!
//! Nodes bind logical socket addresses; datagrams travel over channels. A test can cut
//! links, partition groups of addresses, heal everything, inject a delay, record every
//! datagram, inject arbitrary ones (to replay or tamper) and break a socket. Datagrams above the UDP
//! limit are dropped like a real network would.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::transport::{DatagramSocket, Network, MAX_DATAGRAM};

type Mailbox = mpsc::Sender<(Vec<u8>, SocketAddr)>;

/// Datagrams queued per socket before new ones are dropped, like a UDP receive buffer.
/// Without this bound an overloaded simulation queues without limit and its latency
/// grows until every node looks dead.
const MAILBOX: usize = 512;

/// One datagram seen by the recorder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// Per-address traffic figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Dropped because of a cut link, an unbound destination, the size limit or a full
    /// receive queue.
    pub dropped: u64,
}

#[derive(Default)]
struct Inner {
    mailboxes: HashMap<SocketAddr, (u64, Mailbox)>,
    next_socket_id: u64,
    cut: HashSet<(SocketAddr, SocketAddr)>,
    delay: Duration,
    traffic: HashMap<SocketAddr, Traffic>,
    recording: Option<Vec<Recorded>>,
}

/// The in-process network. Clones share the same network.
#[derive(Clone, Default)]
pub struct SimNet {
    inner: Arc<Mutex<Inner>>,
}

fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl SimNet {
    pub fn new() -> SimNet {
        SimNet::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock only happens in a failing test; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the link between `a` and `b` (both directions).
    pub fn cut(&self, a: SocketAddr, b: SocketAddr) {
        self.lock().cut.insert(pair(a, b));
    }

    /// Cuts every link between a member of `left` and a member of `right`.
    pub fn partition(&self, left: &[SocketAddr], right: &[SocketAddr]) {
        let mut inner = self.lock();
        for &a in left {
            for &b in right {
                inner.cut.insert(pair(a, b));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Delays every datagram by `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Starts (or restarts) recording every datagram sent.
    pub fn record(&self) {
        self.lock().recording = Some(Vec::new());
    }

    /// The datagrams recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.lock().recording.clone().unwrap_or_default()
    }

    /// Breaks the socket bound at `addr`: its next receive fails, as a real socket's can
    /// (its owner then sees an error; datagrams to `addr` are dropped).
    pub fn fail(&self, addr: SocketAddr) {
        self.lock().mailboxes.remove(&addr);
    }

    /// Delivers `bytes` to `to` as if sent by `from` (links and limits do not apply).
    pub fn inject(&self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if let Some((_, tx)) = self.lock().mailboxes.get(&to) {
            let _ = tx.try_send((bytes, from));
        }
    }

    /// Traffic sent by `addr` since start (or the last [`SimNet::reset_traffic`]).
    pub fn traffic(&self, addr: SocketAddr) -> Traffic {
        self.lock().traffic.get(&addr).copied().unwrap_or_default()
    }

    /// Zeroes every traffic counter.
    pub fn reset_traffic(&self) {
        self.lock().traffic.clear();
    }

    fn send(&self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let mut inner = self.lock();
        let delay = inner.delay;
        let blocked = inner.cut.contains(&pair(from, to)) || bytes.len() > MAX_DATAGRAM;
        let mailbox = inner.mailboxes.get(&to).map(|(_, tx)| tx.clone());
        if let Some(rec) = &mut inner.recording {
            rec.push(Recorded {
                from,
                to,
                bytes: bytes.to_vec(),
            });
        }
        let t = inner.traffic.entry(from).or_default();
        t.datagrams_sent += 1;
        t.bytes_sent += bytes.len() as u64;
        let Some(tx) = mailbox.filter(|_| !blocked) else {
            t.dropped += 1;
            return;
        };
        let msg = (bytes.to_vec(), from);
        if delay.is_zero() {
            if tx.try_send(msg).is_err() {
                t.dropped += 1;
            }
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.try_send(msg);
            });
        }
    }
}

#[async_trait]
impl Network for SimNet {
    async fn bind(&self, mut addr: SocketAddr) -> io::Result<Box<dyn DatagramSocket>> {
        let mut inner = self.lock();
        if addr.port() == 0 {
            let port = (10_000..=u16::MAX)
                .find(|&p| {
                    let mut a = addr;
                    a.set_port(p);
                    !inner.mailboxes.contains_key(&a)
                })
                .ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free port"))?;
            addr.set_port(port);
        }
        if inner.mailboxes.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound"),
            ));
        }
        let (tx, rx) = mpsc::channel(MAILBOX);
        let id = inner.next_socket_id;
        inner.next_socket_id += 1;
        inner.mailboxes.insert(addr, (id, tx));
        Ok(Box::new(SimSocket {
            net: self.clone(),
            addr,
            id,
            rx,
        }))
    }
}

struct SimSocket {
    net: SimNet,
    addr: SocketAddr,
    id: u64,
    rx: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
}

#[async_trait]
impl DatagramSocket for SimSocket {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.net.send(self.addr, to, datagram);
        Ok(())
    }

    async fn recv_from(&mut self) -> io::Result<(Vec<u8>, SocketAddr)> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "simnet closed"))
    }
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        let mut inner = self.net.lock();
        if inner
            .mailboxes
            .get(&self.addr)
            .is_some_and(|(id, _)| *id == self.id)
        {
            inner.mailboxes.remove(&self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn links_can_be_cut_and_healed() {
        let net = SimNet::new();
        let a = net.bind(addr("10.0.0.1:0")).await.unwrap();
        let mut b = net.bind(addr("10.0.0.2:0")).await.unwrap();
        assert!(net.bind(b.local_addr()).await.is_err(), "already bound");

        a.send_to(b"one", b.local_addr()).await.unwrap();
        assert_eq!(
            b.recv_from().await.unwrap(),
            (b"one".to_vec(), a.local_addr())
        );

        net.cut(a.local_addr(), b.local_addr());
        a.send_to(b"lost", b.local_addr()).await.unwrap();
        net.heal();
        a.send_to(b"two", b.local_addr()).await.unwrap();
        assert_eq!(b.recv_from().await.unwrap().0, b"two");
        assert_eq!(net.traffic(a.local_addr()).dropped, 1);

        let b_addr = b.local_addr();
        drop(b);
        assert!(net.bind(b_addr).await.is_ok(), "released on drop");
    }
}
