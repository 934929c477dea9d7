//! Restricted discovery in the publish task: before each round the publisher reads
//! `service.authorized_clients_dir` ([`crate::client_auth`]) and restricts its next
//! descriptors to those clients. The set's fingerprint joins the round's inputs, so adding
//! or removing a client republishes at the next poll (`timers.publish_poll`), like a
//! change of intro points.

use super::publisher::Publisher;
use crate::client_auth::{fingerprint, read_clients};
use std::path::Path;

/// Give `p` the clients of `dir` (none configured: open). Returns the part of the round's
/// fingerprint that stands for them (empty when open), or `None` when the directory
/// cannot be read: then nothing is published this round, since publishing open, or
/// without a client, is not what the operator asked for. The error is logged when it
/// first appears or changes.
pub(super) fn apply_clients(dir: Option<&Path>, p: &mut Publisher) -> Option<String> {
    let Some(dir) = dir else {
        p.set_auth_clients(None);
        return Some(String::new());
    };
    match read_clients(dir) {
        Ok(clients) => {
            log_once("");
            let fp = fingerprint(&clients);
            p.set_auth_clients(Some(clients.into_iter().map(|c| c.key).collect()));
            Some(format!(" clients={fp}"))
        }
        Err(e) => {
            log_once(&e.to_string());
            None
        }
    }
}

/// Log `msg` unless it was the last one given here (`""`: the error went away).
fn log_once(msg: &str) {
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    if let Ok(mut last) = LAST.lock() {
        if *last != msg && !msg.is_empty() {
            tracing::error!("not publishing (restricted discovery): {msg}");
        }
        *last = msg.to_string();
    }
}
