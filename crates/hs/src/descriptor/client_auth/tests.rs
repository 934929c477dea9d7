//! Restricted discovery: our own decryption with the right key, without a key, and with a
//! removed key; the size of the descriptor for 1 and 16 clients; tor's file formats.

use super::*;
use crate::descriptor::{
    build_master_descriptor, parse_descriptor, parse_descriptor_as_client, BuildParams,
    BuiltDescriptor, DEFAULT_LIFETIME_MINUTES, MAX_DESCRIPTOR_SIZE, MAX_INTRO_POINTS,
};
use crate::fixture::{full_intro_point, tor_flow_control};
use crate::time::{from_unix, DescriptorSlot, TimeParams};
use crate::IdentityKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: u64 = 1_795_000_000;
const TP: TimeParams = TimeParams::REAL_NETWORK;

fn slot() -> DescriptorSlot {
    TP.live_slots(NOW, NOW - NOW % 3600)[0]
}

fn build(
    master: &IdentityKey,
    n_ips: usize,
    clients: Option<&[ClientAuthKey]>,
    rng: &mut ChaCha20Rng,
) -> crate::Result<BuiltDescriptor> {
    let ips: Vec<_> = (0..n_ips).map(|_| full_intro_point(rng)).collect();
    build_master_descriptor(
        &BuildParams {
            master,
            time: TP,
            slot: slot(),
            now: from_unix(NOW),
            intro_points: &ips,
            flow_control: Some(tor_flow_control()),
            pow_params: None,
            lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
            auth_clients: clients,
            revision: None,
        },
        rng,
    )
}

#[test]
fn only_an_authorized_client_decrypts() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let master = IdentityKey::generate(&mut rng);
    let alice = ClientSecret::generate(&mut rng);
    let bob = ClientSecret::generate(&mut rng);
    let mallory = ClientSecret::generate(&mut rng);
    let both = [alice.public(), bob.public()];
    let d = build(&master, 3, Some(&both), &mut rng).unwrap();
    let addr = master.address();
    let now = from_unix(NOW);
    for c in [&alice, &bob] {
        let p = parse_descriptor_as_client(&d.text, &addr, &TP, now, c).unwrap();
        assert_eq!(p.intro_points.len(), 3);
    }
    // Without a key: the outer layer parses, the intro points stay encrypted.
    let e = parse_descriptor(&d.text, &addr, &TP, now)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rejected"), "{e}");
    // With a key that is not listed.
    assert!(parse_descriptor_as_client(&d.text, &addr, &TP, now, &mallory).is_err());
    // Bob's key removed: the next descriptor is Alice's only.
    let d2 = build(&master, 3, Some(&[alice.public()]), &mut rng).unwrap();
    assert!(parse_descriptor_as_client(&d2.text, &addr, &TP, now, &alice).is_ok());
    let e = parse_descriptor_as_client(&d2.text, &addr, &TP, now, &bob).unwrap_err();
    assert!(e.to_string().contains("rejected"), "{e}");
    // An open descriptor is still readable by anyone, a key or not.
    let open = build(&master, 3, None, &mut rng).unwrap();
    assert!(parse_descriptor(&open.text, &addr, &TP, now).is_ok());
    assert!(parse_descriptor_as_client(&open.text, &addr, &TP, now, &mallory).is_ok());
}

/// The `auth-client` lines of `d`, read as anyone who knows the address can: the first
/// layer is keyed by the blinded key and the subcredential only.
fn auth_client_lines(master: &IdentityKey, d: &BuiltDescriptor) -> usize {
    use crate::descriptor::layer::{LayerKeys, SUPERENC_CONST};
    use base64::Engine;
    let (_, _, subcred) = master
        .to_hs_keypair()
        .compute_blinded_key(TP.period(d.period_num))
        .unwrap();
    let subcred: [u8; 32] = *subcred.as_ref();
    let begin = "superencrypted\n-----BEGIN MESSAGE-----\n";
    let b = d.text.find(begin).unwrap() + begin.len();
    let e = b + d.text[b..].find("-----END MESSAGE-----").unwrap();
    let blob: String = d.text[b..e].split_whitespace().collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .unwrap();
    let keys = LayerKeys {
        blinded_key: &d.blinded_key,
        subcredential: &subcred,
        revision: d.revision,
        string_const: SUPERENC_CONST,
    };
    let plain = keys.decrypt(&blob).unwrap();
    String::from_utf8_lossy(&plain)
        .lines()
        .filter(|l| l.starts_with("auth-client "))
        .count()
}

/// Whoever knows the address (not only an authorized client) reads the first layer: the
/// number of `auth-client` lines there, and the descriptor's size, are the same for 0, 1,
/// 2, 15 and 16 clients, and only step at 17.
#[test]
fn neither_lines_nor_size_reveal_the_number_of_clients() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let master = IdentityKey::generate(&mut rng);
    let keys: Vec<_> = (0..17)
        .map(|_| ClientSecret::generate(&mut rng).public())
        .collect();
    let built: Vec<_> = [0usize, 1, 2, 15, 16, 17]
        .iter()
        .map(|&n| build(&master, 20, Some(&keys[..n]), &mut rng).unwrap())
        .collect();
    let lines: Vec<_> = built
        .iter()
        .map(|d| auth_client_lines(&master, d))
        .collect();
    assert_eq!(lines, [16, 16, 16, 16, 16, 32]);
    // An open descriptor has C tor's 16 (fake) lines too, and stays readable.
    let open = build(&master, 20, None, &mut rng).unwrap();
    assert_eq!(auth_client_lines(&master, &open), 16);
    let now = from_unix(NOW);
    assert!(parse_descriptor(&open.text, &master.address(), &TP, now).is_ok());
    let sizes: Vec<_> = built.iter().map(|d| d.text.len()).collect();
    assert!(sizes[..5].iter().all(|s| *s == sizes[0]), "{sizes:?}");
}

#[test]
fn padding_is_to_multiples_of_16_and_shuffled() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let real: Vec<_> = (0..17)
        .map(|_| ClientSecret::generate(&mut rng).public())
        .collect();
    for (n, want) in [(0, 16), (1, 16), (16, 16), (17, 32)] {
        let p = padded_clients(&real[..n], &mut rng);
        assert_eq!(p.len(), want, "{n} clients");
        for k in &real[..n] {
            assert!(p.iter().any(|x| x.as_bytes() == k.as_bytes()));
        }
    }
    // The real key is not always first.
    let firsts: std::collections::HashSet<_> = (0..20)
        .map(|_| {
            padded_clients(&real[..1], &mut rng)
                .iter()
                .position(|k| k.as_bytes() == real[0].as_bytes())
        })
        .collect();
    assert!(firsts.len() > 1, "{firsts:?}");
}

/// The most clients we allow still fit a descriptor with the most intro points.
#[test]
fn the_most_clients_fit_beside_20_intro_points() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let master = IdentityKey::generate(&mut rng);
    let keys: Vec<_> = (0..MAX_AUTH_CLIENTS)
        .map(|_| ClientSecret::generate(&mut rng).public())
        .collect();
    let d = build(&master, MAX_INTRO_POINTS, Some(&keys), &mut rng).unwrap();
    assert!(d.text.len() <= MAX_DESCRIPTOR_SIZE, "{}", d.text.len());
    let more: Vec<_> = keys.iter().chain(&keys[..1]).copied().collect();
    assert!(build(&master, 3, Some(&more), &mut rng).is_err());
}

#[test]
fn tor_key_file_formats() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let c = ClientSecret::generate(&mut rng);
    let line = auth_line(&c.public());
    assert!(
        line.starts_with("descriptor:x25519:") && line.len() == 18 + 52,
        "{line}"
    );
    let back = parse_auth_file(&format!("  {}\n", line.to_lowercase())).unwrap();
    assert_eq!(back.as_bytes(), c.public().as_bytes());
    for bad in [
        "",
        "descriptor:x25519:AAAA",
        "descriptor:ed25519:ABC",
        "x\ny",
    ] {
        assert!(parse_auth_file(bad).is_err(), "{bad:?}");
    }
    let master = IdentityKey::generate(&mut rng);
    let p = c.auth_private_line(&master.address());
    let (addr, rest) = p.split_once(':').unwrap();
    assert_eq!(format!("{addr}.onion"), master.address().to_string());
    assert!(rest.starts_with("descriptor:x25519:") && rest.len() == 18 + 52);
}

#[test]
fn auth_private_line_round_trips_and_bad_lines_are_refused_without_the_key() {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let c = ClientSecret::generate(&mut rng);
    let master = IdentityKey::generate(&mut rng);
    let line = c.auth_private_line(&master.address());
    let (addr, back) = ClientSecret::from_auth_private(&format!("\n{}\n", line.as_str())).unwrap();
    assert_eq!(addr, master.address());
    assert_eq!(back.public().as_bytes(), c.public().as_bytes());
    // Lower-case base32, as tor also accepts.
    let (a, k) = line.rsplit_once(':').unwrap();
    let lower = format!("{a}:{}", k.to_lowercase());
    let (_, back) = ClientSecret::from_auth_private(&lower).unwrap();
    assert_eq!(back.public().as_bytes(), c.public().as_bytes());
    let secret_part = k.to_string();
    let addr56 = master.address().without_suffix();
    let truncated = &secret_part[..40];
    for bad in [
        String::new(),
        format!("{addr56}:descriptor:x25519"),
        format!("{addr56}:descriptor:ed25519:{secret_part}"),
        format!("{addr56}:descriptor:x25519:{truncated}"),
        format!("notanaddress:descriptor:x25519:{secret_part}"),
        format!("{}\n{}", line.as_str(), line.as_str()),
        // Mis-ordered: the key where the address or the kind belong.
        format!("{secret_part}:descriptor:x25519:{addr56}"),
        format!("{addr56}:{secret_part}:x25519:{addr56}"),
        format!("descriptor:x25519:{secret_part}:{addr56}"),
    ] {
        let e = ClientSecret::from_auth_private(&bad).unwrap_err();
        assert!(
            !e.contains(&secret_part) && !e.contains(truncated),
            "the error shows the key: {e}"
        );
    }
}
