//! A bound on the nodes a peer can make chitchat know.
//!
//! chitchat 0.11 creates a node (a state, a failure-detector window) for every entry of
//! every digest it receives, Syn and SynAck alike, and keeps it until the failure
//! detector has seen it dead for `dead_node_grace_period` (an hour by default). Nothing
//! else bounds how many there are. Every Syn it answers carries its own digest, one entry
//! per node it knows, and the room it leaves for the delta is
//!
//! ```text
//! 65,507 − 1 − digest size        (chitchat lib.rs, `process_message`, Syn)
//! digest size = 2 + Σ (2 + name + 8 generation + 7 or 19 address + 24 versions)
//! ```
//!
//! A member that names ~1,600 made-up nodes (two Syns of 800 short names are enough)
//! takes that digest past 64 KiB: the subtraction underflows, which panics in a debug
//! build (the gossip task dies) and wraps in a release build (the node's own Syns and
//! SynAcks no longer fit a datagram, so it falls silent). A single name of 64 KiB does
//! the same with one entry. Memory grows with the names too.
//!
//! [`NodeBound`] sees every digest before chitchat does (from
//! [`crate::validator::Validator`]) and refuses the whole message when the nodes it would
//! add take chitchat past [`MAX_NODES`] nodes or its digest past [`MAX_DIGEST_BYTES`], or
//! when a new node's name is longer than [`MAX_NODE_NAME`]. Deltas cannot add nodes
//! (chitchat applies a node delta only to a node it knows), so digests are the only way
//! in. The limits hold a cluster of any sensible size with every node's restarts of the
//! last hour (each restart is a new generation, so a new node for chitchat) and leave
//! chitchat half a datagram for deltas.
//!
//! What chitchat knows is read from chitchat itself: chitchat's server handles one message
//! at a time (receive, then apply under its lock, then receive the next), so when a
//! datagram is checked every earlier one has been applied, and the count is exact. Should
//! chitchat's lock be held by another task at that moment, the bound counts what it last
//! read plus what it let in since, which can only be more (nodes leave only by chitchat's
//! own garbage collection). Before [`NodeBound::attach`] it counts only what it let in.
//!
//! What a hostile member can still do: fill the bound with made-up nodes, after which
//! nodes new to this member (a restarted node's next generation, a joining node) are
//! refused until chitchat forgets the made-up ones (the grace period plus about
//! 80 seconds: `max_interval` × `phi_threshold`). Gossip between the nodes already known
//! goes on, and this node keeps running.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chitchat::{Chitchat, ChitchatId};

use crate::wire::{DigestEntry, PeerId};

/// Nodes (name and generation) chitchat may know, this node included.
pub const MAX_NODES: usize = 256;

/// Longest node name accepted for a node chitchat does not know yet. RustBalance's own
/// names are at most 32 bytes.
pub const MAX_NODE_NAME: usize = 64;

/// The largest digest chitchat may have to send: half of what chitchat leaves for a
/// message, so that deltas keep the other half.
pub const MAX_DIGEST_BYTES: usize = 32 * 1024;

/// chitchat's room for a message (`MAX_UDP_DATAGRAM_PAYLOAD_SIZE - 1`).
const CHITCHAT_ROOM: usize = 65_507 - 1;

// The bound is what keeps chitchat's subtraction from underflowing.
const _: () = assert!(MAX_DIGEST_BYTES < CHITCHAT_ROOM);
const _: () = assert!(2 + MAX_NODES * entry_bytes(MAX_NODE_NAME, false) <= MAX_DIGEST_BYTES);

/// Why a digest was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// Its new nodes would take chitchat past [`MAX_NODES`].
    TooManyNodes,
    /// Its new nodes would take chitchat's digest past [`MAX_DIGEST_BYTES`].
    DigestTooLarge,
    /// It names a node chitchat does not know with a name over [`MAX_NODE_NAME`] bytes.
    NameTooLong,
}

/// The bytes one node takes in chitchat's digest.
const fn entry_bytes(name_len: usize, ipv6: bool) -> usize {
    let addr = if ipv6 { 1 + 16 + 2 } else { 1 + 4 + 2 };
    2 + name_len + 8 + addr + 3 * 8
}

fn peer_bytes(id: &PeerId) -> usize {
    entry_bytes(id.node_id.len(), id.addr.is_ipv6())
}

/// The nodes chitchat knows (or may know), with their digest bytes: the pure part.
#[derive(Debug, Default)]
struct Known {
    nodes: HashMap<PeerId, usize>,
}

impl Known {
    /// Takes in `digest` if chitchat may then still gossip, else says why not and
    /// changes nothing.
    fn admit(&mut self, digest: &[DigestEntry]) -> Result<(), Exceeded> {
        let mut fresh: HashSet<&PeerId> = HashSet::new();
        for e in digest {
            if self.nodes.contains_key(&e.id) || fresh.contains(&e.id) {
                continue;
            }
            if e.id.node_id.len() > MAX_NODE_NAME {
                return Err(Exceeded::NameTooLong);
            }
            fresh.insert(&e.id);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        if self.nodes.len() + fresh.len() > MAX_NODES {
            return Err(Exceeded::TooManyNodes);
        }
        let bytes: usize = self.nodes.values().chain(&[2]).sum::<usize>()
            + fresh.iter().map(|id| peer_bytes(id)).sum::<usize>();
        if bytes > MAX_DIGEST_BYTES {
            return Err(Exceeded::DigestTooLarge);
        }
        for id in fresh {
            self.nodes.insert(id.clone(), peer_bytes(id));
        }
        Ok(())
    }

    /// What chitchat knows now.
    fn replace(&mut self, chitchat: &Chitchat) {
        self.nodes = chitchat
            .node_states()
            .keys()
            .map(|id| {
                let id = peer_id(id);
                let bytes = peer_bytes(&id);
                (id, bytes)
            })
            .collect();
    }
}

fn peer_id(id: &ChitchatId) -> PeerId {
    PeerId {
        node_id: id.node_id.to_string(),
        generation: id.generation_id,
        addr: id.gossip_advertise_addr,
    }
}

/// The bound of one member (shared by its validator and its membership).
#[derive(Default)]
pub struct NodeBound {
    known: Mutex<Known>,
    chitchat: OnceLock<Arc<tokio::sync::Mutex<Chitchat>>>,
}

impl std::fmt::Debug for NodeBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBound")
            .field("known", &self.known())
            .field("attached", &self.chitchat.get().is_some())
            .finish()
    }
}

impl NodeBound {
    /// A bound that counts only what it lets in until [`NodeBound::attach`].
    pub fn new() -> NodeBound {
        NodeBound::default()
    }

    /// Reads what chitchat knows from `chitchat` from now on (once; later calls are
    /// ignored).
    pub fn attach(&self, chitchat: Arc<tokio::sync::Mutex<Chitchat>>) {
        let _ = self.chitchat.set(chitchat);
    }

    /// Checks the digest of a message about to be handed to chitchat and counts its
    /// new nodes as known. Call it last, for a message chitchat will be given.
    pub fn admit(&self, digest: &[DigestEntry]) -> Result<(), Exceeded> {
        if digest.is_empty() {
            return Ok(());
        }
        // A panic while the lock was held left `Known` whole (`admit` changes it only
        // after every check), so a poisoned lock is still usable.
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(chitchat) = self.chitchat.get() {
            if let Ok(c) = chitchat.try_lock() {
                known.replace(&c);
            }
        }
        known.admit(digest)
    }

    /// How many nodes the bound counts as known.
    pub fn known(&self) -> usize {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes
            .len()
    }
}

#[cfg(test)]
mod tests;
