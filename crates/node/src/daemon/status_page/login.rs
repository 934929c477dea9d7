//! How a browser gets in: a single-use login link made with the admin cookie, exchanged
//! for a session cookie that opens the page and nothing else.
//!
//! `POST /page/login` (with the admin cookie as `Authorization: Bearer`) returns the path
//! `/page/login/CODE`: CODE is 32 random bytes, valid for [`CODE_LIFETIME`], spent at first
//! use. Opening it answers `303 → /page` with `Set-Cookie` of a session (32 random bytes,
//! `HttpOnly; SameSite=Strict`, [`SESSION_LIFETIME`]), held in memory only: a restart ends
//! every session. The session only reads the page (`GET /page`); `/status` and every
//! command still need the admin cookie as a header, so a forged cross-site request can do
//! nothing with it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a login link stays valid.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Unused login links kept at most (the oldest is dropped).
const MAX_CODES: usize = 8;
/// Sessions kept at most (the oldest is dropped).
const MAX_SESSIONS: usize = 16;
/// The session cookie's name.
pub const COOKIE_NAME: &str = "rb_page";

/// A secret with its expiry.
struct Ticket {
    secret: Zeroizing<String>,
    expires: Instant,
}

/// The login links and sessions of one admin endpoint.
#[derive(Default)]
pub struct PageAuth {
    codes: Mutex<VecDeque<Ticket>>,
    sessions: Mutex<VecDeque<Ticket>>,
}

/// 32 random bytes, hex.
fn random_secret() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::RngExt::fill(&mut rand::rng(), &mut raw[..]);
    Zeroizing::new(hex::encode(&raw[..]))
}

/// Keep `t` in `list`, dropping the expired and, beyond `max`, the oldest.
fn keep(list: &Mutex<VecDeque<Ticket>>, t: Ticket, max: usize, now: Instant) {
    if let Ok(mut l) = list.lock() {
        l.retain(|x| x.expires > now);
        while l.len() >= max {
            l.pop_front();
        }
        l.push_back(t);
    }
}

/// The position of an unexpired `given` in `list` (every entry compared in constant time).
fn find(list: &VecDeque<Ticket>, given: &str, now: Instant) -> Option<usize> {
    let mut found = None;
    for (i, t) in list.iter().enumerate() {
        let same = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), t.secret.as_bytes());
        if bool::from(same) && t.expires > now {
            found = Some(i);
        }
    }
    found
}

impl PageAuth {
    /// A new login link's path (`/page/login/CODE`).
    pub fn new_link(&self, now: Instant) -> Zeroizing<String> {
        let code = random_secret();
        let path = Zeroizing::new(format!("/page/login/{}", *code));
        let t = Ticket {
            secret: code,
            expires: now + CODE_LIFETIME,
        };
        keep(&self.codes, t, MAX_CODES, now);
        path
    }

    /// Spend a login code: a new session secret, or `None` when the code is unknown,
    /// expired or spent.
    pub fn redeem(&self, code: &str, now: Instant) -> Option<Zeroizing<String>> {
        let mut codes = self.codes.lock().ok()?;
        let i = find(&codes, code, now)?;
        codes.remove(i);
        drop(codes);
        let session = random_secret();
        let t = Ticket {
            secret: session.clone(),
            expires: now + SESSION_LIFETIME,
        };
        keep(&self.sessions, t, MAX_SESSIONS, now);
        Some(session)
    }

    /// The request head carries a live session cookie.
    pub fn has_session(&self, cookie_header: Option<&str>, now: Instant) -> bool {
        let Some(given) = cookie_header.and_then(session_of) else {
            return false;
        };
        self.sessions
            .lock()
            .is_ok_and(|s| find(&s, given, now).is_some())
    }
}

/// The session value in a `Cookie` header (`a=b; rb_page=...`).
fn session_of(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value for a session.
pub fn set_cookie(session: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{COOKIE_NAME}={session}; Path=/page; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_one_session_once_and_not_late() {
        let auth = PageAuth::default();
        let t0 = Instant::now();
        let link = auth.new_link(t0);
        let code = link.trim_start_matches("/page/login/");
        assert_eq!(code.len(), 64);
        assert!(auth.redeem("0000", t0).is_none());
        let s = auth.redeem(code, t0).expect("a fresh code is good");
        assert!(auth.redeem(code, t0).is_none(), "a code is single-use");
        let header = format!("other=1; {COOKIE_NAME}={}", *s);
        assert!(auth.has_session(Some(&header), t0));
        assert!(!auth.has_session(Some(&format!("{COOKIE_NAME}=abc")), t0));
        assert!(!auth.has_session(None, t0));
        assert!(!auth.has_session(Some(&header), t0 + SESSION_LIFETIME));

        let late = auth.new_link(t0);
        let code = late.trim_start_matches("/page/login/");
        assert!(auth.redeem(code, t0 + CODE_LIFETIME).is_none(), "expired");
    }

    #[test]
    fn old_links_and_sessions_are_dropped_beyond_the_bound() {
        let auth = PageAuth::default();
        let t0 = Instant::now();
        let links: Vec<_> = (0..MAX_CODES + 1).map(|_| auth.new_link(t0)).collect();
        let code = |l: &Zeroizing<String>| l.trim_start_matches("/page/login/").to_string();
        assert!(auth.redeem(&code(&links[0]), t0).is_none());
        assert!(auth.redeem(&code(&links[MAX_CODES]), t0).is_some());
        assert!(auth.codes.lock().unwrap().len() <= MAX_CODES);
    }
}
