//! The member side of joining: this node's join generation (token rotation), the nodes it
//! admitted, the removals it knows, and `node remove`.
//!
//! ```text
//!  join endpoint ──admit──▶ JoinNode::admit (grant.rs): WireGuard peer added here at once,
//!                           listed in our gossip key `mesh_admitted`, saved to mesh-peers.json
//!  every sync_interval (sync.rs): members' `mesh` + `mesh_admitted` ──▶ missing WireGuard
//!               peers added, saved; members' `join_gen` (highest wins) ──▶ JoinService takes
//!               that token only
//!  token rotate (admin) ──▶ generation + 1, saved, gossiped
//!  node remove (admin) ──▶ removal saved (mesh-removed.json), gossiped in `mesh_removed`
//!               (union of all members' lists); this member rotates the join token
//!               rotate_after_removal later, with a fresh salt (the others only if that
//!               has not reached them rotation_fallback after)
//!  every sync_interval: members' `mesh_removed` ──▶ learned, saved; removal_grace after
//!               learning one, its WireGuard peer is dropped; its joins are refused from then
//!               on; the removed node itself writes DATA_DIR/removed and stops for good
//! ```
//!
//! From the moment a member learns of a recent removal until the rotated generation reaches
//! it, it takes no join token at all: the removed machine knows the current one and could
//! otherwise join again under a fresh WireGuard key before the rotation.
//!
//! Peers are never removed automatically: a dead node may come back, and WireGuard costs
//! nothing for a silent peer; `rustbalance node remove` removes one for good. The files are
//! written atomically.

use super::admission::{Admission, AdmitResult, Admitter};
use super::error::JoinError;
use super::peers::{
    admitted_text, load_list, load_saved_peers, mesh_key, save_peers, Admitted, SavedPeer,
};
use super::removal::{load_removals, save_removals, Removal, RemovalBook};
use super::rotation::{adopts, RotationPlan};
use super::service::{unix_now, JoinService};
use super::spent::SPENT_KEY;
use super::target::{resolve_member, Target};
use super::timers::JoinTimers;
use super::token::{JoinGeneration, JoinKey, MAX_TTL};
use crate::err::Result;
use crate::keystore::identity::read_authority;
use crate::keystore::write_atomic;
use crate::layout::Layout;
use rustbalance_cluster::{keys, Authority, AuthorityKey, Membership, NodePublicKey, NodeView};
use rustbalance_hs::OnionAddress;
use rustbalance_mesh::{Mesh, PublicKey};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use zeroize::Zeroizing;

/// What [`JoinNode::start`] needs from the running node.
pub struct JoinNodeParams {
    /// This node's name.
    pub name: String,
    /// The master address (what tokens carry).
    pub master: OnionAddress,
    /// The virtual port (what tokens carry).
    pub port: u16,
    /// Raw cluster secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// `cluster.cluster_id`.
    pub cluster_id: String,
    /// Gossip port on the overlay.
    pub gossip_port: u16,
    /// This node's WireGuard key.
    pub own_key: PublicKey,
    /// This node's WireGuard endpoint as the others reach it.
    pub own_endpoint: SocketAddr,
    /// The mesh.
    pub mesh: Arc<Mutex<Mesh>>,
    /// Where the node keeps its files.
    pub layout: Layout,
    /// The endpoint on the proxy.
    pub service: Arc<JoinService>,
    /// Gossip.
    pub membership: Arc<Membership>,
    /// Timers (defaults: today's values).
    pub timers: JoinTimers,
    /// On a publisher-eligible node (it holds the master key): the member authority, which
    /// certifies joiners and signs removals, and the master key's token secret
    /// ([`super::token::JOIN_SECRET_INFO`]).
    pub authority: Option<(Arc<Authority>, Zeroizing<[u8; 32]>)>,
    /// This node's identity (what a removal naming it names), when it is certified.
    pub identity: Option<NodePublicKey>,
}

/// Everything the join endpoint and the peer sync need from the running node.
pub struct JoinNode {
    /// This node's name.
    pub name: String,
    /// The master address and virtual port (what tokens carry).
    pub master: OnionAddress,
    /// See `master`.
    pub port: u16,
    pub(crate) secret: Zeroizing<Vec<u8>>,
    pub(crate) cluster_id: String,
    pub(crate) gossip_port: u16,
    pub(crate) own_key: PublicKey,
    pub(crate) own_endpoint: SocketAddr,
    pub(crate) mesh: Arc<Mutex<Mesh>>,
    pub(crate) layout: Layout,
    /// The endpoint on the proxy.
    pub service: Arc<JoinService>,
    /// Gossip.
    pub membership: Arc<Membership>,
    pub(crate) timers: JoinTimers,
    generation: Mutex<JoinGeneration>,
    rotation: Mutex<RotationPlan>,
    /// Nodes admitted here, by WireGuard key, with their request's nonce.
    pub(crate) admitted: Mutex<Admitted>,
    removals: Mutex<RemovalBook>,
    /// Set once this node learns that it was removed.
    gone: tokio::sync::watch::Sender<Option<Removal>>,
    /// Node names by WireGuard key, as gossip and admissions tell them (for the saved
    /// peers file).
    names: Mutex<BTreeMap<String, String>>,
    /// The authority and the token secret, on an eligible node.
    pub(crate) authority: Option<(Arc<Authority>, Zeroizing<[u8; 32]>)>,
    /// This node's identity, when certified.
    pub(crate) identity: Option<NodePublicKey>,
    /// The authority key removals and admitted nodes are checked with: the gossip trust's,
    /// else this node's own authority's, else `authority.pub` (gossip signatures off).
    pub(crate) authority_key: Option<AuthorityKey>,
}

/// `g`, salted if it is not: an unsalted generation's key (that of a cluster made before
/// `init` salted generation 0) is derivable from the cluster secret alone. Members salting
/// the same counter each converge on the highest salt, as after concurrent rotations.
fn salted(g: JoinGeneration) -> JoinGeneration {
    if g.salt.is_empty() {
        JoinGeneration::salted(g.n)
    } else {
        g
    }
}

/// Where the spent tokens are saved.
fn spent_file(layout: &Layout) -> std::path::PathBuf {
    layout.data_dir.join("join-spent.json")
}

/// The join generation saved in `path` (missing: the first).
fn load_generation(path: &std::path::Path) -> std::result::Result<JoinGeneration, JoinError> {
    match std::fs::read_to_string(path) {
        Ok(t) => JoinGeneration::parse(&t).ok_or_else(|| JoinError::BadGenerationFile {
            path: path.to_path_buf(),
        }),
        Err(_) => Ok(JoinGeneration::default()),
    }
}

/// Save join generation `g` in `path` (0600, atomically).
pub(crate) fn save_generation(
    path: &std::path::Path,
    g: &JoinGeneration,
) -> std::result::Result<(), JoinError> {
    write_atomic(path, format!("{g}\n").as_bytes(), 0o600).map_err(|source| JoinError::Save {
        what: "the join generation",
        source: Box::new(source),
    })
}

impl JoinNode {
    /// Set up: read the saved join generation, advertise ourselves, accept the current token.
    pub async fn start(p: JoinNodeParams) -> Result<Arc<JoinNode>> {
        let layout = p.layout;
        let generation = salted(load_generation(&layout.join_generation())?);
        let removals = RemovalBook::from_saved(
            load_removals(&layout.mesh_removed())?,
            Instant::now(),
            p.timers.removal_grace,
        );
        // A peers file that cannot be read was already reported by the mesh start-up.
        let names = load_saved_peers(&layout.mesh_peers())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.name.is_empty())
            .map(|p| (p.public_key, p.name))
            .collect();
        let authority_key = p
            .membership
            .trust()
            .map(|t| *t.authority())
            .or_else(|| p.authority.as_ref().map(|(a, _)| a.public()))
            .or_else(|| read_authority(&layout).ok().flatten());
        let node = Arc::new(JoinNode {
            name: p.name,
            master: p.master,
            port: p.port,
            secret: p.secret,
            cluster_id: p.cluster_id,
            gossip_port: p.gossip_port,
            own_key: p.own_key,
            own_endpoint: p.own_endpoint,
            mesh: p.mesh,
            layout,
            service: p.service,
            membership: p.membership,
            timers: p.timers,
            generation: Mutex::new(generation.clone()),
            rotation: Mutex::new(RotationPlan::default()),
            admitted: Mutex::new(BTreeMap::new()),
            removals: Mutex::new(removals),
            gone: tokio::sync::watch::channel(None).0,
            names: Mutex::new(names),
            authority_key,
            authority: p.authority,
            identity: p.identity,
        });
        node.trust_removals();
        node.membership
            .set(
                keys::MESH,
                &format!("{} {}", node.own_key, node.own_endpoint),
            )
            .await;
        node.adopt(generation, true).await;
        node.gossip_removals().await;
        let saved: Vec<String> = load_list(
            &spent_file(&node.layout),
            "read spent join tokens",
            "remove it (the members gossip the spent tokens back within seconds)",
        )?;
        node.service.learn_spent(&saved.join("\n"));
        node.gossip_spent().await;
        let n2 = node.clone();
        node.service.set_admitter(Arc::new(move |a: Admission| {
            let n = n2.clone();
            let fut: std::pin::Pin<Box<dyn std::future::Future<Output = AdmitResult> + Send>> =
                Box::pin(async move { n.admit(a).await });
            fut
        }) as Admitter);
        Ok(node)
    }

    /// The timers this node runs with.
    pub fn timers(&self) -> &JoinTimers {
        &self.timers
    }

    /// `token create`: a new single-use token of the current generation that expires `ttl`
    /// from now (at most [`MAX_TTL`]).
    pub fn create_token(&self, ttl: Duration) -> std::result::Result<Zeroizing<String>, JoinError> {
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(JoinError::BadTtl {
                secs: ttl.as_secs(),
                max_days: MAX_TTL.as_secs() / 86_400,
            });
        }
        let key = self.key_of(&self.join_generation());
        let token = key
            .mint(self.master, self.port, unix_now() + ttl.as_secs())
            .ok_or(JoinError::NotEligible {
                what: "token create",
            })?;
        Ok(token.encode())
    }

    /// What the admin endpoint's token commands ask (`token create`, `token rotate`, and
    /// the key fingerprint `node remove` watches).
    pub async fn token_act(&self, act: crate::admin::TokenAct) -> Result<String> {
        use crate::admin::TokenAct;
        Ok(match act {
            TokenAct::Create(ttl) => self.create_token(ttl)?.to_string(),
            TokenAct::Rotate => format!(
                "join key {}: every token made before is void on every member within seconds",
                self.rotate().await
            ),
            TokenAct::Fingerprint => self.key_fingerprint(),
        })
    }

    /// The public fingerprint of the current generation's key (changes at every rotation).
    pub fn key_fingerprint(&self) -> String {
        self.key_of(&self.join_generation()).fingerprint()
    }

    fn key_of(&self, g: &JoinGeneration) -> JoinKey {
        let tokens = self.authority.as_ref().map(|(_, t)| &t[..]);
        JoinKey::derive(&self.secret, tokens, g)
    }

    /// The member authority, on an eligible node.
    pub(crate) fn authority(&self) -> Option<&Authority> {
        self.authority.as_ref().map(|(a, _)| a.as_ref())
    }

    /// Give every removal's identity and serial to the gossip's trust, so that the removed
    /// node's gossip is dropped whatever WireGuard key it claims.
    pub(crate) fn trust_removals(&self) {
        let Some(trust) = self.membership.trust() else {
            return;
        };
        for r in self.removals() {
            if let Some(id) = r.identity_key() {
                trust.revoke_identity(&id);
            }
            if r.serial != 0 {
                trust.revoke_serial(r.serial);
            }
        }
    }

    /// Gossip and save the spent tokens known here (nothing while there are none).
    pub(crate) async fn gossip_spent(&self) {
        let spent = self.service.spent();
        if spent.is_empty() {
            return;
        }
        self.membership.set(SPENT_KEY, &spent.text()).await;
        // One `"<id> <expires>"` string per spent token, as gossiped.
        let text = spent.text();
        let lines: Vec<&str> = text.lines().collect();
        // Invariant: a list of strings always serializes.
        let json = serde_json::to_vec_pretty(&lines).unwrap_or_default();
        if let Err(e) = write_atomic(&spent_file(&self.layout), &json, 0o600) {
            tracing::warn!("cannot save the spent join tokens: {e}; kept in memory and written again at the next change: check the data directory's free space and permissions");
        }
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

    /// Take generation `g` if it is higher than ours (`force`: whatever it is, at start).
    pub(crate) async fn adopt(&self, g: JoinGeneration, force: bool) {
        let changed = match self.generation.lock() {
            Ok(mut cur) if adopts(&cur, &g, force) => {
                *cur = g.clone();
                true
            }
            _ => false,
        };
        if !changed {
            return;
        }
        self.service
            .set_key(self.key_of(&g), self.master, self.port);
        if let Err(e) = save_generation(&self.layout.join_generation(), &g) {
            tracing::warn!("cannot save the join token generation: {e}; kept in memory and written again at the next change: check the data directory's free space and permissions");
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

    /// `token rotate`: void every token made before, everywhere; returns the new key's
    /// fingerprint.
    pub async fn rotate(&self) -> String {
        let g = self.join_generation().next();
        self.adopt(g, false).await;
        self.key_fingerprint()
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
        self.removals.lock().map(|b| b.list()).unwrap_or_default()
    }

    /// Whether gossip member `m` was removed: its certificate's identity, or the WireGuard
    /// key it gossips.
    pub(crate) fn is_removed(&self, m: &NodeView) -> bool {
        let by_identity = m.cert().is_some_and(|c| {
            self.removal_of_identity(&c.identity().to_string())
                .is_some()
        });
        by_identity || mesh_key(m).is_some_and(|k| self.removal_of(&k).is_some())
    }

    /// The removal naming identity `identity`, if it was removed.
    pub(crate) fn removal_of_identity(&self, identity: &str) -> Option<Removal> {
        self.removals
            .lock()
            .ok()
            .and_then(|b| b.of_identity(identity).cloned())
    }

    /// The removal of this node, if it was removed (by its identity or its WireGuard key).
    pub(crate) fn own_removal(&self) -> Option<Removal> {
        self.identity
            .and_then(|i| self.removal_of_identity(&i.to_string()))
            .or_else(|| self.removal_of(&self.own_key.to_string()))
    }

    /// The removal of WireGuard key `key`, if it was removed.
    pub(crate) fn removal_of(&self, key: &str) -> Option<Removal> {
        self.removals.lock().ok().and_then(|b| b.of(key).cloned())
    }

    /// Removed nodes' keys, and those whose WireGuard peer goes at `now`.
    pub(crate) fn removed_keys(&self, now: Instant) -> (Vec<String>, Vec<PublicKey>) {
        match self.removals.lock() {
            Ok(b) => (
                b.list().into_iter().map(|r| r.public_key).collect(),
                b.peers_due(now, self.timers.removal_grace),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        }
    }

    /// Gossip and save the removals known here (nothing while there are none).
    pub(crate) async fn gossip_removals(&self) {
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
        if let Err(e) = save_removals(&self.layout.mesh_removed(), &list) {
            tracing::warn!("cannot save the removals: {e}; kept in memory and written again at the next change: check the data directory's free space and permissions");
        }
    }

    /// Record removals learned from gossip (or made here) at `now`; returns the new ones.
    /// Recent ones close the join endpoint until the next generation and plan a rotation.
    pub(crate) fn learn_removals(&self, seen: Vec<Removal>, now: Instant) -> Vec<Removal> {
        let Ok(new) = self.removals.lock().map(|mut b| b.learn(seen, now)) else {
            return Vec::new();
        };
        let unix_now = rustbalance_hs::time::unix_secs(SystemTime::now());
        let recent: Vec<&Removal> = new
            .iter()
            .filter(|r| r.is_recent(unix_now, self.timers.recent_removal))
            .collect();
        if !recent.is_empty() {
            // The member that made a removal rotates rotate_after_removal later; that
            // rotation covers every removal learned before it. The others only stand by
            // (rotation_fallback more), in case the remover dies first.
            let cur = self.join_generation();
            let mine = recent.iter().any(|r| r.by == self.name);
            if let Ok(mut p) = self.rotation.lock() {
                p.schedule(now, mine, &cur, &self.timers);
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
    pub(crate) async fn rotate_if_due(&self, now: Instant) {
        let cur = self.join_generation();
        let due = self
            .rotation
            .lock()
            .map(|mut p| p.take_due(now, &cur))
            .unwrap_or(false);
        if due {
            self.rotate().await;
        }
    }

    pub(crate) fn note_name(&self, key: &str, name: &str) {
        if let Ok(mut n) = self.names.lock() {
            n.insert(key.to_string(), name.to_string());
        }
    }

    /// Save the mesh's peers, with the names known here.
    pub(crate) fn save_peers(&self) -> std::result::Result<(), JoinError> {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let peers: Vec<SavedPeer> = {
            let m = self.mesh.lock().map_err(|_| JoinError::Poisoned {
                what: "WireGuard mesh",
            })?;
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
        save_peers(&self.layout.mesh_peers(), &peers)
    }

    /// This node was removed: leave the marker that keeps it from starting again and tell
    /// the daemon to stop.
    pub(crate) fn stop_removed(&self, r: Removal) {
        tracing::error!("{}; this node stops and will not start again", r.describe());
        let marker = self.layout.removed_marker();
        if let Err(e) = write_atomic(&marker, format!("{}\n", r.describe()).as_bytes(), 0o600) {
            tracing::warn!(
                "cannot write {}: {e}; this node stops anyway: do not start it again, wipe it \
                 (docs/OPERATIONS.md, \"Remove a node\")",
                marker.display()
            );
        }
        self.service.clear();
        self.gone.send_replace(Some(r));
    }

    /// `node remove NAME|KEY`: remove a member (alive or dead) for good, with a revocation
    /// signed by the authority (only an eligible node can). It names the member's identity
    /// and the WireGuard key its certificate binds (not the one it claims). Its intro
    /// points leave the descriptor, its gossip is dropped, its WireGuard peer goes on every
    /// member after `removal_grace`, its joins are refused, it stops itself if it still
    /// runs, and the join key is rotated `rotate_after_removal` later.
    pub async fn remove(&self, who: &str) -> std::result::Result<Removal, JoinError> {
        let Some(authority) = self.authority() else {
            return Err(JoinError::NotEligible {
                what: "node remove",
            });
        };
        let target = self.resolve(who).await?;
        if target.key == self.own_key
            || (target.identity.is_some() && target.identity == self.identity)
        {
            return Err(JoinError::RemoveSelf {
                who: who.to_string(),
            });
        }
        let known = match target.identity {
            Some(id) => self.removal_of_identity(&id.to_string()),
            None => self.removal_of(&target.key.to_string()),
        };
        let removal = match known {
            Some(r) => r,
            None => {
                let r = Removal::signed(
                    authority,
                    &target.name,
                    &target.key,
                    target.identity,
                    target.serial,
                    rustbalance_hs::time::unix_secs(SystemTime::now()),
                    &self.name,
                );
                self.learn_removals(vec![r.clone()], Instant::now());
                tracing::warn!("{}", r.describe());
                r
            }
        };
        self.trust_removals();
        self.gossip_removals().await;
        self.forget_admitted().await;
        Ok(removal)
    }

    /// A member from its name or WireGuard key, as gossip knows it.
    async fn resolve(&self, who: &str) -> std::result::Result<Target, JoinError> {
        let members = self.membership.members().await;
        resolve_member(&members, who)
    }

    /// Drop removed nodes from the list of nodes admitted here.
    pub(crate) async fn forget_admitted(&self) {
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
}
