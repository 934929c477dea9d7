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
use tor_linkspec::{EncodedLinkSpec, LinkSpec};
use tor_llcrypto::pk::{curve25519, ed25519, rsa::RsaIdentity};

/// A plausible intro point: IPv4 ORPort, RSA id and ed25519 id link
/// specifiers and fresh keys, all random.
pub fn fake_intro_point<R: Rng + CryptoRng>(rng: &mut R) -> IntroPointDesc {
    let specs = relay_link_specifiers(rng);
    intro_point_with(specs, rng)
}

/// Another intro point (new keys) on the relay of `same_relay_as` (its link specifiers):
/// what two instances whose tors picked the same relay list.
pub fn fake_intro_point_on<R: Rng + CryptoRng>(
    same_relay_as: &IntroPointDesc,
    rng: &mut R,
) -> IntroPointDesc {
    intro_point_with(same_relay_as.link_specifiers().to_vec(), rng)
}

/// The largest intro point tor writes: all four link specifier types (IPv4,
/// legacy ID, ed25519, IPv6).
pub fn full_intro_point<R: Rng + CryptoRng>(rng: &mut R) -> IntroPointDesc {
    let mut specs = relay_link_specifiers(rng);
    let mut v6 = [0u8; 16];
    rng.fill_bytes(&mut v6);
    let v6 = LinkSpec::OrPort(IpAddr::V6(v6.into()), 9001);
    specs.push(v6.encode().expect("encodable link specifier"));
    intro_point_with(specs, rng)
}

/// What a hostile member could gossip: a plausible intro point padded with `extra` link
/// specifiers of an unknown type (200+), 255 bytes each. tor writes no such thing.
pub fn oversized_intro_point<R: Rng + CryptoRng>(rng: &mut R, extra: u8) -> IntroPointDesc {
    let mut specs = relay_link_specifiers(rng);
    for t in 0..extra {
        specs.push(EncodedLinkSpec::new((200 + t).into(), vec![0xee; 255]));
    }
    intro_point_with(specs, rng)
}

/// IPv4 ORPort, RSA id and ed25519 id, random.
fn relay_link_specifiers<R: Rng + CryptoRng>(rng: &mut R) -> Vec<EncodedLinkSpec> {
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
    [
        LinkSpec::OrPort(ip, 9001),
        LinkSpec::RsaId(RsaIdentity::from(rsa)),
        LinkSpec::Ed25519Id(ed25519::Ed25519Identity::from(ed)),
    ]
    .iter()
    .map(|l| l.encode().expect("encodable link specifier"))
    .collect()
}

/// An intro point with `specs` and fresh random keys.
fn intro_point_with<R: Rng + CryptoRng>(
    specs: Vec<EncodedLinkSpec>,
    rng: &mut R,
) -> IntroPointDesc {
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
    tor_like_descriptor(key, time, slot, now, n, None, rng)
}

/// What a tor would publish for `key` in `slot`: `n` fake intro points, tor's
/// flow-control line and `pow`.
fn tor_like_descriptor<R: Rng + CryptoRng>(
    key: &IdentityKey,
    time: TimeParams,
    slot: DescriptorSlot,
    now: SystemTime,
    n: usize,
    pow: Option<&crate::descriptor::PowParams>,
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
            pow_params: pow,
            lifetime_minutes: crate::descriptor::DEFAULT_LIFETIME_MINUTES,
            auth_clients: None,
            revision: None,
        },
        rng,
    )?;
    Ok(built.text)
}

/// `pow-params v1` as tor writes them: a random seed valid until `expires`, the
/// suggested `effort`.
pub fn fake_pow_params<R: Rng + CryptoRng>(
    effort: u32,
    expires: SystemTime,
    rng: &mut R,
) -> crate::descriptor::PowParams {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    crate::descriptor::PowV1 {
        seed,
        effort,
        expires,
    }
    .params()
}

/// A descriptor for `key` with three fake intro points and `pow`, as a tor with
/// `HiddenServicePoWDefensesEnabled 1` would publish it in `slot`.
pub fn pow_descriptor<R: Rng + CryptoRng>(
    key: &IdentityKey,
    time: TimeParams,
    slot: DescriptorSlot,
    now: SystemTime,
    pow: &crate::descriptor::PowParams,
    rng: &mut R,
) -> Result<String> {
    tor_like_descriptor(key, time, slot, now, 3, Some(pow), rng)
}

/// Deterministic mutations of valid inputs, for the hostile-input tests: bit flips,
/// overwrites, insertions, deletions, truncations, duplicated ranges and spliced junk,
/// one to four per call. A seeded xorshift64*, so a failing case can be replayed.
pub struct Mutator(u64);

impl Mutator {
    /// A mutator seeded with `seed` (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Mutator(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// A mutated copy of `data`.
    pub fn mutate(&mut self, data: &[u8]) -> Vec<u8> {
        let mut d = data.to_vec();
        for _ in 0..1 + self.below(4) {
            let len = d.len();
            match self.below(7) {
                0 if len > 0 => {
                    let i = self.below(len);
                    d[i] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let i = self.below(len);
                    d[i] = self.next_u64() as u8;
                }
                2 => {
                    let i = self.below(len + 1);
                    let b = self.next_u64() as u8;
                    d.insert(i, b);
                }
                3 if len > 0 => {
                    d.remove(self.below(len));
                }
                4 => d.truncate(self.below(len + 1)),
                5 if len > 1 => {
                    let a = self.below(len);
                    let b = (a + self.below(64)).min(len - 1);
                    let chunk = d[a..=b].to_vec();
                    let at = self.below(d.len() + 1);
                    d.splice(at..at, chunk);
                }
                _ => {
                    let i = self.below(len + 1);
                    let n = 1 + self.below(32);
                    let junk = self.bytes(n);
                    d.splice(i..i, junk);
                }
            }
        }
        d
    }
}
