//! The boundary to WireGuard: a [`Backend`] trait, its real implementation over
//! `defguard_wireguard_rs` (kernel module through netlink, or boringtun over /dev/net/tun
//! in a child process: see [`crate::device_process`]), and an in-process [`FakeBackend`]
//! for tests.

mod fake;

use std::fmt;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use defguard_wireguard_rs::error::WireguardInterfaceError;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{
    InterfaceConfiguration, Kernel, Userspace, WGApi, WireguardInterfaceApi,
};
use tracing::{debug, warn};
use zeroize::Zeroize;

use crate::config::BackendChoice;
use crate::device_process::DeviceProcess;
use crate::err::{BackendFailure, Error, Result};
use crate::key::{PrivateKey, PublicKey};

pub use fake::{FakeBackend, FakeState};

/// The WireGuard implementation actually in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The Linux kernel module, driven over netlink.
    Kernel,
    /// boringtun over /dev/net/tun, in a device process of its own.
    Userspace,
    /// [`FakeBackend`].
    Fake,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Userspace => "userspace",
            Self::Fake => "fake",
        })
    }
}

/// A peer as the backend sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgPeer {
    /// Its key.
    pub public_key: PublicKey,
    /// Its UDP endpoint.
    pub endpoint: SocketAddr,
    /// Its overlay address; AllowedIPs is this /128.
    pub overlay_addr: Ipv6Addr,
    /// Persistent keepalive, seconds.
    pub keepalive: Option<u16>,
}

/// The whole interface configuration.
pub struct InterfaceSetup<'a> {
    /// This node's key.
    pub private_key: &'a PrivateKey,
    /// UDP listen port.
    pub listen_port: u16,
    /// This node's overlay address, assigned with `prefix_len`.
    pub addr: Ipv6Addr,
    /// Prefix length of the overlay (64).
    pub prefix_len: u8,
    /// Interface MTU.
    pub mtu: u32,
    /// The peers.
    pub peers: &'a [WgPeer],
}

/// What the mesh reports about a peer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerStatus {
    /// The peer.
    pub public_key: PublicKey,
    /// The overlay address routed to it (its AllowedIPs /128).
    pub overlay_addr: Option<Ipv6Addr>,
    /// Its current endpoint (WireGuard roams: this follows the peer's last packets).
    pub endpoint: Option<SocketAddr>,
    /// When the last handshake completed; `None` if never.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
}

/// One WireGuard interface. Calls block briefly (a netlink or control-socket round trip).
pub trait Backend: Send + Sync {
    /// Which implementation this is.
    fn kind(&self) -> BackendKind;
    /// Apply key, port, address, MTU and the full peer list.
    fn configure(&mut self, setup: &InterfaceSetup<'_>) -> Result<()>;
    /// Add a peer or replace its endpoint/AllowedIPs.
    fn set_peer(&mut self, peer: &WgPeer) -> Result<()>;
    /// Remove a peer.
    fn remove_peer(&mut self, key: &PublicKey) -> Result<()>;
    /// Read every peer's status.
    fn peers(&self) -> Result<Vec<PeerStatus>>;
    /// Delete the interface; returns once it is gone.
    fn remove(&mut self) -> Result<()>;
}

/// Whether a network interface named `name` exists in this network namespace.
pub(crate) fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether a live userspace WireGuard (ours or wireguard-go) answers on the control socket
/// for `name`. That directory is shared by all network namespaces, so this catches a name
/// clash that `/sys/class/net` (per namespace) cannot see. A stale socket file does not count.
pub(crate) fn control_socket_in_use(name: &str) -> bool {
    std::os::unix::net::UnixStream::connect(format!("/var/run/wireguard/{name}.sock")).is_ok()
}

/// Create the interface with the chosen backend.
pub(crate) fn open(ifname: &str, choice: BackendChoice) -> Result<Box<dyn Backend>> {
    let created = |api| -> Box<dyn Backend> {
        Box::new(Wg {
            ifname: ifname.to_owned(),
            api: Some(api),
        })
    };
    let failed = |backend: &'static str| {
        move |reason| Error::Create {
            ifname: ifname.into(),
            backend,
            reason: Box::new(reason),
        }
    };
    match choice {
        BackendChoice::Kernel => open_kernel(ifname).map(created).map_err(failed("kernel")),
        BackendChoice::Userspace => open_userspace(ifname)
            .map(created)
            .map_err(failed("userspace")),
        BackendChoice::Auto => match open_kernel(ifname) {
            Ok(api) => Ok(created(api)),
            Err(kernel) => {
                debug!(ifname, %kernel, "kernel WireGuard unavailable, trying userspace");
                open_userspace(ifname)
                    .map(created)
                    .map_err(|userspace| Error::NoBackend {
                        ifname: ifname.into(),
                        kernel: Box::new(kernel),
                        userspace: Box::new(userspace),
                    })
            }
        },
    }
}

fn open_kernel(ifname: &str) -> Result<Api, BackendFailure> {
    let mut api = WGApi::<Kernel>::new(ifname).map_err(BackendFailure::Library)?;
    match api.create_interface() {
        // netlink's "create" also succeeds when the link exists; the caller checked before.
        Ok(()) if interface_exists(ifname) => Ok(Api::Kernel(api)),
        Ok(()) => Err(BackendFailure::NoInterfaceAppeared),
        Err(e) if !Path::new("/sys/module/wireguard").exists() => {
            Err(BackendFailure::ModuleMissing(e))
        }
        Err(e) => Err(BackendFailure::Library(e)),
    }
}

fn open_userspace(ifname: &str) -> Result<Api, BackendFailure> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(BackendFailure::Tun)?;
    let process = DeviceProcess::start(ifname)?;
    // The device lives in the child; this handle only talks to its control socket.
    let api = WGApi::<Userspace>::new(ifname).map_err(BackendFailure::Library)?;
    Ok(Api::Userspace(api, Mutex::new(process)))
}

enum Api {
    Kernel(WGApi<Kernel>),
    Userspace(WGApi<Userspace>, Mutex<DeviceProcess>),
}

impl Api {
    fn get(&self) -> &dyn WireguardInterfaceApi {
        match self {
            Api::Kernel(a) => a,
            Api::Userspace(a, _) => a,
        }
    }
}

/// The real backend.
struct Wg {
    ifname: String,
    /// `None` once removed.
    api: Option<Api>,
}

impl Wg {
    fn api(&self, action: &'static str) -> Result<&dyn WireguardInterfaceApi> {
        let api = self.api.as_ref().ok_or_else(|| {
            self.err(action, WireguardInterfaceError::Interface("removed".into()))
        })?;
        if let Api::Userspace(_, process) = api {
            let mut p = process.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(status) = p.exited() {
                return Err(Error::DeviceGone {
                    ifname: self.ifname.clone(),
                    pid: p.pid(),
                    status: status.to_string(),
                });
            }
        }
        Ok(api.get())
    }

    /// The device really listens on `wanted`. boringtun's control socket reports success
    /// when the worker handling the request panicked (it reads "no errno" as 0): seen when
    /// re-binding the UDP sockets hits an out-of-range fd in its event table (defguard_boringtun
    /// 0.7.1, `clear_event_by_fd`), which leaves the device without sockets. Its port then
    /// still reads as the random one it started with.
    fn check_listening(&self, wanted: u16) -> Result<()> {
        let got = self
            .api("read the interface")?
            .read_interface_data()
            .map_err(|e| self.err("read the interface back", e))?
            .listen_port;
        if wanted == 0 || got == wanted {
            return Ok(());
        }
        Err(Error::DeviceBroken {
            ifname: self.ifname.clone(),
            backend: self.kind(),
            wanted,
            got,
        })
    }

    fn err(&self, action: &'static str, source: WireguardInterfaceError) -> Error {
        Error::Wireguard {
            ifname: self.ifname.clone(),
            action,
            source,
        }
    }
}

fn to_defguard(peer: &WgPeer) -> Peer {
    let mut p = Peer::new(Key::new(*peer.public_key.as_bytes()));
    p.endpoint = Some(peer.endpoint);
    p.persistent_keepalive_interval = peer.keepalive;
    p.allowed_ips = vec![IpAddrMask::host(IpAddr::V6(peer.overlay_addr))];
    p
}

fn from_defguard(p: &Peer) -> PeerStatus {
    PeerStatus {
        public_key: PublicKey::from_bytes(p.public_key.as_array()),
        overlay_addr: p.allowed_ips.iter().find_map(|a| match a.address {
            IpAddr::V6(v6) if a.cidr == 128 => Some(v6),
            _ => None,
        }),
        endpoint: p.endpoint,
        // The kernel reports 0 for "never".
        last_handshake: p.last_handshake.filter(|t| *t != SystemTime::UNIX_EPOCH),
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
    }
}

impl Backend for Wg {
    fn kind(&self) -> BackendKind {
        match self.api {
            Some(Api::Kernel(_)) => BackendKind::Kernel,
            _ => BackendKind::Userspace,
        }
    }

    fn configure(&mut self, setup: &InterfaceSetup<'_>) -> Result<()> {
        let api = self.api("configure")?;
        let mut config = InterfaceConfiguration {
            name: self.ifname.clone(),
            // The crate takes the key as a string; it goes to the kernel over netlink or to
            // boringtun over its control socket, never to a command line. Our copy is wiped
            // right after (the crate's internal copies are not under our control).
            prvkey: String::from(setup.private_key.to_base64().as_str()),
            addresses: vec![IpAddrMask::new(IpAddr::V6(setup.addr), setup.prefix_len)],
            port: setup.listen_port,
            peers: setup.peers.iter().map(to_defguard).collect(),
            mtu: Some(setup.mtu),
            fwmark: None,
        };
        let result = api.configure_interface(&config);
        config.prvkey.zeroize();
        result.map_err(|e| self.err("configure the interface", e))?;
        self.check_listening(setup.listen_port)
    }

    fn set_peer(&mut self, peer: &WgPeer) -> Result<()> {
        self.api("add a peer")?
            .configure_peer(&to_defguard(peer))
            .map_err(|e| self.err("add a peer", e))
    }

    fn remove_peer(&mut self, key: &PublicKey) -> Result<()> {
        self.api("remove a peer")?
            .remove_peer(&Key::new(*key.as_bytes()))
            .map_err(|e| self.err("remove a peer", e))
    }

    fn peers(&self) -> Result<Vec<PeerStatus>> {
        let host = self
            .api("read peers")?
            .read_interface_data()
            .map_err(|e| self.err("read the peers", e))?;
        let mut peers: Vec<PeerStatus> = host.peers.values().map(from_defguard).collect();
        peers.sort_by_key(|p| p.public_key);
        Ok(peers)
    }

    fn remove(&mut self) -> Result<()> {
        let Some(api) = self.api.take() else {
            return Ok(());
        };
        if let Api::Userspace(_, process) = &api {
            // The device process removes the interface when its stdin closes.
            let mut p = process.lock().unwrap_or_else(PoisonError::into_inner);
            if p.stop().is_none() {
                warn!(ifname = %self.ifname, pid = p.pid(), "the WireGuard device process did not exit by itself; it was killed");
            }
        }
        // The crate also clears per-interface DNS settings on removal (we never set any) and
        // fails when the host has neither systemd-resolved nor resolvconf: ignore that part.
        // (For a userspace device whose process has exited this finds nothing to do.)
        match api.get().remove_interface() {
            Ok(()) | Err(WireguardInterfaceError::DnsError(_)) => {}
            Err(e) => {
                warn!(ifname = %self.ifname, error = %e, "removing the WireGuard interface failed; remove it with `ip link del {}`", self.ifname)
            }
        }
        let kernel = matches!(api, Api::Kernel(_));
        drop(api);
        if kernel && interface_exists(&self.ifname) {
            // The crate deletes a kernel link only after the DNS step, which may have failed:
            // delete it by name (no secret on this command line).
            let _ = Command::new("ip")
                .args(["link", "del", "dev", &self.ifname])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while interface_exists(&self.ifname) {
            if Instant::now() > deadline {
                return Err(Error::InterfaceStillPresent {
                    ifname: self.ifname.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}
