//! Supervision of the gossip server task.
//!
//! chitchat runs gossip in one tokio task. If that task ends unasked (a panic inside
//! chitchat, a socket that fails), nothing else stops: the membership keeps answering
//! with the last view it had, the failure detector no longer moves, and a publisher would
//! keep renewing its lease on a view nobody updates. A small watcher task waits for the
//! server task to end and publishes the outcome on a watch channel:
//!
//! ```text
//!   Running ──(shutdown asked)──────────────────▶ Stopped
//!      └─────(panic, socket error, any other end)─▶ Died { reason }
//! ```
//!
//! [`crate::Elector`] watches it and gives the lease up at once when gossip dies. A node
//! that runs its own tasks over a [`crate::Membership`] should do the same with
//! [`crate::Membership::gossip_ended`]: leave the lease, then exit loudly or restart.

use std::net::SocketAddr;

use chitchat::ChitchatHandle;
use tokio::sync::watch;
use tracing::error;

/// State of the gossip server task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipHealth {
    /// Gossiping.
    Running,
    /// Stopped because [`crate::Membership::shutdown`] asked it to.
    Stopped,
    /// Ended on its own; the membership view is frozen from then on.
    Died { reason: String },
}

impl GossipHealth {
    pub fn is_running(&self) -> bool {
        matches!(self, GossipHealth::Running)
    }
}

/// Starts the watcher of `handle`'s server task.
pub(crate) fn supervise(
    handle: &ChitchatHandle,
    addr: SocketAddr,
) -> watch::Receiver<GossipHealth> {
    let (tx, rx) = watch::channel(GossipHealth::Running);
    let ended = handle.termination_watcher();
    tokio::spawn(async move {
        let health = match ended.await {
            Ok(()) => GossipHealth::Stopped,
            Err(e) => {
                let reason = format!("{e:#}");
                error!(%addr, %reason, "the gossip task died: this node's membership view is frozen");
                GossipHealth::Died { reason }
            }
        };
        let _ = tx.send(health);
    });
    rx
}
