//! Supervision of a node's long-running tasks.
//!
//! The gossip, intro-point, descriptor, publish and join-sync tasks are endless loops. If
//! one of them ends (a panic, or a loop that returns), nothing else would notice: the node
//! would keep its lease, its place in the descriptor and its `/status` while half of it is
//! gone. Every such task is spawned through a [`Supervisor`]; the first one that ends
//! unasked is a [`TaskDeath`], which the daemon awaits next to SIGTERM: it leaves the
//! lease, stops, and exits non-zero so the service manager restarts it (loudly, in the
//! journal) instead of running on silently.
//!
//! ```text
//!  spawn(name, fut) ─▶ task ─▶ ends ─┬─ aborted by us (shutdown) ─▶ nothing
//!                                    └─ returned / panicked ───────▶ first_death() resolves
//! ```

use std::future::Future;
use std::sync::Arc;

use rustbalance_cluster::{GossipHealth, Membership};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A supervised task that ended without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDeath {
    /// The task's name ("gossip", "publish", ...).
    pub task: &'static str,
    /// How it ended: "returned", "panicked: …", or the gossip layer's reason.
    pub how: String,
}

impl std::fmt::Display for TaskDeath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} task {}", self.task, self.how)
    }
}

/// Spawns tasks and reports the first that dies. Cheap to clone (one shared channel).
#[derive(Clone)]
pub struct Supervisor {
    death: Arc<watch::Sender<Option<TaskDeath>>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            death: Arc::new(watch::channel(None).0),
        }
    }
}

impl Supervisor {
    /// A supervisor with no task yet.
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Spawns `fut` as the task `task`. Aborting it through the returned handle is a
    /// normal stop; any other end is reported by [`Supervisor::first_death`].
    pub fn spawn<F>(&self, task: &'static str, fut: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = tokio::spawn(fut);
        let abort = inner.abort_handle();
        let death = self.death.clone();
        tokio::spawn(async move {
            let how = match inner.await {
                Ok(()) => "returned".to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e.into_panic())),
                Err(_) => return, // aborted: a normal stop
            };
            report(&death, TaskDeath { task, how });
        });
        abort
    }

    /// Reports the gossip task's death (not its orderly stop) as a [`TaskDeath`].
    pub fn watch_gossip(&self, membership: Arc<Membership>) -> AbortHandle {
        let death = self.death.clone();
        tokio::spawn(async move {
            if let GossipHealth::Died { reason } = membership.gossip_ended().await {
                report(
                    &death,
                    TaskDeath {
                        task: "gossip",
                        how: format!("died: {reason}"),
                    },
                );
            }
        })
        .abort_handle()
    }

    /// Resolves with the first task that died (at once if one already has).
    pub async fn first_death(&self) -> TaskDeath {
        let mut rx = self.death.subscribe();
        let seen = rx.wait_for(Option::is_some).await.map(|d| d.clone());
        match seen {
            Ok(d) => d.unwrap_or_else(unreachable_death),
            // The sender lives in `self`, so the channel cannot close while we wait.
            Err(_) => std::future::pending().await,
        }
    }

    /// The task that died, if one has.
    pub fn death(&self) -> Option<TaskDeath> {
        self.death.borrow().clone()
    }
}

/// Keeps the first death only, and says it in the log at once.
fn report(death: &watch::Sender<Option<TaskDeath>>, d: TaskDeath) {
    tracing::error!(task = d.task, how = %d.how, "a node task ended: stopping this node");
    death.send_if_modified(|slot| {
        if slot.is_none() {
            *slot = Some(d);
            true
        } else {
            false
        }
    });
}

/// `wait_for(Option::is_some)` only returns a `Some`.
fn unreachable_death() -> TaskDeath {
    TaskDeath {
        task: "unknown",
        how: "ended".into(),
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_message() {
        let sup = Supervisor::new();
        let _quiet = sup.spawn("calm", std::future::pending());
        let _ = sup.spawn("sync", async { panic!("removal time out of range") });
        let d = sup.first_death().await;
        assert_eq!(d.task, "sync");
        assert_eq!(d.how, "panicked: removal time out of range");
        assert_eq!(
            d.to_string(),
            "the sync task panicked: removal time out of range"
        );
    }

    /// The gossip task is chitchat's, not spawned here: its end reaches the supervisor
    /// through [`Supervisor::watch_gossip`]. Here its socket fails; a panic inside
    /// chitchat ends it the same way ("Chitchat server panicked", rustbalance-cluster's
    /// `a_panicking_gossip_task_is_reported_and_the_lease_left`).
    #[tokio::test]
    async fn a_dead_gossip_task_is_a_task_death() {
        use rustbalance_cluster::{ClusterSecret, MembershipConfig, SimNet};
        let net = SimNet::new();
        let cfg = MembershipConfig::new("n1", "10.0.0.1:7946".parse().unwrap());
        let secret = ClusterSecret::new(vec![7u8; 32]).unwrap();
        let m = Membership::start(cfg, &secret, vec![], &net).await.unwrap();
        let m = Arc::new(m);
        let sup = Supervisor::new();
        let _watch = sup.watch_gossip(m.clone());
        net.fail(m.local_addr());
        let d = sup.first_death().await;
        assert_eq!(d.task, "gossip");
        assert!(d.how.starts_with("died: "), "{d}");
    }

    #[tokio::test]
    async fn a_task_that_returns_is_reported() {
        let sup = Supervisor::new();
        let _ = sup.spawn("intro", async {});
        let d = sup.first_death().await;
        assert_eq!((d.task, d.how.as_str()), ("intro", "returned"));
    }

    #[tokio::test]
    async fn an_aborted_task_is_a_normal_stop_and_the_first_death_stays() {
        let sup = Supervisor::new();
        let h = sup.spawn("publish", std::future::pending());
        h.abort();
        while !h.is_finished() {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(sup.death(), None, "an abort is not a death");
        let _ = sup.spawn("first", async { panic!("one") });
        let d = sup.first_death().await;
        let _ = sup.spawn("second", async { panic!("two") });
        tokio::task::yield_now().await;
        assert_eq!(d.task, "first");
        assert_eq!(sup.first_death().await.task, "first");
    }
}
