//! The checks behind `rustbalance doctor --config FILE`: what breaks
//! deployments, each problem with how to fix it. A check that cannot run now
//! (the node is stopped, a single node has no mesh) says so and why, and does
//! not fail. The command (crates/rustbalance, `cmd/doctor.rs`) only prints the
//! findings and sets the exit status.
//!
//! The checks ([`checks`]) read the machine through [`Env`]; [`system`] is the
//! real one, the tests use a fake. Whether the node runs is decided once, by
//! asking its admin endpoint for `/status` with its cookie (so run doctor as
//! the node's user or root).

mod checks;
mod system;
#[cfg(test)]
mod tests;

use crate::Config;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

pub use system::System;

/// One result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// What was checked (`tor`, `clock`, `files`, `admin`, `proxy`, `target`,
    /// `mesh`, `hsdirs`, `disk`).
    pub check: &'static str,
    /// `ok`, `skip` (cannot be checked now; `what` says why) or `fail`.
    pub verdict: Verdict,
    /// What doctor found.
    pub what: String,
    /// How to fix it (failures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Checked, fine.
    Ok,
    /// Cannot be checked now (the finding says why); not a failure.
    Skip,
    /// Checked, broken (the finding says how to fix it).
    Fail,
}

impl Finding {
    fn ok(check: &'static str, what: impl Into<String>) -> Self {
        Self {
            check,
            verdict: Verdict::Ok,
            what: what.into(),
            fix: None,
        }
    }
    fn skip(check: &'static str, what: impl Into<String>) -> Self {
        Self {
            check,
            verdict: Verdict::Skip,
            what: what.into(),
            fix: None,
        }
    }
    fn fail(check: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            verdict: Verdict::Fail,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

/// A file's mode bits and owner.
#[derive(Debug, Clone, Copy)]
pub struct FileInfo {
    /// Mode bits (`st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
}

/// What the checks read from the machine.
pub trait Env {
    /// The current time.
    fn now(&self) -> SystemTime;
    /// Run `program args`, return its stdout.
    fn run(&self, program: &Path, args: &[&str]) -> std::io::Result<String>;
    /// Mode and owner of `path` (following symlinks), `None` if absent.
    fn file(&self, path: &Path) -> Option<FileInfo>;
    /// A text file's contents, `None` if unreadable.
    fn read(&self, path: &Path) -> Option<String>;
    /// The running node's `/status` (asked with its cookie), `None` if it does not answer.
    fn status(&self, admin: SocketAddr, cookie: &Path) -> Option<serde_json::Value>;
    /// Whether `addr` can be bound now (nothing listens there).
    fn can_bind(&self, addr: SocketAddr) -> bool;
    /// Whether a TCP connection to `host:port` succeeds within a few seconds.
    fn can_connect(&self, host: &str, port: u16) -> bool;
    /// Bytes free for unprivileged users on the file system holding `path`.
    fn free_bytes(&self, path: &Path) -> Option<u64>;
}

/// Every check, in the order printed.
pub fn diagnose(cfg: &Config, env: &dyn Env) -> Vec<Finding> {
    let cookie = crate::layout::Layout::new(&cfg.node.data_dir).admin_cookie();
    let running = env
        .status(cfg.admin.listen, &cookie)
        .map(|status| checks::Running { status });
    let r = running.as_ref();
    let mut out = checks::tor(cfg, env);
    out.push(checks::clock(cfg, env, r));
    out.extend(checks::files(cfg, env));
    out.extend(checks::ports(cfg, env, r));
    out.push(checks::target(cfg, env));
    out.extend(checks::mesh(cfg, env, r));
    out.extend(checks::hsdirs(r));
    out.push(checks::disk(cfg, env));
    out
}
