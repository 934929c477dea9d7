//! Restricted discovery on fetch-mode backends (issue 17 item 4): a backend whose own
//! descriptor is encrypted for authorized clients (its tor's `authorized_clients/`) is
//! fetched with the client key the operator gives this node, in tor's own
//! `ClientOnionAuthDir` format (`cluster.backends_client_auth_dir`):
//!
//! ```text
//!  DIR/NAME.auth_private  "ADDRESS:descriptor:x25519:KEY"   (dir 0700, files 0600)
//!     ├─▶ read_backend_keys ─▶ BackendKeys ─▶ backends driver: parse_descriptor_as_client
//!     └─▶ torrc ClientOnionAuthDir DIR    ─▶ the node's tor: probes reach the backend
//! ```
//!
//! Anyone who learns a restricted backend's address gets only an encrypted descriptor:
//! its intro points reach clients only through the master descriptor. A directory or
//! file that others can read, a file that is not a key, or a key for an address that is
//! not a `[[backends]]` entry stops the node at start, naming the file; the key itself is
//! never printed.

use crate::err::{Error, Result};
use rustbalance_hs::descriptor::ClientSecret;
use rustbalance_hs::OnionAddress;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

/// File name suffix of tor's `ClientOnionAuthDir` files.
pub const AUTH_PRIVATE_SUFFIX: &str = ".auth_private";

/// The config key, for errors.
const KEY: &str = "cluster.backends_client_auth_dir";

/// Client keys per restricted backend (zeroized when the last reference goes).
pub type BackendKeys = Arc<BTreeMap<OnionAddress, ClientSecret>>;

fn bad(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Config {
        key: KEY.into(),
        problem: format!("{}: {problem}", path.display()),
    }
}

/// Refuse a file or directory that group or others can use (`what`: its kind).
fn private(path: &Path, what: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(
            path,
            format!(
                "{what} is mode {mode:o}, others can read client keys; \
                 chmod {} it",
                if meta.is_dir() { "700" } else { "600" }
            ),
        ));
    }
    Ok(())
}

/// Every `*.auth_private` key of `dir` (other files are ignored, as tor does), each for
/// one of `backends`.
pub fn read_backend_keys(dir: &Path, backends: &[(String, OnionAddress)]) -> Result<BackendKeys> {
    if !dir.is_dir() {
        return Err(bad(
            dir,
            "not a directory; create it (0700) with one NAME.auth_private file per restricted backend",
        ));
    }
    private(dir, "the directory")?;
    let mut keys = BTreeMap::new();
    for (_, path) in crate::client_auth::files_ending(dir, AUTH_PRIVATE_SUFFIX, "cannot list")? {
        private(&path, "the key file")?;
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|source| {
            Error::Io {
                action: "cannot read the client key",
                path: path.clone(),
                source,
            }
        })?);
        let (addr, secret) = ClientSecret::from_auth_private(&text).map_err(|p| bad(&path, p))?;
        if !backends.iter().any(|(_, a)| *a == addr) {
            return Err(bad(
                &path,
                format!("{addr} is not the address of any [[backends]] entry"),
            ));
        }
        if keys.insert(addr, secret).is_some() {
            return Err(bad(&path, format!("a second key for {addr}")));
        }
    }
    Ok(Arc::new(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rustbalance_hs::IdentityKey;

    fn setup() -> (
        tempfile::TempDir,
        Vec<(String, OnionAddress)>,
        Vec<ClientSecret>,
    ) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let backends: Vec<(String, OnionAddress)> = (0..2)
            .map(|i| (format!("b{i}"), IdentityKey::generate(&mut rng).address()))
            .collect();
        let secrets = (0..2).map(|_| ClientSecret::generate(&mut rng)).collect();
        (d, backends, secrets)
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn keys_for_listed_backends_are_read() {
        let (d, b, s) = setup();
        write(
            d.path(),
            "one.auth_private",
            &s[0].auth_private_line(&b[0].1),
            0o600,
        );
        write(d.path(), "README", "not a key", 0o644);
        let k = read_backend_keys(d.path(), &b).unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(k[&b[0].1].public().as_bytes(), s[0].public().as_bytes());
    }

    #[test]
    fn unsafe_or_wrong_files_stop_the_node_without_showing_the_key() {
        let (d, b, s) = setup();
        let line = s[0].auth_private_line(&b[0].1);
        let secret = line.rsplit_once(':').unwrap().1.to_string();
        // Readable by others.
        write(d.path(), "one.auth_private", &line, 0o644);
        let e = read_backend_keys(d.path(), &b).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains(&secret), "{e}");
        // A key for an address that is not a backend.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let other = IdentityKey::generate(&mut rng).address();
        write(
            d.path(),
            "one.auth_private",
            &s[0].auth_private_line(&other),
            0o600,
        );
        let e = read_backend_keys(d.path(), &b).unwrap_err().to_string();
        assert!(
            e.contains("not the address of any") && !e.contains(&secret),
            "{e}"
        );
        // Two keys for one backend.
        write(d.path(), "one.auth_private", &line, 0o600);
        write(
            d.path(),
            "two.auth_private",
            &s[1].auth_private_line(&b[0].1),
            0o600,
        );
        let e = read_backend_keys(d.path(), &b).unwrap_err().to_string();
        assert!(e.contains("a second key"), "{e}");
        std::fs::remove_file(d.path().join("two.auth_private")).unwrap();
        // Not a key.
        write(d.path(), "two.auth_private", "garbage", 0o600);
        assert!(read_backend_keys(d.path(), &b).is_err());
        std::fs::remove_file(d.path().join("two.auth_private")).unwrap();
        // The directory open to others.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = read_backend_keys(d.path(), &b).unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
        // Missing.
        assert!(read_backend_keys(&d.path().join("nope"), &b).is_err());
    }
}
