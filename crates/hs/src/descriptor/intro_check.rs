//! Which intro points are usable: exactly what C tor writes into a descriptor, nothing more.
//!
//! tor builds an intro point's link specifiers with `node_get_link_specifier_smartlist`:
//! IPv4 address and port (type 0, 6 bytes, always), the legacy RSA identity (type 2, 20
//! bytes, always), the ed25519 identity (type 3, 32 bytes, when the relay has one) and IPv6
//! address and port (type 1, 18 bytes, when the relay has one). A client
//! (`hs_get_extend_info_from_lspecs`) needs the IPv4 address and the legacy ID. So an intro
//! point here has two to four link specifiers, each type at most once and at its exact
//! length, IPv4 and legacy ID present. Anything else (unknown types, padded bodies,
//! repeats) comes from no tor: it is refused, which bounds an intro point's size and keeps
//! a member's oversized specifiers from pushing the master descriptor over the size limit.
//!
//! Keys: the auth key must be an ed25519 point (checked when decoded); the two curve25519
//! keys must be contributory (not a small-order point, which makes every handshake's
//! shared secret zero). A random but valid key still names a dead point: that cannot be
//! told from here, and the per-node fairness bounds it (see `docs/SECURITY.md`).

use super::IntroPointDesc;
use tor_linkspec::{EncodedLinkSpec, LinkSpecType};
use tor_llcrypto::pk::curve25519;

/// Most link specifiers an intro point has (one of each type tor writes).
pub const MAX_LINK_SPECIFIERS: usize = 4;

/// The link specifier types tor writes, with their exact body lengths and names.
const TOR_LINK_SPECIFIERS: [(LinkSpecType, usize, &str); 4] = [
    (LinkSpecType::ORPORT_V4, 6, "IPv4"),
    (LinkSpecType::ORPORT_V6, 18, "IPv6"),
    (LinkSpecType::RSAID, 20, "legacy ID"),
    (LinkSpecType::ED25519ID, 32, "ed25519"),
];

/// What makes an intro point unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntroPointFault {
    /// Fewer than two or more than [`MAX_LINK_SPECIFIERS`] link specifiers.
    LinkSpecifierCount(usize),
    /// A link specifier type tor does not write.
    UnknownLinkSpecifier(u8),
    /// A known type with a body of the wrong length.
    LinkSpecifierLength {
        /// The type.
        lstype: u8,
        /// Its body length.
        len: usize,
        /// The length tor writes.
        want: usize,
    },
    /// The same type twice.
    RepeatedLinkSpecifier(u8),
    /// A type clients need is missing ("IPv4" or "legacy ID").
    MissingLinkSpecifier(&'static str),
    /// A key that cannot work ("onion key", "encryption key").
    UnusableKey(&'static str),
}

impl std::fmt::Display for IntroPointFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LinkSpecifierCount(n) => write!(
                f,
                "{n} link specifiers (tor writes 2 to {MAX_LINK_SPECIFIERS})"
            ),
            Self::UnknownLinkSpecifier(t) => write!(
                f,
                "link specifier type {t} (tor writes only 0 IPv4, 1 IPv6, 2 legacy ID, 3 ed25519)"
            ),
            Self::LinkSpecifierLength { lstype, len, want } => write!(
                f,
                "link specifier type {lstype} of {len} bytes (tor writes {want})"
            ),
            Self::RepeatedLinkSpecifier(t) => write!(f, "link specifier type {t} given twice"),
            Self::MissingLinkSpecifier(what) => {
                write!(f, "no {what} link specifier (clients need one)")
            }
            Self::UnusableKey(what) => write!(f, "its {what} is a small-order point"),
        }
    }
}

/// Check link specifiers against what tor writes (see the module documentation).
pub fn check_link_specifiers(specs: &[EncodedLinkSpec]) -> Result<(), IntroPointFault> {
    if !(2..=MAX_LINK_SPECIFIERS).contains(&specs.len()) {
        return Err(IntroPointFault::LinkSpecifierCount(specs.len()));
    }
    let mut seen = [false; TOR_LINK_SPECIFIERS.len()];
    for s in specs {
        let t = s.lstype();
        let i = TOR_LINK_SPECIFIERS
            .iter()
            .position(|(lt, _, _)| *lt == t)
            .ok_or(IntroPointFault::UnknownLinkSpecifier(t.into()))?;
        let want = TOR_LINK_SPECIFIERS[i].1;
        let len = body_len(s);
        if len != want {
            return Err(IntroPointFault::LinkSpecifierLength {
                lstype: t.into(),
                len,
                want,
            });
        }
        if std::mem::replace(&mut seen[i], true) {
            return Err(IntroPointFault::RepeatedLinkSpecifier(t.into()));
        }
    }
    for (i, (_, _, name)) in TOR_LINK_SPECIFIERS.iter().enumerate() {
        let required = *name == "IPv4" || *name == "legacy ID";
        if required && !seen[i] {
            return Err(IntroPointFault::MissingLinkSpecifier(name));
        }
    }
    Ok(())
}

/// Body length of an encoded link specifier (its encoding is type, length, body).
fn body_len(s: &EncodedLinkSpec) -> usize {
    let mut v: Vec<u8> = Vec::with_capacity(2 + 255);
    // Writing into a Vec fails only for a body over 255 bytes, which an
    // EncodedLinkSpec (read with a one-byte length) cannot have.
    match tor_bytes::Writer::write(&mut v, s) {
        Ok(()) => v.len().saturating_sub(2),
        Err(_) => usize::MAX,
    }
}

/// Whether a curve25519 public key is contributory: not of small order.
/// Every clamped scalar is a multiple of the cofactor 8, so one fixed
/// scalar maps exactly the small-order points to zero.
pub fn contributory(key: &[u8; 32]) -> bool {
    let probe = curve25519::StaticSecret::from([0x5a; 32]);
    probe
        .diffie_hellman(&curve25519::PublicKey::from(*key))
        .was_contributory()
}

/// Check a whole intro point: its link specifiers and its curve25519 keys.
pub fn check_intro_point(ip: &IntroPointDesc) -> Result<(), IntroPointFault> {
    check_link_specifiers(ip.link_specifiers())?;
    if !contributory(ip.ipt_ntor_key().as_bytes()) {
        return Err(IntroPointFault::UnusableKey("onion key"));
    }
    if !contributory(ip.svc_ntor_key().as_bytes()) {
        return Err(IntroPointFault::UnusableKey("encryption key"));
    }
    Ok(())
}

/// Keep the usable intro points of `ips` (in order); the others come back with their index
/// and fault.
pub fn usable_intro_points(
    ips: Vec<IntroPointDesc>,
) -> (Vec<IntroPointDesc>, Vec<(usize, IntroPointFault)>) {
    let mut faults = Vec::new();
    let kept = ips
        .into_iter()
        .enumerate()
        .filter_map(|(i, ip)| match check_intro_point(&ip) {
            Ok(()) => Some(ip),
            Err(f) => {
                faults.push((i, f));
                None
            }
        })
        .collect();
    (kept, faults)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::fixture::fake_intro_point;
    use rand::SeedableRng;

    fn spec(t: u8, len: usize) -> EncodedLinkSpec {
        EncodedLinkSpec::new(t.into(), vec![7u8; len])
    }

    #[test]
    fn only_what_tor_writes() {
        use IntroPointFault as F;
        let v4 = spec(0, 6);
        let v6 = spec(1, 18);
        let rsa = spec(2, 20);
        let ed = spec(3, 32);
        // What tor writes: IPv4 + legacy ID, optionally ed25519 and IPv6, in any order.
        for ok in [
            vec![v4.clone(), rsa.clone()],
            vec![v4.clone(), rsa.clone(), ed.clone()],
            vec![v4.clone(), rsa.clone(), ed.clone(), v6.clone()],
            vec![ed.clone(), v6.clone(), rsa.clone(), v4.clone()],
        ] {
            assert_eq!(check_link_specifiers(&ok), Ok(()), "{ok:?}");
        }
        let bad = |specs: Vec<EncodedLinkSpec>| check_link_specifiers(&specs).unwrap_err();
        assert_eq!(bad(vec![v4.clone()]), F::LinkSpecifierCount(1));
        assert_eq!(
            bad(vec![
                v4.clone(),
                rsa.clone(),
                ed.clone(),
                v6.clone(),
                spec(4, 1)
            ]),
            F::LinkSpecifierCount(5)
        );
        // An unknown type, even small, and a 255-byte one.
        assert_eq!(
            bad(vec![v4.clone(), rsa.clone(), spec(9, 255)]),
            F::UnknownLinkSpecifier(9)
        );
        // Each known type at any other length.
        for (t, want) in [(0u8, 6usize), (1, 18), (2, 20), (3, 32)] {
            for len in [0, want - 1, want + 1, 255] {
                let mut specs = vec![v4.clone(), rsa.clone()];
                specs.push(spec(t, len));
                assert_eq!(
                    bad(specs),
                    F::LinkSpecifierLength {
                        lstype: t,
                        len,
                        want
                    }
                );
            }
        }
        assert_eq!(
            bad(vec![v4.clone(), rsa.clone(), rsa.clone()]),
            F::RepeatedLinkSpecifier(2)
        );
        assert_eq!(
            bad(vec![rsa.clone(), ed.clone()]),
            F::MissingLinkSpecifier("IPv4")
        );
        assert_eq!(
            bad(vec![v4.clone(), ed.clone()]),
            F::MissingLinkSpecifier("legacy ID")
        );
        assert!(F::UnknownLinkSpecifier(9)
            .to_string()
            .contains("tor writes only"));
    }

    #[test]
    fn small_order_keys_are_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let ip = fake_intro_point(&mut rng);
        assert_eq!(check_intro_point(&ip), Ok(()));
        assert!(contributory(ip.ipt_ntor_key().as_bytes()));
        // Zero and one are small-order u-coordinates.
        let mut one = [0u8; 32];
        one[0] = 1;
        for k in [[0u8; 32], one] {
            assert!(!contributory(&k));
            let bad = IntroPointDesc::builder()
                .link_specifiers(ip.link_specifiers().to_vec())
                .ipt_kp_ntor(curve25519::PublicKey::from(k))
                .kp_hs_ipt_sid(ip.ipt_sid_key().clone())
                .kp_hss_ntor(ip.svc_ntor_key().clone())
                .build()
                .unwrap();
            assert_eq!(
                check_intro_point(&bad),
                Err(IntroPointFault::UnusableKey("onion key"))
            );
            let (kept, faults) = usable_intro_points(vec![ip.clone(), bad, ip.clone()]);
            assert_eq!(kept.len(), 2);
            assert_eq!(faults, [(1, IntroPointFault::UnusableKey("onion key"))]);
        }
    }
}
