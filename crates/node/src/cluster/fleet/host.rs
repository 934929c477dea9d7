//! The fleet task, thin: on a publisher-eligible node with `cluster.fleet_pow`, host the
//! master key on this node's tor and gossip what its descriptor offers ([`super`]).
//!
//! ```text
//!  every intro_poll:
//!    tor down ─▶ withdraw `fleet_pow`
//!    tor up, master service not hosted by this tor process ─▶ own control connection,
//!      ADD_ONION ED25519-V3:<key> Port=… PoWDefensesEnabled=1 … (no Flags=Detach: the
//!      service lives as long as the connection; a tor restart drops both)
//!    GETINFO hs/service/desc/id/<master> ─▶ established points only ─▶ FleetEntry
//!      ─▶ changed? gossip `fleet_pow` ; none (no points yet, no pow-params) ─▶ withdraw
//! ```
//!
//! The key crosses only the authenticated control connection, in a zeroized buffer, as
//! for the single-node switch; tor then holds it in memory (docs/SECURITY.md says what
//! that costs: every fleet node holds the master key).

use super::FleetEntry;
use crate::cluster::gossip;
use crate::cluster::node::ClusterStatus;
use crate::cluster::publisher::{instance_descriptor, only_established};
use crate::cluster::timers::Timers;
use crate::cluster::view::ViewCache;
use rustbalance_cluster::Membership;
use rustbalance_hs::IdentityKey;
use rustbalance_tor::control::ControlClient;
use rustbalance_tor::{TorPhase, TorSupervisor};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// After a failed `ADD_ONION`, wait this long before trying again.
const ADD_RETRY: Duration = Duration::from_secs(10);

/// What the fleet task works with.
pub(crate) struct FleetCtx {
    /// The gossip membership (`fleet_pow` is written there).
    pub membership: Arc<Membership>,
    /// This node's (first) tor.
    pub tor: Arc<TorSupervisor>,
    /// The master key.
    pub master: IdentityKey,
    /// `ADD_ONION` arguments ([`crate::cluster::solo::master_service_args`]).
    pub args: Vec<String>,
    /// A TestingTorNetwork (the lab).
    pub testing: bool,
    /// The node's timers (`intro_poll` paces the task).
    pub timers: Timers,
    /// The node's view cache of that tor.
    pub views: ViewCache,
    /// What `/status` shows.
    pub status: Arc<Mutex<ClusterStatus>>,
}

/// The master service on this node's tor.
struct Hosted {
    /// The tor process that hosts it.
    pid: u32,
    /// The connection that owns it.
    ctl: ControlClient,
}

/// Host the master service and advertise its tor's intro points and PoW, for as long as
/// the node runs.
pub(crate) async fn fleet_task(c: FleetCtx) {
    let mut hosted: Option<Hosted> = None;
    let mut advertised: Option<String> = None;
    let mut retry_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(c.timers.intro_poll).await;
        let st = c.tor.status();
        let running = match (st.pid, st.phase) {
            (Some(pid), TorPhase::Running) => Some(pid),
            _ => None,
        };
        if hosted.as_ref().map(|h| h.pid) != running && hosted.take().is_some() {
            tracing::warn!("fleet PoW: tor restarted and dropped the master service; added again");
        }
        if let Some(pid) = running {
            if hosted.is_none() && retry_at.is_none_or(|t| Instant::now() >= t) {
                match add(&c, pid).await {
                    Ok(h) => {
                        tracing::info!(
                            "fleet PoW: this node's tor hosts the master address (with PoW); \
                             its intro points go into fleet descriptors once established"
                        );
                        retry_at = None;
                        hosted = Some(h);
                    }
                    Err(e) => {
                        retry_at = Some(Instant::now() + ADD_RETRY);
                        tracing::warn!(
                            "fleet PoW: this node's tor did not take the master service: {e}; \
                             tried again in {}s",
                            ADD_RETRY.as_secs()
                        );
                    }
                }
            }
        }
        let entry = match &hosted {
            Some(h) => match read(&c, &h.ctl).await {
                Ok(e) => e,
                Err(e) if connection_gone(&e) => {
                    // The connection broke: tor dropped the service with it. (A refused
                    // or slow answer keeps it: adding it again means a new seed, effort
                    // 0 and new intro points, the opposite of what a flood calls for.)
                    tracing::warn!(
                        "fleet PoW: the control connection hosting the master service broke \
                         ({e}); added again in {}s",
                        ADD_RETRY.as_secs()
                    );
                    hosted = None;
                    retry_at = Some(Instant::now() + ADD_RETRY);
                    None
                }
                Err(e) => {
                    tracing::debug!("fleet PoW: master descriptor not usable yet: {e}");
                    None
                }
            },
            None => None,
        };
        let value = entry.as_ref().map(FleetEntry::encode);
        if value != advertised {
            match &value {
                Some(v) => c.membership.set(gossip::FLEET_POW, v).await,
                None => c.membership.delete(gossip::FLEET_POW).await,
            }
            advertised = value;
        }
        if let Ok(mut s) = c.status.lock() {
            s.fleet_pow = entry.map(|e| super::FleetStatus {
                period_num: e.period_num,
                intro_points: e.intro_points.len(),
                suggested_effort: e.effort,
            });
        }
    }
}

/// Whether `e` means the control connection itself is gone (tor then drops the service).
fn connection_gone(e: &crate::err::Error) -> bool {
    matches!(
        e,
        crate::err::Error::Tor(
            rustbalance_tor::Error::Io { .. } | rustbalance_tor::Error::Closed { .. }
        )
    )
}

/// `ADD_ONION` the master key on the tor process `pid`, on a connection of its own.
async fn add(c: &FleetCtx, pid: u32) -> crate::err::Result<Hosted> {
    let ctl = c.tor.control().await?;
    {
        let key = c.master.control_port_key();
        ctl.add_onion(&key, &c.args).await?;
    }
    Ok(Hosted { pid, ctl })
}

/// What this tor's master descriptor offers now: `None` until it has established intro
/// points and `pow-params`.
async fn read(c: &FleetCtx, ctl: &ControlClient) -> crate::err::Result<Option<FleetEntry>> {
    let view = c.views.get(ctl, c.testing).await?;
    let addr = c.master.address();
    let d = instance_descriptor(ctl, &addr, &view.time, SystemTime::now()).await?;
    let d = only_established(ctl, &addr, d).await?;
    Ok(FleetEntry::of(&d))
}
