//! The effect of the single-node switch, thin: [`SoloDriver::step`] reads what this
//! node's tor does, asks [`super::SoloSwitch`], and adds or removes the master service.
//!
//! ```text
//!  AddMaster:    own control connection ─▶ SETEVENTS HS_DESC ─▶ ADD_ONION ED25519-V3:<key>
//!                Port=… MaxStreams=… PoWDefensesEnabled=1 PoWQueueRate=… PoWQueueBurst=…
//!                (no Flags=Detach: the service lives as long as this connection)
//!  tor's upload: HS_DESC UPLOAD <master> … <hsdir> (tor's own upload; an HSPOST sends none)
//!                then HS_DESC UPLOADED <master> … <same hsdir>
//!  which is newer at the HSDirs: tor's last confirmed upload or the last confirmed merged
//!  publication (one sequence orders both): tor's ─▶ `master_uploaded`; merged listing
//!  other nodes ─▶ `merged_confirmed`. Each upload of tor's bumps the epoch the publisher
//!  sees, so its next merged descriptor is built anew (and newer), intro points unchanged.
//!  gone:         tor's pid changed or the connection closed (tor restarted) ─▶ not hosted
//!  RemoveMaster: DEL_ONION <master> ─▶ drop the connection (removes it too, either way)
//! ```
//!
//! The master key crosses only the authenticated control connection, in a zeroized
//! buffer ([`rustbalance_hs::IdentityKey::control_port_key`]); tor then holds it in memory
//! for as long as it hosts the service (docs/SECURITY.md).

use super::{SoloAction, SoloInputs, SoloSwitch, SoloTimers, Uploads};
use crate::config::Config;
use rustbalance_hs::IdentityKey;
use rustbalance_tor::control::{ControlClient, Event};
use rustbalance_tor::{TorPhase, TorSupervisor};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;

/// After a failed `ADD_ONION`, wait this long before trying again.
const ADD_RETRY: Duration = Duration::from_secs(10);

/// The `ADD_ONION` arguments of the master service on this node's tor (no secret in
/// them), or why the single-node switch (and fleet PoW) is off for this configuration.
pub fn master_service_args(
    cfg: &Config,
    proxy: SocketAddr,
) -> std::result::Result<Vec<String>, &'static str> {
    let cluster = cfg.cluster.as_ref().ok_or("not a cluster node")?;
    if !cluster.solo && !cluster.fleet_pow {
        return Err("cluster.solo = false");
    }
    if !cfg.pow.enabled {
        return Err("[pow] enabled = false (PoW is what hosting the master key is for)");
    }
    if cfg.service.authorized_clients_dir.is_some() {
        return Err("service.authorized_clients_dir is set (restricted discovery)");
    }
    if cfg.proxy.export_circuit_id {
        return Err("proxy.export_circuit_id = true (ADD_ONION cannot export circuit ids)");
    }
    let mut args = vec![
        format!("Port={},{proxy}", cfg.service.virtual_port),
        format!("MaxStreams={}", cfg.proxy.max_streams_per_circuit),
    ];
    if cfg.proxy.close_circuit_over_max_streams {
        args.push("Flags=MaxStreamsCloseCircuit".into());
    }
    args.push("PoWDefensesEnabled=1".into());
    args.push(format!("PoWQueueRate={}", cfg.pow.queue_rate));
    args.push(format!("PoWQueueBurst={}", cfg.pow.queue_burst));
    Ok(args)
}

/// What `/status` shows as the node's descriptor mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoloMode {
    /// Merged descriptors (or not publishing); the master service is not hosted here.
    Merged,
    /// The master service is hosted; tor's own descriptor is not uploaded yet, merged
    /// descriptors go on.
    Starting,
    /// tor publishes the master descriptor itself, with PoW; no merged descriptors.
    Solo,
    /// Others are back: merged descriptors again; the master service goes after the drain.
    Draining,
}

impl SoloMode {
    /// The mode as `/status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SoloMode::Merged => "merged",
            SoloMode::Starting => "single-node (starting)",
            SoloMode::Solo => "single-node",
            SoloMode::Draining => "merged (single-node draining)",
        }
    }
}

/// The master service on this node's tor.
struct Hosted {
    /// The tor process that hosts it.
    pid: u32,
    /// The connection that owns it (tor removes it when this closes).
    ctl: ControlClient,
    events: UnboundedReceiver<Event>,
    /// The master address without `.onion` (tor's ServiceID).
    id: String,
    /// HSDirs tor began uploading its own master descriptor to.
    uploading: BTreeSet<String>,
}

impl Hosted {
    /// Note an event; true when it confirms one of tor's own uploads.
    fn note(&mut self, ev: &Event) -> bool {
        let Some(h) = ev.hs_desc() else { return false };
        if h.address != self.id {
            return false;
        }
        let fpr = h.hsdir_fingerprint();
        match h.action.as_str() {
            "UPLOAD" => {
                self.uploading.insert(fpr);
                false
            }
            "UPLOADED" => self.uploading.remove(&fpr),
            _ => false,
        }
    }
}

/// The single-node switch and its effect on this node's tor.
pub struct SoloDriver {
    switch: SoloSwitch,
    timers: SoloTimers,
    /// `ADD_ONION` arguments ([`master_service_args`]).
    args: Vec<String>,
    hosted: Option<Hosted>,
    /// Which is newest at the HSDirs, tor's descriptor or the merged one.
    uploads: Uploads,
    /// No `ADD_ONION` before this (after a failure).
    retry_at: Option<Instant>,
    /// Bumped by each of tor's own uploads and each removal: the publisher republishes
    /// on a change, so that its merged descriptor is newer than tor's.
    epoch: u64,
}

impl SoloDriver {
    /// A driver that adds the master service with `args`.
    pub fn new(args: Vec<String>, timers: SoloTimers) -> SoloDriver {
        SoloDriver {
            switch: SoloSwitch::default(),
            timers,
            args,
            hosted: None,
            uploads: Uploads::default(),
            retry_at: None,
            epoch: 0,
        }
    }

    /// tor's own master descriptor is the newest at the HSDirs.
    fn master_uploaded(&self) -> bool {
        self.hosted.is_some() && self.uploads.master_uploaded()
    }

    /// A merged descriptor listing other nodes is newer at the HSDirs than tor's.
    fn merged_confirmed(&self) -> bool {
        self.hosted.is_some() && self.uploads.merged_confirmed()
    }

    /// One round: `leader` holds the lease, `peers` other healthy nodes advertise intro
    /// points. Runs the switch's action; returns whether merged descriptors go out.
    pub async fn step(
        &mut self,
        tor: &TorSupervisor,
        master: &IdentityKey,
        leader: bool,
        peers: usize,
    ) -> bool {
        self.refresh(tor);
        let inputs = SoloInputs {
            leader,
            holds_master_key: true,
            peers,
            master_service: self.hosted.is_some(),
            master_uploaded: self.master_uploaded(),
            merged_confirmed: self.merged_confirmed(),
        };
        let now = Instant::now();
        let step = self.switch.step(now, &inputs, &self.timers);
        match step.action {
            SoloAction::AddMaster if self.retry_at.is_none_or(|t| now >= t) => {
                if let Err(e) = self.add(tor, master).await {
                    self.retry_at = Some(now + ADD_RETRY);
                    tracing::warn!(
                        "single-node mode: this node's tor did not take the master service: \
                         {e}; merged descriptors go on, tried again in {}s",
                        ADD_RETRY.as_secs()
                    );
                }
            }
            SoloAction::RemoveMaster => {
                let why = if leader {
                    "other nodes are back and a merged descriptor is confirmed"
                } else {
                    "the lease is gone"
                };
                self.remove(why).await;
            }
            _ => {}
        }
        step.publish_merged
    }

    /// A merged publication ended: `confirmed` (every slot reached an HSDir) and
    /// whether it listed other nodes' intro points.
    pub fn merged_published(&mut self, confirmed: bool, lists_peers: bool) {
        if confirmed {
            self.uploads.merged_confirmed_now(lists_peers);
        }
    }

    /// The mode `/status` shows.
    pub fn mode(&self) -> SoloMode {
        if self.hosted.is_none() {
            SoloMode::Merged
        } else if self.merged_confirmed() {
            SoloMode::Draining
        } else if self.master_uploaded() {
            SoloMode::Solo
        } else {
            SoloMode::Starting
        }
    }

    /// Changes with each of tor's own uploads and each removal (see the field).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Forget the service when its tor or its connection is gone; note tor's uploads.
    fn refresh(&mut self, tor: &TorSupervisor) {
        let Some(h) = self.hosted.as_mut() else {
            return;
        };
        let st = tor.status();
        let gone = if st.pid != Some(h.pid) {
            Some("tor restarted")
        } else {
            loop {
                match h.events.try_recv() {
                    Ok(ev) if h.note(&ev) => {
                        if !self.uploads.master_uploaded() {
                            tracing::info!(
                                "single-node mode: tor uploaded its own master descriptor \
                                 (with PoW); merged descriptors stop"
                            );
                        }
                        self.uploads.tor_uploaded();
                        self.epoch += 1;
                    }
                    Ok(_) => {}
                    Err(TryRecvError::Empty) => break None,
                    Err(TryRecvError::Disconnected) => break Some("its control connection closed"),
                }
            }
        };
        if let Some(why) = gone {
            tracing::warn!(
                "single-node mode: {why}, and tor dropped the master service with it; \
                 added again if this node is still alone"
            );
            self.hosted = None;
        }
    }

    /// Host the master service on tor (its own control connection owns it).
    async fn add(&mut self, tor: &TorSupervisor, master: &IdentityKey) -> crate::err::Result<()> {
        let st = tor.status();
        let (Some(pid), TorPhase::Running) = (st.pid, st.phase) else {
            return Err(rustbalance_tor::Error::ControlPortDown.into());
        };
        let ctl = tor.control().await?;
        let events = ctl
            .take_events()
            .ok_or(rustbalance_tor::Error::EventsTaken)?;
        ctl.setevents(&["HS_DESC"]).await?;
        let id = {
            let key = master.control_port_key();
            ctl.add_onion(&key, &self.args).await?
        };
        tracing::info!(
            "single-node mode: alone for {}s, this node's tor now hosts the master address \
             with PoW (merged descriptors go on until tor's own is uploaded)",
            self.timers.alone_after.as_secs()
        );
        self.retry_at = None;
        // Only what is confirmed from now on counts.
        self.uploads.added();
        self.hosted = Some(Hosted {
            pid,
            ctl,
            events,
            id,
            uploading: BTreeSet::new(),
        });
        Ok(())
    }

    /// Stop hosting the master service (`DEL_ONION`; closing the connection does it too).
    async fn remove(&mut self, why: &str) {
        let Some(h) = self.hosted.take() else { return };
        self.epoch += 1;
        match h.ctl.del_onion(&h.id).await {
            Ok(()) => tracing::info!(
                "single-node mode ends ({why}): the master service is removed from this \
                 node's tor"
            ),
            Err(e) => tracing::warn!(
                "single-node mode ends ({why}): DEL_ONION failed ({e}); closing the control \
                 connection removes the master service"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!(
            "[node]\nname = \"n\"\ndata_dir = \"/x\"\n[service]\n[target]\n\
             url = \"tcp://127.0.0.1:1\"\n[cluster]\nsecret_file = \"/s\"\n\
             listen = \"127.0.0.1:7946\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_master_service_gets_the_ports_stream_limits_and_pow() {
        let p = SocketAddr::from(([127, 0, 0, 1], 9));
        let args = master_service_args(&config(""), p).unwrap();
        assert_eq!(
            args,
            [
                "Port=80,127.0.0.1:9",
                "MaxStreams=128",
                "Flags=MaxStreamsCloseCircuit",
                "PoWDefensesEnabled=1",
                "PoWQueueRate=250",
                "PoWQueueBurst=2500",
            ]
        );
    }

    #[test]
    fn the_switch_is_off_where_add_onion_cannot_do_what_the_torrc_does() {
        let p = SocketAddr::from(([127, 0, 0, 1], 9));
        for extra in [
            "solo = false\n",
            "[pow]\nenabled = false\nqueue_rate = 1\nqueue_burst = 1\n",
            "[proxy]\nexport_circuit_id = true\n",
        ] {
            assert!(master_service_args(&config(extra), p).is_err(), "{extra}");
        }
    }
}
