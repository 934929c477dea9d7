use super::*;
use crate::identity::NodeIdentity;

fn authority(b: u8) -> Authority {
    Authority::from_seed(&Zeroizing::new([b; 32]))
}

fn fields() -> CertFields {
    CertFields {
        name: "node-1".into(),
        role: CertRole::Worker,
        identity: NodeIdentity::from_seed(&[3u8; 32]).public(),
        wireguard: Some([4u8; 32]),
        onion: Some("a".repeat(56)),
        issued: 1_795_000_000,
        serial: 42,
    }
}

#[test]
fn certify_encode_parse_verify() {
    let auth = authority(1);
    let cert = auth.certify(fields()).unwrap();
    let text = cert.encode();
    assert!(text.starts_with("rbcert1 node-1 worker "), "{text}");
    assert!(text.len() < 300, "{}", text.len());
    let back = parse(text.as_bytes()).unwrap();
    assert_eq!(back, cert);
    assert!(back.verify(&auth.public()));
    assert!(!back.verify(&authority(2).public()));
    let bare = CertFields {
        wireguard: None,
        onion: None,
        role: CertRole::Eligible,
        ..fields()
    };
    let c2 = auth.certify(bare).unwrap();
    assert!(c2.encode().contains(" eligible ") && c2.encode().contains(" - - "));
    assert_eq!(parse(c2.encode().as_bytes()).unwrap(), c2);
}

#[test]
fn every_field_is_covered_by_the_signature() {
    let auth = authority(1);
    let text = auth.certify(fields()).unwrap().encode();
    let f: Vec<&str> = text.split(' ').collect();
    let other_id = NodeIdentity::from_seed(&[9u8; 32]).public().to_string();
    let other_wg = STANDARD.encode([5u8; 32]);
    let swaps = [
        (1, "node-2"),
        (2, "eligible"),
        (3, other_id.as_str()),
        (4, other_wg.as_str()),
        (5, "-"),
        (6, "1795000001"),
        (7, "43"),
    ];
    for (i, v) in swaps {
        let mut g = f.clone();
        g[i] = v;
        let c = parse(g.join(" ").as_bytes()).unwrap();
        assert!(!c.verify(&auth.public()), "field {i} not covered");
    }
}

#[test]
fn the_parser_is_strict() {
    let good = authority(1).certify(fields()).unwrap().encode();
    let f: Vec<&str> = good.split(' ').collect();
    let with = |i: usize, v: &str| {
        let mut g = f.clone();
        g[i] = v;
        g.join(" ")
    };
    let cases = [
        ("".to_string(), "9 space-separated"),
        (format!("{good} "), "9 space-separated"),
        (good.replacen(' ', "  ", 1), "9 space-separated"),
        (with(0, "rbcert2"), "rbcert1"),
        (with(1, "a b"), "9 space-separated"),
        (with(1, "bad/name"), "name"),
        (with(1, &"n".repeat(65)), "name"),
        (with(2, "admin"), "role"),
        (with(3, "AAAA"), "identity"),
        (with(4, "AAAA"), "WireGuard"),
        (with(5, &"A".repeat(56)), "onion"),
        (with(6, "01"), "issue time"),
        (with(6, "+1"), "issue time"),
        (with(7, "18446744073709551616"), "serial"),
        (with(8, "AAAA"), "signature"),
        (format!("{good}{}", "x".repeat(300)), "512"),
    ];
    for (text, want) in cases {
        let e = parse(text.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e} lacks {want}");
    }
    assert!(parse(b"\xff").is_err());
    // A non-canonical WireGuard key (unused low bits set) is refused.
    let mut wg = STANDARD.encode([4u8; 32]);
    wg.replace_range(42..43, "R");
    assert!(parse(with(4, &wg).as_bytes()).is_err());
}

#[test]
fn authority_key_text_form_and_statements() {
    let auth = authority(7);
    let pk = auth.public();
    assert_eq!(
        AuthorityKey::decode(&format!(" {}\n", pk.encode())).unwrap(),
        pk
    );
    assert!(AuthorityKey::decode("nope").is_err());
    let sig = auth.sign(b"rustbalance test\0", b"msg");
    assert!(pk.verify(b"rustbalance test\0", b"msg", &sig));
    assert!(!pk.verify(b"rustbalance other\0", b"msg", &sig));
    assert!(!format!("{auth:?}").contains("secret:"));
    let bad = CertFields {
        name: "no spaces".into(),
        ..fields()
    };
    assert!(auth.certify(bad).is_err());
}
