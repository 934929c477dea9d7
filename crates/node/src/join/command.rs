//! The operator's join commands against a running node, over its admin endpoint with the
//! admin cookie: `token create`, `token rotate`, `node remove` (which waits for the join key
//! to rotate, see [`TokenWatch`]).

use super::error::JoinError;
use super::rotation::{TokenWait, TokenWatch};
use super::timers::JoinTimers;
use crate::config::Config;
use crate::err::{Error, Result};
use crate::layout::Layout;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A running node's admin endpoint, as its config names it, with its cookie.
pub struct AdminClient {
    listen: SocketAddr,
    cookie: Zeroizing<String>,
    rt: tokio::runtime::Runtime,
}

impl AdminClient {
    /// The node of config file `config` (it must be running: the cookie is new at start).
    pub fn new(config: &Path) -> Result<AdminClient> {
        let cfg = Config::load(config)?;
        let cookie_file = Layout::new(&cfg.node.data_dir).admin_cookie();
        let cookie = Zeroizing::new(std::fs::read_to_string(&cookie_file).map_err(|source| {
            JoinError::AdminCookie {
                path: cookie_file.clone(),
                source,
            }
        })?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                action: "cannot start the async runtime for",
                path: config.to_path_buf(),
                source,
            })?;
        Ok(AdminClient {
            listen: cfg.admin.listen,
            cookie,
            rt,
        })
    }

    /// The body of the answer to an authenticated `method path`.
    pub fn call(&self, method: &str, path: &str) -> Result<Zeroizing<String>> {
        let body = self
            .rt
            .block_on(crate::admin::request(
                self.listen,
                method,
                path,
                Some(&self.cookie),
            ))
            .map_err(|source| JoinError::AdminUnreachable {
                listen: self.listen,
                source,
            })?;
        Ok(Zeroizing::new(body))
    }

    /// `token create --ttl`: a new single-use token.
    pub fn create(&self, ttl: Duration) -> Result<Zeroizing<String>> {
        self.call("POST", &format!("/token/create/{}", ttl.as_secs()))
    }

    /// The fingerprint of the current join key.
    pub fn fingerprint(&self) -> Result<Zeroizing<String>> {
        self.call("GET", "/token")
    }

    /// `token rotate`: the node's answer.
    pub fn rotate(&self) -> Result<Zeroizing<String>> {
        self.call("POST", "/token/rotate")
    }

    /// `node remove WHO`: the node's answer, then (after `answered` was called with it)
    /// the new join key's fingerprint once it held still.
    pub fn remove(
        &self,
        who: &str,
        timers: &JoinTimers,
        answered: impl FnOnce(&str),
    ) -> Result<Zeroizing<String>> {
        let ok = !who.is_empty()
            && who
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_+/=".contains(&b));
        if !ok {
            return Err(JoinError::NotANodeOrKey {
                who: who.to_string(),
            }
            .into());
        }
        let before = self.fingerprint()?;
        answered(&self.call("POST", &format!("/node/remove/{who}"))?);
        let mut watch = TokenWatch::new(&before, Instant::now(), timers);
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.fingerprint()?;
            match watch.observe(&now, Instant::now()) {
                TokenWait::Waiting => {}
                TokenWait::Rotated(t) => return Ok(Zeroizing::new(t)),
                TokenWait::TimedOut => {
                    return Err(JoinError::NotRotated {
                        secs: watch.wait().as_secs(),
                    }
                    .into())
                }
            }
        }
    }
}
