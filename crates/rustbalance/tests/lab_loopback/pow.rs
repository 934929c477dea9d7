//! tor's PoW under a flood (issue 16): which `pow-params` a master descriptor may carry.
//!
//! Two services with `HiddenServicePoWQueueRate 1` (so that a small flood queues
//! introductions and tor raises its suggested effort at its next 5-minute update):
//!
//! * `powinst`: an instance tor (own key, `HiddenServiceOnionbalanceInstance 1`) behind a
//!   master address, published by RustBalance's publisher;
//! * `powsolo`: a tor holding its own key and publishing natively (single-node mode).
//!
//! Both are flooded from two extra lab client tors until both suggest effort > 0. Then:
//!
//! 1. the lab client (which solves, as every tor client does when the descriptor
//!    suggests effort) is served by `powsolo` while its flood goes on;
//! 2. main's old fallback — the instance's `pow-params` copied into the master
//!    descriptor — loses that client, and `powinst`'s tor logs the failed verification;
//! 3. the fixed rule (`cluster::pow::master_pow`: none from an instance) serves it.

use anyhow::{ensure, Context, Result};
use rustbalance_hs::descriptor::{InstanceIntros, ParsedDescriptor, PowParams};
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_lab::{DemoTarget, Lab, LabTor, Torrc};
use rustbalance_node::cluster::pow::{master_pow, suggested_effort, OwnPow};
use rustbalance_node::keystore::KeyFiles;
use rustbalance_node::publisher::{instance_descriptor, network_view, require_uploaded, Publisher};
use rustbalance_testbed::client_cache::Newnym;
use rustbalance_testbed::clients::outcome;
use rustbalance_testbed::flood::{Flood, FloodClients, FloodPlan};
use rustbalance_testbed::poll_until;
use rustbalance_testbed::pow_log::{count_lines, POW_VERIFIED};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Liveness bounds (a busy 2-core machine must pass; the times are printed).
const BOOT: Duration = Duration::from_secs(180);
/// tor re-evaluates the effort every 300 s from the service's start; two chances.
const EFFORT: Duration = Duration::from_secs(900);
/// Flood pace per target: three introductions a second against a queue that
/// dispatches one.
const FLOOD_RATE: f64 = 3.0;

/// One of the two PoW services.
struct Svc {
    name: &'static str,
    key: IdentityKey,
    tor: LabTor,
    _target: DemoTarget,
}

impl Svc {
    async fn start(lab: &Lab, name: &'static str, master: Option<&OnionAddress>) -> Result<Svc> {
        let key = IdentityKey::generate(&mut rand::rng());
        let hs = lab.dir().join("rustbalance").join(name).join("hs");
        key.write_tor_dir(&hs)?;
        let target = DemoTarget::start(&format!("served by {name}\n")).await?;
        let mut t = Torrc::new();
        t.push("HiddenServiceDir", hs.display())?;
        t.push("HiddenServicePort", format!("80 {}", target.addr()))?;
        t.push("HiddenServicePoWDefensesEnabled", 1)?;
        t.push("HiddenServicePoWQueueRate", 1)?;
        t.push("HiddenServicePoWQueueBurst", 1)?;
        let rend_log = lab.dir().join(format!("{name}-rend.log"));
        t.push("Log", format!("[rend]info file {}", rend_log.display()))?;
        if let Some(m) = master {
            rustbalance_node::keystore::write_atomic(
                &hs.join("ob_config"),
                format!("MasterOnionAddress {m}\n").as_bytes(),
                0o600,
            )?;
            t.push("HiddenServiceOnionbalanceInstance", 1)?;
            t.push("PublishHidServDescriptors", 0)?;
        }
        let tor = lab.spawn_tor(name, &t).await?;
        Ok(Svc {
            name,
            key,
            tor,
            _target: target,
        })
    }

    fn rend_log(&self, lab: &Lab) -> std::path::PathBuf {
        lab.dir().join(format!("{}-rend.log", self.name))
    }

    /// Its tor's own descriptor (with intro points), as the intro task reads it.
    async fn descriptor(&self) -> Result<Option<ParsedDescriptor>> {
        let ctl = self.tor.control().await?;
        let Ok(view) = network_view(&ctl, true).await else {
            return Ok(None);
        };
        let d = instance_descriptor(&ctl, &self.key.address(), &view.time, SystemTime::now()).await;
        Ok(d.ok().filter(|d| !d.intro_points.is_empty()))
    }

    async fn stop(self) -> Result<()> {
        let tor = self.tor;
        tokio::task::spawn_blocking(move || tor.stop()).await??;
        Ok(())
    }
}

pub async fn pow_under_flood(lab: Lab) -> Result<()> {
    let master = IdentityKey::generate(&mut rand::rng());
    let inst = Svc::start(&lab, "powinst", Some(&master.address())).await?;
    let solo = Svc::start(&lab, "powsolo", None).await?;
    let started = Instant::now();
    let clients = FloodClients::start(&lab, "powflood", 2, BOOT).await;
    let r = match &clients {
        Ok(c) => flooded(&lab, &master, &inst, &solo, c, started).await,
        Err(e) => Err(anyhow::anyhow!("flood clients: {e:#}")),
    };
    if let Ok(c) = clients {
        c.stop().await?;
    }
    inst.stop().await?;
    solo.stop().await?;
    r
}

/// Master descriptors for `d`'s intro points, with `pow`; fails unless both slots
/// reached an HSDir.
async fn publish(p: &mut Publisher, d: &ParsedDescriptor, pow: Option<&PowParams>) -> Result<()> {
    let intros = [InstanceIntros {
        instance: "powinst".into(),
        intro_points: d.intro_points.clone(),
    }];
    let r = p
        .publish_intros(
            &intros,
            d.flow_control.clone(),
            pow,
            SystemTime::now(),
            Duration::from_secs(30),
            &mut rand::rng(),
        )
        .await?;
    require_uploaded(&r)?;
    Ok(())
}

/// The fixed rule's choice for `powinst` (the only node, its tor an instance).
fn fixed_rule(d: &ParsedDescriptor, master: &IdentityKey) -> Option<PowParams> {
    let intros = [InstanceIntros {
        instance: "powinst".into(),
        intro_points: d.intro_points.clone(),
    }];
    master_pow(
        &intros,
        "powinst",
        OwnPow::of(d).as_ref(),
        &master.address(),
    )
}

async fn flooded(
    lab: &Lab,
    master: &IdentityKey,
    inst: &Svc,
    solo: &Svc,
    clients: &FloodClients,
    started: Instant,
) -> Result<()> {
    let every = Duration::from_millis(500);
    let (d0, _) = poll_until("powinst's descriptor", BOOT, every, async || {
        inst.descriptor().await
    })
    .await?;
    let mut publisher =
        Publisher::new(inst.tor.control().await?, master.duplicate(), true, 20).await?;
    ensure!(
        fixed_rule(&d0, master).is_none(),
        "no pow-params from an instance"
    );
    publish(&mut publisher, &d0, None).await?;
    let master_url = format!("http://{}/", master.address());
    let solo_url = format!("http://{}/", solo.key.address());
    lab.wait_http(&master_url, "served by powinst", BOOT)
        .await?;
    lab.wait_http(&solo_url, "served by powsolo", BOOT).await?;
    eprintln!(
        "both services reachable {:.0}s after their tors started",
        started.elapsed().as_secs_f64()
    );

    let plan = FloodPlan::new(FLOOD_RATE, 3600, Duration::from_secs(1200))?;
    let floods = [
        Flood::spawn(clients.socks(), master_url.clone(), plan)?,
        Flood::spawn(clients.socks(), solo_url.clone(), plan)?,
    ];
    let t_flood = Instant::now();
    let effort = |d: &ParsedDescriptor| d.pow_params.first().map_or(0, suggested_effort);
    let ((d1, ds), _) = poll_until(
        "both tors suggesting PoW effort > 0 under the flood",
        EFFORT,
        Duration::from_secs(2),
        async || {
            ensure!(
                floods.iter().all(|f| !f.is_finished()),
                "a flood ended before tor raised its effort"
            );
            let (a, b) = (inst.descriptor().await?, solo.descriptor().await?);
            Ok(match (a, b) {
                (Some(a), Some(b)) if effort(&a) > 0 && effort(&b) > 0 => Some((a, b)),
                _ => None,
            })
        },
    )
    .await?;
    eprintln!(
        "flood {FLOOD_RATE}/s per service: tor suggests effort {} (powinst) and {} (powsolo) after {:.0}s of flood ({:.0}s after start)",
        effort(&d1),
        effort(&ds),
        t_flood.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // 1. A tor holding its own key: the solving client is served while the flood goes on.
    let client =
        rustbalance_tor::ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let mut newnym = Newnym::default();
    newnym.send(&client).await?;
    let (_, took) = lab.wait_http(&solo_url, "served by powsolo", BOOT).await?;
    let verified = count_lines(&solo.rend_log(lab), POW_VERIFIED);
    eprintln!(
        "powsolo under flood: solving client served in {:.1}s; its tor verified {verified} PoW solutions",
        took.as_secs_f64()
    );
    ensure!(verified > 0, "powsolo's tor verified no PoW solution");
    for f in floods {
        let r = f.finish().await?;
        eprintln!("flood: {}", serde_json::to_string(&r)?);
    }

    // 2. main's old fallback: the instance's pow-params in the master descriptor.
    let pow = OwnPow::of(&d1).context("powinst's descriptor has pow-params")?;
    publish(&mut publisher, &d1, Some(&pow.params)).await?;
    newnym.send(&client).await?;
    let before = count_lines(inst.tor.log_file(), "PoW");
    let r = lab.http_get(&master_url, Duration::from_secs(90)).await;
    let got = outcome(&r);
    let (line, _) = poll_until(
        "powinst's tor logging the failed PoW verification",
        Duration::from_secs(60),
        every,
        async || Ok(pow_failure(inst.tor.log_file(), before)),
    )
    .await?;
    eprintln!(
        "old fallback (effort {}): solving client got {got:?}; powinst's tor: {line}",
        effort(&d1)
    );
    ensure!(
        !got.starts_with("served by"),
        "the old fallback served a solving client: {got}"
    );

    // 3. The fixed rule: no pow-params from an instance; the client is served.
    let (d2, _) = poll_until("powinst's descriptor", BOOT, every, async || {
        inst.descriptor().await
    })
    .await?;
    let pow = fixed_rule(&d2, master);
    ensure!(
        pow.is_none(),
        "the fixed rule kept an instance's pow-params"
    );
    publish(&mut publisher, &d2, pow.as_ref()).await?;
    newnym.send(&client).await?;
    let (_, took) = lab
        .wait_http(&master_url, "served by powinst", BOOT)
        .await?;
    eprintln!("fixed rule: served in {:.1}s", took.as_secs_f64());
    Ok(())
}

/// The first PoW verification failure tor logged after the first `skip` PoW lines.
fn pow_failure(path: &Path, skip: usize) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .filter(|l| l.contains("PoW"))
        .skip(skip)
        .find(|l| l.contains("failed") || l.contains("Invalid"))
        .map(str::to_string)
}
