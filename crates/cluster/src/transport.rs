//! The gossip transport: datagrams in, authenticated chitchat messages out.
//!
//! Two layers, each behind a trait:
//!
//! * [`Network`] / [`DatagramSocket`] carry raw datagrams. [`UdpNetwork`] is the real
//!   thing; [`crate::simnet::SimNet`] is the in-process fake whose links tests can cut.
//! * [`AuthTransport`] implements chitchat's [`Transport`] on top of any [`Network`],
//!   sealing every outgoing message and opening every incoming datagram with
//!   [`crate::auth`], then checking its payload with [`crate::validator`] before chitchat
//!   decodes it. Rejected datagrams are dropped and counted, by reason, in
//!   [`TransportCounters`].

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tracing::{debug, error};

use crate::auth::{MacKey, Opener, Rejection, Sealer};
use crate::election::ClockOffsets;
use crate::validator::{Dropped, Validator, Violation};

/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// A datagram network (the boundary the fake replaces).
#[async_trait]
pub trait Network: Send + Sync + 'static {
    /// Binds a socket; port 0 picks a free one.
    async fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn DatagramSocket>>;
}

/// One bound datagram socket.
#[async_trait]
pub trait DatagramSocket: Send + Sync + 'static {
    fn local_addr(&self) -> SocketAddr;
    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()>;
    /// Must be cancel-safe: chitchat drops this future when its gossip timer fires.
    async fn recv_from(&mut self) -> io::Result<(Vec<u8>, SocketAddr)>;
}

/// Real UDP sockets.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpNetwork;

struct UdpDatagramSocket {
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
    buf: Box<[u8]>,
}

#[async_trait]
impl Network for UdpNetwork {
    async fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn DatagramSocket>> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        Ok(Box::new(UdpDatagramSocket {
            socket,
            local,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
        }))
    }
}

#[async_trait]
impl DatagramSocket for UdpDatagramSocket {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(datagram, to).await.map(|_| ())
    }

    async fn recv_from(&mut self) -> io::Result<(Vec<u8>, SocketAddr)> {
        loop {
            match self.socket.recv_from(&mut self.buf).await {
                Ok((n, from)) => return Ok((self.buf[..n].to_vec(), from)),
                // ICMP errors from earlier sends surface here; they are not fatal.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Counters of one node's gossip transport (monotonic since start). Byte counts are whole
/// datagrams as sent on the socket (authentication tag and header included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TransportCounters {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub send_errors: u64,
    pub datagrams_accepted: u64,
    pub bytes_received: u64,
    pub dropped_malformed: u64,
    pub dropped_bad_mac: u64,
    pub dropped_stale: u64,
    pub dropped_replayed: u64,
    /// A digest that would take chitchat past [`crate::node_bound`]'s limits.
    pub dropped_node_bound: u64,
    /// Over 64 KiB on the wire or once inflated ([`crate::auth::MAX_MESSAGE`]).
    pub dropped_oversize: u64,
    /// A delta inflating past [`crate::validator::MAX_INFLATED`].
    pub dropped_overcompressed: u64,
    /// A node delta whose max version is below one of its keys (trips chitchat's assert).
    pub dropped_bad_max_version: u64,
    /// A node delta for this node itself.
    pub dropped_own_node: u64,
    /// This node's clock minus the cluster's, in ms, from the timestamps of authenticated
    /// datagrams sent from the gossip addresses of the members in the last view read
    /// ([`crate::election::ClockOffsets`]); `None` until one of them is heard.
    pub clock_offset_ms: Option<i64>,
    /// Signed gossip ([`crate::validator::SignatureCheck`]), counted per node delta or
    /// value removed from an otherwise accepted datagram: a node delta without a
    /// certificate.
    pub dropped_no_cert: u64,
    /// A node delta whose certificate is forged, names another node, or is unreadable.
    pub dropped_bad_cert: u64,
    /// A node delta whose certificate is revoked.
    pub dropped_revoked: u64,
    /// A value of a certified node that is not signed (or a tombstone, max-version or GC
    /// field that only unsigned nodes use).
    pub dropped_unsigned: u64,
    /// A value whose signature does not verify (forged, or replayed under another version).
    pub dropped_bad_signature: u64,
}

impl TransportCounters {
    /// All dropped datagrams.
    pub fn dropped(&self) -> u64 {
        self.dropped_malformed
            + self.dropped_bad_mac
            + self.dropped_stale
            + self.dropped_replayed
            + self.dropped_node_bound
            + self.dropped_oversize
            + self.dropped_overcompressed
            + self.dropped_bad_max_version
            + self.dropped_own_node
    }

    /// Node deltas and values removed by the signature check (not in [`Self::dropped`]:
    /// the rest of their datagram was accepted).
    pub fn dropped_by_signature_check(&self) -> u64 {
        self.dropped_no_cert
            + self.dropped_bad_cert
            + self.dropped_revoked
            + self.dropped_unsigned
            + self.dropped_bad_signature
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_errors: AtomicU64,
    datagrams_accepted: AtomicU64,
    bytes_received: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_bad_mac: AtomicU64,
    dropped_stale: AtomicU64,
    dropped_replayed: AtomicU64,
    dropped_node_bound: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_overcompressed: AtomicU64,
    dropped_bad_max_version: AtomicU64,
    dropped_own_node: AtomicU64,
    clock: Mutex<ClockOffsets>,
    /// The gossip addresses of the other members in the last view read: the only
    /// sources whose clock counts.
    clock_members: Mutex<BTreeSet<SocketAddr>>,
    dropped_no_cert: AtomicU64,
    dropped_bad_cert: AtomicU64,
    dropped_revoked: AtomicU64,
    dropped_unsigned: AtomicU64,
    dropped_bad_signature: AtomicU64,
}

/// `addr` with an IPv4-mapped IPv6 address as IPv4 (a socket on `[::]` sees IPv4 peers
/// that way; they advertise plain IPv4).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> TransportCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportCounters {
            datagrams_sent: get(&self.datagrams_sent),
            bytes_sent: get(&self.bytes_sent),
            send_errors: get(&self.send_errors),
            datagrams_accepted: get(&self.datagrams_accepted),
            bytes_received: get(&self.bytes_received),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_bad_mac: get(&self.dropped_bad_mac),
            dropped_stale: get(&self.dropped_stale),
            dropped_replayed: get(&self.dropped_replayed),
            dropped_node_bound: get(&self.dropped_node_bound),
            dropped_oversize: get(&self.dropped_oversize),
            dropped_overcompressed: get(&self.dropped_overcompressed),
            dropped_bad_max_version: get(&self.dropped_bad_max_version),
            dropped_own_node: get(&self.dropped_own_node),
            dropped_no_cert: get(&self.dropped_no_cert),
            dropped_bad_cert: get(&self.dropped_bad_cert),
            dropped_revoked: get(&self.dropped_revoked),
            dropped_unsigned: get(&self.dropped_unsigned),
            dropped_bad_signature: get(&self.dropped_bad_signature),
            clock_offset_ms: self.clock_offset_ms(),
        }
    }

    fn clock_offset_ms(&self) -> Option<i64> {
        let members = self.clock_members.lock().ok()?;
        self.clock.lock().ok()?.offset_ms(unix_ms(), &members)
    }

    /// The members whose clocks count: their advertised gossip addresses.
    pub(crate) fn set_clock_members(&self, members: BTreeSet<SocketAddr>) {
        if let Ok(mut m) = self.clock_members.lock() {
            *m = members.into_iter().map(canonical).collect();
        }
    }

    /// A datagram from `from` whose MAC checked, stamped `sent_ms`, received at `now_ms`.
    ///
    /// Only a member's address is recorded: a member sending from a thousand other ports
    /// would otherwise fill the table and keep the members' own samples out of it.
    fn clock_sample(&self, from: SocketAddr, sent_ms: u64, now_ms: u64) {
        let from = canonical(from);
        let member = self.clock_members.lock().is_ok_and(|m| m.contains(&from));
        if !member {
            return;
        }
        if let Ok(mut c) = self.clock.lock() {
            c.record(from, sent_ms, now_ms);
        }
    }

    fn rejected(&self, r: Rejection) {
        let c = match r {
            Rejection::Malformed => &self.dropped_malformed,
            Rejection::BadMac => &self.dropped_bad_mac,
            Rejection::Stale => &self.dropped_stale,
            Rejection::Replayed => &self.dropped_replayed,
            Rejection::Oversize => &self.dropped_oversize,
        };
        bump(c, 1);
    }

    fn violated(&self, v: Violation) {
        let c = match v {
            Violation::Undecodable => &self.dropped_malformed,
            Violation::OverCompressed => &self.dropped_overcompressed,
            Violation::MaxVersionBelowKeys => &self.dropped_bad_max_version,
            Violation::OwnNode => &self.dropped_own_node,
            Violation::NodeBound(_) => &self.dropped_node_bound,
        };
        bump(c, 1);
    }

    fn removed(&self, d: &Dropped) {
        let add = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        add(&self.dropped_no_cert, d.no_cert);
        add(&self.dropped_bad_cert, d.bad_cert);
        add(&self.dropped_revoked, d.revoked);
        add(&self.dropped_unsigned, d.unsigned);
        add(&self.dropped_bad_signature, d.bad_signature);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Chitchat transport that authenticates every datagram.
///
/// It hands chitchat a socket bound beforehand (so that a node listening on port 0 knows
/// its address before it tells chitchat what to advertise); `open` works once.
pub(crate) struct AuthTransport {
    socket: Mutex<Option<AuthSocket>>,
}

impl AuthTransport {
    pub(crate) fn new(
        inner: Box<dyn DatagramSocket>,
        key: MacKey,
        session: u64,
        window_ms: u64,
        validator: Option<Validator>,
        counters: Arc<Counters>,
    ) -> AuthTransport {
        AuthTransport {
            socket: Mutex::new(Some(AuthSocket {
                inner,
                sealer: Sealer::new(key.clone(), session),
                opener: Opener::new(key, window_ms),
                validator,
                counters,
            })),
        }
    }
}

#[async_trait]
impl Transport for AuthTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self
            .socket
            .lock()
            .map_err(|_| anyhow::anyhow!("transport lock poisoned"))?
            .take()
            .ok_or_else(|| anyhow::anyhow!("gossip socket for {listen_addr} already opened"))?;
        Ok(Box::new(socket))
    }
}

struct AuthSocket {
    inner: Box<dyn DatagramSocket>,
    sealer: Sealer,
    opener: Opener,
    validator: Option<Validator>,
    counters: Arc<Counters>,
}

impl AuthSocket {
    /// Runs the validator: `None` drops the datagram, `Some` is the payload for
    /// chitchat (with what the signature check removed, removed). A panic in it (a bug
    /// of ours) drops the datagram instead of killing the gossip task.
    fn screen(&self, from: SocketAddr, payload: Vec<u8>) -> Option<Vec<u8>> {
        let Some(validator) = &self.validator else {
            return Some(payload);
        };
        match catch_unwind(AssertUnwindSafe(|| validator.screen(&payload))) {
            Ok(Ok(screened)) => {
                if screened.dropped.any() {
                    debug!(%from, dropped = ?screened.dropped, "removed unsigned or forged gossip");
                    self.counters.removed(&screened.dropped);
                }
                Some(screened.payload.unwrap_or(payload))
            }
            Ok(Err(v)) => {
                debug!(%from, violation = ?v, "refused gossip payload");
                self.counters.violated(v);
                None
            }
            Err(_) => {
                error!(%from, len = payload.len(), "the gossip validator panicked; datagram dropped");
                self.counters.rejected(Rejection::Malformed);
                None
            }
        }
    }
}

#[async_trait]
impl Socket for AuthSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let datagram = self.sealer.seal(unix_ms(), &msg.serialize_to_vec());
        match self.inner.send_to(&datagram, to).await {
            Ok(()) => {
                bump(&self.counters.datagrams_sent, 1);
                bump(&self.counters.bytes_sent, datagram.len());
            }
            Err(e) => {
                // Unreachable peers are routine in gossip: count, do not fail the loop.
                bump(&self.counters.send_errors, 1);
                debug!(%to, error = %e, len = datagram.len(), "gossip send failed");
            }
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (datagram, from) = self.inner.recv_from().await?;
            let now = unix_ms();
            let opened = self.opener.open(now, &datagram);
            if matches!(opened, Ok(_) | Err(Rejection::Stale)) {
                // The MAC checked, so the timestamp is the sender's (election clock check).
                if let Some(sent) = crate::auth::sent_ms(&datagram) {
                    self.counters.clock_sample(from, sent, now);
                }
            }
            let payload = match opened {
                Ok(p) => p,
                Err(r) => {
                    debug!(%from, reason = ?r, "dropped gossip datagram");
                    self.counters.rejected(r);
                    continue;
                }
            };
            let Some(payload) = self.screen(from, payload) else {
                continue;
            };
            match ChitchatMessage::deserialize(&mut payload.as_slice()) {
                Ok(msg) => {
                    bump(&self.counters.datagrams_accepted, 1);
                    bump(&self.counters.bytes_received, datagram.len());
                    return Ok((from, msg));
                }
                Err(e) => {
                    debug!(%from, error = %e, "authenticated but undecodable gossip");
                    self.counters.rejected(Rejection::Malformed);
                }
            }
        }
    }
}
