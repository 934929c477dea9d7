//! Restricted discovery on the master address: the directory `service.authorized_clients_dir`
//! of tor `NAME.auth` files (`descriptor:x25519:BASE32`), as `rustbalance client-auth`
//! manages it and the publisher reads it before every round.
//!
//! ```text
//!  client-auth add NAME ─▶ DIR/NAME.auth (0600, atomic) ─┐
//!  client-auth remove NAME ─▶ unlink ────────────────────┼─▶ publisher: read_clients(DIR)
//!  (or an operator copying tor's own .auth files) ───────┘     fingerprint changed → republish
//! ```
//!
//! A directory that cannot be read, or a file in it that is not a valid key, stops the
//! publisher from publishing (the error says which file) rather than publish a descriptor
//! open to everyone or one missing a client; an empty or missing directory restricts the
//! address to nobody, which is what it says.

use crate::err::{Error, Result};
use crate::keystore::{create_private_dir, write_atomic};
use rustbalance_hs::descriptor::{auth_line, parse_auth_file, ClientAuthKey, MAX_AUTH_CLIENTS};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// File name suffix tor uses in `authorized_clients/`.
pub const AUTH_SUFFIX: &str = ".auth";

/// One authorized client.
#[derive(Debug, Clone)]
pub struct AuthorizedClient {
    /// The file name without `.auth`.
    pub name: String,
    /// Its public key.
    pub key: ClientAuthKey,
}

fn dir_err(dir: &Path, problem: String) -> Error {
    Error::Config {
        key: "service.authorized_clients_dir".into(),
        problem: format!("{}: {problem}", dir.display()),
    }
}

/// Is `name` usable as a client name (and so as a file name)?
pub fn valid_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The files of `dir` whose names end with `suffix` (other files are ignored, as tor
/// does), as (name without the suffix, path), sorted by name; a listing error names `dir`
/// and says `action`. Shared by the authorized-clients and the backend-key directories.
pub(crate) fn files_ending(
    dir: &Path,
    suffix: &str,
    action: &'static str,
) -> Result<Vec<(String, PathBuf)>> {
    let io = |source| Error::Io {
        action,
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let fname = entry.file_name();
        if let Some(name) = fname.to_str().and_then(|n| n.strip_suffix(suffix)) {
            out.push((name.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every `*.auth` file of `dir`, sorted by name. Other files are ignored (as tor does).
/// A directory that does not exist (yet) holds no client: the address is then open to
/// nobody, never to everyone.
pub fn read_clients(dir: &Path) -> Result<Vec<AuthorizedClient>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (name, path) in files_ending(
        dir,
        AUTH_SUFFIX,
        "cannot read the authorized clients directory",
    )? {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            action: "cannot read the client key",
            path: path.clone(),
            source,
        })?;
        let key = parse_auth_file(&text).map_err(|p| dir_err(&path, p))?;
        if out.iter().any(|c: &AuthorizedClient| c.key == key) {
            return Err(dir_err(
                &path,
                "the same key is in another .auth file".into(),
            ));
        }
        out.push(AuthorizedClient {
            name: name.to_string(),
            key,
        });
    }
    if out.len() > MAX_AUTH_CLIENTS {
        return Err(dir_err(
            dir,
            format!(
                "{} clients, at most {MAX_AUTH_CLIENTS} fit in a descriptor beside its intro points",
                out.len()
            ),
        ));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A short digest of the set of keys: the publisher republishes when it changes.
pub fn fingerprint(clients: &[AuthorizedClient]) -> String {
    let mut keys: Vec<[u8; 32]> = clients.iter().map(|c| c.key.to_bytes()).collect();
    keys.sort();
    let mut h = Sha256::new();
    for k in &keys {
        h.update(k);
    }
    hex::encode(&h.finalize()[..8])
}

/// The file of client `name` in `dir`.
pub fn client_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{AUTH_SUFFIX}"))
}

/// Add client `name` with `key`: writes `DIR/NAME.auth` (0600, atomically; `dir` is
/// created 0700). Refuses an existing name or a key already listed.
pub fn add_client(dir: &Path, name: &str, key: &ClientAuthKey) -> Result<PathBuf> {
    if !valid_client_name(name) {
        return Err(dir_err(
            dir,
            format!("client name {name:?}: use 1-64 letters, digits, '-' or '_'"),
        ));
    }
    create_private_dir(dir)?;
    let file = client_file(dir, name);
    if file.exists() {
        return Err(dir_err(
            dir,
            format!("a client named {name:?} exists already (remove it first)"),
        ));
    }
    if let Some(c) = read_clients(dir)?.iter().find(|c| c.key == *key) {
        return Err(dir_err(
            dir,
            format!("this key is already authorized as {:?}", c.name),
        ));
    }
    write_atomic(&file, format!("{}\n", auth_line(key)).as_bytes(), 0o600)?;
    Ok(file)
}

/// Remove client `name`; an error if there is none.
pub fn remove_client(dir: &Path, name: &str) -> Result<PathBuf> {
    let file = client_file(dir, name);
    if !valid_client_name(name) || !file.exists() {
        let known: Vec<String> = read_clients(dir)
            .map(|v| v.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        return Err(dir_err(
            dir,
            format!("no client named {name:?} (known: {})", known.join(", ")),
        ));
    }
    std::fs::remove_file(&file).map_err(|source| Error::Io {
        action: "cannot remove",
        path: file.clone(),
        source,
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rustbalance_hs::descriptor::ClientSecret;

    #[test]
    fn add_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("clients");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = ClientSecret::generate(&mut rng).public();
        let b = ClientSecret::generate(&mut rng).public();
        let empty_fp = fingerprint(&[]);
        let fa = add_client(&dir, "alice", &a).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fa).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        add_client(&dir, "bob", &b).unwrap();
        std::fs::write(dir.join("README"), "not a key").unwrap();
        let list = read_clients(&dir).unwrap();
        let names: Vec<_> = list.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        let fp2 = fingerprint(&list);
        assert_ne!(fp2, empty_fp);
        assert!(add_client(&dir, "alice", &b).is_err());
        assert!(add_client(&dir, "carol", &a)
            .unwrap_err()
            .to_string()
            .contains("already authorized as \"alice\""));
        assert!(add_client(&dir, "../x", &b).is_err());
        remove_client(&dir, "bob").unwrap();
        assert_ne!(fingerprint(&read_clients(&dir).unwrap()), fp2);
        let e = remove_client(&dir, "bob").unwrap_err().to_string();
        assert!(e.contains("known: alice"), "{e}");
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.auth"), "descriptor:x25519:nope").unwrap();
        let e = read_clients(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("x.auth") && e.contains("descriptor:x25519"),
            "{e}"
        );
        assert!(read_clients(&d.path().join("missing")).unwrap().is_empty());
    }
}
