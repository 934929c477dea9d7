//! The node's cluster identity files, all in the data directory ([`Layout`]):
//!
//! | file | content | mode |
//! |---|---|---|
//! | `node-identity.key` | the node's Ed25519 identity (`rustbalance_cluster::identity`) | 0600, secret |
//! | `member.cert` | its member certificate, one line (`rustbalance_cluster::cert`) | 0600 |
//! | `authority.pub` | the authority key the node trusts, one line | 0600 |
//!
//! The identity is made by `init` / `join`, or by the first `run` of a node made before
//! identities existed ([`load_or_create`]); it never leaves the node. Eligible nodes derive
//! the authority from the master key ([`authority_of`]) and certify themselves at every
//! start; workers get `member.cert` and `authority.pub` when they join.

use super::{read_key_file, write_atomic};
use crate::err::{Error, Result};
use crate::layout::Layout;
use rustbalance_cluster::{
    cert, Authority, AuthorityKey, MemberCert, NodeIdentity, AUTHORITY_INFO,
};
use rustbalance_hs::IdentityKey;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn bad(path: &Path, source: rustbalance_cluster::ClusterError) -> Error {
    Error::Membership {
        path: path.to_path_buf(),
        source,
    }
}

/// The node's identity; made (and written 0600, atomically) if the file does not exist.
pub fn load_or_create(layout: &Layout) -> Result<NodeIdentity> {
    let path = layout.node_identity();
    if path.exists() {
        return load(&path);
    }
    let id = NodeIdentity::generate();
    write_atomic(&path, &id.to_file_bytes(), 0o600)?;
    tracing::info!(identity = %id.public(), "made this node's cluster identity");
    Ok(id)
}

/// Reads an identity file; refuses one that others than its owner may read.
pub fn load(path: &Path) -> Result<NodeIdentity> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        action: "cannot read node identity",
        path: path.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::Io {
            action: "refusing a node identity readable by others (chmod 600 it)",
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
    }
    let data = read_key_file(path)?;
    NodeIdentity::from_file_bytes(&data).map_err(|e| bad(path, e))
}

/// One line of text from `path`, `None` if the file does not exist.
fn read_line(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim_end_matches('\n').to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The member certificate in `member.cert`, if there is one (not checked here: the
/// membership checks it against the trust when gossip starts).
pub fn read_cert(layout: &Layout) -> Result<Option<MemberCert>> {
    let path = layout.member_cert();
    read_line(&path)?
        .map(|l| cert::parse(l.as_bytes()).map_err(|e| bad(&path, e)))
        .transpose()
}

/// Writes `member.cert` (atomically).
pub fn write_cert(layout: &Layout, cert: &MemberCert) -> Result<()> {
    write_atomic(
        &layout.member_cert(),
        format!("{}\n", cert.encode()).as_bytes(),
        0o600,
    )
}

/// The authority key in `authority.pub`, if there is one.
pub fn read_authority(layout: &Layout) -> Result<Option<AuthorityKey>> {
    let path = layout.authority_key();
    read_line(&path)?
        .map(|l| AuthorityKey::decode(&l).map_err(|e| bad(&path, e)))
        .transpose()
}

/// Writes `authority.pub` (atomically).
pub fn write_authority(layout: &Layout, key: &AuthorityKey) -> Result<()> {
    write_atomic(
        &layout.authority_key(),
        format!("{}\n", key.encode()).as_bytes(),
        0o600,
    )
}

/// The member authority of the cluster whose master key is `master`.
pub fn authority_of(master: &IdentityKey) -> Authority {
    Authority::from_seed(&master.derive_secret(AUTHORITY_INFO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustbalance_cluster::{CertFields, CertRole};

    #[test]
    fn identity_is_made_once_0600_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        let a = load_or_create(&layout).unwrap();
        let path = layout.node_identity();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(&layout).unwrap();
        assert_eq!(a.public(), b.public());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("node-identity.key") && e.contains("first line"),
            "{e}"
        );
        // A damaged file is never replaced silently.
        assert!(load_or_create(&layout).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"garbage");
    }

    #[test]
    fn cert_and_authority_files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        assert!(read_cert(&layout).unwrap().is_none());
        assert!(read_authority(&layout).unwrap().is_none());
        let master = IdentityKey::from_seed(&[8u8; 32]);
        let auth = authority_of(&master);
        assert_eq!(authority_of(&master.duplicate()).public(), auth.public());
        assert_ne!(
            authority_of(&IdentityKey::from_seed(&[9u8; 32])).public(),
            auth.public()
        );
        let cert = auth
            .certify(CertFields {
                name: "w1".into(),
                role: CertRole::Worker,
                identity: load_or_create(&layout).unwrap().public(),
                wireguard: None,
                onion: None,
                issued: 1,
                serial: 2,
            })
            .unwrap();
        write_cert(&layout, &cert).unwrap();
        write_authority(&layout, &auth.public()).unwrap();
        assert_eq!(read_cert(&layout).unwrap(), Some(cert));
        assert_eq!(read_authority(&layout).unwrap(), Some(auth.public()));
        std::fs::write(layout.member_cert(), "rbcert1 x\n").unwrap();
        let e = read_cert(&layout).unwrap_err().to_string();
        assert!(e.contains("member.cert"), "{e}");
    }
}
