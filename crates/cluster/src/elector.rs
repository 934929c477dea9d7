//! The election driver: runs an [`Election`] over a [`Membership`].
//!
//! Every `tick` it reads the membership, feeds it to the pure machine with the time
//! elapsed since the driver started, writes the lease the machine advertises into this
//! node's gossip state and publishes the "am I the publisher" flag on a watch channel.
//!
//! ```text
//!   tick ──▶ Membership::members() ──▶ Election::handle(now, Membership(view))
//!                                              │
//!        ┌─────────────────────────────────────┴──────────────────────┐
//!  AdvertiseLease / WithdrawLease                     Start / StopPublishing
//!  → Membership::set / delete(keys::LEASE)            → watch::Sender<bool>
//! ```
//!
//! If the gossip task ends ([`crate::health`]), the membership view is frozen: the driver
//! then makes the node ineligible (which withdraws the lease and stops publishing at
//! once, before the lease could lapse for the others) and ends. [`Elector::gave_up`] tells.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info};

use crate::election::{Action, Election, Input, Millis};
use crate::health::GossipHealth;
use crate::keys;
use crate::membership::Membership;

enum Command {
    Yield,
    SetEligible(bool),
    Forget(crate::election::NodeId),
    Witness(std::collections::BTreeSet<crate::election::NodeId>),
}

/// A handle other tasks use to command a running elector (clone it freely).
#[derive(Clone)]
pub struct ElectorHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl ElectorHandle {
    /// Gives the lease up (graceful hand-over).
    pub fn yield_lease(&self) {
        let _ = self.commands.send(Command::Yield);
    }

    /// Changes this node's eligibility (and advertises it). Becoming ineligible gives the
    /// lease up at once; the publish task does this while publishing health is bad.
    pub fn set_eligible(&self, eligible: bool) {
        let _ = self.commands.send(Command::SetEligible(eligible));
    }

    /// The Tor witness: the members whose canary fails from here (`cluster.quorum =
    /// "witness"`).
    pub fn set_witness(&self, dead: std::collections::BTreeSet<crate::election::NodeId>) {
        let _ = self.commands.send(Command::Witness(dead));
    }

    /// A member was removed from the cluster: it no longer counts in the quorum.
    pub fn forget(&self, id: impl Into<crate::election::NodeId>) {
        let _ = self.commands.send(Command::Forget(id.into()));
    }
}

/// Handle of a running election driver. Dropping it stops the driver.
pub struct Elector {
    config: crate::election::ElectionConfig,
    publishing: watch::Receiver<bool>,
    gave_up: watch::Receiver<Option<GossipHealth>>,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
}

impl Elector {
    /// Starts driving `election` over `membership`, evaluating every `tick`.
    pub fn spawn(membership: Arc<Membership>, mut election: Election, tick: Duration) -> Elector {
        let config = election.config().clone();
        let (tx, publishing) = watch::channel(false);
        let (commands, mut rx) = mpsc::unbounded_channel();
        let (gave_up_tx, gave_up) = watch::channel(None);
        let mut health = membership.watch_gossip_health();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let mut last = false;
                let input = tokio::select! {
                    _ = interval.tick() => {
                        let view = membership.members().await;
                        Input::Membership(view.iter().map(|v| v.to_member()).collect())
                    }
                    cmd = rx.recv() => match cmd {
                        Some(Command::Yield) => Input::Yield,
                        Some(Command::Forget(id)) => Input::Forget(id),
                        Some(Command::Witness(dead)) => Input::Witness(dead),
                        Some(Command::SetEligible(e)) => {
                            membership.set(keys::ELIGIBLE, if e { "true" } else { "false" }).await;
                            Input::SetEligible(e)
                        }
                        None => return,
                    },
                    ended = async { health.wait_for(|h| !h.is_running()).await.map(|h| h.clone()) } => {
                        let why = ended.unwrap_or(GossipHealth::Stopped);
                        if why == GossipHealth::Stopped {
                            info!(node = election.me(), "gossip stopped: the driver ends");
                        } else {
                            error!(node = election.me(), health = ?why, "gossip died: giving the lease up");
                        }
                        let _ = gave_up_tx.send(Some(why));
                        last = true;
                        Input::SetEligible(false)
                    }
                };
                let now = Millis(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
                let actions = election.handle(now, input);
                perform(&membership, &tx, election.me(), actions).await;
                if last {
                    return;
                }
            }
        });
        Elector {
            config,
            publishing,
            commands,
            gave_up,
            task: Some(task),
        }
    }

    /// The election's configuration.
    pub fn config(&self) -> &crate::election::ElectionConfig {
        &self.config
    }

    /// Whether this node is the publisher right now.
    pub fn is_publishing(&self) -> bool {
        *self.publishing.borrow()
    }

    /// A watch of the publishing flag.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.publishing.clone()
    }

    /// `Some(how gossip ended)` once the driver gave up because the gossip task ended;
    /// it then no longer runs, and this node never publishes again.
    pub fn gave_up(&self) -> Option<GossipHealth> {
        self.gave_up.borrow().clone()
    }

    /// A handle to command this elector from other tasks.
    pub fn handle(&self) -> ElectorHandle {
        ElectorHandle {
            commands: self.commands.clone(),
        }
    }

    /// Gives the lease up (graceful hand-over).
    pub fn yield_lease(&self) {
        self.handle().yield_lease();
    }

    /// Changes this node's eligibility (and advertises it).
    pub fn set_eligible(&self, eligible: bool) {
        self.handle().set_eligible(eligible);
    }

    /// Stops the driver at once and waits until it is gone (the lease simply lapses;
    /// call [`Elector::yield_lease`] first for a prompt hand-over).
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Carries out the election's actions.
async fn perform(
    membership: &Membership,
    publishing: &watch::Sender<bool>,
    me: &str,
    actions: Vec<Action>,
) {
    for action in actions {
        match action {
            Action::AdvertiseLease(lease) => {
                membership.set(keys::LEASE, &lease.encode()).await;
            }
            Action::WithdrawLease => membership.delete(keys::LEASE).await,
            Action::StartPublishing => {
                info!(node = me, "this node is now the publisher");
                let _ = publishing.send(true);
            }
            Action::StopPublishing => {
                info!(node = me, "this node stopped publishing");
                let _ = publishing.send(false);
            }
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
