//! An in-process fake tor control port, for tests of code that drives tor.
//!
//! [`FakeTor`] listens on `127.0.0.1:0` and speaks enough of the control
//! protocol for [`crate::ControlClient`]: NULL authentication, `GETINFO`
//! answered from a table (multi-line values as data blocks), `SETEVENTS`,
//! `SETCONF`, `SIGNAL`, `HSFETCH`, `ADD_ONION`/`DEL_ONION` (answered, nothing
//! hosted), and `+HSPOST`, whose descriptors are
//! recorded (dot-unstuffed). With [`FakeTor::ack_uploads`] it answers every
//! HSPOST with one `HS_DESC UPLOADED` event per `SERVER=`, like tor does
//! after successful uploads. Tests can push any event with [`FakeTor::emit`].
//!
//! With [`FakeTor::serve_hsdirs`] it also plays the HSDirs: each `+HSPOST SERVER=` stores
//! the descriptor at that HSDir (unless [`FakeTor::refuse_uploads`] makes it answer
//! `FAILED ... REASON=UPLOAD_REJECTED`), and each `HSFETCH ... SERVER=` answers like tor:
//! `HS_DESC RECEIVED` and an `HS_DESC_CONTENT` with the stored text, or `HS_DESC FAILED
//! ... REASON=NOT_FOUND` and an empty `HS_DESC_CONTENT`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::control::parse_args;

/// One `+HSPOST` the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsPost {
    /// The `SERVER=` values, in order.
    pub servers: Vec<String>,
    /// The `HSADDRESS=` value.
    pub hsaddress: Option<String>,
    /// The descriptor, dot-unstuffed, lines ending in `\n`.
    pub descriptor: String,
}

#[derive(Default)]
struct State {
    info: HashMap<String, String>,
    commands: Vec<String>,
    posts: Vec<HsPost>,
    ack_uploads: bool,
    /// `Some` while the fake plays the HSDirs: fingerprint → the descriptor it holds.
    hsdirs: Option<HashMap<String, String>>,
    /// HSDirs that refuse every upload.
    refusing: HashSet<String>,
    /// The `ServiceID` an `ADD_ONION` answers (`FakeTor::set_onion_id`).
    onion_id: String,
}

/// A fake tor control port. Stops listening when dropped.
pub struct FakeTor {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<String>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeTor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTor").field("addr", &self.addr).finish()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeTor {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<FakeTor> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (events, _) = broadcast::channel(256);
        let (st, ev) = (Arc::clone(&state), events.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, Arc::clone(&st), ev.subscribe()));
            }
        });
        Ok(FakeTor {
            addr,
            state,
            events,
            task,
        })
    }

    /// Its control address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the answer to `GETINFO key`.
    pub fn set_info(&self, key: &str, value: &str) {
        lock(&self.state)
            .info
            .insert(key.to_string(), value.to_string());
    }

    /// When on, every `+HSPOST` is followed by `HS_DESC UPLOADED` events,
    /// one per `SERVER=`, sent to connections that enabled `HS_DESC`.
    pub fn ack_uploads(&self, on: bool) {
        lock(&self.state).ack_uploads = on;
    }

    /// Sends `650 <line>` to every connection that enabled the event's kind.
    pub fn emit(&self, line: &str) {
        // No receiver only means no connection is open.
        let _ = self.events.send(line.to_string());
    }

    /// When on, the fake plays the HSDirs (see the module doc); every HSDir starts empty.
    pub fn serve_hsdirs(&self, on: bool) {
        lock(&self.state).hsdirs = on.then(HashMap::new);
    }

    /// Sets what HSDir `fingerprint` holds (`None`: nothing, as after a restart).
    pub fn set_hsdir_copy(&self, fingerprint: &str, descriptor: Option<&str>) {
        let mut st = lock(&self.state);
        let dirs = st.hsdirs.get_or_insert_with(HashMap::new);
        match descriptor {
            Some(d) => dirs.insert(fingerprint.to_string(), d.to_string()),
            None => dirs.remove(fingerprint),
        };
    }

    /// What HSDir `fingerprint` holds.
    pub fn hsdir_copy(&self, fingerprint: &str) -> Option<String> {
        lock(&self.state).hsdirs.as_ref()?.get(fingerprint).cloned()
    }

    /// Makes HSDir `fingerprint` refuse every upload (as a real one refuses a revision
    /// counter not above the one it holds).
    pub fn refuse_uploads(&self, fingerprint: &str) {
        lock(&self.state).refusing.insert(fingerprint.to_string());
    }

    /// Every command line received, in order (AUTHENTICATE included).
    pub fn commands(&self) -> Vec<String> {
        lock(&self.state).commands.clone()
    }

    /// The `ServiceID` that `ADD_ONION` answers from now on.
    pub fn set_onion_id(&self, id: &str) {
        lock(&self.state).onion_id = id.to_string();
    }

    /// Every `+HSPOST` received, in order.
    pub fn posts(&self) -> Vec<HsPost> {
        lock(&self.state).posts.clone()
    }
}

impl Drop for FakeTor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection until it closes.
async fn serve(
    sock: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    mut events: broadcast::Receiver<String>,
) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let mut enabled: Vec<String> = Vec::new();
    // Kept across loop turns: `read_until` appends what it read before an
    // event interrupted it, so no command byte is lost.
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            n = r.read_until(b'\n', &mut buf) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
            }
            ev = events.recv() => {
                if let Ok(ev) = ev {
                    let kind = ev.split(' ').next().unwrap_or("");
                    if enabled.iter().any(|e| e == kind)
                        && w.write_all(format!("650 {ev}\r\n").as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
                continue;
            }
        }
        let line = String::from_utf8_lossy(&std::mem::take(&mut buf))
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let mut body = String::new();
        if line.starts_with('+') {
            loop {
                let mut l = String::new();
                if !matches!(r.read_line(&mut l).await, Ok(n) if n > 0) {
                    return;
                }
                let l = l.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                body.push_str(l.strip_prefix('.').unwrap_or(l));
                body.push('\n');
            }
        }
        let out = answer(&line, body, &state, &mut enabled);
        if w.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The reply (and follow-up events) to one command.
fn answer(line: &str, body: String, state: &Mutex<State>, enabled: &mut Vec<String>) -> String {
    let mut st = lock(state);
    st.commands.push(line.to_string());
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "PROTOCOLINFO" => concat!(
            "250-PROTOCOLINFO 1\r\n",
            "250-AUTH METHODS=NULL\r\n",
            "250-VERSION Tor=\"0.4.9.11-fake\"\r\n",
            "250 OK\r\n"
        )
        .to_string(),
        "AUTHENTICATE" | "SETCONF" | "SIGNAL" | "DEL_ONION" => "250 OK\r\n".to_string(),
        "ADD_ONION" => format!("250-ServiceID={}\r\n250 OK\r\n", st.onion_id),
        "HSFETCH" => {
            let mut out = String::from("250 OK\r\n");
            if let Some(dirs) = &st.hsdirs {
                out.push_str(&hsfetch_events(rest, dirs, enabled));
            }
            out
        }
        "SETEVENTS" => {
            *enabled = rest.split_whitespace().map(str::to_string).collect();
            "250 OK\r\n".to_string()
        }
        "GETINFO" => match st.info.get(rest) {
            Some(v) if v.contains('\n') => {
                format!("250+{rest}=\r\n{}250 OK\r\n", crate::control::dot_stuff(v))
            }
            Some(v) => format!("250-{rest}={v}\r\n250 OK\r\n"),
            None => format!("552 Unrecognized key \"{rest}\"\r\n"),
        },
        "+HSPOST" => {
            let args = parse_args(rest);
            let post = HsPost {
                servers: args
                    .iter()
                    .filter(|a| a.key.as_deref() == Some("SERVER"))
                    .map(|a| a.value.clone())
                    .collect(),
                hsaddress: args
                    .iter()
                    .find(|a| a.key.as_deref() == Some("HSADDRESS"))
                    .map(|a| a.value.clone()),
                descriptor: body,
            };
            let mut out = String::from("250 OK\r\n");
            let playing = st.hsdirs.is_some();
            let addr = post.hsaddress.clone().unwrap_or_else(|| "UNKNOWN".into());
            for s in &post.servers {
                let refused = st.refusing.contains(s);
                if !refused {
                    if let Some(dirs) = st.hsdirs.as_mut() {
                        dirs.insert(s.clone(), post.descriptor.clone());
                    }
                }
                if (st.ack_uploads || playing) && enabled.iter().any(|e| e == "HS_DESC") {
                    out.push_str(&if refused {
                        format!("650 HS_DESC FAILED {addr} UNKNOWN ${s} REASON=UPLOAD_REJECTED\r\n")
                    } else {
                        format!("650 HS_DESC UPLOADED {addr} UNKNOWN ${s}\r\n")
                    });
                }
            }
            st.posts.push(post);
            out
        }
        "QUIT" => "250 closing connection\r\n".to_string(),
        _ => format!("510 Unrecognized command \"{verb}\"\r\n"),
    }
}

/// The events tor sends after `HSFETCH <rest>` when the fake plays the HSDirs.
fn hsfetch_events(rest: &str, dirs: &HashMap<String, String>, enabled: &[String]) -> String {
    let args = parse_args(rest);
    let addr = args.first().map(|a| a.value.as_str()).unwrap_or("UNKNOWN");
    let on = |kind: &str| enabled.iter().any(|e| e == kind);
    let mut out = String::new();
    for s in args.iter().filter(|a| a.key.as_deref() == Some("SERVER")) {
        let fp = &s.value;
        let held = dirs.get(fp);
        if on("HS_DESC") {
            out.push_str(&match held {
                Some(_) => format!("650 HS_DESC RECEIVED {addr} NO_AUTH ${fp}~fake blinded\r\n"),
                None => format!(
                    "650 HS_DESC FAILED {addr} NO_AUTH ${fp}~fake blinded REASON=NOT_FOUND\r\n"
                ),
            });
        }
        if on("HS_DESC_CONTENT") {
            out.push_str(&format!(
                "650+HS_DESC_CONTENT {addr} blinded ${fp}~fake\r\n{}650 OK\r\n",
                crate::control::dot_stuff(held.map(String::as_str).unwrap_or(""))
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ControlClient;

    #[tokio::test]
    async fn drives_the_real_client() {
        let fake = FakeTor::start().await.unwrap();
        fake.set_info("version", "0.4.9.11-fake");
        fake.set_info("hs/service/desc/id/abc", "hs-descriptor 3\n.dot\n");
        fake.ack_uploads(true);
        let c = ControlClient::connect_authenticated(fake.addr())
            .await
            .unwrap();
        let mut events = c.take_events().unwrap();
        c.setevents(&["HS_DESC"]).await.unwrap();
        assert_eq!(c.getinfo("version").await.unwrap(), "0.4.9.11-fake");
        assert_eq!(
            c.getinfo("hs/service/desc/id/abc").await.unwrap(),
            "hs-descriptor 3\n.dot\n"
        );
        c.hspost("hs-descriptor 3\n.x\n", &["AA", "BB"], Some("abc.onion"))
            .await
            .unwrap();
        let posts = fake.posts();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].servers, ["AA", "BB"]);
        assert_eq!(posts[0].hsaddress.as_deref(), Some("abc"));
        assert_eq!(posts[0].descriptor, "hs-descriptor 3\n.x\n");
        for want in ["$AA", "$BB"] {
            let h = events.recv().await.unwrap().hs_desc().unwrap();
            assert_eq!((h.action.as_str(), h.hsdir.as_str()), ("UPLOADED", want));
        }
        fake.emit("HS_DESC FAILED abc UNKNOWN $CC REASON=UPLOAD_REJECTED");
        fake.emit("CIRC 1 BUILT");
        let h = events.recv().await.unwrap().hs_desc().unwrap();
        assert_eq!(h.reason.as_deref(), Some("UPLOAD_REJECTED"));
        assert!(c.getinfo("nope").await.is_err());
        assert!(fake.commands().contains(&"SETEVENTS HS_DESC".to_string()));
    }

    #[tokio::test]
    async fn plays_the_hsdirs() {
        let fake = FakeTor::start().await.unwrap();
        fake.serve_hsdirs(true);
        fake.refuse_uploads("CC");
        let c = ControlClient::connect_authenticated(fake.addr())
            .await
            .unwrap();
        let mut events = c.take_events().unwrap();
        c.setevents(&["HS_DESC", "HS_DESC_CONTENT"]).await.unwrap();
        c.hspost("hs-descriptor 3\n", &["AA", "CC"], Some("abc"))
            .await
            .unwrap();
        let h = events.recv().await.unwrap().hs_desc().unwrap();
        assert_eq!((h.action.as_str(), h.hsdir.as_str()), ("UPLOADED", "$AA"));
        let h = events.recv().await.unwrap().hs_desc().unwrap();
        assert_eq!(h.reason.as_deref(), Some("UPLOAD_REJECTED"));
        assert_eq!(fake.hsdir_copy("AA").as_deref(), Some("hs-descriptor 3\n"));
        assert_eq!(fake.hsdir_copy("CC"), None);

        c.hsfetch("abc", &["AA", "BB"]).await.unwrap();
        let h = events.recv().await.unwrap().hs_desc().unwrap();
        assert_eq!(
            (h.action.as_str(), h.hsdir_fingerprint().as_str()),
            ("RECEIVED", "AA")
        );
        let got = events.recv().await.unwrap().hs_desc_content().unwrap();
        assert_eq!(got.hsdir_fingerprint(), "AA");
        assert_eq!(got.descriptor, "hs-descriptor 3\n");
        let h = events.recv().await.unwrap().hs_desc().unwrap();
        assert_eq!(h.reason.as_deref(), Some("NOT_FOUND"));
        let got = events.recv().await.unwrap().hs_desc_content().unwrap();
        assert_eq!(
            (got.hsdir_fingerprint().as_str(), got.descriptor.as_str()),
            ("BB", "")
        );
    }
}
