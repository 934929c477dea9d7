//! Control-port authentication: the `PROTOCOLINFO` reply and the SAFECOOKIE
//! hashes (control-spec 3.24).

use std::path::PathBuf;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::reply::{arg, parse_args, Reply};

/// HMAC key for the hash tor sends to prove it knows the cookie.
pub(crate) const SERVER_TO_CONTROLLER: &[u8] =
    b"Tor safe cookie authentication server-to-controller hash";
/// HMAC key for the hash we send to prove we know the cookie.
pub(crate) const CONTROLLER_TO_SERVER: &[u8] =
    b"Tor safe cookie authentication controller-to-server hash";
/// Size of tor's control auth cookie and of both nonces.
pub(crate) const COOKIE_LEN: usize = 32;

/// How to authenticate on the control port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// NULL if tor offers it, else SAFECOOKIE with the cookie file tor names.
    #[default]
    Auto,
    /// No authentication (tor must offer `NULL`).
    Null,
    /// SAFECOOKIE; `cookie_file` overrides the path from `PROTOCOLINFO`
    /// (useful when tor runs in another mount namespace).
    SafeCookie {
        /// Cookie file to read instead of the one tor reports.
        cookie_file: Option<PathBuf>,
    },
}

/// What `PROTOCOLINFO` told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtocolInfo {
    /// Offered methods (`NULL`, `HASHEDPASSWORD`, `COOKIE`, `SAFECOOKIE`).
    pub auth_methods: Vec<String>,
    /// The cookie file, when a cookie method is offered.
    pub cookie_file: Option<PathBuf>,
    /// tor's version string.
    pub tor_version: Option<String>,
}

impl ProtocolInfo {
    /// Extracts the fields from a `PROTOCOLINFO` reply.
    pub(crate) fn from_reply(reply: &Reply) -> Self {
        let mut info = ProtocolInfo::default();
        for line in &reply.lines {
            let args = parse_args(&line.text);
            match args.first().map(|a| a.value.as_str()) {
                Some("AUTH") => {
                    if let Some(m) = arg(&args, "METHODS") {
                        info.auth_methods = m.split(',').map(str::to_string).collect();
                    }
                    info.cookie_file = arg(&args, "COOKIEFILE").map(PathBuf::from);
                }
                Some("VERSION") => info.tor_version = arg(&args, "Tor").map(str::to_string),
                _ => {}
            }
        }
        info
    }

    /// True when `method` is among the offered methods.
    pub fn offers(&self, method: &str) -> bool {
        self.auth_methods.iter().any(|m| m == method)
    }
}

fn hmac(key: &[u8], cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    // Invariant: HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(cookie);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac.finalize().into_bytes().into()
}

/// The hash tor must send back in `AUTHCHALLENGE` (`SERVERHASH=`).
pub(crate) fn server_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    hmac(SERVER_TO_CONTROLLER, cookie, client_nonce, server_nonce)
}

/// The hash we send in `AUTHENTICATE`.
pub(crate) fn client_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    hmac(CONTROLLER_TO_SERVER, cookie, client_nonce, server_nonce)
}

/// Constant-time comparison of tor's claimed server hash with ours.
pub(crate) fn server_hash_matches(expected: &[u8; 32], claimed: &[u8]) -> bool {
    claimed.len() == expected.len() && bool::from(expected.as_slice().ct_eq(claimed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::reply::ReplyLine;

    #[test]
    fn protocolinfo_fields() {
        let lines = [
            "PROTOCOLINFO 1",
            r#"AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/tmp/x y/control_auth_cookie""#,
            r#"VERSION Tor="0.4.9.11""#,
            "OK",
        ];
        let reply = Reply {
            code: 250,
            lines: lines
                .iter()
                .map(|t| ReplyLine {
                    text: t.to_string(),
                    data: None,
                })
                .collect(),
        };
        let info = ProtocolInfo::from_reply(&reply);
        assert!(info.offers("SAFECOOKIE"));
        assert!(!info.offers("NULL"));
        assert_eq!(
            info.cookie_file,
            Some(PathBuf::from("/tmp/x y/control_auth_cookie"))
        );
        assert_eq!(info.tor_version.as_deref(), Some("0.4.9.11"));
    }

    #[test]
    fn hashes_differ_by_direction_and_compare() {
        let cookie = [7u8; 32];
        let (c, s) = ([1u8; 32], [2u8; 32]);
        let sh = server_hash(&cookie, &c, &s);
        assert_ne!(sh, client_hash(&cookie, &c, &s));
        assert!(server_hash_matches(&sh, &sh));
        assert!(!server_hash_matches(&sh, &sh[..31]));
        let mut other = sh;
        other[0] ^= 1;
        assert!(!server_hash_matches(&sh, &other));
    }
}
