//! Import tests on files shaped exactly as Onionbalance 0.2.2 writes and reads them:
//! `onionbalance-config --no-interactive -s 2` output (the `- instances:` / `key:` order,
//! `name: node1`), PKCS#8 PEM keys named `<address>.key` next to the config, and tor's
//! `hs_ed25519_secret_key` (which Onionbalance also accepts).

use super::*;
use crate::Config;
use base64::Engine;
use std::path::Path;

/// DER prefix of a PKCS#8 ed25519 private key (what `onionbalance-config` writes).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn pem_of(seed: [u8; 32]) -> String {
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

fn addr(seed: u8) -> OnionAddress {
    IdentityKey::from_seed(&[seed; 32]).address()
}

/// A directory with Onionbalance's layout: two services (PEM keys), two instances each.
fn ob_dir(d: &Path) -> (PathBuf, [OnionAddress; 2]) {
    let m1 = addr(1);
    let m2 = addr(2);
    let k1 = format!("{}.key", m1.to_string().trim_end_matches(".onion"));
    let k2 = format!("{}.key", m2.to_string().trim_end_matches(".onion"));
    std::fs::write(d.join(&k1), pem_of([1; 32])).unwrap();
    std::fs::write(d.join(&k2), pem_of([2; 32])).unwrap();
    // Instance addresses as operators paste them: with and without ".onion", a comment.
    let text = format!(
        "# Onionbalance Config File\nservices:\n- instances:\n  - address: {a}\n    name: node1\n  \
         - address: {b} # web2\n    name: node2\n  key: {k1}\n- instances:\n  - address: {c}\n    \
         name: node1\n  - address: {d}\n    name: node2\n  key: {k2}\n",
        a = addr(11),
        b = addr(12).to_string().trim_end_matches(".onion"),
        c = addr(21),
        d = addr(22),
    );
    let p = d.join("config.yaml");
    std::fs::write(&p, text).unwrap();
    (p, [m1, m2])
}

#[test]
fn generated_config_with_two_services_imports() {
    let d = tempfile::tempdir().unwrap();
    let (p, masters) = ob_dir(d.path());
    let imp = load(&p).unwrap();
    assert_eq!(imp.services.len(), 2);
    assert!(imp.leftovers.is_empty(), "{:?}", imp.leftovers);
    for (s, (m, inst)) in imp
        .services
        .iter()
        .zip(masters.iter().zip([[11u8, 12], [21, 22]]))
    {
        assert_eq!(&s.address(), m);
        let got: Vec<_> = s.instances.iter().map(|i| i.address).collect();
        assert_eq!(got, vec![addr(inst[0]), addr(inst[1])]);
        assert_eq!(s.instances[1].name.as_deref(), Some("node2"));
    }
}

#[test]
fn tor_format_key_is_accepted_like_onionbalance_does() {
    let d = tempfile::tempdir().unwrap();
    let key = IdentityKey::from_seed(&[7; 32]);
    std::fs::write(
        d.path().join("hs_ed25519_secret_key"),
        key.tor_secret_file(),
    )
    .unwrap();
    let p = d.path().join("config.yaml");
    std::fs::write(
        &p,
        format!(
            "services:\n  - key: hs_ed25519_secret_key\n    instances:\n      - address: {}\n",
            addr(8)
        ),
    )
    .unwrap();
    let imp = load(&p).unwrap();
    assert_eq!(imp.services[0].address(), key.address());
    assert_eq!(imp.services[0].instances[0].name, None);
}

#[test]
fn what_is_not_carried_over_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = ob_dir(d.path());
    let mut text = std::fs::read_to_string(&p).unwrap();
    text = format!("REFRESH_INTERVAL: 600\nstatus-socket-location: /run/ob.sock\n{text}");
    text = text.replacen("    name: node1\n", "    name: node1\n    weight: 3\n", 1);
    // The same instance twice in one service: kept once, and said so.
    text = text.replacen("  key: ", &format!("  - address: {}\n  key: ", addr(11)), 1);
    std::fs::write(&p, text).unwrap();
    let imp = load(&p).unwrap();
    assert_eq!(imp.services[0].instances.len(), 2);
    let at: Vec<_> = imp.leftovers.iter().map(|l| l.at.as_str()).collect();
    assert_eq!(
        at,
        [
            "REFRESH_INTERVAL",
            "status-socket-location",
            "services[0].instances[0].weight",
            "services[0].instances[2]",
        ]
    );
    assert!(imp.leftovers[1].why.contains("rustbalance status"));
}

/// Every bad input gives one error naming the file and the entry, and what to do.
#[test]
fn bad_inputs_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let (p, masters) = ob_dir(d.path());
    let good = std::fs::read_to_string(&p).unwrap();
    let a11 = addr(11).to_string();
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "empty"),
        ("services: [\n".into(), "not valid YAML"),
        ("REFRESH_INTERVAL: 600\n".into(), "`services` is missing"),
        ("services: []\n".into(), "`services` is empty"),
        (
            "services:\n- instances: []\n  key: x.key\n".into(),
            "needs at least one backend",
        ),
        (
            format!("services:\n- instances:\n  - address: {a11}\n"),
            "services[0].key is missing",
        ),
        (
            good.replacen(&a11, "<Enter the instance onion address here>", 1),
            "is not filled in",
        ),
        (good.replacen(&a11, "o6ff73vmigi4oxka", 1), "v2 addresses"),
        (
            good.replacen(&a11, &addr(21).to_string(), 1),
            "listed under services[0] and services[1]",
        ),
        (
            good.replacen(&a11, &masters[0].to_string(), 1),
            "its own master address",
        ),
        ("- just\n- a list\n".into(), "not a mapping"),
    ];
    for (text, want) in cases {
        std::fs::write(&p, &text).unwrap();
        let e = load(&p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(want), "{text:?}: want {want:?}, got {e:?}");
        if want != "empty" && !want.contains("YAML") {
            assert!(e.contains("config.yaml"), "{e}");
        }
    }
}

#[test]
fn bad_key_files_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let (p, masters) = ob_dir(d.path());
    let k1 = d.path().join(format!(
        "{}.key",
        masters[0].to_string().trim_end_matches(".onion")
    ));
    std::fs::write(
        &k1,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = load(&p).err().unwrap().to_string();
    assert!(e.contains("encrypted") || e.contains("ENCRYPTED"), "{e}");
    std::fs::remove_file(&k1).unwrap();
    let e = load(&p).err().unwrap().to_string();
    assert!(e.contains(&k1.display().to_string()), "{e}");
}

/// The config written for each service is one `rustbalance config check` accepts, with
/// the backends listed; a node started with it refuses until fetch mode exists.
#[test]
fn written_config_loads_and_lists_the_backends() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = ob_dir(d.path());
    let imp = load(&p).unwrap();
    let svc = &imp.services[1];
    let key_file = d.path().join("master").join("hs_ed25519_secret_key");
    svc.key.write_tor_dir(key_file.parent().unwrap()).unwrap();
    let at = ServicePlacement {
        name: "publisher1".into(),
        data_dir: d.path().join("data"),
        key_file,
        passphrase_file: None,
        target: None,
        admin: "127.0.0.1:9662".parse().unwrap(),
        tor: (Vec::new(), false),
        cluster: Some(crate::config::ClusterTemplate {
            secret_file: d.path().join("cluster.secret"),
            listen: "127.0.0.1:9663".parse().unwrap(),
            seeds: Vec::new(),
            priority: 10,
            cluster_id: None,
            quorum: None,
            gossip_signatures: None,
        }),
    };
    crate::keystore::write_atomic(&d.path().join("cluster.secret"), &[7u8; 32], 0o600).unwrap();
    let cfg = d.path().join("rustbalance.toml");
    std::fs::write(&cfg, service_config(svc, &at)).unwrap();
    let c = Config::load(&cfg).unwrap();
    assert_eq!(c.master_address().unwrap(), svc.address());
    let b: Vec<_> = c.backends.iter().map(|b| b.address.clone()).collect();
    assert_eq!(b, [addr(21).to_string(), addr(22).to_string()]);
    assert_eq!(c.backends[0].name.as_deref(), Some("node1"));
    assert!(c.publisher_only(), "no --target: a publisher-only node");
    // Without [cluster], backends are refused with a sentence that says what to add.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let cut = text.find("\n[cluster]").unwrap();
    let end = text[cut + 1..]
        .find("\n[")
        .map_or(text.len(), |i| cut + 1 + i);
    std::fs::write(&cfg, format!("{}{}", &text[..cut], &text[end..])).unwrap();
    let e = Config::load(&cfg).expect_err("refused").to_string();
    assert!(e.contains("needs a [cluster] section"), "{e}");
}

/// YAML aliases are refused before the tree is built: yaml-rust2's loader copies the
/// anchored node at every alias, so nested aliases expand a small file without bound
/// (found with the fuzz target `onionbalance_config`: 627 bytes gave 1,270 notes; nine
/// levels of nine aliases would be 387 million nodes). An anchor alone is harmless.
#[test]
fn yaml_aliases_are_refused() {
    let a = addr(11);
    let unknown: Vec<String> = (0..30).map(|i| format!("w{i}: 0")).collect();
    let text = format!(
        "services:\n- key: a.key\n  instances:\n  - &i {{address: {a}, {}}}\n{}",
        unknown.join(", "),
        "  - *i\n".repeat(40)
    );
    let e = parse(Path::new("/ob/config.yaml"), &text)
        .map(|c| format!("parsed, {} notes", c.leftovers.len()))
        .unwrap_or_else(|e| e.to_string());
    assert!(e.contains("line 5: a YAML alias"), "{e}");
    let bomb = (1..9).fold(
        "a0: &a0 [x, x, x, x, x, x, x, x, x]\n".to_string(),
        |t, i| {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            format!("{t}a{i}: &a{i} [{refs}]\n")
        },
    );
    assert!(parse(Path::new("/ob/config.yaml"), &bomb).is_err());
    let anchored = format!("services:\n- key: &k a.key\n  instances:\n  - address: {a}\n");
    assert_eq!(
        parse(Path::new("/ob/config.yaml"), &anchored)
            .unwrap()
            .services
            .len(),
        1
    );
}
