//! Restricted discovery ("client authorization", rend-spec-v3 `[CLIENT-AUTH]`): the
//! descriptor's second layer is encrypted with a random descriptor cookie, and the first
//! layer carries one `auth-client` line per authorized client with that cookie encrypted
//! to the client's x25519 key. A client without a listed key cannot decrypt the intro
//! points.
//!
//! The number of lines must not tell how many clients there are: like C tor
//! (`build_service_desc_superencrypted` in `hs_service.c`), the list is padded with fake
//! entries to a multiple of [`AUTH_CLIENT_MULTIPLE`] (16; 16 when there is no client at
//! all) and shuffled. Our fake entries are made for random x25519 keys nobody holds: each
//! line is then, like a real one, a client id from a fresh Diffie-Hellman, a random IV and
//! an encrypted cookie, indistinguishable without the keys (C tor writes random bytes,
//! which look the same).
//!
//! Key formats are tor's: the service's `authorized_clients/NAME.auth` holds
//! `descriptor:x25519:BASE32(public)`, the client's `ClientOnionAuthDir/NAME.auth_private`
//! holds `ADDRESS:descriptor:x25519:BASE32(secret)` (ADDRESS without `.onion`).

use crate::address::OnionAddress;
use crate::err::{Error, Result};
use rand::seq::SliceRandom;
use rand::{CryptoRng, Rng};
use std::str::FromStr;
use tor_hscrypto::pk::{HsClientDescEncKey, HsClientDescEncKeypair};
use tor_llcrypto::pk::curve25519;
use zeroize::Zeroizing;

/// An authorized client's public x25519 key (`KP_hsc_desc_enc`).
pub type ClientAuthKey = curve25519::PublicKey;

/// The `auth-client` lines of a descriptor come in multiples of this (C tor's
/// `HS_DESC_AUTH_CLIENT_MULTIPLE`).
pub const AUTH_CLIENT_MULTIPLE: usize = 16;

/// Most authorized clients: their `auth-client` lines (75 bytes each) always fit beside
/// 20 intro points with every link specifier in tor's 50,000-byte limit (measured with
/// 20 such intro points: 96 clients 41,191 bytes; 128 clients 54,736 bytes, too large). C tor has no such cap and would list fewer intro
/// points; we refuse instead, saying why.
pub const MAX_AUTH_CLIENTS: usize = 96;

/// Parse the contents of a tor `.auth` file: `descriptor:x25519:BASE32` (surrounding
/// white space ignored; base32 in either case, without padding, as tor accepts it).
pub fn parse_auth_file(text: &str) -> std::result::Result<ClientAuthKey, String> {
    let line = text.trim();
    if line.lines().count() > 1 {
        return Err("more than one line; a .auth file holds one key".into());
    }
    HsClientDescEncKey::from_str(line)
        .map(|k| *k.as_ref())
        .map_err(|e| format!("expected `descriptor:x25519:<52 base32 characters>`: {e}"))
}

/// The `.auth` line of `key`.
pub fn auth_line(key: &ClientAuthKey) -> String {
    HsClientDescEncKey::from(*key).to_string()
}

/// `real` padded with keys nobody holds to a multiple of [`AUTH_CLIENT_MULTIPLE`] (at
/// least one multiple), in random order.
pub fn padded_clients<R: Rng + CryptoRng + ?Sized>(
    real: &[ClientAuthKey],
    rng: &mut R,
) -> Vec<ClientAuthKey> {
    let n = real.len().div_ceil(AUTH_CLIENT_MULTIPLE).max(1) * AUTH_CLIENT_MULTIPLE;
    let mut all = real.to_vec();
    while all.len() < n {
        let mut b = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut b[..]);
        all.push(curve25519::PublicKey::from(
            &curve25519::StaticSecret::from(*b),
        ));
    }
    all.shuffle(rng);
    all
}

/// The first-layer plaintext of an open descriptor (no restricted discovery) with as many
/// fake `auth-client` lines as C tor writes ([`AUTH_CLIENT_MULTIPLE`]; arti's builder
/// writes one), so that our open descriptors are not told apart from tor's by whoever
/// knows the address. `None` if `plain` has no `auth-client` line.
pub(crate) fn pad_open_layer<R: Rng + CryptoRng + ?Sized>(
    plain: &[u8],
    rng: &mut R,
) -> Option<Zeroizing<Vec<u8>>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = std::str::from_utf8(plain).ok()?;
    let at = text.find("\nauth-client ")? + 1;
    let end = at + text[at..].find('\n')? + 1;
    let mut out = Zeroizing::new(Vec::with_capacity(plain.len() + 16 * 80));
    out.extend_from_slice(&plain[..end]);
    for _ in 1..AUTH_CLIENT_MULTIPLE {
        let mut f = [0u8; 8 + 16 + 16];
        rng.fill_bytes(&mut f);
        let line = format!(
            "auth-client {} {} {}\n",
            b64.encode(&f[..8]),
            b64.encode(&f[8..24]),
            b64.encode(&f[24..])
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(&plain[end..]);
    Some(out)
}

/// A client's secret x25519 key (`KS_hsc_desc_enc`): what `rustbalance client-auth add`
/// makes for a client, and what the tests decrypt with. Zeroized on drop.
pub struct ClientSecret {
    secret: curve25519::StaticSecret,
}

impl ClientSecret {
    /// A new random key.
    pub fn generate<R: Rng + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut b[..]);
        ClientSecret {
            secret: curve25519::StaticSecret::from(*b),
        }
    }

    /// Its public key (what the service lists).
    pub fn public(&self) -> ClientAuthKey {
        curve25519::PublicKey::from(&self.secret)
    }

    /// The line of the client's `ClientOnionAuthDir/NAME.auth_private` file for the
    /// service `address`.
    pub fn auth_private_line(&self, address: &OnionAddress) -> Zeroizing<String> {
        let b = Zeroizing::new(self.secret.to_bytes());
        let enc = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&b[..]));
        Zeroizing::new(format!(
            "{}:descriptor:x25519:{}",
            address.without_suffix(),
            enc.as_str()
        ))
    }

    /// Reads a `ClientOnionAuthDir/NAME.auth_private` file's contents
    /// (`ADDRESS:descriptor:x25519:BASE32(secret)`, ADDRESS without `.onion`, surrounding
    /// white space ignored, base32 in either case): the service's address and the key.
    /// The error never contains the key.
    pub fn from_auth_private(text: &str) -> std::result::Result<(OnionAddress, Self), String> {
        let line = text.trim();
        if line.lines().count() > 1 {
            return Err("more than one line; an .auth_private file holds one key".into());
        }
        let mut parts = line.splitn(4, ':');
        let (addr, kind, alg, key) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(k), Some(g), Some(key)) => (a, k, g, key),
                _ => return Err(
                    "expected `<address without .onion>:descriptor:x25519:<52 base32 characters>`"
                        .into(),
                ),
            };
        // The fields are not repeated in the errors: in a mis-ordered line one of them may
        // be the key.
        if kind != "descriptor" || alg != "x25519" {
            return Err("expected `descriptor:x25519` after the address".into());
        }
        let address = OnionAddress::parse(addr).map_err(|_| {
            "the part before the first ':' is not a v3 onion address (56 characters, without .onion)"
                .to_string()
        })?;
        let upper = Zeroizing::new(key.to_ascii_uppercase());
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(upper.as_bytes())
                .map_err(|_| "the key is not 52 base32 characters".to_string())?,
        );
        let b: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes[..]
                .try_into()
                .map_err(|_| format!("the key is {} bytes, not 32", bytes.len()))?,
        );
        Ok((
            address,
            ClientSecret {
                secret: curve25519::StaticSecret::from(*b),
            },
        ))
    }

    /// The key pair arti's descriptor decryption takes.
    pub(crate) fn keypair(&self) -> HsClientDescEncKeypair {
        HsClientDescEncKeypair::new(self.public().into(), self.secret.clone().into())
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientSecret({})", auth_line(&self.public()))
    }
}

/// Check a list of authorized clients before a build: at most [`MAX_AUTH_CLIENTS`].
pub(crate) fn check_count(n: usize) -> Result<()> {
    if n > MAX_AUTH_CLIENTS {
        return Err(Error::Build(format!(
            "{n} authorized clients, at most {MAX_AUTH_CLIENTS} fit a descriptor"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
