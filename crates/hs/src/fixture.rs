//! Synthetic intro points and instance descriptors, for tests, benchmarks
//! and the offline cross-checks. Real deployments read real descriptors from
//! tor; nothing here is used on that path.

use crate::descriptor::{build_master_descriptor, BuildParams, IntroPointDesc, Protocols};
use crate::err::Result;
use crate::keys::IdentityKey;
use crate::time::{DescriptorSlot, TimeParams};
use rand::{CryptoRng, Rng, RngExt};
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;
use tor_linkspec::LinkSpec;
use tor_llcrypto::pk::{curve25519, ed25519, rsa::RsaIdentity};

/// A plausible intro point: IPv4 ORPort, RSA id and ed25519 id link
/// specifiers and fresh keys, all random.
pub fn fake_intro_point<R: Rng + CryptoRng>(rng: &mut R) -> IntroPointDesc {
    let mut rsa = [0u8; 20];
    rng.fill_bytes(&mut rsa);
    let mut ed = [0u8; 32];
    rng.fill_bytes(&mut ed);
    let ip = IpAddr::V4(Ipv4Addr::new(
        10,
        rng.random(),
        rng.random(),
        rng.random::<u8>(),
    ));
    let specs = [
        LinkSpec::OrPort(ip, 9001),
        LinkSpec::RsaId(RsaIdentity::from(rsa)),
        LinkSpec::Ed25519Id(ed25519::Ed25519Identity::from(ed)),
    ]
    .iter()
    .map(|l| l.encode().expect("encodable link specifier"))
    .collect();
    let ntor = curve25519::PublicKey::from(&curve25519::StaticSecret::random_from_rng(&mut *rng));
    let svc = curve25519::PublicKey::from(&curve25519::StaticSecret::random_from_rng(&mut *rng));
    let sid = ed25519::Keypair::generate(rng).verifying_key();
    IntroPointDesc::builder()
        .link_specifiers(specs)
        .ipt_kp_ntor(ntor)
        .kp_hs_ipt_sid(sid.into())
        .kp_hss_ntor(svc.into())
        .build()
        .expect("all fields set")
}

/// tor's usual `flow-control 1-2 31`.
pub fn tor_flow_control() -> (Protocols, u8) {
    ("FlowCtrl=1-2".parse().expect("valid protocol list"), 31)
}

/// A descriptor for `key` with `n` fake intro points, as an instance's tor
/// would publish it in `slot`.
pub fn fake_instance_descriptor<R: Rng + CryptoRng>(
    key: &IdentityKey,
    time: TimeParams,
    slot: DescriptorSlot,
    now: SystemTime,
    n: usize,
    rng: &mut R,
) -> Result<String> {
    let ips: Vec<IntroPointDesc> = (0..n).map(|_| fake_intro_point(rng)).collect();
    let built = build_master_descriptor(
        &BuildParams {
            master: key,
            time,
            slot,
            now,
            intro_points: &ips,
            flow_control: Some(tor_flow_control()),
            pow_params: None,
            lifetime_minutes: crate::descriptor::DEFAULT_LIFETIME_MINUTES,
        },
        rng,
    )?;
    Ok(built.text)
}
