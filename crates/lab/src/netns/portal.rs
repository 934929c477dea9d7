//! The portal: host loopback `127.B.C.H:PORT` forwarded to `10.B.C.H:PORT`
//! inside the lab namespace, so that everything the host does with a lab
//! (readiness checks on control ports, [`crate::Lab::control`], the client's
//! SOCKS port for [`crate::Lab::http_get`]) works as with a lab on loopback.
//!
//! One thread per lab and process: listeners are bound by the caller (on
//! the host), then handed to the thread, which has entered the namespace,
//! so every connection it opens to a target is made inside it. The portal
//! lives as long as the lab runs in this process: [`crate::Lab::stop`]
//! closes it, and a process that reattaches with [`crate::Lab::open`] opens
//! its own on first use.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::err::{Error, Result};

/// Open portals by namespace name.
static PORTALS: LazyLock<Mutex<HashMap<String, Portal>>> = LazyLock::new(Default::default);

struct Portal {
    tx: Option<mpsc::UnboundedSender<(std::net::TcpListener, SocketAddr)>>,
    forwarded: HashSet<SocketAddr>,
    thread: Option<JoinHandle<()>>,
}

impl Portal {
    fn start(ns: &str) -> Result<Portal> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpListener, SocketAddr)>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns_owned = ns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("portal {ns}"))
            .spawn(move || {
                let rt = super::enter(&ns_owned).and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                });
                let rt = match rt {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // Ends when the sender is dropped; dropping the runtime then
                // closes every listener and connection.
                rt.block_on(async move {
                    while let Some((listener, target)) = rx.recv().await {
                        match TcpListener::from_std(listener) {
                            Ok(l) => {
                                tokio::spawn(serve(l, target));
                            }
                            Err(e) => tracing::warn!(%target, error = %e, "portal listener"),
                        }
                    }
                });
            })
            .map_err(|e| Error::Netns {
                action: format!("start the portal thread of {ns}"),
                detail: e.to_string(),
            })?;
        let fail = |detail: String| Error::Netns {
            action: format!("open the portal into {ns}"),
            detail,
        };
        ready_rx
            .recv()
            .map_err(|_| fail("its thread ended".into()))?
            .map_err(fail)?;
        Ok(Portal {
            tx: Some(tx),
            forwarded: HashSet::new(),
            thread: Some(thread),
        })
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: TcpListener, target: SocketAddr) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            // Connected from this thread, hence inside the namespace.
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Forwards each `(host, target)` pair not forwarded yet: binds `host` here
/// (`Error::AddressInUse` when taken, naming `block`) and connects to
/// `target` inside `ns` for every connection. Opens the portal if needed.
pub(crate) fn forward(ns: &str, pairs: &[(SocketAddr, SocketAddr)], block: &str) -> Result<()> {
    let mut portals = PORTALS.lock().unwrap_or_else(|e| e.into_inner());
    let portal = match portals.entry(ns.to_string()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => v.insert(Portal::start(ns)?),
    };
    for (host, target) in pairs {
        if portal.forwarded.contains(host) {
            continue;
        }
        let l = std::net::TcpListener::bind(host)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| Error::AddressInUse {
                addr: *host,
                detail: e.to_string(),
                block: block.to_string(),
            })?;
        let sent = portal.tx.as_ref().map(|tx| tx.send((l, *target)));
        if !matches!(sent, Some(Ok(()))) {
            return Err(Error::Netns {
                action: format!("forward {host} to {target} in {ns}"),
                detail: "the portal thread ended".into(),
            });
        }
        portal.forwarded.insert(*host);
    }
    Ok(())
}

/// Closes the portal of `ns` (its listeners and connections), if open.
pub(crate) fn close(ns: &str) {
    let portal = PORTALS.lock().unwrap_or_else(|e| e.into_inner()).remove(ns);
    drop(portal);
}
