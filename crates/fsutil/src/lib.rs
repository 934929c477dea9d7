//! File helpers shared by every crate that keeps state or secrets on disk.
//!
//! * [`write_atomic`] ([`atomic`]): crash-safe writes with the final permissions from the
//!   start; a temporary file left by a crash never blocks a later write.
//! * [`create_private_dir`] and [`read_secret_file`] ([`private`]): directories and secret
//!   files that only their owner may read, checked (and fixed where that is ours to do)
//!   rather than trusted.
//! * [`PidLock`] ([`pidlock`]): one process per data directory, by `flock` on its pid
//!   file, so that a stale pid file (whose pid now belongs to another process) never
//!   blocks a start.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod atomic;
pub mod err;
pub mod pidlock;
pub mod private;

pub use atomic::write_atomic;
pub use err::{Error, Result};
pub use pidlock::PidLock;
pub use private::{create_private_dir, read_secret_file};
