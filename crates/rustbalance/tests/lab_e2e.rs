//! End-to-end proof in the private Tor lab, real tor everywhere: two
//! onion-service instances in Onionbalance-instance mode; RustBalance reads
//! their descriptors over the control port, merges them, computes the
//! responsible HSDirs from the lab consensus and uploads both live master
//! descriptors; the lab client reaches the MASTER address and both
//! instances answer. One lab is shared by the checks of this file.

use rustbalance::demo::MasterSetup;
use rustbalance_hs::descriptor::revision_counter;
use rustbalance_hs::time::{from_unix, DescriptorSlot, SrvChoice};
use rustbalance_hs::IdentityKey;
use rustbalance_lab::{Lab, LabOptions, Torrc};
use rustbalance_node::keystore::KeyFiles;
use rustbalance_node::publisher::{instance_descriptor, network_view, require_uploaded};
use std::time::{Duration, Instant, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_master_address_served_by_both_instances() {
    let dir = tempfile::Builder::new().prefix("rb-e2e").tempdir().unwrap();
    let lab = Lab::create(dir.path(), LabOptions::default())
        .await
        .unwrap();
    let started = lab
        .start(|p| eprintln!("[{:5.1}s] {}", p.elapsed.as_secs_f64(), p.phase))
        .await;
    let result = async {
        let report = started?;
        eprintln!("lab usable after {:.1}s", report.total.as_secs_f64());

        let setup = MasterSetup::start(&lab, "inst", 2).await?;
        let t_spawn = Instant::now();
        let descs = setup.instance_descriptors(Duration::from_secs(180)).await?;
        let t_desc = Instant::now();
        assert_eq!(descs.len(), 2);
        for d in &descs {
            assert!(!d.intro_points.is_empty());
            assert!(
                d.flow_control.is_some(),
                "tor 0.4.8+ advertises flow-control"
            );
        }
        eprintln!(
            "instance descriptors after {:.1}s",
            t_spawn.elapsed().as_secs_f64()
        );

        let mut publisher = setup.publisher().await?;
        let reports = publisher
            .publish(
                &descs,
                SystemTime::now(),
                Duration::from_secs(30),
                &mut rand::rng(),
            )
            .await?;
        require_uploaded(&reports)?;
        assert_eq!(reports.len(), 2, "both live descriptors");
        for r in &reports {
            eprintln!(
                "period {} rev {}: {}/{} HSDirs",
                r.period_num,
                r.revision,
                r.uploaded(),
                r.hsdirs.len()
            );
            assert_eq!(
                r.intro_points,
                descs.iter().map(|d| d.intro_points.len()).sum::<usize>()
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

        let split = setup.split(&lab, 40).await;
        eprintln!("40 requests on fresh circuits: {split:?}");
        let served: usize = split
            .iter()
            .filter(|(k, _)| k.starts_with("served by"))
            .map(|(_, v)| v)
            .sum();
        assert!(served >= 38, "at most 2 of 40 requests may fail: {split:?}");
        for i in &setup.instances {
            let n = split
                .get(&format!("served by {}", i.name))
                .copied()
                .unwrap_or(0);
            assert!(n > 0, "{} never answered: {split:?}", i.name);
        }
        anyhow::Ok(())
    }
    .await;
    lab.stop_and_verify().await.unwrap();
    result.unwrap();
}

/// Our revision counter is tor's: a plain tor onion service's own
/// descriptor carries a counter our OPE scheme produces for the same
/// blinded key, so tor's single-node descriptors and our merged ones order
/// correctly at the HSDirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_counter_matches_c_tor() {
    let dir = tempfile::Builder::new().prefix("rb-rev").tempdir().unwrap();
    let lab = Lab::create(dir.path(), LabOptions::default())
        .await
        .unwrap();
    let started = lab.start(|_| {}).await;
    let result = async {
        started?;
        let key = IdentityKey::generate(&mut rand::rng());
        let hs = lab.dir().join("single").join("hs");
        key.write_tor_dir(&hs)?;
        let mut torrc = Torrc::new();
        torrc.push("HiddenServiceDir", hs.display())?;
        torrc.push("HiddenServicePort", "80 127.0.0.1:9")?;
        torrc.push("PublishHidServDescriptors", 0)?;
        let tor = lab.spawn_tor("single", &torrc).await?;
        tor.wait_bootstrapped(Duration::from_secs(120)).await?;
        let ctl = tor.control().await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let (view, desc) = loop {
            let view = network_view(&ctl, true).await;
            if let Ok(view) = view {
                if let Ok(d) =
                    instance_descriptor(&ctl, &key.address(), &view.time, SystemTime::now()).await
                {
                    break (view, d);
                }
            }
            assert!(Instant::now() < deadline, "tor built no descriptor");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let (_, kp, _) = key
            .to_hs_keypair()
            .compute_blinded_key(view.time.period(desc.period_num))
            .unwrap();
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
        assert_eq!(
            rev(lo),
            desc.revision,
            "no elapsed time gives tor's revision counter {}",
            desc.revision
        );
        eprintln!("tor's revision counter {} = our OPE({lo} s)", desc.revision);
        anyhow::Ok(())
    }
    .await;
    lab.stop_and_verify().await.unwrap();
    result.unwrap();
}
