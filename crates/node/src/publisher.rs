//! The publisher: reads instance descriptors and the network view from tor
//! over the control port, plans both live master descriptors with the hs
//! core, uploads each to exactly its responsible HSDirs (`+HSPOST
//! SERVER=...`), and confirms every upload from `HS_DESC` events.
//!
//! ```text
//!  instance tors ──GETINFO hs/service/desc/id──▶ intro points ─┐
//!  publishing tor ─GETINFO consensus-microdesc, md/all──▶ ring ─┼─▶ plan ─▶ HSPOST ×2 ─▶ HS_DESC UPLOADED/FAILED
//! ```

use crate::err::{Error, Result};
use rand::CryptoRng;
use rustbalance_hs::descriptor::{
    parse_descriptor, select_intro_points, InstanceIntros, IntroPointDesc, ParsedDescriptor,
    PowParams, Protocols, MAX_INTRO_POINTS,
};
use rustbalance_hs::publish::{plan_uploads, PublishInput, SlotUpload};
use rustbalance_hs::ring::{parse_microdescs, Consensus, HsDirSet};
use rustbalance_hs::{IdentityKey, OnionAddress, TimeParams};
use rustbalance_tor::control::{ControlClient, Event};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;

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
        .map_err(|e| {
            Error::Other(format!(
                "tor has no microdesc consensus yet (is it bootstrapped?): {e}"
            ))
        })?;
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
        .map_err(|e| Error::Other(format!("instance tor has no descriptor yet: {e}")))?;
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
        .map_err(|e| Error::Other(format!("HSFETCH of the instance: {e}")))?;
    let deadline = Instant::now() + wait;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = ctl.getinfo(&format!("hs/client/desc/id/{addr}")).await.ok();
        let fresh = got.is_some() && got != before;
        if fresh || Instant::now() >= deadline {
            let text = got.ok_or_else(|| {
                Error::Other(
                    "the instance's descriptor could not be fetched from the HSDirs".into(),
                )
            })?;
            return Ok(parse_descriptor(&text, instance, time, now)?);
        }
    }
}

/// Relays (upper-case RSA fingerprints) where `instance` has an *established* intro circuit,
/// from tor's `circuit-status` lines. tor's descriptor can still list intro points whose
/// circuits are gone (it refreshes the list only when it uploads); advertising those sends
/// clients to intro points that NACK them.
pub fn established_intro_relays(circuit_status: &str, instance: &OnionAddress) -> Vec<String> {
    let addr = instance.without_suffix();
    circuit_status
        .lines()
        .filter(|l| {
            l.contains(" PURPOSE=HS_SERVICE_INTRO")
                && l.contains(" HS_STATE=HSSI_ESTABLISHED")
                && l.contains(&format!(" REND_QUERY={addr}"))
        })
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_id, status, path) = (f.next()?, f.next()?, f.next()?);
            if status != "BUILT" {
                return None;
            }
            let last = path.rsplit(',').next()?.trim_start_matches('$');
            let fpr = last.split(['~', '=']).next()?;
            (fpr.len() == 40).then(|| fpr.to_ascii_uppercase())
        })
        .collect()
}

/// Keep the intro points of `d` whose circuits are established (see
/// [`established_intro_relays`]).
pub async fn only_established(
    ctl: &ControlClient,
    instance: &OnionAddress,
    mut d: ParsedDescriptor,
) -> Result<ParsedDescriptor> {
    let status = ctl
        .getinfo("circuit-status")
        .await
        .map_err(|e| Error::Other(format!("GETINFO circuit-status: {e}")))?;
    let up = established_intro_relays(&status, instance);
    d.intro_points.retain(|ip| {
        rustbalance_hs::descriptor::intro_point_relay(ip).is_some_and(|r| up.contains(&r))
    });
    Ok(d)
}

/// The outcome of uploading one descriptor slot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotReport {
    /// Time period of the descriptor.
    pub period_num: u64,
    /// Its revision counter.
    pub revision: u64,
    /// Intro points listed.
    pub intro_points: usize,
    /// Size in bytes.
    pub size: usize,
    /// HSDir fingerprint → "UPLOADED", "FAILED <reason>" or "NO ANSWER".
    pub hsdirs: BTreeMap<String, String>,
}

impl SlotReport {
    /// How many HSDirs confirmed the upload.
    pub fn uploaded(&self) -> usize {
        self.hsdirs.values().filter(|s| *s == "UPLOADED").count()
    }
}

/// Publishes master descriptors through one tor's control port.
pub struct Publisher {
    ctl: ControlClient,
    events: UnboundedReceiver<Event>,
    master: IdentityKey,
    testing_network: bool,
    max_intro_points: usize,
    views: ViewCache,
}

impl Publisher {
    /// Take over `ctl` (its event stream is used for upload confirmations).
    pub async fn new(
        ctl: ControlClient,
        master: IdentityKey,
        testing_network: bool,
        max_intro_points: usize,
    ) -> Result<Self> {
        let events = ctl.take_events().ok_or_else(|| {
            Error::Other("the control connection's event stream is already taken".into())
        })?;
        ctl.setevents(&["HS_DESC"]).await?;
        Ok(Publisher {
            ctl,
            events,
            master,
            testing_network,
            max_intro_points: max_intro_points.clamp(1, MAX_INTRO_POINTS),
            views: ViewCache::default(),
        })
    }

    /// Share `views` with other readers of the same tor instead of a cache of its own.
    pub fn with_views(mut self, views: ViewCache) -> Self {
        self.views = views;
        self
    }

    /// The master address.
    pub fn address(&self) -> OnionAddress {
        self.master.address()
    }

    /// The network view of the publishing tor (cached per consensus).
    pub async fn view(&mut self) -> Result<std::sync::Arc<NetworkView>> {
        self.views.get(&self.ctl, self.testing_network).await
    }

    /// The control client (to read the network view from the same tor).
    pub fn control(&self) -> &ControlClient {
        &self.ctl
    }

    /// Merge `instances`, build both live descriptors and upload each to
    /// its responsible HSDirs; wait up to `confirm_timeout` for the
    /// `HS_DESC` answers.
    pub async fn publish<R: rand::Rng + CryptoRng>(
        &mut self,
        instances: &[ParsedDescriptor],
        now: SystemTime,
        confirm_timeout: Duration,
        rng: &mut R,
    ) -> Result<Vec<SlotReport>> {
        let intros: Vec<InstanceIntros> = instances
            .iter()
            .map(|d| InstanceIntros {
                instance: d.address.to_string(),
                intro_points: d.intro_points.clone(),
            })
            .collect();
        let flow_control = if instances.iter().all(|d| d.flow_control.is_some()) {
            instances.first().and_then(|d| d.flow_control.clone())
        } else {
            None
        };
        self.publish_intros(&intros, flow_control, None, now, confirm_timeout, rng)
            .await
    }

    /// Like [`Publisher::publish`], from intro points already extracted
    /// (e.g. received over gossip).
    pub async fn publish_intros<R: rand::Rng + CryptoRng>(
        &mut self,
        intros: &[InstanceIntros],
        flow_control: Option<(Protocols, u8)>,
        pow_params: Option<&PowParams>,
        now: SystemTime,
        confirm_timeout: Duration,
        rng: &mut R,
    ) -> Result<Vec<SlotReport>> {
        let view = self.views.get(&self.ctl, self.testing_network).await?;
        let chosen: Vec<IntroPointDesc> = select_intro_points(intros, self.max_intro_points, rng)
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let plan = plan_uploads(
            &PublishInput {
                master: &self.master,
                consensus: &view.consensus,
                hsdirs: &view.hsdirs,
                time: view.time,
                now,
                intro_points: &chosen,
                flow_control,
                pow_params,
            },
            rng,
        )?;
        // Drop stale events from earlier rounds.
        while self.events.try_recv().is_ok() {}
        let addr = self.master.address().without_suffix();
        let mut reports = Vec::new();
        for up in &plan {
            let servers: Vec<String> = up.hsdirs.iter().map(|d| d.fingerprint.clone()).collect();
            self.ctl
                .hspost(&up.descriptor.text, &servers, Some(&addr))
                .await
                .map_err(|e| {
                    Error::Other(format!(
                        "HSPOST for time period {}: {e}",
                        up.slot.period_num
                    ))
                })?;
            reports.push(report_of(up));
        }
        self.confirm(&addr, &mut reports, confirm_timeout).await;
        Ok(reports)
    }

    /// Fill in `HS_DESC UPLOADED/FAILED` answers until all are in or time runs out.
    async fn confirm(&mut self, addr: &str, reports: &mut [SlotReport], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let pending = |r: &[SlotReport]| {
            r.iter()
                .flat_map(|s| s.hsdirs.values())
                .any(|v| v == "NO ANSWER")
        };
        while pending(reports) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(ev)) = tokio::time::timeout(left, self.events.recv()).await else {
                break;
            };
            // 650 HS_DESC UPLOADED|FAILED <addr> <auth> <$FPR~nick> [<desc-id>] [REASON=...]
            let f: Vec<&str> = ev.text().split(' ').collect();
            if f.len() < 5 || f[0] != "HS_DESC" || f[2] != addr {
                continue;
            }
            let status = match f[1] {
                "UPLOADED" => "UPLOADED".to_string(),
                "FAILED" => format!(
                    "FAILED {}",
                    f.iter()
                        .find_map(|x| x.strip_prefix("REASON="))
                        .unwrap_or("")
                ),
                _ => continue,
            };
            let fpr = f[4].trim_start_matches('$');
            let fpr = fpr
                .split(['~', '='])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            // An HSDir may hold both slots; fill the first slot still waiting on it.
            if let Some(v) = reports
                .iter_mut()
                .filter_map(|r| r.hsdirs.get_mut(&fpr))
                .find(|v| *v == "NO ANSWER")
            {
                *v = status;
            }
        }
    }
}

fn report_of(up: &SlotUpload) -> SlotReport {
    SlotReport {
        period_num: up.slot.period_num,
        revision: up.descriptor.revision,
        intro_points: up.descriptor.intro_count,
        size: up.descriptor.text.len(),
        hsdirs: up
            .hsdirs
            .iter()
            .map(|d| (d.fingerprint.clone(), "NO ANSWER".to_string()))
            .collect(),
    }
}

/// Fail unless every slot reached at least one HSDir.
pub fn require_uploaded(reports: &[SlotReport]) -> Result<()> {
    for r in reports {
        if r.uploaded() == 0 {
            return Err(Error::Other(format!(
                "no HSDir confirmed the descriptor for time period {}: {:?}",
                r.period_num, r.hsdirs
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod circuit_tests {
    use super::*;

    #[test]
    fn established_intro_circuits_of_one_instance() {
        let a = OnionAddress::from_public_key([3u8; 32]);
        let other = OnionAddress::from_public_key([4u8; 32]);
        let f1 = "A".repeat(40);
        let f2 = "b".repeat(40);
        let f3 = "C".repeat(40);
        let status = format!(
            "7 BUILT $1111111111111111111111111111111111111111~r1,${f1}~r2 BUILD_FLAGS=IS_INTERNAL PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={} TIME_CREATED=x\n\
             8 BUILT $1111111111111111111111111111111111111111~r1,${f2}=r3 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={}\n\
             9 BUILT ${f3}~r4 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_CONNECTING REND_QUERY={}\n\
             10 BUILT ${f3}~r4 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={}\n\
             11 EXTENDED ${f3}~r4 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={}\n",
            a.without_suffix(),
            a.without_suffix(),
            a.without_suffix(),
            other.without_suffix(),
            a.without_suffix(),
        );
        assert_eq!(
            established_intro_relays(&status, &a),
            vec![f1.clone(), f2.to_ascii_uppercase()]
        );
        assert_eq!(established_intro_relays(&status, &other), vec![f3]);
    }
}
