//! v3 onion addresses: `base32(PUBKEY | CHECKSUM | VERSION) + ".onion"`.
//!
//! Parsing says which part is wrong (length, alphabet, version, checksum), so
//! an operator who mistyped an address learns what to look at.

use crate::err::{Error, Result};
use sha3::{Digest, Sha3_256};
use std::fmt;
use std::str::FromStr;

/// The version byte of v3 onion addresses.
const VERSION: u8 = 3;
/// Length of the base32 part of a v3 address.
const ENCODED_LEN: usize = 56;

/// A v3 onion address (the ed25519 identity public key of a service).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnionAddress([u8; 32]);

impl OnionAddress {
    /// The address of an identity public key.
    pub fn from_public_key(pk: [u8; 32]) -> Self {
        OnionAddress(pk)
    }

    /// The identity public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.0
    }

    /// The address without the `.onion` suffix (what `HSPOST HSADDRESS=` wants).
    pub fn without_suffix(&self) -> String {
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(&self.0);
        raw[32..34].copy_from_slice(&checksum(&self.0));
        raw[34] = VERSION;
        data_encoding::BASE32_NOPAD
            .encode(&raw)
            .to_ascii_lowercase()
    }

    /// Parse an address with or without the `.onion` suffix (case-insensitive).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadAddress {
            address: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let body = lower.strip_suffix(".onion").unwrap_or(&lower);
        if body.contains('.') {
            return Err(bad(
                "it has a subdomain; give only the 56-character address".into(),
            ));
        }
        if body.len() != ENCODED_LEN {
            return Err(bad(format!(
                "a v3 address has {ENCODED_LEN} base32 characters before .onion, this one has {} \
                 (v2 addresses, 16 characters, are no longer supported by tor)",
                body.len()
            )));
        }
        if let Some(c) = body.chars().find(|c| !matches!(c, 'a'..='z' | '2'..='7')) {
            return Err(bad(format!(
                "{c:?} is not a base32 character (allowed: a-z and 2-7)"
            )));
        }
        let raw = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| bad(format!("base32 decoding failed: {e}")))?;
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[..32]);
        if raw[34] != VERSION {
            return Err(bad(format!(
                "version byte is {}, only version 3 exists",
                raw[34]
            )));
        }
        if raw[32..34] != checksum(&pk) {
            return Err(bad(
                "checksum does not match: the address is mistyped or truncated".into(),
            ));
        }
        Ok(OnionAddress(pk))
    }
}

/// `SHA3-256(".onion checksum" | PUBKEY | VERSION)[..2]`.
fn checksum(pk: &[u8; 32]) -> [u8; 2] {
    let mut h = Sha3_256::new();
    h.update(b".onion checksum");
    h.update(pk);
    h.update([VERSION]);
    let d = h.finalize();
    [d[0], d[1]]
}

impl fmt::Display for OnionAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.onion", self.without_suffix())
    }
}

impl fmt::Debug for OnionAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionAddress({self})")
    }
}

impl FromStr for OnionAddress {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    // rend-spec-v3 / C tor test_hs_common.c test_build_address:
    // the all-zero-except pubkey vector is replaced by a real tor-made pair below.
    const ADDR: &str = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid";

    #[test]
    fn round_trip() {
        let a = OnionAddress::parse(ADDR).unwrap();
        assert_eq!(a.without_suffix(), ADDR);
        assert_eq!(a.to_string(), format!("{ADDR}.onion"));
        assert_eq!(
            OnionAddress::parse(&format!("{}.ONION", ADDR.to_uppercase())).unwrap(),
            a
        );
    }

    #[test]
    fn errors_name_the_part() {
        let e = |s: &str| OnionAddress::parse(s).unwrap_err().to_string();
        assert!(e("abc.onion").contains("56 base32"));
        assert!(e(&format!("www.{ADDR}.onion")).contains("subdomain"));
        let mut bad = ADDR.to_string();
        bad.replace_range(0..1, "1");
        assert!(e(&bad).contains("not a base32"));
        let mut typo = ADDR.to_string();
        typo.replace_range(3..4, "a");
        assert!(e(&typo).contains("checksum"));
        // Same key, version 4.
        let a = OnionAddress::parse(ADDR).unwrap();
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(a.public_key());
        raw[32..34].copy_from_slice(&checksum(a.public_key()));
        raw[34] = 4;
        let v4 = data_encoding::BASE32_NOPAD
            .encode(&raw)
            .to_ascii_lowercase();
        assert!(e(&v4).contains("version byte is 4"));
    }
}
