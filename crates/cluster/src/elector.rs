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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::info;

use crate::election::{Action, Election, Input, Millis};
use crate::keys;
use crate::membership::Membership;

enum Command {
    Yield,
    SetEligible(bool),
}

/// Handle of a running election driver. Dropping it stops the driver.
pub struct Elector {
    publishing: watch::Receiver<bool>,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
}

impl Elector {
    /// Starts driving `election` over `membership`, evaluating every `tick`.
    pub fn spawn(membership: Arc<Membership>, mut election: Election, tick: Duration) -> Elector {
        let (tx, publishing) = watch::channel(false);
        let (commands, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let input = tokio::select! {
                    _ = interval.tick() => {
                        let view = membership.members().await;
                        Input::Membership(view.iter().map(|v| v.to_member()).collect())
                    }
                    cmd = rx.recv() => match cmd {
                        Some(Command::Yield) => Input::Yield,
                        Some(Command::SetEligible(e)) => {
                            membership.set(keys::ELIGIBLE, if e { "true" } else { "false" }).await;
                            Input::SetEligible(e)
                        }
                        None => return,
                    },
                };
                let now = Millis(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
                for action in election.handle(now, input) {
                    match action {
                        Action::AdvertiseLease(lease) => {
                            membership.set(keys::LEASE, &lease.encode()).await;
                        }
                        Action::WithdrawLease => membership.delete(keys::LEASE).await,
                        Action::StartPublishing => {
                            info!(node = election.me(), "this node is now the publisher");
                            let _ = tx.send(true);
                        }
                        Action::StopPublishing => {
                            info!(node = election.me(), "this node stopped publishing");
                            let _ = tx.send(false);
                        }
                    }
                }
            }
        });
        Elector {
            publishing,
            commands,
            task: Some(task),
        }
    }

    /// Whether this node is the publisher right now.
    pub fn is_publishing(&self) -> bool {
        *self.publishing.borrow()
    }

    /// A watch of the publishing flag.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.publishing.clone()
    }

    /// Gives the lease up (graceful hand-over).
    pub fn yield_lease(&self) {
        let _ = self.commands.send(Command::Yield);
    }

    /// Changes this node's eligibility (and advertises it).
    pub fn set_eligible(&self, eligible: bool) {
        let _ = self.commands.send(Command::SetEligible(eligible));
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

impl Drop for Elector {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
