//! An async client for tor's control port.
//!
//! One connection, one background reader task. The reader splits what tor
//! sends into command replies and asynchronous `650` events:
//!
//! ```text
//!   command(&self) ──lock writer── register reply slot ── write line(s)
//!                                        │ FIFO (tor answers in order)
//!   reader task ── read_reply ──┬── code 650 ──▶ events channel (take_events)
//!                               └── other    ──▶ oldest reply slot
//! ```
//!
//! Events never reach a command's reply, and a command never sees an event.
//! When the connection ends, every waiting command gets [`Error::Closed`]
//! and the events channel closes.

mod auth;
mod circuit;
mod event;
mod reply;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use auth::{Auth, ProtocolInfo};
pub use circuit::{established_intro_relays, relay_fingerprint, Circuit};
pub use event::{Event, HsDescContent, HsDescEvent};
pub use reply::{dot_stuff, parse_args, Arg, Reply, ReplyLine};

use crate::err::{Error, Result};

/// How long a command waits for its reply unless changed with
/// [`ControlClient::set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one tor's control port. Cheap to clone; all clones share
/// the connection, and commands from several tasks are answered in order.
#[derive(Clone)]
pub struct ControlClient {
    shared: Arc<Shared>,
}

struct Shared {
    addr: SocketAddr,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: mpsc::UnboundedSender<oneshot::Sender<Reply>>,
    events: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    closed_reason: Arc<Mutex<Option<String>>>,
    timeout_ms: std::sync::atomic::AtomicU64,
    reader: JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    /// Opens a connection; no authentication yet (see [`Self::authenticate`]).
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Connect { addr, source })?;
        let (read, write) = stream.into_split();
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let closed_reason = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(read_loop(
            BufReader::new(read),
            pending_rx,
            event_tx,
            Arc::clone(&closed_reason),
        ));
        Ok(ControlClient {
            shared: Arc::new(Shared {
                addr,
                writer: tokio::sync::Mutex::new(write),
                pending: pending_tx,
                events: Mutex::new(Some(event_rx)),
                closed_reason,
                timeout_ms: std::sync::atomic::AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64),
                reader,
            }),
        })
    }

    /// Connects and authenticates with [`Auth::Auto`].
    pub async fn connect_authenticated(addr: SocketAddr) -> Result<Self> {
        let client = Self::connect(addr).await?;
        client.authenticate(&Auth::Auto).await?;
        Ok(client)
    }

    /// The control port's address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Changes how long each command waits for its reply.
    pub fn set_timeout(&self, timeout: Duration) {
        self.shared.timeout_ms.store(
            timeout.as_millis().min(u64::MAX as u128) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(
            self.shared
                .timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Takes the receiver of asynchronous events. Only the first call gets
    /// it; events are queued (unbounded) from the moment of connection, but
    /// tor only sends those enabled with [`Self::setevents`].
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<Event>> {
        lock(&self.shared.events).take()
    }

    fn closed(&self, command: &str) -> Error {
        let reason = lock(&self.shared.closed_reason)
            .clone()
            .unwrap_or_else(|| "connection closed".to_string());
        Error::Closed {
            command: command.to_string(),
            reason,
        }
    }

    /// Sends `wire` (complete, CRLF-terminated) and waits for its reply.
    /// `label` names the command in errors (it never contains secrets).
    async fn exec(&self, label: &str, wire: &str) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        {
            let mut writer = self.shared.writer.lock().await;
            // Register the reply slot before writing, under the writer lock,
            // so slots are queued in the same order as commands on the wire.
            self.shared
                .pending
                .send(tx)
                .map_err(|_| self.closed(label))?;
            writer
                .write_all(wire.as_bytes())
                .await
                .map_err(|source| Error::Io {
                    command: label.to_string(),
                    source,
                })?;
        }
        let timeout = self.timeout();
        let reply = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| Error::Timeout {
                command: label.to_string(),
                timeout,
            })?
            .map_err(|_| self.closed(label))?;
        if !reply.is_ok() {
            return Err(Error::Refused {
                command: label.to_string(),
                code: reply.code,
                message: reply.message(),
            });
        }
        Ok(reply)
    }

    /// Sends one raw command line (without CRLF) and returns tor's 2xx reply.
    pub async fn command(&self, line: &str) -> Result<Reply> {
        check_line(line, line)?;
        self.exec(line, &format!("{line}\r\n")).await
    }

    /// `PROTOCOLINFO 1`: the offered authentication methods and tor's version.
    pub async fn protocol_info(&self) -> Result<ProtocolInfo> {
        let reply = self.exec("PROTOCOLINFO", "PROTOCOLINFO 1\r\n").await?;
        Ok(ProtocolInfo::from_reply(&reply))
    }

    /// Authenticates the connection.
    pub async fn authenticate(&self, auth: &Auth) -> Result<()> {
        let info = self.protocol_info().await?;
        let method = match auth {
            Auth::Auto if info.offers("NULL") => Auth::Null,
            Auth::Auto if info.offers("SAFECOOKIE") => Auth::SafeCookie { cookie_file: None },
            Auth::Auto => {
                return Err(Error::NoAuthMethod {
                    offered: info.auth_methods.join(","),
                })
            }
            other => other.clone(),
        };
        match method {
            Auth::Null => {
                self.exec("AUTHENTICATE", "AUTHENTICATE\r\n").await?;
            }
            Auth::SafeCookie { cookie_file } => {
                let path = cookie_file
                    .or(info.cookie_file)
                    .ok_or_else(|| Error::NoAuthMethod {
                        offered: format!("{} (without a COOKIEFILE)", info.auth_methods.join(",")),
                    })?;
                self.safecookie(&path).await?;
            }
            Auth::Auto => unreachable!("Auto was resolved above"),
        }
        Ok(())
    }

    async fn safecookie(&self, path: &std::path::Path) -> Result<()> {
        let cookie = tokio::fs::read(path).await.map_err(|e| Error::CookieFile {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if cookie.len() != auth::COOKIE_LEN {
            return Err(Error::CookieFile {
                path: path.to_path_buf(),
                detail: format!(
                    "it holds {} bytes, a tor cookie has {}",
                    cookie.len(),
                    auth::COOKIE_LEN
                ),
            });
        }
        let mut client_nonce = [0u8; auth::COOKIE_LEN];
        rand::rng().fill_bytes(&mut client_nonce);
        let label = "AUTHCHALLENGE SAFECOOKIE";
        let reply = self
            .exec(
                label,
                &format!("AUTHCHALLENGE SAFECOOKIE {}\r\n", hex::encode(client_nonce)),
            )
            .await?;
        let args = parse_args(reply.first_text());
        let decode = |key: &str| -> Result<Vec<u8>> {
            let v = reply::arg(&args, key).ok_or_else(|| Error::Protocol {
                command: label.to_string(),
                detail: format!("no {key}= in `{}`", reply.first_text()),
            })?;
            hex::decode(v).map_err(|e| Error::Protocol {
                command: label.to_string(),
                detail: format!("{key}= is not hex: {e}"),
            })
        };
        let claimed = decode("SERVERHASH")?;
        let server_nonce = decode("SERVERNONCE")?;
        let expected = auth::server_hash(&cookie, &client_nonce, &server_nonce);
        if !auth::server_hash_matches(&expected, &claimed) {
            return Err(Error::ServerHashMismatch {
                path: path.to_path_buf(),
            });
        }
        let ours = auth::client_hash(&cookie, &client_nonce, &server_nonce);
        self.exec(
            "AUTHENTICATE <safecookie hash>",
            &format!("AUTHENTICATE {}\r\n", hex::encode(ours)),
        )
        .await?;
        Ok(())
    }

    /// `GETINFO key`: the value, from a `250-key=value` line or from a
    /// `250+key=` data block (then with its trailing newline).
    pub async fn getinfo(&self, key: &str) -> Result<String> {
        let label = format!("GETINFO {key}");
        check_word(&label, "key", key)?;
        let reply = self.exec(&label, &format!("{label}\r\n")).await?;
        let prefix = format!("{key}=");
        reply
            .lines
            .iter()
            .find_map(|l| {
                let rest = l.text.strip_prefix(&prefix)?;
                Some(l.data.clone().unwrap_or_else(|| rest.to_string()))
            })
            .ok_or_else(|| Error::Protocol {
                command: label.clone(),
                detail: format!("no `{prefix}` line in `{}`", reply.message()),
            })
    }

    /// `SETCONF key="value" ...` (values are quoted and escaped).
    pub async fn setconf(&self, settings: &[(&str, &str)]) -> Result<()> {
        let mut line = String::from("SETCONF");
        for (k, v) in settings {
            check_word("SETCONF", "option", k)?;
            check_line("SETCONF", v)?;
            line.push(' ');
            line.push_str(k);
            line.push('=');
            line.push_str(&reply::quote(v));
        }
        self.exec(&line, &format!("{line}\r\n")).await?;
        Ok(())
    }

    /// `SETEVENTS A B ...`; an empty list turns every event off.
    pub async fn setevents(&self, events: &[&str]) -> Result<()> {
        let mut line = String::from("SETEVENTS");
        for e in events {
            check_word("SETEVENTS", "event", e)?;
            line.push(' ');
            line.push_str(e);
        }
        self.exec(&line, &format!("{line}\r\n")).await?;
        Ok(())
    }

    /// `SIGNAL name` (`NEWNYM`, `RELOAD`, `SHUTDOWN`, ...).
    pub async fn signal(&self, name: &str) -> Result<()> {
        let line = format!("SIGNAL {name}");
        check_word(&line, "signal", name)?;
        self.exec(&line, &format!("{line}\r\n")).await?;
        Ok(())
    }

    /// `HSFETCH address [SERVER=fpr ...]`. The results arrive as `HS_DESC`
    /// and `HS_DESC_CONTENT` events (enable them first with `setevents`).
    pub async fn hsfetch<S: AsRef<str>>(&self, address: &str, servers: &[S]) -> Result<()> {
        let address = address.strip_suffix(".onion").unwrap_or(address);
        let mut line = format!("HSFETCH {address}");
        check_word(&line, "address", address)?;
        for s in servers {
            check_word("HSFETCH", "SERVER", s.as_ref())?;
            line.push_str(" SERVER=");
            line.push_str(s.as_ref());
        }
        self.exec(&line, &format!("{line}\r\n")).await?;
        Ok(())
    }

    /// `+HSPOST [SERVER=fpr ...] [HSADDRESS=addr]` with `descriptor` as a
    /// dot-stuffed data block. tor answers `250 OK` once the uploads are
    /// launched; their outcome arrives as `HS_DESC UPLOADED/FAILED` events.
    pub async fn hspost<S: AsRef<str>>(
        &self,
        descriptor: &str,
        servers: &[S],
        hsaddress: Option<&str>,
    ) -> Result<()> {
        let mut line = String::from("+HSPOST");
        for s in servers {
            check_word("HSPOST", "SERVER", s.as_ref())?;
            line.push_str(" SERVER=");
            line.push_str(s.as_ref());
        }
        if let Some(a) = hsaddress {
            let a = a.strip_suffix(".onion").unwrap_or(a);
            check_word("HSPOST", "HSADDRESS", a)?;
            line.push_str(" HSADDRESS=");
            line.push_str(a);
        }
        let wire = format!("{line}\r\n{}", dot_stuff(descriptor));
        self.exec(&line, &wire).await?;
        Ok(())
    }

    /// `ADD_ONION <key> <args>`: host an onion service whose secret key we hold. It is
    /// tied to this connection (no `Flags=Detach`): tor removes it when the connection
    /// closes, so the key leaves tor's memory when its owner goes, however it goes.
    /// `key` is the secret (`ED25519-V3:<base64>`): it goes into a wire buffer that is
    /// zeroized afterwards and never into an error or a log (the command is labelled
    /// `ADD_ONION`). `args` are `Key=Value` words (`Port=`, `Flags=`, `PoWDefensesEnabled=`
    /// ...). Returns tor's `ServiceID` (the address without `.onion`).
    pub async fn add_onion(&self, key: &str, args: &[String]) -> Result<String> {
        const LABEL: &str = "ADD_ONION";
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::InvalidArgument {
                command: LABEL.to_string(),
                detail: "the key must be one non-empty word (not shown)".to_string(),
            });
        }
        for a in args {
            check_word(LABEL, "argument", a)?;
        }
        let len = LABEL.len() + key.len() + args.iter().map(|a| a.len() + 1).sum::<usize>() + 3;
        // All capacity up front: no reallocation leaves a copy of the key behind.
        let mut wire = zeroize::Zeroizing::new(String::with_capacity(len));
        wire.push_str(LABEL);
        wire.push(' ');
        wire.push_str(key);
        for a in args {
            wire.push(' ');
            wire.push_str(a);
        }
        wire.push_str("\r\n");
        let reply = self.exec(LABEL, &wire).await?;
        reply
            .lines
            .iter()
            .find_map(|l| l.text.strip_prefix("ServiceID=").map(str::to_string))
            .ok_or_else(|| Error::Protocol {
                command: LABEL.to_string(),
                detail: format!("no `ServiceID=` line in `{}`", reply.message()),
            })
    }

    /// `DEL_ONION <service id>`: stop hosting a service added with [`Self::add_onion`].
    pub async fn del_onion(&self, service_id: &str) -> Result<()> {
        let id = service_id.strip_suffix(".onion").unwrap_or(service_id);
        let line = format!("DEL_ONION {id}");
        check_word(&line, "service id", id)?;
        self.exec(&line, &format!("{line}\r\n")).await?;
        Ok(())
    }

    /// Bootstrap progress in percent, from `GETINFO status/bootstrap-phase`.
    pub async fn bootstrap_progress(&self) -> Result<u8> {
        let phase = self.getinfo("status/bootstrap-phase").await?;
        reply::arg(&parse_args(&phase), "PROGRESS")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Error::Protocol {
                command: "GETINFO status/bootstrap-phase".to_string(),
                detail: format!("no PROGRESS= in `{phase}`"),
            })
    }

    /// `GETINFO circuit-status`, parsed.
    pub async fn circuit_status(&self) -> Result<Vec<Circuit>> {
        Ok(Circuit::parse_all(&self.getinfo("circuit-status").await?))
    }

    /// `QUIT`: tor answers and closes the connection.
    pub async fn quit(&self) -> Result<()> {
        self.exec("QUIT", "QUIT\r\n").await?;
        Ok(())
    }
}

/// The reader task: routes replies to waiting commands and events to the
/// events channel, until the connection ends.
async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    mut pending: mpsc::UnboundedReceiver<oneshot::Sender<Reply>>,
    events: mpsc::UnboundedSender<Event>,
    closed_reason: Arc<Mutex<Option<String>>>,
) {
    loop {
        match reply::read_reply(&mut reader).await {
            Ok(r) if r.code == 650 => {
                // A dropped events receiver only means nobody listens.
                let _ = events.send(Event::from_reply(r));
            }
            Ok(r) => match pending.try_recv() {
                Ok(slot) => {
                    // The command may have timed out and gone; that is fine.
                    let _ = slot.send(r);
                }
                Err(_) => {
                    tracing::warn!(code = r.code, text = %r.first_text(), "unsolicited control-port reply ignored (harmless once; if it repeats, the tor version may be unsupported: check `rustbalance doctor`)")
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "control connection ended");
                *lock(&closed_reason) = Some(e.to_string());
                return;
            }
        }
    }
}

/// Locks a std mutex, ignoring poisoning (the data are plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Refuses arguments that would break the line protocol.
fn check_line(command: &str, value: &str) -> Result<()> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(Error::InvalidArgument {
            command: command.lines().next().unwrap_or("").to_string(),
            detail: "it contains a line break or NUL".to_string(),
        });
    }
    Ok(())
}

/// Refuses empty words and words containing whitespace or control characters.
fn check_word(command: &str, what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidArgument {
            command: command.lines().next().unwrap_or("").to_string(),
            detail: format!("{what} {value:?} must be one non-empty word"),
        });
    }
    Ok(())
}
