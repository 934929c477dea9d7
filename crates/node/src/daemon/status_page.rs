//! The status page: the cluster at a glance in a browser, on the admin endpoint.
//!
//! * `POST /page/login` (admin cookie as `Authorization: Bearer`): a single-use login path
//!   ([`login`]); `rustbalance status --page-link` prints it as a URL.
//! * `GET /page/login/CODE`: spends the code, sets the session cookie, `303 → /page`.
//! * `GET /page` (session cookie, or the admin cookie as a header): the page ([`render`]),
//!   made on the node from the `/status` document with its recent events ([`events`]).
//!   No script; the inline style is allowed by a per-response nonce under a
//!   Content-Security-Policy that loads nothing else; it refreshes itself every few
//!   seconds.
//!
//! The route lives in `crate::admin` (one call into [`route`]); the events sampler is
//! started with the admin endpoint ([`with_events`]).

pub mod events;
pub mod login;
pub mod render;

use crate::admin::StatusFn;
use events::EventLog;
use login::PageAuth;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

/// How often the events sampler reads the status document.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// An answer of the page's routes.
pub struct Reply {
    /// Status line after `HTTP/1.0 `.
    pub status: &'static str,
    /// `Content-Type`.
    pub ctype: &'static str,
    /// More headers (a `Set-Cookie` is secret: zeroized after use).
    pub headers: Vec<(&'static str, Zeroizing<String>)>,
    /// The body.
    pub body: String,
}

impl Reply {
    fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            ctype: "text/plain",
            headers: vec![("Cache-Control", Zeroizing::new("no-store".into()))],
            body: body.to_string(),
        }
    }
}

/// `status` with `"events"` added, and the sampler task that fills them (abort it to stop).
pub fn with_events(status: StatusFn) -> (StatusFn, JoinHandle<()>) {
    let log = Arc::new(Mutex::new(EventLog::default()));
    let (sampled, filled) = (status.clone(), log.clone());
    let task = tokio::spawn(async move {
        loop {
            let doc = sampled();
            if let Ok(mut l) = filled.lock() {
                l.observe(&doc, SystemTime::now());
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    });
    let with: StatusFn = Arc::new(move || {
        let mut doc = status();
        let recent = log.lock().map(|l| l.recent()).unwrap_or_default();
        if let Some(o) = doc.as_object_mut() {
            o.insert("events".into(), serde_json::json!(recent));
        }
        doc
    });
    (with, task)
}

const NO_SESSION: &str = "this page needs a login link: run `rustbalance status --config FILE \
--page-link` on the node (as its user or root) and open the URL it prints within 60 s\n";

/// Answer a request for the page's paths; `None` for any other path. `authed`: the request
/// carries the admin cookie; `cookie`: its `Cookie` header.
pub fn route(
    method: &str,
    path: &str,
    authed: bool,
    cookie: Option<&str>,
    auth: &PageAuth,
    status: &StatusFn,
) -> Option<Reply> {
    let now = Instant::now();
    Some(match (method, path) {
        ("POST", "/page/login") if authed => {
            let mut r = Reply::text("200 OK", "");
            r.body = format!("{}\n", *auth.new_link(now));
            r
        }
        ("POST", "/page/login") => {
            Reply::text("401 Unauthorized", "the admin cookie is missing or wrong\n")
        }
        ("GET", p) if p.starts_with("/page/login/") => {
            let Some(session) = auth.redeem(&p["/page/login/".len()..], now) else {
                return Some(Reply::text(
                    "401 Unauthorized",
                    &format!("this login link was used already or expired. {NO_SESSION}"),
                ));
            };
            let mut r = Reply::text("303 See Other", "see /page\n");
            r.headers.push(("Location", Zeroizing::new("/page".into())));
            r.headers.push(("Set-Cookie", login::set_cookie(&session)));
            r.headers
                .push(("Referrer-Policy", Zeroizing::new("no-referrer".into())));
            r
        }
        ("GET", "/page") if authed || auth.has_session(cookie, now) => page(status),
        ("GET", "/page") => Reply::text("401 Unauthorized", NO_SESSION),
        _ => return None,
    })
}

/// The page with its security headers.
fn page(status: &StatusFn) -> Reply {
    let mut raw = [0u8; 16];
    rand::RngExt::fill(&mut rand::rng(), &mut raw[..]);
    let nonce = hex::encode(raw);
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'"
    );
    let h = |v: &str| Zeroizing::new(v.to_string());
    Reply {
        status: "200 OK",
        ctype: "text/html; charset=utf-8",
        headers: vec![
            ("Content-Security-Policy", h(&csp)),
            ("X-Frame-Options", h("DENY")),
            ("X-Content-Type-Options", h("nosniff")),
            ("Referrer-Policy", h("no-referrer")),
            ("Cache-Control", h("no-store")),
        ],
        body: render::page(&status(), &nonce),
    }
}

#[cfg(test)]
mod tests {
    use crate::admin::{request, StatusFn};
    use std::sync::Arc;

    /// One raw GET with extra header lines; the whole answer.
    async fn get(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
        crate::admin::tests::raw(addr, &req).await
    }

    /// A browser gets in with a single-use link made with the admin cookie, and the
    /// session it gets opens the page only.
    #[tokio::test]
    async fn a_login_link_opens_the_page_once() {
        let status: StatusFn = Arc::new(|| serde_json::json!({"node": "node7"}));
        let (admin, cookie, dir) = crate::admin::tests::server_with(None, status).await;
        let a = admin.addr();
        assert!(get(a, "/page", "").await.starts_with("HTTP/1.0 401"));
        let e = request(a, "POST", "/page/login", None).await.unwrap_err();
        assert!(e.to_string().contains("401"), "{e}");
        let url = crate::admin::page_link(a, &dir.path().join("admin.cookie"))
            .await
            .unwrap();
        let link = url
            .strip_prefix(&format!("http://{a}"))
            .expect("a URL of the endpoint");
        assert!(link.starts_with("/page/login/"), "{link}");

        let answer = get(a, link, "").await;
        assert!(answer.starts_with("HTTP/1.0 303"), "{answer}");
        assert!(answer.contains("\r\nLocation: /page\r\n"), "{answer}");
        let set = answer
            .lines()
            .find_map(|l| l.strip_prefix("Set-Cookie: "))
            .expect("a session cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let session = set.split(';').next().unwrap();
        assert!(
            get(a, link, "").await.starts_with("HTTP/1.0 401"),
            "a link works once"
        );

        let page = get(a, "/page", &format!("Cookie: {session}\r\n")).await;
        assert!(page.starts_with("HTTP/1.0 200"), "{page}");
        assert!(page.contains("Content-Security-Policy: default-src 'none'; style-src 'nonce-"));
        assert!(page.contains("seen from node7"), "{page}");
        let status = get(a, "/status", &format!("Cookie: {session}\r\n")).await;
        assert!(
            status.starts_with("HTTP/1.0 401"),
            "the session opens the page only"
        );
        let doc = request(a, "GET", "/status", Some(&cookie)).await.unwrap();
        let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert!(
            doc["events"].is_array(),
            "/status carries the events: {doc}"
        );
        let bearer = format!("Authorization: Bearer {cookie}\r\n");
        assert!(get(a, "/page", &bearer).await.starts_with("HTTP/1.0 200"));
        admin.stop();
    }
}
