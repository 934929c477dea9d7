//! This node's gossip credentials: its identity, its member certificate and the trust
//! ([`GossipAuth`]), put together at start.
//!
//! * An **eligible** node (it holds the master key) derives the authority from the master
//!   key, certifies itself (`eligible`, its current WireGuard key and instance address, a
//!   random serial) at every start and writes the authority's public key to
//!   `authority.pub`, where the join code reads it for joiners.
//! * A **worker** uses the `member.cert` and `authority.pub` it received when it joined.
//!   Without them it cannot sign: with `gossip_signatures = "require"` it refuses to start
//!   and says what to do; with `"accept-unsigned"` it gossips unsigned, as before.
//! * With `"off"` no node signs or checks (the first step of an upgrade); the identity
//!   file is still made. Without `cluster.gossip_signatures` the mode is `"require"`,
//!   except on a node that ran before (its tor data directory exists) and has no identity
//!   file: it predates signed gossip, and refuses to start until the operator picks the
//!   upgrade step (docs/OPERATIONS.md).

use crate::err::{Error, Result};
use crate::keystore::identity as files;
use crate::layout::Layout;
use rustbalance_cluster::{CertFields, CertRole, GossipAuth, SignatureMode, Trust};
use rustbalance_hs::{IdentityKey, OnionAddress};
use std::sync::Arc;
use std::time::SystemTime;

/// What [`gossip_auth`] needs.
pub struct Credentials<'a> {
    /// The data directory.
    pub layout: &'a Layout,
    /// This node's name.
    pub name: &'a str,
    /// `cluster.gossip_signatures`.
    pub mode: Option<SignatureMode>,
    /// The master key, on an eligible node.
    pub master: Option<&'a IdentityKey>,
    /// This node's instance address.
    pub instance: OnionAddress,
    /// This node's WireGuard public key, if it is meshed.
    pub wireguard: Option<[u8; 32]>,
}

/// Whether the node in `layout` predates node identities: it ran before (tor's data
/// directory exists) and has no identity file. Such a node must say how it takes part in
/// the upgrade. Only true before this version's first start: that start makes the
/// identity ([`identity_for_new_node`], or `load_or_create` in the chosen mode).
pub fn predates_identities(layout: &Layout) -> bool {
    !layout.node_identity().exists() && layout.tor_dir().exists()
}

/// Make the identity of a node that has none and never ran (no tor data directory yet):
/// a node whose config was written without `init` (the lab, hand-made installs) is then
/// never taken for one that predates identities, not even after a first start that
/// stopped half-way. The daemon calls this with the data directory locked and before it
/// creates tor's directory; a node that predates identities is left alone.
pub fn identity_for_new_node(layout: &Layout) -> Result<()> {
    if layout.node_identity().exists() || layout.tor_dir().exists() {
        return Ok(());
    }
    files::load_or_create(layout).map(|_| ())
}

/// The node's [`GossipAuth`]; `None` in [`SignatureMode::Off`] and for an uncertified
/// worker in [`SignatureMode::AcceptUnsigned`].
pub fn gossip_auth(c: &Credentials<'_>) -> Result<Option<GossipAuth>> {
    let path = c.layout.node_identity();
    let mode = match c.mode {
        Some(m) => m,
        None if predates_identities(c.layout) => {
            return Err(Error::SignatureModeUnset { identity: path })
        }
        None => SignatureMode::Require,
    };
    let identity = Arc::new(files::load_or_create(c.layout)?);
    if mode == SignatureMode::Off {
        return Ok(None);
    }
    let (cert, authority) = match c.master {
        Some(master) => {
            let authority = files::authority_of(master);
            if files::read_authority(c.layout).ok().flatten() != Some(authority.public()) {
                files::write_authority(c.layout, &authority.public())?;
            }
            let cert = authority
                .certify(CertFields {
                    name: c.name.to_string(),
                    role: CertRole::Eligible,
                    identity: identity.public(),
                    wireguard: c.wireguard,
                    onion: Some(c.instance.without_suffix()),
                    issued: rustbalance_hs::time::unix_secs(SystemTime::now()),
                    serial: rand::random(),
                })
                .map_err(|source| Error::Membership {
                    path: c.layout.member_cert(),
                    source,
                })?;
            (cert, authority.public())
        }
        None => match (
            files::read_cert(c.layout)?,
            files::read_authority(c.layout)?,
        ) {
            (Some(cert), Some(authority)) => (cert, authority),
            _ if mode == SignatureMode::AcceptUnsigned => {
                tracing::warn!(
                    "no member certificate: gossiping unsigned (cluster.gossip_signatures = \
                     \"accept-unsigned\"); join again to be certified"
                );
                return Ok(None);
            }
            _ => {
                return Err(Error::NotCertified {
                    cert: c.layout.member_cert(),
                    authority: c.layout.authority_key(),
                })
            }
        },
    };
    Ok(Some(GossipAuth {
        identity,
        cert,
        trust: Arc::new(Trust::new(authority, mode)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds<'a>(
        layout: &'a Layout,
        mode: Option<SignatureMode>,
        master: Option<&'a IdentityKey>,
    ) -> Credentials<'a> {
        Credentials {
            layout,
            name: "n1",
            mode,
            master,
            instance: IdentityKey::from_seed(&[3; 32]).address(),
            wireguard: Some([4; 32]),
        }
    }

    #[test]
    fn eligible_nodes_certify_themselves() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        let master = IdentityKey::from_seed(&[1; 32]);
        let auth = gossip_auth(&creds(&layout, None, Some(&master)))
            .unwrap()
            .unwrap();
        assert_eq!(auth.cert.role(), CertRole::Eligible);
        assert_eq!(auth.cert.identity(), auth.identity.public());
        assert_eq!(auth.trust.check(&auth.cert, "n1"), Ok(()));
        assert_eq!(auth.trust.mode(), SignatureMode::Require);
        let written = files::read_authority(&layout).unwrap().unwrap();
        assert_eq!(&written, auth.trust.authority());
    }

    #[test]
    fn workers_need_a_certificate_unless_the_cluster_upgrades() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        let e = gossip_auth(&creds(&layout, None, None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no member certificate") && e.contains("\"off\""),
            "{e}"
        );
        for mode in [SignatureMode::AcceptUnsigned, SignatureMode::Off] {
            assert!(gossip_auth(&creds(&layout, Some(mode), None))
                .unwrap()
                .is_none());
        }
        // With the files a join writes, the worker signs.
        let master = IdentityKey::from_seed(&[1; 32]);
        let authority = files::authority_of(&master);
        let cert = authority
            .certify(CertFields {
                name: "n1".into(),
                role: CertRole::Worker,
                identity: files::load_or_create(&layout).unwrap().public(),
                wireguard: None,
                onion: None,
                issued: 1,
                serial: 1,
            })
            .unwrap();
        files::write_cert(&layout, &cert).unwrap();
        files::write_authority(&layout, &authority.public()).unwrap();
        let auth = gossip_auth(&creds(&layout, None, None)).unwrap().unwrap();
        assert_eq!(auth.cert, cert);
    }

    #[test]
    fn a_node_from_before_identities_must_choose_a_mode() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        std::fs::create_dir_all(layout.tor_dir()).unwrap();
        let master = IdentityKey::from_seed(&[1; 32]);
        let e = gossip_auth(&creds(&layout, None, Some(&master)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("made before signed gossip"), "{e}");
        assert!(!layout.node_identity().exists());
        // Choosing "off" makes the identity (for the next steps) and gossips unsigned.
        let off = gossip_auth(&creds(&layout, Some(SignatureMode::Off), Some(&master)));
        assert!(off.unwrap().is_none());
        assert!(layout.node_identity().exists());
    }
}
