//! Fixtures for the descriptor benchmark (`bench/descriptor.sh`): one master
//! key and [`MAX_INSTANCES`] instance descriptors with
//! [`INTROS_PER_INSTANCE`] intro points each, all made from a fixed seed so
//! every run (and both sides of the comparison) sees the same bytes.
//!
//! ```text
//! cargo run --release -p rustbalance-hs --example bench_fixtures -- DIR
//! ```
//!
//! writes into `DIR`:
//!
//! * `hs_ed25519_secret_key` — the master key in tor's format (what we load);
//! * `master.pem` — the same key as PKCS#8 PEM (what Onionbalance loads);
//! * `instance-N.desc` — instance `N`'s descriptor, as its tor would publish it;
//! * `fixtures.json` — the time, time period, SR run start, the master's
//!   address and expected blinded key, and each instance's address and file.
//!
//! `crates/hs/benches/merge.rs` includes this file as a module and reads the
//! same directory, so the criterion figures and the Onionbalance figures
//! come from identical inputs.

use base64::Engine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rustbalance_hs::address::OnionAddress;
use rustbalance_hs::fixture::fake_instance_descriptor;
use rustbalance_hs::time::{from_unix, DescriptorSlot, TimeParams};
use rustbalance_hs::IdentityKey;
use std::path::Path;

/// Seed of every key and descriptor in the fixtures.
pub const SEED: u64 = 0x0b_a1a7ce;
/// The moment the benchmark pretends it is (2026-11-18 11:06:40 UTC).
pub const NOW: u64 = 1_795_000_000;
/// The network whose clock the fixtures follow.
pub const TP: TimeParams = TimeParams::REAL_NETWORK;
/// How many instance descriptors are written.
pub const MAX_INSTANCES: usize = 10;
/// Intro points in each instance descriptor.
pub const INTROS_PER_INSTANCE: usize = 3;
/// DER prefix of a PKCS#8 v1 ed25519 private key (RFC 8410 section 7),
/// before the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The first of the two live descriptor slots at [`NOW`], for a consensus
/// that became valid on the hour.
pub fn slot() -> DescriptorSlot {
    TP.live_slots(NOW, NOW - NOW % 3600)[0]
}

/// The benchmark inputs.
pub struct Fixtures {
    /// The master identity key.
    pub master: IdentityKey,
    /// Each instance's address and descriptor text.
    pub instances: Vec<(OnionAddress, String)>,
}

impl Fixtures {
    /// Write the fixtures (see the module doc) into `dir`, which must exist.
    pub fn generate(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let mut rng = ChaCha20Rng::seed_from_u64(SEED);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let master = IdentityKey::from_seed(&seed);
        std::fs::write(
            dir.join("hs_ed25519_secret_key"),
            &master.tor_secret_file()[..],
        )?;
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        std::fs::write(dir.join("master.pem"), pem)?;
        // The PEM must be the same key as the tor file.
        let again = IdentityKey::from_bytes(&std::fs::read(dir.join("master.pem"))?)?;
        assert_eq!(again.address(), master.address());

        let slot = slot();
        let blinded = master
            .to_hs_keypair()
            .compute_blinded_key(TP.period(slot.period_num))?
            .0;
        let mut instances = Vec::new();
        for i in 0..MAX_INSTANCES {
            let key = IdentityKey::generate(&mut rng);
            let text = fake_instance_descriptor(
                &key,
                TP,
                slot,
                from_unix(NOW),
                INTROS_PER_INSTANCE,
                &mut rng,
            )?;
            let file = format!("instance-{i}.desc");
            std::fs::write(dir.join(&file), text)?;
            instances.push(serde_json::json!({
                "address": key.address().without_suffix(),
                "file": file,
            }));
        }
        let meta = serde_json::json!({
            "now": NOW,
            "period_num": slot.period_num,
            "period_minutes": TP.period_minutes,
            "srv_run_start": slot.srv_run_start,
            "intros_per_instance": INTROS_PER_INSTANCE,
            "master_address": master.address().without_suffix(),
            "master_blinded_key": hex::encode(blinded.as_bytes()),
            "instances": instances,
        });
        std::fs::write(
            dir.join("fixtures.json"),
            serde_json::to_string_pretty(&meta)?,
        )?;
        Ok(())
    }

    /// Read fixtures written by [`Fixtures::generate`].
    pub fn load(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("fixtures.json"))?)?;
        if meta["now"] != NOW {
            return Err(
                format!("{} was made for another time; regenerate it", dir.display()).into(),
            );
        }
        let master = IdentityKey::from_bytes(&std::fs::read(dir.join("hs_ed25519_secret_key"))?)?;
        let list = meta["instances"]
            .as_array()
            .ok_or("fixtures.json has no instances")?;
        let mut instances = Vec::new();
        for inst in list {
            let address: OnionAddress = inst["address"]
                .as_str()
                .ok_or("instance without address")?
                .parse()?;
            let file = inst["file"].as_str().ok_or("instance without file")?;
            instances.push((address, std::fs::read_to_string(dir.join(file))?));
        }
        Ok(Fixtures { master, instances })
    }
}

#[allow(dead_code)] // unused when benches/merge.rs includes this file
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: bench_fixtures DIR (writes the benchmark fixtures into DIR)")?;
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    Fixtures::generate(dir)?;
    println!(
        "wrote fixtures for {MAX_INSTANCES} instances to {}",
        dir.display()
    );
    Ok(())
}
