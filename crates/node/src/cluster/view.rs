//! What a node reads from its tor: the network view (consensus, HSDirs, clock parameters,
//! cached per consensus and shared by the node's tasks) and its instance descriptors
//! (tor's own copy, or the one clients fetch from the HSDirs), trimmed to the intro points
//! whose circuits are up.
//!
//! ```text
//!  GETINFO consensus/valid-after ─changed?─▶ GETINFO consensus-microdesc, md/all ─▶ NetworkView
//!  GETINFO hs/service/desc/id | HSFETCH + hs/client/desc/id ─▶ ParsedDescriptor
//!  GETINFO circuit-status ─▶ established intro relays ─▶ only those intro points
//! ```

use crate::err::{Error, Result};
use rustbalance_hs::descriptor::{parse_descriptor, ParsedDescriptor};
use rustbalance_hs::ring::{parse_microdescs, Consensus, HsDirSet};
use rustbalance_hs::{OnionAddress, TimeParams};
use rustbalance_tor::control::{established_intro_relays, ControlClient};
use std::time::{Duration, Instant, SystemTime};

/// What tor currently knows of the network.
pub struct NetworkView {
    /// The microdesc consensus.
    pub consensus: Consensus,
    /// Its HSDirs with ed25519 ids.
    pub hsdirs: HsDirSet,
    /// Clock parameters.
    pub time: TimeParams,
}

/// Read the consensus and microdescriptors from a tor.
pub async fn network_view(ctl: &ControlClient, testing_network: bool) -> Result<NetworkView> {
    let text = ctl
        .getinfo("dir/status-vote/current/consensus-microdesc")
        .await
        .map_err(Error::NoConsensus)?;
    let consensus = Consensus::parse(&text)?;
    let mds = parse_microdescs(&ctl.getinfo("md/all").await?);
    let hsdirs = HsDirSet::new(&consensus, &mds);
    let time = consensus.time_params(testing_network)?;
    Ok(NetworkView {
        consensus,
        hsdirs,
        time,
    })
}

/// The network view, read again only when tor's consensus changed:
/// `GETINFO consensus/valid-after` is a few bytes, while the consensus and
/// the microdescriptors are megabytes on the real network. Clones share one
/// cache, so the tasks of a node that ask the same tor read each consensus
/// once between them.
#[derive(Default, Clone)]
pub struct ViewCache {
    inner: std::sync::Arc<tokio::sync::Mutex<CachedView>>,
}

#[derive(Default)]
struct CachedView {
    valid_after: String,
    view: Option<std::sync::Arc<NetworkView>>,
}

impl ViewCache {
    /// The current view (from the cache when the consensus is unchanged and
    /// every HSDir's ed25519 id was known).
    pub async fn get(
        &self,
        ctl: &ControlClient,
        testing_network: bool,
    ) -> Result<std::sync::Arc<NetworkView>> {
        let va = ctl
            .getinfo("consensus/valid-after")
            .await
            .unwrap_or_default();
        // Held across the read: a second caller waits for it rather than read it again.
        let mut c = self.inner.lock().await;
        if let Some(v) = &c.view {
            if !va.is_empty() && va == c.valid_after && v.hsdirs.missing_ed25519 == 0 {
                return Ok(v.clone());
            }
        }
        let v = std::sync::Arc::new(network_view(ctl, testing_network).await?);
        c.valid_after = va;
        c.view = Some(v.clone());
        Ok(v)
    }

    /// Forget the cached view (e.g. after tor restarted).
    pub async fn clear(&self) {
        self.inner.lock().await.view = None;
    }
}

impl NetworkView {
    /// A fingerprint of what places descriptors on the ring: the HSDirs and
    /// the shared random values. A change means the responsible HSDirs may
    /// have changed.
    pub fn ring_fingerprint(&self) -> String {
        let mut fp: String = self
            .hsdirs
            .dirs()
            .iter()
            .map(|d| d.fingerprint.as_str())
            .collect::<Vec<_>>()
            .join(",");
        for srv in [self.consensus.srv_previous, self.consensus.srv_current] {
            fp.push('|');
            fp.push_str(&srv.map(hex::encode).unwrap_or_default());
        }
        fp
    }
}

/// Read and decrypt an instance's own current descriptor from its tor.
pub async fn instance_descriptor(
    ctl: &ControlClient,
    instance: &OnionAddress,
    time: &TimeParams,
    now: SystemTime,
) -> Result<ParsedDescriptor> {
    let text = ctl
        .getinfo(&format!("hs/service/desc/id/{}", instance.without_suffix()))
        .await
        .map_err(Error::NoInstanceDescriptor)?;
    Ok(parse_descriptor(&text, instance, time, now)?)
}

/// The instance's descriptor for the clients' current time period, as clients fetch it
/// from the HSDirs (`HSFETCH`, then the client cache). Between a time-period start and the
/// next SRV, tor's `GETINFO hs/service/desc/id` still returns the *previous* period's
/// descriptor, whose intro circuits tor closes at the next SRV (`rotate_service_descriptors`)
/// while clients keep the master descriptor until the next period starts; the intro points
/// that live on are those of the descriptor tor uploaded for the current period.
pub async fn instance_descriptor_from_hsdirs(
    ctl: &ControlClient,
    instance: &OnionAddress,
    time: &TimeParams,
    now: SystemTime,
    wait: Duration,
) -> Result<ParsedDescriptor> {
    let addr = instance.without_suffix();
    let before = ctl.getinfo(&format!("hs/client/desc/id/{addr}")).await.ok();
    ctl.hsfetch(&addr, &[] as &[&str])
        .await
        .map_err(Error::InstanceFetch)?;
    let deadline = Instant::now() + wait;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = ctl.getinfo(&format!("hs/client/desc/id/{addr}")).await.ok();
        let fresh = got.is_some() && got != before;
        if fresh || Instant::now() >= deadline {
            let text = got.ok_or(Error::InstanceNotFetched)?;
            return Ok(parse_descriptor(&text, instance, time, now)?);
        }
    }
}

/// Keep the intro points of `d` whose circuits are established (see
/// [`established_intro_relays`]).
pub async fn only_established(
    ctl: &ControlClient,
    instance: &OnionAddress,
    mut d: ParsedDescriptor,
) -> Result<ParsedDescriptor> {
    let circuits = ctl.circuit_status().await.map_err(Error::CircuitStatus)?;
    let up = established_intro_relays(&circuits, &instance.without_suffix());
    d.intro_points.retain(|ip| {
        rustbalance_hs::descriptor::intro_point_relay(ip).is_some_and(|r| up.contains(&r))
    });
    Ok(d)
}
