//! Known-answer tests. Sources (C tor, stem, Onionbalance test suites) are
//! listed per vector in VECTORS.md next to this file.

use rustbalance_hs::descriptor::revision_counter;
use rustbalance_hs::ring::{disaster_srv, node_index, store_index, HsDir, HsDirSet};
use rustbalance_hs::time::{from_unix, DescriptorSlot, SrvChoice, TimeParams};
use rustbalance_hs::{IdentityKey, OnionAddress};
use tor_hscrypto::pk::HsBlindIdKeypair;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}
fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

/// A tor-format secret key file around a 64-byte expanded key.
fn tor_key(expanded: &str) -> IdentityKey {
    let mut f = b"== ed25519v1-secret: type0 ==".to_vec();
    f.resize(32, 0);
    f.extend(h(expanded));
    IdentityKey::from_bytes(&f).unwrap()
}

fn blind(key: &IdentityKey, tp: &TimeParams, num: u64) -> ([u8; 32], [u8; 32], HsBlindIdKeypair) {
    let (pk, kp, sc) = key
        .to_hs_keypair()
        .compute_blinded_key(tp.period(num))
        .unwrap();
    (*pk.as_bytes(), *sc.as_ref(), kp)
}

#[test]
fn onion_addresses() {
    for (pk, addr) in [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion",
        ),
        (
            "92e680fa57552e7d484c9d2a3edb46fbc076e54ea90b77bb84e3e6d5657d52a1",
            "sltib6sxkuxh2scmtuvd5w2g7pahnzkovefxpo4e4ptnkzl5kkq5h2ad.onion",
        ),
        (
            "e0359b5c935249d5daa0396bfe823988a6df072d5598e954b870598ae8a2da06",
            "4a2zwxetkje5lwvahfv75arzrctn6bznkwmosvfyobmyv2fc3idbpwyd.onion",
        ),
    ] {
        assert_eq!(OnionAddress::from_public_key(h32(pk)).to_string(), addr);
        assert_eq!(OnionAddress::parse(addr).unwrap().public_key(), &h32(pk));
    }
}

/// C tor test_hs_common.c test_blinding_basics (period 1234, length 1440).
#[test]
fn blinding_c_tor_vector() {
    let key = tor_key("D8C7FF0E31295B66540D789AF3E3DF992038A9592EEA01D8B7CBA06D6E66D1594D6167696320576F7264733A20737065697373636F62616C742062697669756D");
    assert_eq!(
        key.address().public_key(),
        &h32("833990B085C1A688C1D4C8B1F6B56AFAF5A2ECA674449E1D704F83765CCB7BC6")
    );
    let tp = TimeParams::REAL_NETWORK;
    assert_eq!(
        tp.period_at(from_unix(106_710_633)).unwrap().interval_num(),
        1234
    );
    let (bpk, subcred, kp) = blind(&key, &tp, 1234);
    assert_eq!(
        bpk,
        h32("3A50BF210E8F9EE955AE0014F7A6917FB65EBF098A86305ABB508D1A7291B6D5")
    );
    assert_eq!(
        subcred,
        h32("635D55907816E8D76398A675A50B1C2F3E36B42A5CA77BA3A0441285161AE07D")
    );
    let exp: &tor_llcrypto::pk::ed25519::ExpandedKeypair = kp.as_ref();
    assert_eq!(exp.to_secret_key_bytes().to_vec(), h("A958DC83AC885F6814C67035DE817A2C604D5D2F715282079448F789B656350B4540FE1F80AA3F7E91306B7BF7A8E367293352B14A29FDCC8C19F3558075524B"));
    // Revision counters with C tor's OPE key derivation ("rev-counter-generation\0" | 64-byte
    // blinded secret key); T is tor's plaintext (seconds since the SR run start, plus one).
    for (t, want) in [
        (1u64, 10921u64),
        (2, 34168),
        (3601, 118_211_103),
        (43201, 1_413_689_224),
        (86401, 2_834_377_851),
        (129_600, 4_246_917_437),
    ] {
        let slot = DescriptorSlot {
            period_num: 1234,
            srv: SrvChoice::Previous,
            srv_run_start: 1_000_000,
        };
        assert_eq!(
            revision_counter(&kp, &slot, from_unix(1_000_000 + t - 1)),
            want,
            "T={t}"
        );
    }
}

/// A known seed (C tor ed25519_vectors.inc row 0) through real time periods.
#[test]
fn seed_to_blinded_key_and_ring_indices() {
    let key = IdentityKey::from_seed(&h32(
        "26c76712d89d906e6672dafa614c42e5cb1caac8c6568e4d2493087db51f0d36",
    ));
    assert_eq!(
        key.address().to_string(),
        "yishq4ctnims2fbnavvl57fgrvqzgfmopqnftqlfjsku5tfp7ckh4cqd.onion"
    );
    let tp = TimeParams::REAL_NETWORK;
    assert_eq!(
        tp.period_at(from_unix(1_704_067_200))
            .unwrap()
            .interval_num(),
        19722
    );
    for (num, bpk, sc, r1, r2, revs) in [
        (
            19722,
            "8bb1d14181b48ca6690e0dabc78127298b33607f89e7c227d7a1f93a61e349bc",
            "6ebbe8b37377d2d4c7d83dfb4dc9baf432e03c810fac06424dcaa6136ca04192",
            "fc415ef0ae3c91a0321baf813fd48d22c5c2dc8eceb16f268c05eee677ac23df",
            "6896c5413014cccabdd967c4dc1cc4a4402b0db72d3e66652d1f4ea7d9530769",
            [
                (1u64, 22787u64),
                (43201, 1_415_225_833),
                (86401, 2_824_434_271),
            ],
        ),
        (
            19723,
            "bada5610864baa888a4640c61cd34796c1c4cbc52db6599a2a2b10adfc790e69",
            "9298aa265458f3e8b0c570d80b3fcc6cc2054cb0f7b75e5bf87a6914a2717862",
            "4f01f1165b8b8828c4c3d6e595566deff96d6cc225f20f65a6d6f956b71d7be0",
            "c2ab6f8420307c58f10dbbd1fe04b6d3858464471f9e85af99a8060db0a36f76",
            [(1, 3406), (43201, 1_414_048_222), (86401, 2_830_223_888)],
        ),
    ] {
        let (b, s, kp) = blind(&key, &tp, num);
        assert_eq!(b, h32(bpk));
        assert_eq!(s, h32(sc));
        assert_eq!(store_index(&b, 1, num, 1440), h32(r1));
        assert_eq!(store_index(&b, 2, num, 1440), h32(r2));
        for (t, want) in revs {
            let slot = DescriptorSlot {
                period_num: num,
                srv: SrvChoice::Current,
                srv_run_start: 0,
            };
            assert_eq!(revision_counter(&kp, &slot, from_unix(t - 1)), want);
        }
    }
}

/// C tor test_hs_common.c test_hs_indexes.
#[test]
fn hs_and_hsdir_indices() {
    assert_eq!(
        store_index(&[0x42; 32], 1, 42, 1440),
        h32("37e5cbbd56a22823714f18f1623ece5983a0d64c78495a8cfab854245e5f9a8a")
    );
    assert_eq!(
        node_index(&[0x42; 32], &[0x43; 32], 42, 1440),
        h32("db475361014a09965e7e5e4d4a25b8f8d4b8f16cb1d8a7e95eed50249cc1a2d5")
    );
}

/// C tor test_disaster_srv and Onionbalance's test_disaster_srv.
#[test]
fn disaster_srvs() {
    for (tp, want) in [
        (
            1,
            "F8A4948707653837FA44ABB5BBC75A12F6F101E7F8FAF699B9715F4965D3507D",
        ),
        (
            2,
            "C17966DF8B4834638E1B7BF38944C4995B92E89749D1623E417A44938D08FD67",
        ),
        (
            3,
            "A3BAB4327F9C2F8B30A126DAD3ABCCE12DD813169A5D924244B57987AEE413C2",
        ),
        (
            4,
            "C79ABE7116FCF7810F7A5C76198B97339990C738B456EFDBC1399189927BADEC",
        ),
        (
            5,
            "941D5FE4289FBF2F853766EAC4B948B51C81A4137A44516342ABC80518E0183D",
        ),
    ] {
        assert_eq!(disaster_srv(1440, tp), h32(want));
    }
}

/// Onionbalance test_v3_hashring.py TestHashRing.test_hashring: 255 relays,
/// both live descriptors, exact ordered HSDir lists.
#[test]
fn onionbalance_hashring() {
    let dirs = (1..=255u8)
        .map(|i| HsDir {
            nickname: format!("r{i}"),
            fingerprint: hex::encode_upper([i; 20]),
            ed25519_id: [i; 32],
        })
        .collect();
    let set = HsDirSet::from_dirs(dirs, 2, 4);
    let tp = TimeParams::REAL_NETWORK;
    let va = 10_101_010_101;
    let slots = tp.live_slots(va, va);
    assert_eq!(
        (slots[0].period_num, slots[0].srv),
        (116_908, SrvChoice::Previous)
    );
    assert_eq!(
        (slots[1].period_num, slots[1].srv),
        (116_909, SrvChoice::Current)
    );
    let fps = |bpk: &str, num, srv: [u8; 32]| -> Vec<String> {
        set.responsible(&h32(bpk), num, 1440, &srv)
            .into_iter()
            .map(|d| d.fingerprint[..2].to_string())
            .collect()
    };
    assert_eq!(
        fps(
            "063AEC5E1FD3025098F2DF71EF570B28D94B463FFCCB5EC6A9C061E38F551C6A",
            116_908,
            [0x2a; 32]
        ),
        ["D1", "2F", "B0", "3A", "5A", "DF", "F7", "34"]
    );
    assert_eq!(
        fps(
            "5DB624F2D74F103E6E8C6FBCCD074586EF5A5572F90673C00B77DEF94EC11499",
            116_909,
            [0x29; 32]
        ),
        ["5D", "9A", "D1", "7A", "C3", "C6", "E9", "86"]
    );
}
