//! Onion-service instances behind one master address in the lab, published
//! by RustBalance's publisher: what the end-to-end tests and the startup
//! benchmark stand on.
//!
//! Each instance is a lab tor running an onion service with its own key,
//! `HiddenServiceOnionbalanceInstance 1`, an `ob_config` naming the master
//! address, and `PublishHidServDescriptors 0`: it builds its descriptor
//! (read back over the control port) but never uploads it.

use crate::poll::poll_until;
use anyhow::{Context, Result};
use rustbalance_hs::descriptor::ParsedDescriptor;
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_lab::{DemoTarget, Lab, LabTor, Torrc};
use rustbalance_node::keystore::KeyFiles;
use rustbalance_node::publisher::{
    instance_descriptor, network_view, require_uploaded, Publisher, SlotReport,
};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// How often the instance tors are asked for their descriptors.
const ASK_EVERY: Duration = Duration::from_millis(500);

/// One instance: its tor, its address and the target it serves.
pub struct Instance {
    /// Our name for it (`instance-1`).
    pub name: String,
    /// Its own onion address.
    pub address: OnionAddress,
    /// Its tor.
    pub tor: LabTor,
    /// The HTTP target behind it (answers `served by NAME`).
    pub target: DemoTarget,
}

/// A master key and instances in a lab.
pub struct MasterSetup {
    /// The master key.
    pub master: IdentityKey,
    /// The instances.
    pub instances: Vec<Instance>,
}

impl MasterSetup {
    /// Generate a master key and start `n` instance tors named `PREFIX1..n`
    /// (letters and digits only: the name is also the tor nickname).
    pub async fn start(lab: &Lab, prefix: &str, n: usize) -> Result<MasterSetup> {
        let mut rng = rand::rng();
        let master = IdentityKey::generate(&mut rng);
        let base = lab.dir().join("rustbalance");
        master.write_tor_dir(&base.join(format!("{prefix}-master")))?;
        let mut instances = Vec::new();
        for i in 1..=n {
            let name = format!("{prefix}{i}");
            let key = IdentityKey::generate(&mut rng);
            let hs_dir: PathBuf = base.join(&name).join("hs");
            key.write_tor_dir(&hs_dir)?;
            rustbalance_node::keystore::write_atomic(
                &hs_dir.join("ob_config"),
                format!("MasterOnionAddress {}\n", master.address()).as_bytes(),
                0o600,
            )?;
            let target = DemoTarget::start(&format!("served by {name}\n")).await?;
            let mut torrc = Torrc::new();
            torrc.push("HiddenServiceDir", hs_dir.display())?;
            torrc.push("HiddenServicePort", format!("80 {}", target.addr()))?;
            torrc.push("HiddenServiceOnionbalanceInstance", 1)?;
            torrc.push("PublishHidServDescriptors", 0)?;
            let tor = lab.spawn_tor(&name, &torrc).await?;
            instances.push(Instance {
                name,
                address: key.address(),
                tor,
                target,
            });
        }
        Ok(MasterSetup { master, instances })
    }

    /// The master address.
    pub fn address(&self) -> OnionAddress {
        self.master.address()
    }

    /// `http://MASTER/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.master.address())
    }

    /// Wait until every instance's tor has built its descriptor with intro
    /// points, and return them decrypted.
    pub async fn instance_descriptors(&self, timeout: Duration) -> Result<Vec<ParsedDescriptor>> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        for inst in &self.instances {
            inst.tor.wait_bootstrapped(timeout).await?;
            let ctl = inst.tor.control().await?;
            let left = || timeout.saturating_sub(t0.elapsed());
            let mut last = None;
            let (view, _) = poll_until("the network view", left(), ASK_EVERY, async || {
                Ok(match network_view(&ctl, true).await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        last = Some(e);
                        None
                    }
                })
            })
            .await
            .map_err(|e| match last.take() {
                Some(l) => anyhow::Error::from(l),
                None => e,
            })?;
            let mut last = None;
            let (d, _) = poll_until(
                &format!("{}: a descriptor with intro points", inst.name),
                left(),
                ASK_EVERY,
                async || {
                    let d = instance_descriptor(&ctl, &inst.address, &view.time, SystemTime::now())
                        .await;
                    Ok(match d {
                        Ok(d) if !d.intro_points.is_empty() => Some(d),
                        Ok(_) => {
                            last = None;
                            None
                        }
                        Err(e) => {
                            last = Some(e);
                            None
                        }
                    })
                },
            )
            .await
            .map_err(|e| match last.take() {
                Some(l) => anyhow::Error::from(l).context(format!("{}: no descriptor", inst.name)),
                None => e,
            })?;
            out.push(d);
        }
        Ok(out)
    }

    /// A publisher for this master key on the first instance's tor.
    pub async fn publisher(&self) -> Result<Publisher> {
        let ctl = self.instances[0].tor.control().await?;
        Ok(Publisher::new(ctl, self.master.duplicate(), true, 20).await?)
    }

    /// Publish the master descriptors merged from `descs` (both live slots), waiting up to
    /// 30 s for the HSDirs' answers; fails unless each slot reached at least one HSDir.
    pub async fn publish(
        &self,
        publisher: &mut Publisher,
        descs: &[ParsedDescriptor],
    ) -> Result<Vec<SlotReport>> {
        let reports = publisher
            .publish(
                descs,
                SystemTime::now(),
                Duration::from_secs(30),
                &mut rand::rng(),
            )
            .await?;
        require_uploaded(&reports)?;
        Ok(reports)
    }

    /// Stops the instance tors (their targets stop when dropped).
    pub async fn stop(self) -> Result<()> {
        for inst in &self.instances {
            let tor = inst.tor.clone();
            tokio::task::spawn_blocking(move || tor.stop())
                .await
                .context("stopping an instance tor")??;
        }
        Ok(())
    }
}
