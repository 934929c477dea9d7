//! The descriptor encryption layers (rend-spec-v3 `[HS-DESC-ENCRYPTION-KEYS]`)
//! — only what re-padding the superencrypted layer needs.
//!
//! arti's builder pads the superencrypted plaintext to a multiple of 10 KiB;
//! C tor pads to a multiple of 10,000 bytes
//! (`HS_DESC_SUPERENC_PLAINTEXT_PAD_MULTIPLE`). A descriptor whose size
//! differs from C tor's tells an observer it was not made by tor, so the
//! builder re-pads that layer the way C tor does.

use aes::cipher::{KeyIvInit, StreamCipher};
use rand::{CryptoRng, Rng};
use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Digest, Sha3_256, Shake256};
use zeroize::Zeroizing;

/// C tor's padding multiple for the superencrypted plaintext.
pub const SUPERENC_PAD_MULTIPLE: usize = 10_000;
/// String constant of the superencrypted (first) layer.
pub const SUPERENC_CONST: &[u8] = b"hsdir-superencrypted-data";

const SALT_LEN: usize = 16;
const MAC_LEN: usize = 32;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Keys of one layer of one descriptor.
pub struct LayerKeys<'a> {
    /// The blinded public key (SECRET_DATA without client auth).
    pub blinded_key: &'a [u8; 32],
    /// The subcredential.
    pub subcredential: &'a [u8; 32],
    /// The revision counter.
    pub revision: u64,
    /// The layer's string constant.
    pub string_const: &'a [u8],
}

impl LayerKeys<'_> {
    /// (key, iv, mac key) for `salt`.
    fn derive(&self, salt: &[u8]) -> Zeroizing<[u8; 80]> {
        let mut x = Shake256::default();
        x.update(self.blinded_key);
        x.update(self.subcredential);
        x.update(&self.revision.to_be_bytes());
        x.update(salt);
        x.update(self.string_const);
        let mut out = Zeroizing::new([0u8; 80]);
        x.finalize_xof().read(&mut out[..]);
        out
    }

    fn mac(mac_key: &[u8], salt: &[u8], ct: &[u8]) -> [u8; 32] {
        let mut h = Sha3_256::new();
        Digest::update(&mut h, (mac_key.len() as u64).to_be_bytes());
        Digest::update(&mut h, mac_key);
        Digest::update(&mut h, (salt.len() as u64).to_be_bytes());
        Digest::update(&mut h, salt);
        Digest::update(&mut h, ct);
        h.finalize().into()
    }

    /// `salt | AES-256-CTR(plaintext) | MAC`.
    pub fn encrypt<R: Rng + CryptoRng + ?Sized>(&self, rng: &mut R, plaintext: &[u8]) -> Vec<u8> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let k = self.derive(&salt);
        let mut out = Vec::with_capacity(SALT_LEN + plaintext.len() + MAC_LEN);
        out.extend_from_slice(&salt);
        out.extend_from_slice(plaintext);
        let mut c =
            Aes256Ctr::new_from_slices(&k[..32], &k[32..48]).expect("fixed key and IV lengths");
        c.apply_keystream(&mut out[SALT_LEN..]);
        let mac = Self::mac(&k[48..80], &salt, &out[SALT_LEN..]);
        out.extend_from_slice(&mac);
        out
    }

    /// Inverse of [`LayerKeys::encrypt`]; `None` if the MAC does not match.
    pub fn decrypt(&self, blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if blob.len() < SALT_LEN + MAC_LEN {
            return None;
        }
        let (salt, rest) = blob.split_at(SALT_LEN);
        let (ct, mac) = rest.split_at(rest.len() - MAC_LEN);
        let k = self.derive(salt);
        let want = Self::mac(&k[48..80], salt, ct);
        if !subtle_eq(&want, mac) {
            return None;
        }
        let mut pt = Zeroizing::new(ct.to_vec());
        let mut c =
            Aes256Ctr::new_from_slices(&k[..32], &k[32..48]).expect("fixed key and IV lengths");
        c.apply_keystream(&mut pt[..]);
        Some(pt)
    }
}

/// Constant-time equality of two byte strings.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Strip trailing NULs and pad with NULs to a multiple of `multiple`.
pub fn repad(plaintext: &[u8], multiple: usize) -> Zeroizing<Vec<u8>> {
    let end = plaintext.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let padded_len = end.div_ceil(multiple).max(1) * multiple;
    let mut v = Zeroizing::new(Vec::with_capacity(padded_len));
    v.extend_from_slice(&plaintext[..end]);
    v.resize(padded_len, 0);
    v
}

#[cfg(test)]
mod test {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn round_trip_and_tamper() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let keys = LayerKeys {
            blinded_key: &[1; 32],
            subcredential: &[2; 32],
            revision: 77,
            string_const: SUPERENC_CONST,
        };
        let blob = keys.encrypt(&mut rng, b"hello layer");
        assert_eq!(&keys.decrypt(&blob).unwrap()[..], b"hello layer");
        let mut bad = blob.clone();
        bad[20] ^= 1;
        assert!(keys.decrypt(&bad).is_none());
        let other = LayerKeys {
            revision: 78,
            ..keys
        };
        assert!(other.decrypt(&blob).is_none());
    }

    #[test]
    fn repad_to_multiple() {
        let mut v = b"abc".to_vec();
        v.resize(10_240, 0);
        assert_eq!(repad(&v, 10_000).len(), 10_000);
        let big = vec![1u8; 10_001];
        assert_eq!(repad(&big, 10_000).len(), 20_000);
    }
}
