//! The node side of joining: the join generation (token rotation) and the mesh peers a
//! cluster learns at run time.
//!
//! ```text
//!  join endpoint ──admit──▶ MeshPeers::admit: WireGuard peer added here at once,
//!                           listed in our gossip key `mesh_admitted`, saved to mesh-peers.json
//!  every 2 s:   members' `mesh` + `mesh_admitted` ──▶ missing WireGuard peers added, saved
//!               members' `join_gen` (highest wins) ──▶ JoinService takes that token only
//!  token rotate (admin) ──▶ generation + 1, saved, gossiped
//!  node remove (admin) ──▶ removal saved (mesh-removed.json), gossiped in `mesh_removed`
//!               (union of all members' lists); this member rotates the join token
//!               ROTATE_AFTER_REMOVAL later, with a fresh salt (the others only if that
//!               has not reached them ROTATION_FALLBACK after)
//!  every 2 s:   members' `mesh_removed` ──▶ learned, saved; 5 s after learning one, its
//!               WireGuard peer is dropped; its joins are refused from then on; the removed
//!               node itself writes DATA_DIR/removed and stops for good
//! ```
//!
//! From the moment a member learns of a removal until the rotated generation reaches it,
//! it takes no join token at all: the removed machine knows the current one and could
//! otherwise join again under a fresh WireGuard key before the rotation.
//!
//! Peers are never removed automatically: a dead node may come back, and WireGuard costs
//! nothing for a silent peer; `rustbalance node remove` removes one for good. The files are
//! written atomically.

use crate::err::{Error, Result};
use crate::join::{
    Admission, AdmitError, AdmitResult, Admitter, JoinGeneration, JoinGrant, JoinService,
    JoinToken, MemberInfo,
};
use crate::keystore::write_atomic;
use rustbalance_cluster::{keys, Membership, NodeView};
use rustbalance_hs::OnionAddress;
use rustbalance_mesh::{Mesh, MeshPeer, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use zeroize::Zeroizing;

/// How long members keep a removed node's WireGuard peer after learning of the removal, so
/// that the removal still reaches the node itself over gossip and it stops.
pub const REMOVAL_GRACE: Duration = Duration::from_secs(5);

/// How long after a removal the member that made it rotates the join token (unless the
/// generation moved meanwhile): long enough for every member to have dropped the removed
/// node's WireGuard peer ([`REMOVAL_GRACE`] after learning, itself within seconds), so the
/// new generation's salt never reaches the removed node over gossip.
pub const ROTATE_AFTER_REMOVAL: Duration = Duration::from_secs(15);

/// The other members rotate only if the remover's new generation has not reached them
/// this long after [`ROTATE_AFTER_REMOVAL`] (the remover died meanwhile). Were they all to
/// rotate on time, each would draw its own salt, the cluster would settle on the highest,
/// and the token `node remove` printed could be one the cluster no longer takes.
pub const ROTATION_FALLBACK: Duration = Duration::from_secs(15);

/// Removals learned later than this after they were made (by their wall-clock stamp) no
/// longer close the join endpoint nor ask for a rotation: that rotation happened while this
/// member was away, and gossip brings its generation.
const RECENT_REMOVAL: Duration = Duration::from_secs(600);

/// A node removed from the cluster (`rustbalance node remove`): saved in
/// `mesh-removed.json`, gossiped in [`keys::MESH_REMOVED`]. Removals are never undone; a
/// removed machine comes back only wiped, with a new WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The removed node's name (`-` when only its key was known).
    pub name: String,
    /// Its WireGuard public key (base64): what removal is keyed on.
    pub public_key: String,
    /// When it was removed (Unix seconds, the remover's clock).
    pub at: u64,
    /// The member that removed it.
    pub by: String,
}

impl Removal {
    fn line(&self) -> String {
        format!("{} {} {} {}", self.name, self.public_key, self.at, self.by)
    }

    /// One gossip line; `None` for anything malformed (what a peer sends is checked, not
    /// trusted to be well formed).
    pub fn parse_line(line: &str) -> Option<Removal> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 || !crate::join::valid_name(f[0]) || !crate::join::valid_name(f[3]) {
            return None;
        }
        f[1].parse::<PublicKey>().ok()?;
        Some(Removal {
            name: f[0].to_string(),
            public_key: f[1].to_string(),
            at: f[2].parse().ok()?,
            by: f[3].to_string(),
        })
    }

    fn describe(&self) -> String {
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(self.at);
        format!(
            "node {} (WireGuard key {}) was removed from the cluster by {} at {}",
            self.name,
            self.public_key,
            self.by,
            humantime::format_rfc3339_seconds(when)
        )
    }
}

/// The removals saved in `path` (missing file: none; a corrupt one is an error that names
/// the file).
pub fn load_removals(path: &std::path::Path) -> Result<Vec<Removal>> {
    load_list(
        path,
        "read removed nodes",
        "copy it from another member's data directory, or remove it (the members gossip their \
         removals back within seconds)",
    )
}

/// A JSON list kept in `path`: a missing file is an empty list; a corrupt one is an error
/// that names the file and says what to do (`fix`).
fn load_list<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    action: &'static str,
    fix: &str,
) -> Result<Vec<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::Other(format!("{} is corrupt ({e}); {fix}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The marker a removed node leaves in its data directory.
pub fn removed_marker(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("removed")
}

/// Refuse to start a node that was removed from its cluster ([`Error::Removed`]).
pub fn refuse_if_removed(data_dir: &std::path::Path) -> Result<()> {
    let marker = removed_marker(data_dir);
    match std::fs::read_to_string(&marker) {
        Ok(why) => Err(Error::Removed(format!(
            "{}; it does not start again ({}). To serve again, wipe this machine and join \
             with a fresh token (docs/OPERATIONS.md, \"Remove a node\")",
            why.trim(),
            marker.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "read",
            path: marker,
            source,
        }),
    }
}

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
pub fn load_saved_peers(path: &std::path::Path) -> Result<Vec<SavedPeer>> {
    load_list(
        path,
        "read saved mesh peers",
        "remove it (peers come back through gossip and the config)",
    )
}

/// Everything the join endpoint and the peer sync need from the running node.
pub struct JoinNode {
    /// This node's name.
    pub name: String,
    /// The master address and virtual port (what tokens carry).
    pub master: OnionAddress,
    /// See `master`.
    pub port: u16,
    /// Raw cluster secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// `cluster.cluster_id`.
    pub cluster_id: String,
    /// Gossip port on the overlay.
    pub gossip_port: u16,
    /// This node's WireGuard key and endpoint.
    pub own_key: PublicKey,
    /// See `own_key`.
    pub own_endpoint: SocketAddr,
    /// The mesh.
    pub mesh: Arc<Mutex<Mesh>>,
    /// `mesh-peers.json`.
    pub peers_file: PathBuf,
    /// `join-generation`.
    pub generation_file: PathBuf,
    /// `mesh-removed.json`.
    pub removed_file: PathBuf,
    /// `removed`, written when this node learns that it was removed.
    pub removed_marker: PathBuf,
    /// The endpoint on the proxy.
    pub service: Arc<JoinService>,
    /// Gossip.
    pub membership: Arc<Membership>,
    generation: Mutex<JoinGeneration>,
    /// A token rotation due at the instant, unless the generation has left the one given.
    pending_rotation: Mutex<Option<(Instant, JoinGeneration)>>,
    /// Nodes admitted here, by WireGuard key, with their request's nonce.
    admitted: Mutex<BTreeMap<String, (SavedPeer, String)>>,
    /// Removed nodes by WireGuard key, with when this node learned of each.
    removals: Mutex<BTreeMap<String, (Removal, Instant)>>,
    /// Set once this node learns that it was removed.
    gone: tokio::sync::watch::Sender<Option<Removal>>,
    /// Node names by WireGuard key, as gossip and admissions tell them (for the saved
    /// peers file).
    names: Mutex<BTreeMap<String, String>>,
}

impl JoinNode {
    /// Set up: read the saved join generation, advertise ourselves, accept the current token.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        name: String,
        master: OnionAddress,
        port: u16,
        secret: Zeroizing<Vec<u8>>,
        cluster_id: String,
        gossip_port: u16,
        own_key: PublicKey,
        own_endpoint: SocketAddr,
        mesh: Arc<Mutex<Mesh>>,
        data_dir: &std::path::Path,
        service: Arc<JoinService>,
        membership: Arc<Membership>,
    ) -> Result<Arc<JoinNode>> {
        let generation_file = data_dir.join("join-generation");
        let generation = match std::fs::read_to_string(&generation_file) {
            Ok(t) => JoinGeneration::parse(&t).ok_or_else(|| {
                Error::Other(format!(
                    "{} does not hold a join generation (a number, optionally followed by 32 hex digits); put 0 in it if unsure: gossip raises it to the cluster's",
                    generation_file.display()
                ))
            })?,
            Err(_) => JoinGeneration::default(),
        };
        let removed_file = data_dir.join("mesh-removed.json");
        // Saved removals took effect before this start: no grace period.
        let long_ago = Instant::now()
            .checked_sub(REMOVAL_GRACE)
            .unwrap_or_else(Instant::now);
        let removals = load_removals(&removed_file)?
            .into_iter()
            .map(|r| (r.public_key.clone(), (r, long_ago)))
            .collect();
        let peers_file = data_dir.join("mesh-peers.json");
        // A peers file that cannot be read was already reported by the mesh start-up.
        let names = load_saved_peers(&peers_file)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.name.is_empty())
            .map(|p| (p.public_key, p.name))
            .collect();
        let node = Arc::new(JoinNode {
            name,
            master,
            port,
            secret,
            cluster_id,
            gossip_port,
            own_key,
            own_endpoint,
            mesh,
            peers_file,
            generation_file,
            removed_file,
            removed_marker: removed_marker(data_dir),
            service,
            membership,
            generation: Mutex::new(generation.clone()),
            pending_rotation: Mutex::new(None),
            admitted: Mutex::new(BTreeMap::new()),
            removals: Mutex::new(removals),
            gone: tokio::sync::watch::channel(None).0,
            names: Mutex::new(names),
        });
        node.membership
            .set(keys::MESH, &format!("{} {}", own_key, own_endpoint))
            .await;
        node.adopt(generation, true).await;
        node.gossip_removals().await;
        let n2 = node.clone();
        node.service.set_admitter(Arc::new(move |a: Admission| {
            let n = n2.clone();
            let fut: std::pin::Pin<Box<dyn std::future::Future<Output = AdmitResult> + Send>> =
                Box::pin(async move { n.admit(a).await });
            fut
        }) as Admitter);
        Ok(node)
    }

    /// The token of the current generation.
    pub fn token(&self) -> JoinToken {
        JoinToken::derive_salted(
            self.master,
            self.port,
            &self.secret,
            &self.join_generation(),
        )
    }

    /// The current join generation's counter.
    pub fn generation(&self) -> u64 {
        self.join_generation().n
    }

    /// The current join generation.
    pub fn join_generation(&self) -> JoinGeneration {
        self.generation
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    async fn adopt(&self, g: JoinGeneration, force: bool) {
        let changed = match self.generation.lock() {
            Ok(mut cur) if g > *cur || force => {
                *cur = g.clone();
                true
            }
            _ => false,
        };
        if !changed {
            return;
        }
        self.service.set_token(JoinToken::derive_salted(
            self.master,
            self.port,
            &self.secret,
            &g,
        ));
        if let Err(e) = write_atomic(&self.generation_file, format!("{g}\n").as_bytes(), 0o600) {
            tracing::warn!("cannot save the join generation: {e}");
        }
        self.membership
            .set(keys::JOIN_GENERATION, &g.to_string())
            .await;
        if !force {
            tracing::info!(
                "join token rotated (generation {}); the old token is refused",
                g.n
            );
        }
    }

    /// `token rotate`: invalidate the current token everywhere; returns the new one.
    pub async fn rotate(&self) -> Zeroizing<String> {
        let g = self.join_generation().next();
        self.adopt(g, false).await;
        self.token().encode()
    }

    /// Resolves once this node learns that it was removed from the cluster.
    pub async fn removed(&self) -> Removal {
        let mut rx = self.gone.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Every removal known here.
    pub fn removals(&self) -> Vec<Removal> {
        self.removals
            .lock()
            .map(|m| m.values().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether gossip member `m` runs under a removed WireGuard key.
    fn is_removed(&self, m: &NodeView) -> bool {
        mesh_key(m).is_some_and(|k| self.removal_of(&k).is_some())
    }

    /// The removal of WireGuard key `key`, if it was removed.
    fn removal_of(&self, key: &str) -> Option<Removal> {
        self.removals
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|(r, _)| r.clone()))
    }

    /// Gossip and save the removals known here (nothing while there are none).
    async fn gossip_removals(&self) {
        let list = self.removals();
        if list.is_empty() {
            return;
        }
        let text = list
            .iter()
            .map(Removal::line)
            .collect::<Vec<_>>()
            .join("\n");
        self.membership.set(keys::MESH_REMOVED, &text).await;
        match serde_json::to_vec_pretty(&list) {
            Ok(json) => {
                if let Err(e) = write_atomic(&self.removed_file, &json, 0o600) {
                    tracing::warn!("cannot save the removed nodes: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot save the removed nodes: {e}"),
        }
    }

    /// Record removals learned from gossip (or made here); returns the new ones.
    fn learn_removals(&self, seen: Vec<Removal>) -> Vec<Removal> {
        let Ok(mut m) = self.removals.lock() else {
            return Vec::new();
        };
        let mut new = Vec::new();
        for r in seen {
            if !m.contains_key(&r.public_key) {
                m.insert(r.public_key.clone(), (r.clone(), Instant::now()));
                new.push(r);
            }
        }
        drop(m);
        // A removal made long ago (this member was away) had its rotation long ago too.
        let unix_now = rustbalance_hs::time::unix_secs(SystemTime::now());
        let recent: Vec<&Removal> = new
            .iter()
            .filter(|r| unix_now.saturating_sub(r.at) < RECENT_REMOVAL.as_secs())
            .collect();
        if !recent.is_empty() {
            // The member that made a removal rotates ROTATE_AFTER_REMOVAL later; that
            // rotation covers every removal learned before it. The others only stand by
            // (ROTATION_FALLBACK more), in case the remover dies first.
            let cur = self.join_generation();
            let mine = recent.iter().any(|r| r.by == self.name);
            if let Ok(mut p) = self.pending_rotation.lock() {
                let due = rotation_due(Instant::now(), mine, p.as_ref(), &cur);
                *p = Some((due, cur));
            }
            // The removed machine knows the current token and could join again under a
            // fresh WireGuard key before the rotation: no token is taken here until the next
            // generation (ours or a member's) arrives.
            self.service.close();
        }
        new
    }

    /// Rotate the token if a removal asked for it and its time has come (once every member
    /// has cut the removed node off), unless someone rotated meanwhile.
    async fn rotate_if_due(&self) {
        let due = match self.pending_rotation.lock() {
            Ok(mut p) => match p.as_ref() {
                Some((at, _)) if Instant::now() >= *at => p.take(),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some((_, then)) = due {
            if self.join_generation() == then {
                self.rotate().await;
            }
        }
    }

    /// `node remove NAME|KEY`: remove a member (alive or dead) for good. Its intro points
    /// leave the descriptor, its WireGuard peer goes on every member after
    /// [`REMOVAL_GRACE`], its joins are refused, it stops itself if it still runs, and the
    /// join token is rotated [`ROTATE_AFTER_REMOVAL`] later, with a fresh salt it never sees.
    pub async fn remove(&self, who: &str) -> std::result::Result<Removal, String> {
        let (name, key) = self.resolve(who).await?;
        if key == self.own_key {
            return Err(format!(
                "{who} is the node you asked; run `rustbalance node remove` on another member"
            ));
        }
        let key = key.to_string();
        let removal = match self.removal_of(&key) {
            Some(r) => r,
            None => {
                let r = Removal {
                    name,
                    public_key: key.clone(),
                    at: rustbalance_hs::time::unix_secs(SystemTime::now()),
                    by: self.name.clone(),
                };
                self.learn_removals(vec![r.clone()]);
                tracing::warn!("{}", r.describe());
                r
            }
        };
        self.gossip_removals().await;
        self.forget_admitted().await;
        Ok(removal)
    }

    /// A member's name and WireGuard key from either (a name is looked up in gossip: the
    /// members, live or dead, and the nodes they admitted).
    async fn resolve(&self, who: &str) -> std::result::Result<(String, PublicKey), String> {
        let members = self.membership.members().await;
        if let Ok(key) = who.parse::<PublicKey>() {
            let name = members
                .iter()
                .find(|m| mesh_key(m).as_deref() == Some(who))
                .map(|m| m.node_id.clone())
                .unwrap_or_else(|| "-".into());
            return Ok((name, key));
        }
        if let Some(k) = members
            .iter()
            .filter(|m| m.node_id == who)
            .find_map(mesh_key)
            .and_then(|k| k.parse().ok())
        {
            return Ok((who.to_string(), k));
        }
        for m in &members {
            for line in m.get(keys::MESH_ADMITTED).unwrap_or("").lines() {
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() >= 2 && f[0] == who {
                    if let Ok(k) = f[1].parse() {
                        return Ok((who.to_string(), k));
                    }
                }
            }
        }
        let names: Vec<&str> = members.iter().map(|m| m.node_id.as_str()).collect();
        Err(format!(
            "no member named {who:?} is known here (members: {}); give its WireGuard public \
             key instead (`rustbalance status --json` lists the mesh peers)",
            names.join(", ")
        ))
    }

    /// Drop removed nodes from the list of nodes admitted here.
    async fn forget_admitted(&self) {
        let list = {
            let Ok(mut adm) = self.admitted.lock() else {
                return;
            };
            let before = adm.len();
            adm.retain(|k, _| self.removal_of(k).is_none());
            if adm.len() == before {
                return;
            }
            admitted_text(&adm)
        };
        self.membership.set(keys::MESH_ADMITTED, &list).await;
    }

    /// Admit a node that proved the token: WireGuard peer now, gossip for the others.
    async fn admit(&self, a: Admission) -> AdmitResult {
        let key: PublicKey = a
            .wg_public_key
            .parse()
            .map_err(|_| "the WireGuard public key is not valid".to_string())?;
        if let Some(r) = self.removal_of(&a.wg_public_key) {
            return Err(AdmitError::Removed(format!(
                "{}; a removed machine joins again only wiped, with a new WireGuard key",
                r.describe()
            )));
        }
        if key == self.own_key {
            // A member joining again (its request reached itself): nothing to add.
            if a.name != self.name {
                return Err(AdmitError::Failed(
                    "that WireGuard key belongs to another node".into(),
                ));
            }
            return Ok(self.grant(&a.name).await);
        }
        let peer = MeshPeer {
            public_key: key,
            endpoint: a.endpoint,
        };
        let mesh = self.mesh.clone();
        tokio::task::spawn_blocking(move || {
            mesh.lock()
                .map_err(|_| "mesh lock".to_string())?
                .add_peer(peer)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let saved = SavedPeer {
            name: a.name.clone(),
            public_key: a.wg_public_key.clone(),
            endpoint: a.endpoint,
        };
        let list = {
            let mut adm = self.admitted.lock().map_err(|_| "lock".to_string())?;
            adm.insert(saved.public_key.clone(), (saved.clone(), a.nonce.clone()));
            admitted_text(&adm)
        };
        self.membership.set(keys::MESH_ADMITTED, &list).await;
        self.note_name(&a.wg_public_key, &a.name);
        self.save_peers().map_err(|e| e.to_string())?;
        Ok(self.grant(&a.name).await)
    }

    /// What an admitted node receives: the cluster's secrets and every member but itself.
    async fn grant(&self, joiner: &str) -> JoinGrant {
        let mut members = Vec::new();
        if joiner != self.name {
            members.push(MemberInfo {
                name: self.name.clone(),
                wg_public_key: self.own_key.to_string(),
                endpoint: self.own_endpoint,
            });
        }
        for m in self.membership.live_nodes().await {
            if m.node_id == self.name || m.node_id == joiner {
                continue;
            }
            if let Some((k, e)) = m.get(keys::MESH).and_then(parse_mesh) {
                members.push(MemberInfo {
                    name: m.node_id.clone(),
                    wg_public_key: k,
                    endpoint: e,
                });
            }
        }
        // One read: counter and salt of the same generation.
        let generation = self.join_generation();
        JoinGrant {
            v: 1,
            cluster_id: self.cluster_id.clone(),
            cluster_secret: hex::encode(&self.secret[..]),
            gossip_port: self.gossip_port,
            join_generation: generation.n,
            join_salt: hex::encode(&generation.salt),
            members,
            admitted_by: self.name.clone(),
        }
    }

    fn note_name(&self, key: &str, name: &str) {
        if let Ok(mut n) = self.names.lock() {
            n.insert(key.to_string(), name.to_string());
        }
    }

    fn save_peers(&self) -> Result<()> {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let peers: Vec<SavedPeer> = {
            let m = self
                .mesh
                .lock()
                .map_err(|_| Error::Other("mesh lock poisoned".into()))?;
            m.peers()
                .map(|p| SavedPeer {
                    name: names
                        .get(&p.public_key.to_string())
                        .cloned()
                        .unwrap_or_default(),
                    public_key: p.public_key.to_string(),
                    endpoint: p.endpoint,
                })
                .collect()
        };
        let text = serde_json::to_vec_pretty(&peers).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&self.peers_file, &text, 0o600)?;
        Ok(())
    }

    /// Follow gossip: add every member's (and every admitted node's) WireGuard peer, adopt
    /// the highest join generation.
    pub async fn sync_forever(self: Arc<Self>) {
        loop {
            let members = self.membership.members().await;
            let seen: Vec<Removal> = members
                .iter()
                .filter(|m| m.node_id != self.name)
                // A node already removed cannot remove others.
                .filter(|m| !self.is_removed(m))
                .flat_map(|m| {
                    m.get(keys::MESH_REMOVED)
                        .unwrap_or("")
                        .lines()
                        .filter_map(Removal::parse_line)
                        .collect::<Vec<_>>()
                })
                .collect();
            let new = self.learn_removals(seen);
            if !new.is_empty() {
                for r in &new {
                    tracing::warn!("{}", r.describe());
                }
                self.gossip_removals().await;
                self.forget_admitted().await;
            }
            if let Some(r) = self.removal_of(&self.own_key.to_string()) {
                self.stop_removed(r);
                return;
            }
            let mut wanted: Vec<(PublicKey, SocketAddr)> = Vec::new();
            let mut top = self.join_generation();
            for m in &members {
                if m.node_id == self.name {
                    continue;
                }
                // A removed node's word counts for nothing (it may not have stopped).
                if self.is_removed(m) {
                    continue;
                }
                if let Some(g) = m.get(keys::JOIN_GENERATION).and_then(JoinGeneration::parse) {
                    top = top.max(g);
                }
                if let Some((k, e)) = m.get(keys::MESH).and_then(parse_mesh) {
                    if let Ok(key) = k.parse() {
                        self.note_name(&k, &m.node_id);
                        wanted.push((key, e));
                    }
                }
                for line in m.get(keys::MESH_ADMITTED).unwrap_or("").lines() {
                    let f: Vec<&str> = line.split(' ').collect();
                    if f.len() < 3 {
                        continue;
                    }
                    if let (Ok(k), Ok(e)) = (f[1].parse::<PublicKey>(), f[2].parse()) {
                        if crate::join::valid_name(f[0]) {
                            self.note_name(f[1], f[0]);
                        }
                        wanted.push((k, e));
                    }
                    if let Some(nonce) = f.get(3) {
                        self.service.note_nonce(nonce);
                    }
                }
            }
            self.adopt(top, false).await;
            self.rotate_if_due().await;
            // Removed nodes: never added again; dropped once the grace period is over.
            let (banned, due): (Vec<String>, Vec<PublicKey>) = match self.removals.lock() {
                Ok(m) => (
                    m.keys().cloned().collect(),
                    m.values()
                        .filter(|(_, learned)| learned.elapsed() >= REMOVAL_GRACE)
                        .filter_map(|(r, _)| r.public_key.parse().ok())
                        .collect(),
                ),
                Err(_) => (Vec::new(), Vec::new()),
            };
            wanted.retain(|(k, _)| !banned.contains(&k.to_string()));
            let mesh = self.mesh.clone();
            let own = self.own_key;
            let (added, dropped) = tokio::task::spawn_blocking(move || {
                let Ok(mut m) = mesh.lock() else {
                    return (0, 0);
                };
                let mut dropped = 0;
                for k in due {
                    match m.remove_peer(&k) {
                        Ok(true) => dropped += 1,
                        Ok(false) => {}
                        Err(err) => tracing::warn!("cannot drop removed mesh peer {k}: {err}"),
                    }
                }
                let mut added = 0;
                for (k, e) in wanted {
                    if k == own || m.peers().any(|p| p.public_key == k && p.endpoint == e) {
                        continue;
                    }
                    match m.add_peer(MeshPeer {
                        public_key: k,
                        endpoint: e,
                    }) {
                        Ok(()) => added += 1,
                        Err(err) => tracing::warn!("cannot add mesh peer {e}: {err}"),
                    }
                }
                (added, dropped)
            })
            .await
            .unwrap_or((0, 0));
            if dropped > 0 {
                tracing::info!("{dropped} removed node(s) dropped from the mesh");
            }
            if added > 0 {
                tracing::info!("{added} mesh peer(s) learned from gossip");
            }
            if added > 0 || dropped > 0 {
                if let Err(e) = self.save_peers() {
                    tracing::warn!("{e}");
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

impl JoinNode {
    /// This node was removed: leave the marker that keeps it from starting again and tell
    /// the daemon to stop.
    fn stop_removed(&self, r: Removal) {
        tracing::error!("{}; this node stops and will not start again", r.describe());
        if let Err(e) = write_atomic(
            &self.removed_marker,
            format!("{}\n", r.describe()).as_bytes(),
            0o600,
        ) {
            tracing::warn!("cannot write {}: {e}", self.removed_marker.display());
        }
        self.service.clear();
        self.gone.send_replace(Some(r));
    }
}

/// When to rotate after learning of removals at `now` (`mine`: one of them was made here),
/// given the rotation already pending, if any, and the current generation.
fn rotation_due(
    now: Instant,
    mine: bool,
    pending: Option<&(Instant, JoinGeneration)>,
    cur: &JoinGeneration,
) -> Instant {
    if mine {
        // Covers every removal learned before: none of them is cut off later than this one.
        return now + ROTATE_AFTER_REMOVAL;
    }
    let fallback = now + ROTATE_AFTER_REMOVAL + ROTATION_FALLBACK;
    match pending {
        // A pending rotation of this generation (ours or a fallback) moves later, never
        // earlier: this removal's node must be cut off first.
        Some((at, then)) if then == cur => fallback.max(*at),
        _ => fallback,
    }
}

/// The gossip value of [`keys::MESH_ADMITTED`].
fn admitted_text(adm: &BTreeMap<String, (SavedPeer, String)>) -> String {
    adm.values()
        .map(|(p, n)| format!("{} {} {} {n}", p.name, p.public_key, p.endpoint))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A member's WireGuard public key (base64), from its gossiped `mesh` key.
pub(crate) fn mesh_key(m: &NodeView) -> Option<String> {
    m.get(keys::MESH).and_then(parse_mesh).map(|(k, _)| k)
}

/// `"<key> <ip:port>"`.
pub(crate) fn parse_mesh(v: &str) -> Option<(String, SocketAddr)> {
    let (k, e) = v.split_once(' ')?;
    Some((k.to_string(), e.parse().ok()?))
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

    #[test]
    fn removal_lines_round_trip_and_hostile_ones_are_refused() {
        let r = Removal {
            name: "node4".into(),
            public_key: key(),
            at: 1_790_000_000,
            by: "node1".into(),
        };
        assert_eq!(Removal::parse_line(&r.line()), Some(r.clone()));
        let k = r.public_key.clone();
        for bad in [
            String::new(),
            format!("node4 {k} 1790000000"),
            format!("node4 {k} 1790000000 node1 extra"),
            "node4 notakey 1790000000 node1".to_string(),
            format!("node4 {k} -1 node1"),
            format!("node4 {k} 1790000000 node 1"),
            format!("no/de {k} 1790000000 node1"),
            format!("{} {k} 1 node1", "n".repeat(33)),
            format!("node4  {k} 1 node1"),
        ] {
            assert_eq!(Removal::parse_line(&bad), None, "{bad:?}");
        }
        assert!(r.describe().contains("node4") && r.describe().contains("node1"));
    }

    #[test]
    fn only_the_remover_rotates_on_time() {
        let t = Instant::now();
        let g1 = JoinGeneration {
            n: 1,
            salt: Vec::new(),
        };
        let g2 = JoinGeneration {
            n: 2,
            salt: vec![7; 16],
        };
        // The remover rotates after ROTATE_AFTER_REMOVAL; the others stand by.
        assert_eq!(rotation_due(t, true, None, &g1), t + ROTATE_AFTER_REMOVAL);
        let fallback = t + ROTATE_AFTER_REMOVAL + ROTATION_FALLBACK;
        assert_eq!(rotation_due(t, false, None, &g1), fallback);
        // A removal made here after one learned from another member: on time, from now.
        let pending = (fallback, g1.clone());
        let later = t + Duration::from_secs(3);
        assert_eq!(
            rotation_due(later, true, Some(&pending), &g1),
            later + ROTATE_AFTER_REMOVAL
        );
        // Another member's removal after ours: our pending rotation becomes a fallback
        // (that member rotates on time, later than ours would have).
        let ours = (t + ROTATE_AFTER_REMOVAL, g1.clone());
        assert_eq!(
            rotation_due(later, false, Some(&ours), &g1),
            later + ROTATE_AFTER_REMOVAL + ROTATION_FALLBACK
        );
        // A pending rotation of an older generation (someone rotated meanwhile) is replaced.
        let stale = (t + Duration::from_secs(600), g1);
        assert_eq!(
            rotation_due(later, false, Some(&stale), &g2),
            later + ROTATE_AFTER_REMOVAL + ROTATION_FALLBACK
        );
    }

    #[test]
    fn removal_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mesh-removed.json");
        assert_eq!(load_removals(&f).unwrap(), Vec::new());
        let r = Removal {
            name: "-".into(),
            public_key: key(),
            at: 5,
            by: "node2".into(),
        };
        write_atomic(&f, &serde_json::to_vec(&vec![r.clone()]).unwrap(), 0o600).unwrap();
        assert_eq!(load_removals(&f).unwrap(), vec![r]);
        std::fs::write(&f, b"[{\"name\": ").unwrap();
        let e = load_removals(&f).unwrap_err().to_string();
        assert!(e.contains("mesh-removed.json is corrupt"), "{e}");

        refuse_if_removed(dir.path()).unwrap();
        std::fs::write(
            removed_marker(dir.path()),
            "node node4 was removed by node1\n",
        )
        .unwrap();
        match refuse_if_removed(dir.path()) {
            Err(Error::Removed(why)) => {
                assert!(why.contains("was removed by node1"), "{why}");
                assert!(why.contains("join with a fresh token"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
