//! The mesh's error type: every variant a user can cause reads as a sentence that says what to do.

use std::io;
use std::path::PathBuf;

use defguard_wireguard_rs::error::WireguardInterfaceError;

use crate::key::PublicKey;

/// Everything that can go wrong while bringing up, changing or tearing down the mesh.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither backend could create an interface.
    #[error(
        "no wireguard kernel module and /dev/net/tun unavailable for interface {ifname}: load the \
         module (`modprobe wireguard`, Linux >= 5.6) or give the process /dev/net/tun (root or \
         CAP_NET_ADMIN; in a container add `--device /dev/net/tun --cap-add NET_ADMIN`) \
         [kernel: {kernel}] [userspace: {userspace}]"
    )]
    NoBackend {
        /// The interface we tried to create.
        ifname: String,
        /// Why the kernel backend failed (shown in the message, so not a `source`).
        kernel: Box<BackendFailure>,
        /// Why the userspace backend failed (shown in the message, so not a `source`).
        userspace: Box<BackendFailure>,
    },

    /// The forced backend could not create the interface.
    #[error(
        "could not create the {backend} WireGuard interface {ifname}: {reason}; check that you \
         run as root or with CAP_NET_ADMIN, or pick `backend = \"auto\"`"
    )]
    Create {
        /// The interface we tried to create.
        ifname: String,
        /// `kernel` or `userspace`.
        backend: &'static str,
        /// Why it failed (shown in the message, so not a `source`).
        reason: Box<BackendFailure>,
    },

    /// A WireGuard operation on an existing interface failed.
    #[error("could not {action} on WireGuard interface {ifname}: {source}")]
    Wireguard {
        /// The interface.
        ifname: String,
        /// What we were doing ("configure", "add peer", ...).
        action: &'static str,
        /// The backend error.
        #[source]
        source: WireguardInterfaceError,
    },

    /// The interface was configured, but does not listen where it was told to: the
    /// device is broken (the userspace WireGuard's worker died while re-binding its UDP
    /// sockets, and its control socket still answered "no error").
    #[error(
        "WireGuard interface {ifname} was configured to listen on UDP port {wanted} but \
         listens on {got}: the device is broken (its {backend} backend failed while re-binding \
         its sockets); the mesh is recreated a few times before this is reported, so check that \
         UDP port {wanted} is free and look for a panic in the log above"
    )]
    DeviceBroken {
        /// The interface.
        ifname: String,
        /// Which backend.
        backend: crate::backend::BackendKind,
        /// The port set in the configuration.
        wanted: u16,
        /// The port the device reports (0: none).
        got: u16,
    },

    /// The process running the userspace device exited: the mesh carries nothing any more.
    #[error(
        "the userspace WireGuard device of {ifname} (process {pid}) exited ({status}): the mesh \
         is down and gossip with it; restart the node (the lines above from the device \
         process say why it died)"
    )]
    DeviceGone {
        /// The interface.
        ifname: String,
        /// The device process.
        pid: u32,
        /// How it ended.
        status: String,
    },

    /// The interface name is not usable.
    #[error(
        "invalid mesh interface name {name:?}: {reason}; use 1 to 15 characters from \
         [A-Za-z0-9_-], e.g. \"rbmesh0\""
    )]
    InterfaceName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },

    /// Something already uses the interface name.
    #[error(
        "network interface {ifname} already exists (here, or as a userspace WireGuard in another \
         network namespace): another mesh is running or a previous run left it behind; stop \
         that process, or remove it with `ip link del {ifname}`, or choose another interface \
         name"
    )]
    InterfaceExists {
        /// The name in use.
        ifname: String,
    },

    /// The interface did not go away after `down`.
    #[error(
        "network interface {ifname} is still present after shutting the mesh down; remove it with \
         `ip link del {ifname}`"
    )]
    InterfaceStillPresent {
        /// The interface.
        ifname: String,
    },

    /// The overlay address never became usable.
    #[error(
        "overlay address {addr} on {ifname} did not become usable: {source}; check that IPv6 is \
         enabled (sysctl net.ipv6.conf.all.disable_ipv6=0)"
    )]
    AddressUnusable {
        /// The interface.
        ifname: String,
        /// The overlay address.
        addr: std::net::Ipv6Addr,
        /// The last bind error.
        #[source]
        source: io::Error,
    },

    /// A configuration value is not acceptable.
    #[error("invalid mesh configuration: {0}")]
    Config(String),

    /// The same peer was listed twice.
    #[error("peer {public_key} is listed twice in the mesh configuration; list every node once")]
    DuplicatePeer {
        /// The repeated key.
        public_key: PublicKey,
    },

    /// The node's own key was listed as a peer.
    #[error(
        "peer {public_key} is this node's own public key; remove it from the peer list (a node \
         never peers with itself)"
    )]
    SelfPeer {
        /// This node's key.
        public_key: PublicKey,
    },

    /// A public key did not parse.
    #[error(
        "{input:?} is not a WireGuard public key: expected 44 characters of base64 (as printed by \
         `wg pubkey` or `rustbalance mesh pubkey`)"
    )]
    PublicKeyFormat {
        /// The rejected text (public, so safe to show).
        input: String,
    },

    /// The key file could not be read.
    #[error(
        "cannot read the mesh private key file {path}: {source}; check the path and permissions"
    )]
    KeyFileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// The key file could not be written.
    #[error(
        "cannot write the mesh private key file {path}: {source}; check that the directory exists \
         and is writable"
    )]
    KeyFileWrite {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// The key file is readable by others.
    #[error(
        "mesh private key file {path} is accessible by group or others (mode {mode:03o}); run \
         `chmod 600 {path}` (and consider rotating the key)"
    )]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file content is not a key.
    #[error(
        "mesh private key file {path} does not hold a base64 WireGuard private key (one line, 44 \
         characters, as written by `wg genkey`); restore it from backup or generate a new one"
    )]
    KeyFileFormat {
        /// The file.
        path: PathBuf,
    },
}

/// Why one WireGuard backend could not create an interface; part of [`Error::Create`] and
/// [`Error::NoBackend`] (boxed there: it is large), whose messages say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendFailure {
    /// The WireGuard library refused (its message).
    #[error(transparent)]
    Library(WireguardInterfaceError),

    /// netlink reported success, but the interface is not in /sys/class/net.
    #[error("the kernel accepted the request but no interface appeared")]
    NoInterfaceAppeared,

    /// Creating the kernel interface failed and the module is not loaded.
    #[error("the wireguard module is not loaded (no /sys/module/wireguard): {0}")]
    ModuleMissing(WireguardInterfaceError),

    /// The tun device cannot be opened (userspace backend).
    #[error("cannot open /dev/net/tun: {0}")]
    Tun(io::Error),

    /// The process that runs the userspace device failed (see `device_process`).
    #[error("the WireGuard device process failed: {0}")]
    DeviceProcess(String),
}

/// Result with the mesh [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_failures_read_as_before_inside_the_message() {
        let tun = io::Error::new(io::ErrorKind::PermissionDenied, "denied");
        let e = Error::NoBackend {
            ifname: "rbmesh0".into(),
            kernel: Box::new(BackendFailure::NoInterfaceAppeared),
            userspace: Box::new(BackendFailure::Tun(tun)),
        };
        let text = e.to_string();
        assert!(
            text.ends_with(
                "[kernel: the kernel accepted the request but no interface appeared] \
                 [userspace: cannot open /dev/net/tun: denied]"
            ),
            "{text}"
        );
    }
}
