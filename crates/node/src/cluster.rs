//! Multi-node mode: this node's tor runs an *instance* of the master service (own key,
//! `HiddenServiceOnionbalanceInstance 1`, `PublishHidServDescriptors 0`); the node shares
//! its intro points over authenticated gossip, takes part in the lease election, and —
//! while it holds the lease — merges every healthy node's intro points into the master
//! descriptor and uploads it.
//!
//! ```text
//!  advertise: tor GETINFO own descriptor ─▶ gossip intro/<node>, target_health
//!  publisher: lease held? ─▶ roster: live healthy nodes' intro points
//!               ─▶ policy: changed / due / HSDirs failed / backoff? ─▶ Publisher: plan both
//!               descriptors ─▶ HSPOST SERVER=… ─▶ HS_DESC answers ─▶ gossip last_publish
//! ```
//!
//! * [`node`] — [`ClusterNode`]: start, stop, `/status`.
//! * [`advertise`] — the intro and next-descriptor tasks (this node's own intro points).
//! * [`publisher`] — the [`publisher::Publisher`] and the publish task.
//! * `auth` — restricted discovery: the authorized clients the publisher encrypts for.
//! * [`roster`] — who is live, healthy or removed, and their intro points.
//! * [`selection`] — which of them go into the descriptor: fair per node, repeats dropped.
//! * [`pow`] — which `pow-params` the master descriptor may carry (none from an instance).
//! * [`fleet`] — fleet PoW (`cluster.fleet_pow`): every eligible node's tor hosts the master
//!   key and each descriptor lists one tor's intro points with its `pow-params` (pure), and
//!   `fleet::host`, the task that hosts the key and advertises what its tor offers.
//! * [`solo`] — when a lone publisher-eligible node hosts the master key itself (pure), and
//!   `solo::host`, the thin driver that adds and removes the master service on its tor.
//! * [`policy`] — the decisions, pure (they take `now`; tests run them on fake time).
//! * [`credentials`] — this node's identity, member certificate and trust for signed
//!   gossip.
//! * [`gossip`] — every gossip key a node writes and its value format.
//! * [`view`] — the network view and instance descriptors read from tor.
//! * [`timers`] — every fixed delay of the tasks, as configuration.

pub mod advertise;
mod auth;
pub mod backends;
pub mod canary;
pub mod credentials;
pub mod fleet;
pub mod gossip;
pub mod node;
pub mod policy;
pub mod pow;
pub mod publisher;
pub mod roster;
pub mod selection;
pub mod solo;
pub mod timers;
pub mod view;

pub use node::{ClusterNode, ClusterParams, ClusterStatus, MemberStatus, PublishRecord};
pub use timers::Timers;
