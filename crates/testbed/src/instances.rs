//! Onion-service instances behind one master address in the lab, published
//! by RustBalance: what `rustbalance lab demo` shows and what the
//! end-to-end tests stand on.
//!
//! Each instance is a lab tor running an onion service with its own key,
//! `HiddenServiceOnionbalanceInstance 1`, an `ob_config` naming the master
//! address, and `PublishHidServDescriptors 0`: it builds its descriptor
//! (read back over the control port) but never uploads it.

use anyhow::{Context, Result};
use rustbalance_hs::descriptor::ParsedDescriptor;
use rustbalance_hs::{IdentityKey, OnionAddress};
use rustbalance_lab::{DemoTarget, Lab, LabTor, Torrc};
use rustbalance_node::publisher::{instance_descriptor, network_view, Publisher, SlotReport};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

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
            rustbalance_hs::atomic::write_atomic(
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
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        for inst in &self.instances {
            inst.tor.wait_bootstrapped(timeout).await?;
            let ctl = inst.tor.control().await?;
            let view = loop {
                match network_view(&ctl, true).await {
                    Ok(v) => break v,
                    Err(e) if Instant::now() > deadline => return Err(e.into()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            };
            let d = loop {
                match instance_descriptor(&ctl, &inst.address, &view.time, SystemTime::now()).await
                {
                    Ok(d) if !d.intro_points.is_empty() => break d,
                    Ok(_) | Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
                    Ok(_) => anyhow::bail!("{}: descriptor has no intro points", inst.name),
                    Err(e) => return Err(e).context(format!("{}: no descriptor", inst.name)),
                }
            };
            out.push(d);
        }
        Ok(out)
    }

    /// A publisher for this master key on the first instance's tor.
    pub async fn publisher(&self) -> Result<Publisher> {
        let ctl = self.instances[0].tor.control().await?;
        Ok(Publisher::new(ctl, self.master_clone(), true, 20).await?)
    }

    fn master_clone(&self) -> IdentityKey {
        self.master.duplicate()
    }

    /// Read the instances' descriptors and publish the merged ones.
    pub async fn publish_once(&self, publisher: &mut Publisher) -> Result<Vec<SlotReport>> {
        let descs = self.instance_descriptors(Duration::from_secs(120)).await?;
        Ok(publisher
            .publish(
                &descs,
                SystemTime::now(),
                Duration::from_secs(30),
                &mut rand::rng(),
            )
            .await?)
    }

    /// `n` requests to the master address, each on a fresh circuit; counts
    /// answers per body ("served by NAME") and failures.
    pub async fn split(&self, lab: &Lab, n: usize) -> BTreeMap<String, usize> {
        let mut split = BTreeMap::new();
        for _ in 0..n {
            let key = match lab.http_get(&self.url(), Duration::from_secs(30)).await {
                Ok(r) if r.status == 200 => r.text().trim().to_string(),
                Ok(r) => format!("HTTP {}", r.status),
                Err(_) => "failed".to_string(),
            };
            *split.entry(key).or_insert(0) += 1;
        }
        split
    }
}
