//! Restricted discovery's files on disk: the `NAME.auth` files of
//! `[service] authorized_clients_dir` (tor's `descriptor:x25519:BASE32`), as the publisher
//! reads them every round (`client_auth::read_clients`) and `rustbalance client-auth
//! add|remove|list` manage them, and a `--key-file` given to `client-auth add`
//! (`parse_auth_file`); and tor's `NAME.auth_private` lines a node reads for restricted
//! fetch-mode backends (`cluster.backends_client_auth_dir`, `ClientSecret::from_auth_private`).

use std::path::PathBuf;
use std::sync::OnceLock;

use rustbalance_hs::descriptor::{
    auth_line, parse_auth_file, ClientAuthKey, ClientSecret, MAX_AUTH_CLIENTS,
};
use rustbalance_node::client_auth::{
    add_client, fingerprint, read_clients, remove_client, valid_client_name, AUTH_SUFFIX,
};
use rustbalance_node::keystore::create_private_dir;

/// The key `client-auth add` adds in every input (any fixed x25519 public key).
pub const CLIENT_AUTH_ADDED: &str =
    "descriptor:x25519:MDBVGKX3LAJ2GWXSVDWACVLO5HYHDGR5ZQJB5PHHMMYIHKTBDYNA";

/// A private directory (0700, as `client-auth add` makes it) for the client files of one
/// input, `clients/` in a directory of its own, made once per process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base =
            std::env::temp_dir().join(format!("rustbalance-fuzz-auth-{}", std::process::id()));
        let d = base.join("clients");
        create_private_dir(&base).expect("a temporary directory");
        create_private_dir(&d).expect("a temporary directory");
        d
    })
}

/// Empty the directory (left from the previous input).
fn clear() {
    for e in std::fs::read_dir(dir()).expect("read the client directory") {
        std::fs::remove_file(e.expect("a directory entry").path()).expect("remove a file");
    }
}

/// The input is a client name for `client-auth add` and then up to 8 files, separated by
/// NUL bytes. The first file is `notes.txt` (not a key file: ignored), the others
/// `c0.auth`, `c1.auth`, ... Properties:
/// - every file that parses as a key renders (`auth_line`) to a line that parses to the
///   same key, and rendering is canonical;
/// - a directory that reads lists each `.auth` file once, sorted by name, distinct keys,
///   at most [`MAX_AUTH_CLIENTS`]; its fingerprint does not depend on the order;
/// - `client-auth add NAME` accepts exactly the valid names (when the key is new), never
///   writes outside the directory, and the list then holds the new client; `remove NAME`
///   gives back the fingerprint of before.
pub fn client_auth(data: &[u8]) {
    clear();
    let mut parts = data.split(|b| *b == 0);
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let mut auth_files = 0;
    for (i, bytes) in parts.take(8).enumerate() {
        let file = if i == 0 {
            "notes.txt".to_string()
        } else {
            auth_files += 1;
            format!("c{}{AUTH_SUFFIX}", i - 1)
        };
        std::fs::write(dir().join(file), bytes).expect("write a client file");
        let text = String::from_utf8_lossy(bytes);
        if let Ok(key) = parse_auth_file(&text) {
            round_trip(&key);
        }
        auth_private(&text);
    }
    let Ok(before) = read_clients(dir()) else {
        return;
    };
    assert_eq!(before.len(), auth_files, "one client per .auth file");
    assert!(before.len() <= MAX_AUTH_CLIENTS);
    assert!(before.windows(2).all(|w| w[0].name < w[1].name), "sorted");
    for (i, c) in before.iter().enumerate() {
        assert!(before[..i].iter().all(|o| o.key != c.key), "distinct keys");
        round_trip(&c.key);
    }
    let fp = fingerprint(&before);
    let mut reversed = before.clone();
    reversed.reverse();
    assert_eq!(
        fingerprint(&reversed),
        fp,
        "the fingerprint depends on the order"
    );
    add_and_remove(&name, &before, &fp);
}

/// `client-auth add NAME` then `remove NAME` on a directory that read as `before`.
fn add_and_remove(
    name: &str,
    before: &[rustbalance_node::client_auth::AuthorizedClient],
    fp: &str,
) {
    let key = parse_auth_file(CLIENT_AUTH_ADDED).expect("the added key parses");
    let taken = before.iter().any(|c| c.name == name || c.key == key);
    let added = add_client(dir(), name, &key);
    let outside: Vec<_> = std::fs::read_dir(dir().parent().expect("a parent"))
        .expect("read the temporary directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p != dir())
        .collect();
    assert!(
        outside.is_empty(),
        "add {name:?} wrote outside the directory: {outside:?}"
    );
    match added {
        Ok(file) => {
            assert!(valid_client_name(name) && !taken, "add {name:?} accepted");
            assert_eq!(file.parent(), Some(dir().as_path()));
            let after = read_clients(dir()).expect("the directory reads after add");
            assert_eq!(after.len(), before.len() + 1);
            assert!(after.iter().any(|c| c.name == name && c.key == key));
            remove_client(dir(), name).expect("remove what was added");
            let again = read_clients(dir()).expect("the directory reads after remove");
            assert_eq!(fingerprint(&again), fp, "remove undoes add");
        }
        Err(_) => assert!(
            !valid_client_name(name) || taken || before.len() >= MAX_AUTH_CLIENTS,
            "add {name:?} refused a valid new client"
        ),
    }
}

/// `auth_line` renders a line that parses back to `key`, and rendering is canonical.
fn round_trip(key: &ClientAuthKey) {
    let line = auth_line(key);
    let back = parse_auth_file(&line).expect("a rendered .auth line parses");
    assert_eq!(back, *key, "round trip changed the key");
    assert_eq!(auth_line(&back), line, "rendering is not canonical");
}

/// An `.auth_private` line that parses renders (`auth_private_line`) to a line that parses
/// to the same address and key; one that does not parse says why without the key part.
fn auth_private(text: &str) {
    match ClientSecret::from_auth_private(text) {
        Ok((addr, secret)) => {
            let line = secret.auth_private_line(&addr);
            let (addr2, back) =
                ClientSecret::from_auth_private(&line).expect("a rendered line parses");
            assert_eq!(addr2, addr, "round trip changed the address");
            assert_eq!(back.public(), secret.public(), "round trip changed the key");
        }
        Err(e) => {
            // A key-shaped part (52 base32 characters after the last ':') never shows in
            // the message. (Shorter parts are not secrets, and the fuzzer showed that any
            // test on them trips over the message's own words: "not 52 base32 ch".)
            // (Unless the same text also stands before it, e.g. as the address, which the
            // message may name.)
            let t = text.trim();
            let key_part = t.rsplit(':').next().unwrap_or_default();
            let key_shaped = key_part.len() == 52
                && !t[..t.len() - key_part.len()].contains(key_part)
                && key_part
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || (b'2'..=b'7').contains(&b));
            if key_shaped {
                assert!(!e.contains(key_part), "the error repeats the key: {e}");
            }
        }
    }
}
