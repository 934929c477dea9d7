//! Instances behind a master address, published by RustBalance's publisher;
//! tor's revision counter against ours.

use anyhow::{ensure, Result};
use rustbalance_hs::descriptor::{intro_point_relay, revision_counter};
use rustbalance_hs::time::{from_unix, DescriptorSlot, SrvChoice};
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{Lab, Torrc};
use rustbalance_node::keystore::KeyFiles;
use rustbalance_node::publisher::{instance_descriptor, network_view};
use rustbalance_testbed::clients::{served, split};
use rustbalance_testbed::instances::MasterSetup;
use rustbalance_testbed::poll_until;
use std::time::{Duration, Instant, SystemTime};

pub async fn master_address_served_by_both_instances(lab: Lab) -> Result<()> {
    let setup = MasterSetup::start(&lab, "inst", 2).await?;
    let r = served_by_both(&lab, &setup).await;
    setup.stop().await?;
    r
}

async fn served_by_both(lab: &Lab, setup: &MasterSetup) -> Result<()> {
    let t_spawn = Instant::now();
    let descs = setup.instance_descriptors(Duration::from_secs(180)).await?;
    let t_desc = Instant::now();
    ensure!(descs.len() == 2);
    for d in &descs {
        ensure!(!d.intro_points.is_empty());
        ensure!(
            d.flow_control.is_some(),
            "tor 0.4.8+ advertises flow-control"
        );
    }
    eprintln!(
        "instance descriptors after {:.1}s",
        t_spawn.elapsed().as_secs_f64()
    );

    // One point per relay: a client only ever introduces through the first point
    // listed on a relay, so the publisher lists at most one there (the lab has few
    // relays, and two instances often pick the same one).
    let relays = descs
        .iter()
        .flat_map(|d| d.intro_points.iter().map(intro_point_relay))
        .collect::<std::collections::HashSet<_>>()
        .len()
        .min(20);
    eprintln!(
        "instance intro points: {} on {relays} distinct relays",
        descs.iter().map(|d| d.intro_points.len()).sum::<usize>()
    );
    let mut publisher = setup.publisher().await?;
    let reports = setup.publish(&mut publisher, &descs).await?;
    ensure!(reports.len() == 2, "both live descriptors");
    for r in &reports {
        eprintln!(
            "period {} rev {}: {}/{} HSDirs",
            r.period_num,
            r.revision,
            r.uploaded(),
            r.hsdirs.len()
        );
        ensure!(
            r.intro_points == relays,
            "the master descriptor must list one intro point per distinct relay: {} listed, {relays} relays",
            r.intro_points
        );
    }

    let (resp, _) = lab
        .wait_http(&setup.url(), "served by", Duration::from_secs(120))
        .await?;
    eprintln!(
        "master reachable {:.1}s after the instance descriptors existed: {:?}",
        t_desc.elapsed().as_secs_f64(),
        resp.text().trim()
    );

    let split = split(lab, &setup.url(), 40).await;
    eprintln!("40 requests on fresh circuits: {split:?}");
    ensure!(
        served(&split) >= 38,
        "at most 2 of 40 requests may fail: {split:?}"
    );
    for i in &setup.instances {
        let n = split
            .get(&format!("served by {}", i.name))
            .copied()
            .unwrap_or(0);
        ensure!(n > 0, "{} never answered: {split:?}", i.name);
    }
    Ok(())
}

/// Our revision counter is tor's: a plain tor onion service's own
/// descriptor carries a counter our OPE scheme produces for the same
/// blinded key, so tor's single-node descriptors and our merged ones order
/// correctly at the HSDirs.
pub async fn revision_counter_matches_c_tor(lab: Lab) -> Result<()> {
    let key = IdentityKey::generate(&mut rand::rng());
    let hs = lab.dir().join("single").join("hs");
    key.write_tor_dir(&hs)?;
    let mut torrc = Torrc::new();
    torrc.push("HiddenServiceDir", hs.display())?;
    torrc.push("HiddenServicePort", "80 127.0.0.1:9")?;
    torrc.push("PublishHidServDescriptors", 0)?;
    let tor = lab.spawn_tor("single", &torrc).await?;
    let r = revision_counter_of(&tor, &key).await;
    tokio::task::spawn_blocking(move || tor.stop()).await??;
    r
}

async fn revision_counter_of(tor: &rustbalance_lab::LabTor, key: &IdentityKey) -> Result<()> {
    tor.wait_bootstrapped(Duration::from_secs(120)).await?;
    let ctl = tor.control().await?;
    let ((view, desc), _) = poll_until(
        "tor building its descriptor",
        Duration::from_secs(120),
        Duration::from_millis(500),
        async || {
            let Ok(view) = network_view(&ctl, true).await else {
                return Ok(None);
            };
            let d = instance_descriptor(&ctl, &key.address(), &view.time, SystemTime::now()).await;
            Ok(d.ok().map(|d| (view, d)))
        },
    )
    .await?;
    let (_, kp, _) = key
        .to_hs_keypair()
        .compute_blinded_key(view.time.period(desc.period_num))?;
    // Find the elapsed seconds s with OPE(s) == tor's counter (OPE is
    // strictly increasing, so a binary search decides it).
    let rev = |s: u64| {
        let slot = DescriptorSlot {
            period_num: desc.period_num,
            srv: SrvChoice::Previous,
            srv_run_start: 0,
        };
        revision_counter(&kp, &slot, from_unix(s))
    };
    let (mut lo, mut hi) = (0u64, (1 << 18) - 2);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if rev(mid) < desc.revision {
            lo = mid + 1
        } else {
            hi = mid
        }
    }
    ensure!(
        rev(lo) == desc.revision,
        "no elapsed time gives tor's revision counter {}",
        desc.revision
    );
    eprintln!("tor's revision counter {} = our OPE({lo} s)", desc.revision);
    Ok(())
}
