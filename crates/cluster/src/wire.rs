//! chitchat 0.11's message format, read and written by our own code.
//!
//! chitchat decodes a datagram into a [`chitchat::ChitchatMessage`] whose delta keeps its
//! content crate-private, so nothing outside chitchat can look inside a received delta.
//! To check what a peer sent before chitchat applies it ([`crate::validator`]), this
//! module reads the bytes itself, into plain types that mirror the wire one to one. It
//! also writes them: tests and fuzz seeds build crafted messages with it, and chitchat
//! decodes what it writes (a test checks that).
//!
//! The format, as chitchat 0.11 puts it on the wire (integers little-endian, strings as a
//! `u16` length and UTF-8 bytes, addresses as `4`/`6`, the octets and a `u16` port):
//!
//! ```text
//! message  = magic u16 (45139) | version u8 (0) | type u8 | body
//!   Syn    (0): digest | cluster id
//!   SynAck (1): digest | delta
//!   Ack    (2): delta
//!   BadCluster (3): nothing
//! digest   = count u16 | count × (node id | heartbeat u64 | last gc version u64 | max version u64)
//! node id  = name string | generation u64 | gossip address
//! delta    = blocks: (1 | len u16 | zstd frame) or (2 | len u16 | raw bytes), then 0;
//!            the blocks' content, concatenated, is a sequence of operations:
//!   0 node     : node id | last gc version u64 | from version (excluded) u64
//!   1 key/value: key string | value string | version u64 | status u8 (0 set, 1 delete,
//!                2 delete after ttl)
//!   2 set max version: version u64
//! ```
//!
//! A zstd block inflates to at most 65,535 bytes (chitchat's own limit); the decoder
//! stops inflating once the delta's total exceeds the budget it is given, so a datagram
//! of thousands of tiny blocks costs at most that budget.

mod stream;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use stream::Blocks;

/// chitchat's message magic number.
const MAGIC: u16 = 45_139;
const PROTOCOL_VERSION: u8 = 0;

/// Why a payload could not be read as a chitchat message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not a well-formed message; the text names the part that is not.
    Invalid(&'static str),
    /// The delta's blocks inflate to more than the budget.
    OverCompressed,
}

/// One node as chitchat names it: name, generation and gossip address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId {
    pub node_id: String,
    pub generation: u64,
    pub addr: SocketAddr,
}

/// One node of a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestEntry {
    pub id: PeerId,
    pub heartbeat: u64,
    pub last_gc_version: u64,
    pub max_version: u64,
}

/// What a key/value operation does to the key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Set,
    Delete,
    DeleteAfterTtl,
}

/// One operation of a delta, in wire order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaOp {
    /// The following operations are about this node.
    Node {
        id: PeerId,
        last_gc_version: u64,
        from_version_excluded: u64,
    },
    /// One key of the current node.
    KeyValue {
        key: String,
        value: String,
        version: u64,
        status: KeyStatus,
    },
    /// Sets the current node's max version.
    SetMaxVersion(u64),
}

/// A chitchat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Syn {
        cluster_id: String,
        digest: Vec<DigestEntry>,
    },
    SynAck {
        digest: Vec<DigestEntry>,
        delta: Vec<DeltaOp>,
    },
    Ack {
        delta: Vec<DeltaOp>,
    },
    BadCluster,
}

impl Message {
    /// The delta, if the message carries one.
    pub fn delta(&self) -> &[DeltaOp] {
        match self {
            Message::SynAck { delta, .. } | Message::Ack { delta } => delta,
            Message::Syn { .. } | Message::BadCluster => &[],
        }
    }

    /// The digest, if the message carries one.
    pub fn digest(&self) -> &[DigestEntry] {
        match self {
            Message::Syn { digest, .. } | Message::SynAck { digest, .. } => digest,
            Message::Ack { .. } | Message::BadCluster => &[],
        }
    }
}

/// Reads one message; the delta's blocks may inflate to `max_inflated` bytes in total.
/// Bytes after the message are ignored, as chitchat ignores them.
pub fn decode(payload: &[u8], max_inflated: usize) -> Result<Message, DecodeError> {
    let mut r = Reader(payload);
    if r.u16()? != MAGIC {
        return Err(DecodeError::Invalid("magic number"));
    }
    if r.u8()? != PROTOCOL_VERSION {
        return Err(DecodeError::Invalid("protocol version"));
    }
    match r.u8()? {
        0 => {
            let digest = read_digest(&mut r)?;
            let cluster_id = r.string()?;
            Ok(Message::Syn { cluster_id, digest })
        }
        1 => {
            let digest = read_digest(&mut r)?;
            let delta = read_delta(&mut r, max_inflated)?;
            Ok(Message::SynAck { digest, delta })
        }
        2 => Ok(Message::Ack {
            delta: read_delta(&mut r, max_inflated)?,
        }),
        3 => Ok(Message::BadCluster),
        _ => Err(DecodeError::Invalid("message type")),
    }
}

/// Writes `msg`, cutting the delta into blocks as `blocks` says.
pub fn encode(msg: &Message, blocks: Blocks) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(&MAGIC.to_le_bytes());
    w.push(PROTOCOL_VERSION);
    match msg {
        Message::Syn { cluster_id, digest } => {
            w.push(0);
            write_digest(&mut w, digest);
            write_str(&mut w, cluster_id);
        }
        Message::SynAck { digest, delta } => {
            w.push(1);
            write_digest(&mut w, digest);
            stream::write(&mut w, &delta_bytes(delta), blocks);
        }
        Message::Ack { delta } => {
            w.push(2);
            stream::write(&mut w, &delta_bytes(delta), blocks);
        }
        Message::BadCluster => w.push(3),
    }
    w
}

fn read_digest(r: &mut Reader<'_>) -> Result<Vec<DigestEntry>, DecodeError> {
    let count = r.u16()?;
    let mut entries = Vec::with_capacity(usize::from(count).min(r.0.len() / 8));
    for _ in 0..count {
        entries.push(DigestEntry {
            id: r.peer_id()?,
            heartbeat: r.u64()?,
            last_gc_version: r.u64()?,
            max_version: r.u64()?,
        });
    }
    Ok(entries)
}

fn read_delta(r: &mut Reader<'_>, max_inflated: usize) -> Result<Vec<DeltaOp>, DecodeError> {
    let content = stream::read(&mut r.0, max_inflated)?;
    let mut ops = Reader(&content);
    let mut out = Vec::new();
    while !ops.0.is_empty() {
        out.push(ops.delta_op()?);
    }
    Ok(out)
}

fn write_digest(w: &mut Vec<u8>, digest: &[DigestEntry]) {
    // chitchat writes the count as u16 too; a longer digest cannot be represented.
    w.extend_from_slice(&(digest.len() as u16).to_le_bytes());
    for e in digest {
        write_peer_id(w, &e.id);
        for v in [e.heartbeat, e.last_gc_version, e.max_version] {
            w.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn delta_bytes(delta: &[DeltaOp]) -> Vec<u8> {
    let mut w = Vec::new();
    for op in delta {
        match op {
            DeltaOp::Node {
                id,
                last_gc_version,
                from_version_excluded,
            } => {
                w.push(0);
                write_peer_id(&mut w, id);
                w.extend_from_slice(&last_gc_version.to_le_bytes());
                w.extend_from_slice(&from_version_excluded.to_le_bytes());
            }
            DeltaOp::KeyValue {
                key,
                value,
                version,
                status,
            } => {
                w.push(1);
                write_str(&mut w, key);
                write_str(&mut w, value);
                w.extend_from_slice(&version.to_le_bytes());
                w.push(match status {
                    KeyStatus::Set => 0,
                    KeyStatus::Delete => 1,
                    KeyStatus::DeleteAfterTtl => 2,
                });
            }
            DeltaOp::SetMaxVersion(v) => {
                w.push(2);
                w.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    w
}

/// Writes a string as chitchat does: a `u16` length, so longer strings are cut (at a
/// character boundary) to 65,535 bytes.
fn write_str(w: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    w.extend_from_slice(&(end as u16).to_le_bytes());
    w.extend_from_slice(&s.as_bytes()[..end]);
}

fn write_peer_id(w: &mut Vec<u8>, id: &PeerId) {
    write_str(w, &id.node_id);
    w.extend_from_slice(&id.generation.to_le_bytes());
    match id.addr.ip() {
        IpAddr::V4(ip) => {
            w.push(4);
            w.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            w.push(6);
            w.extend_from_slice(&ip.octets());
        }
    }
    w.extend_from_slice(&id.addr.port().to_le_bytes());
}

/// A cursor over bytes; every read checks the length first.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Invalid(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>("truncated")?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array("truncated")?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array("truncated")?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len, "string longer than the message")?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Invalid("string is not UTF-8"))
    }

    fn peer_id(&mut self) -> Result<PeerId, DecodeError> {
        let node_id = self.string()?;
        let generation = self.u64()?;
        let ip: IpAddr = match self.u8()? {
            4 => Ipv4Addr::from(self.array::<4>("truncated")?).into(),
            6 => Ipv6Addr::from(self.array::<16>("truncated")?).into(),
            _ => return Err(DecodeError::Invalid("IP version")),
        };
        let port = self.u16()?;
        Ok(PeerId {
            node_id,
            generation,
            addr: SocketAddr::new(ip, port),
        })
    }

    fn delta_op(&mut self) -> Result<DeltaOp, DecodeError> {
        match self.u8()? {
            0 => Ok(DeltaOp::Node {
                id: self.peer_id()?,
                last_gc_version: self.u64()?,
                from_version_excluded: self.u64()?,
            }),
            1 => Ok(DeltaOp::KeyValue {
                key: self.string()?,
                value: self.string()?,
                version: self.u64()?,
                status: match self.u8()? {
                    0 => KeyStatus::Set,
                    1 => KeyStatus::Delete,
                    2 => KeyStatus::DeleteAfterTtl,
                    _ => return Err(DecodeError::Invalid("key status")),
                },
            }),
            2 => Ok(DeltaOp::SetMaxVersion(self.u64()?)),
            _ => Err(DecodeError::Invalid("delta operation tag")),
        }
    }
}

#[cfg(test)]
mod tests;
