//! Issue 2 benchmark: merging instance descriptors into the master descriptor.
//!
//! For 1, 5 and 10 instances of 3 intro points each (the fixtures of
//! `examples/bench_fixtures.rs`, read from `$RUSTBALANCE_BENCH_FIXTURES` or
//! generated into a temporary directory):
//!
//! * `parse+merge+build` — parse, decrypt and validate every instance
//!   descriptor, choose the intro points, build the master descriptor;
//! * `merge+build` — the same from already-parsed intro points;
//! * `raw crypto` — only the cryptography a minimal builder of the *same*
//!   descriptor must do (see [`RawWork`]), as the floor to compare with;
//! * `revision counter (OPE)` — tor's order-preserving revision counter,
//!   which both we and Onionbalance compute but which is not in the floor.
//!
//! `bench/descriptor.sh` runs this and Onionbalance on the same fixtures and
//! prints the comparison.

#[path = "../examples/bench_fixtures.rs"]
mod bench_fixtures;

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use bench_fixtures::{Fixtures, INTROS_PER_INSTANCE, NOW, TP};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{CryptoRng, Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rustbalance_hs::descriptor::{
    build_master_descriptor, parse_descriptor, revision_counter, select_intro_points, BuildParams,
    BuiltDescriptor, InstanceIntros, IntroPointDesc, DEFAULT_LIFETIME_MINUTES, MAX_INTRO_POINTS,
};
use rustbalance_hs::fixture::tor_flow_control;
use rustbalance_hs::time::from_unix;
use rustbalance_hs::IdentityKey;
use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Digest, Sha3_256, Shake256};
use std::path::PathBuf;
use std::time::Duration;
use tor_llcrypto::pk::ed25519;
use tor_llcrypto::pk::keymanip::blind_keypair;

/// Instance counts measured.
const INSTANCE_COUNTS: [usize; 3] = [1, 5, 10];

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Where the fixtures are: `$RUSTBALANCE_BENCH_FIXTURES`, or a fresh
/// temporary directory (kept alive by the returned guard).
fn fixtures() -> (Fixtures, Option<tempfile::TempDir>) {
    if let Some(dir) = std::env::var_os("RUSTBALANCE_BENCH_FIXTURES") {
        let f = Fixtures::load(&PathBuf::from(dir)).expect("readable benchmark fixtures");
        return (f, None);
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    Fixtures::generate(tmp.path()).expect("fixtures generated");
    let f = Fixtures::load(tmp.path()).expect("fixtures just written");
    (f, Some(tmp))
}

fn parse_all(f: &Fixtures, n: usize) -> Vec<InstanceIntros> {
    f.instances[..n]
        .iter()
        .map(|(addr, text)| {
            let parsed = parse_descriptor(text, addr, &TP, from_unix(NOW))
                .expect("fixture descriptors are valid");
            InstanceIntros {
                instance: addr.without_suffix(),
                intro_points: parsed.intro_points,
            }
        })
        .collect()
}

fn merge_build<R: Rng + CryptoRng>(
    master: &IdentityKey,
    inst: &[InstanceIntros],
    rng: &mut R,
) -> BuiltDescriptor {
    let chosen: Vec<IntroPointDesc> = select_intro_points(inst, MAX_INTRO_POINTS)
        .chosen
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    build_master_descriptor(
        &BuildParams {
            master,
            time: TP,
            slot: bench_fixtures::slot(),
            now: from_unix(NOW),
            intro_points: &chosen,
            flow_control: Some(tor_flow_control()),
            pow_params: None,
            lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
            auth_clients: None,
            revision: None,
        },
        rng,
    )
    .expect("the master descriptor builds")
}

/// `salt | AES-256-CTR | SHA3-256 MAC` of one descriptor layer
/// (rend-spec-v3 `[HS-DESC-ENCRYPTION-KEYS]`, no client authorization).
struct LayerCipher<'a> {
    blinded_key: &'a [u8; 32],
    subcredential: &'a [u8; 32],
    revision: u64,
    string_const: &'static [u8],
}

impl LayerCipher<'_> {
    fn keys(&self, salt: &[u8]) -> [u8; 80] {
        let mut x = Shake256::default();
        x.update(self.blinded_key);
        x.update(self.subcredential);
        x.update(&self.revision.to_be_bytes());
        x.update(salt);
        x.update(self.string_const);
        let mut out = [0u8; 80];
        x.finalize_xof().read(&mut out);
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

    fn encrypt<R: Rng + CryptoRng>(&self, rng: &mut R, plaintext: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 16];
        rng.fill_bytes(&mut out);
        let k = self.keys(&out);
        out.extend_from_slice(plaintext);
        let mut c = Aes256Ctr::new_from_slices(&k[..32], &k[32..48]).expect("key/IV lengths");
        c.apply_keystream(&mut out[16..]);
        let mac = Self::mac(&k[48..], &out[..16], &out[16..]);
        out.extend_from_slice(&mac);
        out
    }

    /// Used only to recover the real plaintexts from a built descriptor
    /// (and so to check this baseline speaks the same format).
    fn decrypt(&self, blob: &[u8]) -> Vec<u8> {
        let (salt, rest) = blob.split_at(16);
        let (ct, mac) = rest.split_at(rest.len() - 32);
        let k = self.keys(salt);
        assert_eq!(&Self::mac(&k[48..], salt, ct)[..], mac, "layer MAC");
        let mut pt = ct.to_vec();
        let mut c = Aes256Ctr::new_from_slices(&k[..32], &k[32..48]).expect("key/IV lengths");
        c.apply_keystream(&mut pt);
        pt
    }
}

/// The base64 body of the first `BEGIN MESSAGE` object after `keyword`.
fn message_after(text: &[u8], keyword: &str) -> Vec<u8> {
    let text = std::str::from_utf8(text).expect("descriptor layers are text");
    let start = text.find(keyword).expect("keyword present");
    let begin = "-----BEGIN MESSAGE-----\n";
    let b = start + text[start..].find(begin).expect("BEGIN MESSAGE") + begin.len();
    let e = b + text[b..]
        .find("-----END MESSAGE-----")
        .expect("END MESSAGE");
    let body: String = text[b..e].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64 body")
}

/// The cryptography a minimal builder must do for one master descriptor
/// with `intro_count` intro points, with the real plaintexts of a
/// descriptor we built (so every hash and cipher runs over the same
/// number of bytes):
///
/// * one key blinding (blinding factor, blinded secret key and public key,
///   subcredential);
/// * a fresh descriptor-signing key;
/// * `2 × intro_count` intro-point certificate signatures (auth-key and
///   enc-key certs), the descriptor-signing-key certificate signed with the
///   blinded key, and the outer signature over the whole document;
/// * SHAKE-256 KDF + AES-256-CTR + SHA3-256 MAC over the inner plaintext
///   once, and over the 10,000-byte-padded middle plaintext once.
///
/// The inner layer carries no signature of its own beyond the certificates.
struct RawWork {
    master: ed25519::ExpandedKeypair,
    period_num: u64,
    period_minutes: u64,
    revision: u64,
    intro_count: usize,
    /// Body of the descriptor-signing-key certificate (what it signs); the
    /// intro-point certificates have the same layout and length.
    cert_body: Vec<u8>,
    inner_plain: Vec<u8>,
    middle_plain: Vec<u8>,
    /// `"Tor onion service descriptor sig v3" | outer document`.
    outer_signed: Vec<u8>,
}

impl RawWork {
    fn new(master: &IdentityKey, built: &BuiltDescriptor) -> Self {
        let text = built.text.as_bytes();
        let hs = master.to_hs_keypair();
        let master: &ed25519::ExpandedKeypair = hs.as_ref();
        let master = ed25519::ExpandedKeypair::from_secret_key_bytes(master.to_secret_key_bytes())
            .expect("a valid expanded key");
        let mut raw = RawWork {
            master,
            period_num: built.period_num,
            period_minutes: TP.period_minutes.into(),
            revision: built.revision,
            intro_count: built.intro_count,
            cert_body: Vec::new(),
            inner_plain: Vec::new(),
            middle_plain: Vec::new(),
            outer_signed: Vec::new(),
        };
        let (blinded, subcred) = raw.blind();
        assert_eq!(
            blinded.public().to_bytes(),
            built.blinded_key,
            "same blinding"
        );
        let blinded_pub = blinded.public().to_bytes();
        let cipher = |string_const| LayerCipher {
            blinded_key: &blinded_pub,
            subcredential: &subcred,
            revision: built.revision,
            string_const,
        };
        raw.middle_plain = cipher(b"hsdir-superencrypted-data")
            .decrypt(&message_after(text, "\nsuperencrypted\n"));
        assert_eq!(raw.middle_plain.len() % 10_000, 0, "C tor's padding");
        raw.inner_plain = cipher(b"hsdir-encrypted-data")
            .decrypt(&message_after(&raw.middle_plain, "\nencrypted\n"));
        let cert = message_after_cert(&built.text);
        raw.cert_body = cert[..cert.len() - 64].to_vec();
        let sig_at = built.text.rfind("signature ").expect("outer signature");
        raw.outer_signed = b"Tor onion service descriptor sig v3".to_vec();
        raw.outer_signed.extend_from_slice(&text[..sig_at]);
        raw
    }

    /// rend-spec-v3 A.2 blinding factor, blinded keypair and subcredential.
    fn blind(&self) -> (ed25519::ExpandedKeypair, [u8; 32]) {
        const BASEPOINT: &[u8] = b"(15112221349535400772501151409588531511454012693041857206046113283949847762202, 46316835694926478169428394003475163141307993866256225615783033603165251855960)";
        let public = self.master.public().to_bytes();
        let mut h = Sha3_256::new();
        Digest::update(&mut h, b"Derive temporary signing key\0");
        Digest::update(&mut h, public);
        Digest::update(&mut h, BASEPOINT);
        Digest::update(&mut h, b"key-blind");
        Digest::update(&mut h, self.period_num.to_be_bytes());
        Digest::update(&mut h, self.period_minutes.to_be_bytes());
        let blinded = blind_keypair(&self.master, h.finalize().into()).expect("blinding");
        let credential = Sha3_256::new()
            .chain_update(b"credential")
            .chain_update(public)
            .finalize();
        let subcred: [u8; 32] = Sha3_256::new()
            .chain_update(b"subcredential")
            .chain_update(credential)
            .chain_update(blinded.public().to_bytes())
            .finalize()
            .into();
        (blinded, subcred)
    }

    /// Do the work once; returns something derived from every step.
    fn run<R: Rng + CryptoRng>(&self, rng: &mut R) -> usize {
        let (blinded, subcred) = self.blind();
        let blinded_pub = blinded.public().to_bytes();
        let signing = ed25519::Keypair::generate(rng);
        for _ in 0..2 * self.intro_count {
            black_box(signing.sign(&self.cert_body));
        }
        black_box(blinded.sign(&self.cert_body));
        let cipher = |string_const| LayerCipher {
            blinded_key: &blinded_pub,
            subcredential: &subcred,
            revision: self.revision,
            string_const,
        };
        let inner = cipher(b"hsdir-encrypted-data").encrypt(rng, &self.inner_plain);
        let middle = cipher(b"hsdir-superencrypted-data").encrypt(rng, &self.middle_plain);
        black_box(signing.sign(&self.outer_signed));
        inner.len() + middle.len()
    }
}

/// The bytes of the `descriptor-signing-key-cert` object.
fn message_after_cert(text: &str) -> Vec<u8> {
    let begin = "descriptor-signing-key-cert\n-----BEGIN ED25519 CERT-----\n";
    let b = text.find(begin).expect("signing-key cert") + begin.len();
    let e = b + text[b..].find("-----END").expect("END CERT");
    let body: String = text[b..e].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64 cert")
}

fn bench(c: &mut Criterion) {
    let (f, _tmp) = fixtures();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let parsed: Vec<Vec<InstanceIntros>> =
        INSTANCE_COUNTS.iter().map(|&n| parse_all(&f, n)).collect();

    let mut g = c.benchmark_group("parse+merge+build");
    for &n in &INSTANCE_COUNTS {
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| merge_build(&f.master, &parse_all(&f, n), &mut rng))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("merge+build");
    for (&n, inst) in INSTANCE_COUNTS.iter().zip(&parsed) {
        g.bench_with_input(BenchmarkId::from_parameter(n), inst, |b, inst| {
            b.iter(|| merge_build(&f.master, inst, &mut rng))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("raw crypto");
    for (&n, inst) in INSTANCE_COUNTS.iter().zip(&parsed) {
        let built = merge_build(&f.master, inst, &mut rng);
        assert_eq!(
            built.intro_count,
            (n * INTROS_PER_INSTANCE).min(MAX_INTRO_POINTS)
        );
        let raw = RawWork::new(&f.master, &built);
        g.bench_with_input(BenchmarkId::from_parameter(n), &raw, |b, raw| {
            b.iter(|| raw.run(&mut rng))
        });
    }
    g.finish();

    // The OPE cost depends only on the seconds since the SR run began, the
    // same for every instance count.
    let hs = f.master.to_hs_keypair();
    let slot = bench_fixtures::slot();
    let blinded = hs
        .compute_blinded_key(TP.period(slot.period_num))
        .expect("blinding")
        .1;
    c.bench_function("revision counter (OPE)", |b| {
        b.iter(|| revision_counter(&blinded, &slot, from_unix(NOW)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
