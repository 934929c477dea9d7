//! Process hardening, the first thing `rustbalance run` does (before any key is read):
//!
//! * no core dumps: `prctl(PR_SET_DUMPABLE, 0)` — no core file, and no `ptrace` or
//!   `/proc/PID/mem` access by other processes of the same user — and `RLIMIT_CORE` 0
//!   (soft and hard; `systemd-coredump` honours it too). The systemd unit also sets
//!   `LimitCORE=0`. Both go through rustix's safe wrappers: no `unsafe` here.
//! * a loud warning when run as root: tor, started by the node, then runs as root too.
//! * memory locked in RAM, when the process may lock without limit:
//!   `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`. The keys live in arti's and
//!   dalek's types, which move and copy themselves, so there is no one page to lock;
//!   locking the whole process covers every copy, with rustix's safe wrapper (no
//!   `unsafe`). `MCL_ONFAULT` locks pages as they are touched, not whole reservations
//!   (thread stacks). Only with `CAP_IPC_LOCK` or an unlimited `RLIMIT_MEMLOCK`
//!   (`LimitMEMLOCK=infinity`): under a finite limit `MCL_FUTURE` makes every
//!   allocation past it fail, and the allocator aborts the process on that. Otherwise
//!   swap stays the path to disk: the unit sets `MemorySwapMax=0` (docs/SECURITY.md).

use rustix::mm::{mlockall, MlockAllFlags};
use rustix::process::{geteuid, getrlimit, set_dumpable_behavior, setrlimit, DumpableBehavior};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{capabilities, CapabilitySet};

/// Make this process non-dumpable, forbid core files, and warn when running as root.
/// Failures are logged, never fatal (a kernel without the call still runs the node).
pub(super) fn harden_process() {
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(
            "cannot make this process non-dumpable (prctl PR_SET_DUMPABLE): {e}; another process \
             of this user could read the master key from memory: run the node as its own user \
             (deploy/install.sh)"
        );
    }
    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, no_core) {
        tracing::warn!(
            "cannot forbid core dumps (setrlimit RLIMIT_CORE 0): {e}; a crash could write keys \
             to disk: set LimitCORE=0 in the unit (deploy/rustbalance.service does)"
        );
    }
    if let Some(w) = root_warning(geteuid().as_raw()) {
        tracing::warn!("{w}");
    }
    match lock_memory() {
        Ok(()) => tracing::info!("memory locked in RAM (mlockall): keys cannot reach swap"),
        Err(why) => tracing::info!("memory not locked in RAM: {why}"),
    }
}

/// Locks every page of this process as it is touched, if it may lock without limit;
/// else says why not.
fn lock_memory() -> Result<(), String> {
    let unlimited_cap = capabilities(None)
        .map(|c| c.effective.contains(CapabilitySet::IPC_LOCK))
        .unwrap_or(false);
    may_lock_all(unlimited_cap, getrlimit(Resource::Memlock))?;
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map_err(|e| format!("mlockall failed: {e}"))
}

/// Whether `mlockall(MCL_FUTURE)` is safe: with `CAP_IPC_LOCK` or no locked-memory limit.
fn may_lock_all(cap_ipc_lock: bool, limit: Rlimit) -> Result<(), String> {
    if cap_ipc_lock || limit.current.is_none() {
        Ok(())
    } else {
        Err(format!(
            "the locked-memory limit is {} KiB and the process lacks CAP_IPC_LOCK; set \
             LimitMEMLOCK=infinity in the unit (or ulimit -l unlimited) to lock it",
            limit.current.unwrap_or(0) / 1024
        ))
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

    #[test]
    fn memory_is_locked_only_without_limit() {
        let limited = Rlimit {
            current: Some(8 << 20),
            maximum: Some(8 << 20),
        };
        let unlimited = Rlimit {
            current: None,
            maximum: None,
        };
        let why = may_lock_all(false, limited).unwrap_err();
        assert!(
            why.contains("8192 KiB") && why.contains("LimitMEMLOCK=infinity"),
            "{why}"
        );
        assert_eq!(may_lock_all(true, limited), Ok(()));
        assert_eq!(may_lock_all(false, unlimited), Ok(()));
    }

    /// When allowed, the lock is really taken: the kernel counts locked pages (`VmLck`).
    /// (It locks the test process itself, then unlocks it.)
    #[test]
    fn lock_memory_locks_pages() {
        let locked_kib = || {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("VmLck:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
                .unwrap()
        };
        match lock_memory() {
            Ok(()) => {
                assert!(locked_kib() > 0, "mlockall returned but nothing is locked");
                rustix::mm::munlockall().unwrap();
            }
            Err(why) => {
                assert!(why.contains("LimitMEMLOCK"), "{why}");
                assert_eq!(locked_kib(), 0);
            }
        }
    }
}
