//! The mesh peers a member learns at run time: the saved list (`mesh-peers.json`), the
//! nodes admitted here (gossiped in `mesh_admitted`) and the `mesh` key every member
//! gossips (`"<WireGuard key> <ip:port>"`).

use super::error::JoinError;
use crate::err::{Error, Result};
use rustbalance_cluster::{keys, AuthorityKey, MemberCert, NodeView};
use rustbalance_mesh::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// A peer as saved in `mesh-peers.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPeer {
    /// Node name, when known.
    pub name: String,
    /// WireGuard public key (base64).
    pub public_key: String,
    /// WireGuard endpoint.
    pub endpoint: SocketAddr,
}

/// Read the saved peers (a missing file is an empty list; a corrupt one is an error that
/// names the file).
pub fn load_saved_peers(path: &Path) -> Result<Vec<SavedPeer>> {
    load_list(
        path,
        "read saved mesh peers",
        "remove it (peers come back through gossip and the config)",
    )
}

/// Save `peers` to `path` (0600, atomically).
pub(crate) fn save_peers(path: &Path, peers: &[SavedPeer]) -> std::result::Result<(), JoinError> {
    // Invariant: a list of strings and addresses always serializes.
    let text = serde_json::to_vec_pretty(peers).unwrap_or_default();
    crate::keystore::write_atomic(path, &text, 0o600).map_err(|source| JoinError::Save {
        what: "the mesh peers",
        source: Box::new(source),
    })
}

/// A JSON list kept in `path`: a missing file is an empty list; a corrupt one is an error
/// that names the file and says what to do (`fix`).
pub(crate) fn load_list<T: serde::de::DeserializeOwned>(
    path: &Path,
    action: &'static str,
    fix: &'static str,
) -> Result<Vec<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| {
            JoinError::CorruptList {
                path: path.to_path_buf(),
                source,
                fix,
            }
            .into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The nodes admitted here, by WireGuard key, with their request's nonce and their member
/// certificate (text).
pub(crate) type Admitted = BTreeMap<String, (SavedPeer, String, String)>;

/// The gossip value of [`keys::MESH_ADMITTED`]: one `name key endpoint nonce cert` line
/// each (the certificate, signed by the authority, is what makes the line count).
pub(crate) fn admitted_text(adm: &Admitted) -> String {
    adm.values()
        .map(|(p, n, c)| format!("{} {} {} {n} {c}", p.name, p.public_key, p.endpoint))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line of a member's [`keys::MESH_ADMITTED`]: name, key, endpoint (if it parses),
/// nonce (if given), member certificate (if given and well formed; not checked here).
pub(crate) struct AdmittedLine<'a> {
    pub(crate) name: &'a str,
    pub(crate) key: &'a str,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) cert: Option<MemberCert>,
}

impl AdmittedLine<'_> {
    /// Whether `authority` certified this node under this name and WireGuard key: only
    /// then does the line add a WireGuard peer (a member cannot plant peers of its own).
    pub(crate) fn certified(&self, authority: &AuthorityKey) -> bool {
        self.cert.as_ref().is_some_and(|c| {
            c.verify(authority)
                && c.name() == self.name
                && c.fields().wireguard.is_some_and(|k| {
                    Some(k) == self.key.parse::<PublicKey>().ok().map(|p| *p.as_bytes())
                })
        })
    }
}

/// The lines of member `m`'s [`keys::MESH_ADMITTED`] with at least a name and a key.
pub(crate) fn admitted_lines(m: &NodeView) -> impl Iterator<Item = AdmittedLine<'_>> {
    m.get(keys::MESH_ADMITTED)
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let mut f = line.splitn(5, ' ');
            let (name, key) = (f.next()?, f.next()?);
            let endpoint = f.next().and_then(|e| e.parse().ok());
            let nonce = f.next();
            let cert = f
                .next()
                .and_then(|c| rustbalance_cluster::cert::parse(c.as_bytes()).ok());
            Some(AdmittedLine {
                name,
                key,
                endpoint,
                nonce,
                cert,
            })
        })
}

/// A member's WireGuard public key (base64), from its gossiped `mesh` key.
pub(crate) fn mesh_key(m: &NodeView) -> Option<String> {
    m.get(keys::MESH).and_then(parse_mesh).map(|(k, _)| k)
}

/// `"<key> <ip:port>"`; the key in its canonical spelling (keys are compared as text: a
/// removed member must not escape with a tab after its key, which the key parser trims).
pub(crate) fn parse_mesh(v: &str) -> Option<(String, SocketAddr)> {
    let (k, e) = v.split_once(' ')?;
    let key: rustbalance_mesh::PublicKey = k.parse().ok()?;
    Some((key.to_string(), e.parse().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh WireGuard public key (base64).
    pub(crate) fn key() -> String {
        rustbalance_mesh::PrivateKey::generate()
            .public_key()
            .to_string()
    }

    /// A live gossip member `name` with the state `kv`.
    pub(crate) fn member(name: &str, kv: &[(&str, String)]) -> rustbalance_cluster::NodeView {
        rustbalance_cluster::NodeView {
            node_id: name.into(),
            generation: 1,
            addr: "10.0.0.1:9663".parse().unwrap(),
            live: true,
            heartbeat: 0,
            state: kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    #[test]
    fn saved_peers_round_trip_and_corrupt_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mesh-peers.json");
        assert!(load_saved_peers(&f).unwrap().is_empty());
        let p = SavedPeer {
            name: "node2".into(),
            public_key: key(),
            endpoint: "10.0.0.2:51820".parse().unwrap(),
        };
        save_peers(&f, std::slice::from_ref(&p)).unwrap();
        assert_eq!(load_saved_peers(&f).unwrap(), vec![p.clone()]);
        std::fs::write(&f, b"{").unwrap();
        let e = load_saved_peers(&f).unwrap_err().to_string();
        assert!(
            e.contains("mesh-peers.json is corrupt") && e.contains("remove it"),
            "{e}"
        );
    }

    #[test]
    fn admitted_lines_round_trip() {
        let p = SavedPeer {
            name: "node4".into(),
            public_key: key(),
            endpoint: "10.0.0.4:51820".parse().unwrap(),
        };
        let mut adm = Admitted::new();
        adm.insert(
            p.public_key.clone(),
            (p.clone(), "ab".repeat(16), "rbcert1 x".into()),
        );
        let m = NodeView {
            node_id: "node1".into(),
            generation: 1,
            addr: "10.0.0.1:9663".parse().unwrap(),
            live: true,
            heartbeat: 0,
            state: [(keys::MESH_ADMITTED.to_string(), admitted_text(&adm))]
                .into_iter()
                .collect(),
        };
        let lines: Vec<_> = admitted_lines(&m).collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].name, lines[0].key),
            ("node4", p.public_key.as_str())
        );
        assert_eq!(lines[0].endpoint, Some(p.endpoint));
        assert_eq!(lines[0].nonce, Some("ab".repeat(16).as_str()));
        assert!(lines[0].cert.is_none(), "a malformed certificate is none");
        assert_eq!(
            parse_mesh(&format!("{} 10.0.0.4:51820", p.public_key)),
            Some((p.public_key.clone(), p.endpoint))
        );
        assert_eq!(parse_mesh("nokey"), None);
    }
}
