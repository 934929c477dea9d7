//! One lab around a piece of work: create, start, run, always stop.
//!
//! ```text
//! create ─▶ start ─▶ body(&lab, started) ─▶ stop_and_verify (also when the body failed)
//!                                       ├─▶ left running (keep, body succeeded)
//!                                       └─▶ panic: stopped while unwinding
//! ```

use anyhow::Result;
use rustbalance_lab::{Lab, LabOptions, Progress, StartReport};
use std::path::Path;
use std::time::{Duration, Instant};

/// How the lab came up.
#[derive(Debug, Clone)]
pub struct Started {
    /// `Lab::create` (keys, torrcs).
    pub created: Duration,
    /// `Lab::start` until usable, by phase.
    pub report: StartReport,
}

/// What to do with the lab when the body succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterBody {
    /// Stop it and check that nothing of it listens (always done on failure).
    Stop,
    /// Leave it running (`rustbalance lab demo --keep`).
    Keep,
}

/// Creates a lab in `dir` with `options`, starts it (reporting each phase
/// to `progress`), runs `body`, then stops the lab and checks that nothing
/// of it listens any more — also when starting or the body failed. The
/// body's error comes first; a failed stop is reported when the body
/// succeeded.
pub async fn with_lab<T>(
    dir: &Path,
    options: LabOptions,
    progress: impl FnMut(&Progress),
    body: impl AsyncFnOnce(&Lab, Started) -> Result<T>,
) -> Result<T> {
    with_lab_then(dir, options, progress, AfterBody::Stop, body).await
}

/// [`with_lab`], leaving the lab running after a successful body when
/// `after` says [`AfterBody::Keep`].
pub async fn with_lab_then<T>(
    dir: &Path,
    options: LabOptions,
    progress: impl FnMut(&Progress),
    after: AfterBody,
    body: impl AsyncFnOnce(&Lab, Started) -> Result<T>,
) -> Result<T> {
    let t = Instant::now();
    let lab = Lab::create(dir, options).await?;
    let created = t.elapsed();
    // Only for a panic unwinding through here: the normal paths stop (or
    // keep) the lab themselves and disarm it.
    let on_panic = lab.stop_on_drop();
    let result = match lab.start(progress).await {
        Ok(report) => body(&lab, Started { created, report }).await,
        Err(e) => Err(e.into()),
    };
    std::mem::forget(on_panic);
    if after == AfterBody::Keep && result.is_ok() {
        return result;
    }
    let stopped = lab.stop_and_verify().await;
    let value = result?;
    stopped?;
    Ok(value)
}
