//! Process hardening, the first thing `rustbalance run` does (before any key is read):
//!
//! * no core dumps: `prctl(PR_SET_DUMPABLE, 0)` — no core file, and no `ptrace` or
//!   `/proc/PID/mem` access by other processes of the same user — and `RLIMIT_CORE` 0
//!   (soft and hard; `systemd-coredump` honours it too). The systemd unit also sets
//!   `LimitCORE=0`. Both go through rustix's safe wrappers: no `unsafe` here.
//! * a loud warning when run as root: tor, started by the node, then runs as root too.
//!
//! Key pages are not `mlock`ed: the keys live in arti's and dalek's types, which move
//! (no stable address to lock) and are copied by their own code; locking them would need
//! `unsafe` in crates that are not ours. Swap is the remaining path to disk: the unit
//! sets `MemorySwapMax=0` (docs/SECURITY.md).

use rustix::process::{geteuid, set_dumpable_behavior, setrlimit, DumpableBehavior};
use rustix::process::{Resource, Rlimit};

/// Make this process non-dumpable, forbid core files, and warn when running as root.
/// Failures are logged, never fatal (a kernel without the call still runs the node).
pub(super) fn harden_process() {
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!("cannot make this process non-dumpable (prctl PR_SET_DUMPABLE): {e}");
    }
    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, no_core) {
        tracing::warn!("cannot forbid core dumps (setrlimit RLIMIT_CORE 0): {e}");
    }
    if let Some(w) = root_warning(geteuid().as_raw()) {
        tracing::warn!("{w}");
    }
}

/// The warning for a node run by `euid`, if that is root.
fn root_warning(euid: u32) -> Option<&'static str> {
    (euid == 0).then_some(
        "WARNING: rustbalance runs as root, so the tor it starts runs as root too: a flaw \
         in tor would hand over the whole machine. Run the node as an unprivileged user \
         (deploy/install.sh creates the user `rustbalance` and a systemd unit that runs as \
         it; see docs/SECURITY.md, \"Running as root\").",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_is_warned() {
        assert!(root_warning(0).is_some_and(|w| w.contains("runs as root")));
        assert_eq!(root_warning(1000), None);
        assert_eq!(root_warning(65534), None);
    }

    /// After hardening, this process is not dumpable and may write no core file.
    /// (It hardens the test process itself, which no other test minds.)
    #[test]
    fn no_core_dumps_after_hardening() {
        harden_process();
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            DumpableBehavior::NotDumpable
        );
        let core = rustix::process::getrlimit(Resource::Core);
        assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
    }
}
