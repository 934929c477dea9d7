//! Starting, watching and stopping processes by pid file.
//!
//! A process is identified by [`ProcessId`]: its pid *and* the kernel's start
//! time of that pid (from `/proc/PID/stat`). A pid that was recycled by an
//! unrelated process therefore never looks alive to us and is never
//! signalled. Nothing here ever looks a process up by name.
//!
//! tor runs as a daemon (`RunAsDaemon 1`): the launching `tor` exits once the
//! daemon has parsed its configuration and opened its listeners, and the
//! daemon writes its pid file. The daemon is not our child, so it outlives
//! the program that started it (the lab's CLI starts a lab and exits). Other
//! programs (Onionbalance) run in the foreground as our child, in their own
//! process group, with the pid file written by us.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde::{Deserialize, Serialize};

use crate::err::{Error, Result};

/// How many log lines errors carry.
pub const LOG_TAIL_LINES: usize = 20;

/// A pid together with the start time the kernel recorded for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// What [`ProcessId::stop`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopOutcome {
    /// The process was not running (any more).
    AlreadyGone,
    /// It exited after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

/// State letter and start ticks from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ppid ...`: comm may contain spaces and parentheses, so
    // split after the last ')'. Fields after it start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some((state, start_ticks))
}

impl ProcessId {
    /// The identity of the running process `pid`, if there is one.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let (state, start_ticks) = proc_stat(pid)?;
        (!matches!(state, 'Z' | 'X')).then_some(ProcessId { pid, start_ticks })
    }

    /// True while this very process runs (zombies count as dead).
    pub fn is_alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, ticks)) if ticks == self.start_ticks && !matches!(state, 'Z' | 'X'))
    }

    fn signal(&self, sig: Signal, name: &'static str) -> Result<()> {
        let pid = i32::try_from(self.pid)
            .ok()
            .filter(|p| *p > 1 && *p as u32 != std::process::id())
            .and_then(Pid::from_raw);
        let Some(pid) = pid else {
            // Never signal init, ourselves or an out-of-range pid.
            return Ok(());
        };
        match kill_process(pid, sig) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::Signal {
                signal: name,
                pid: self.pid,
                source: e.into(),
            }),
        }
    }

    /// Sends SIGTERM, waits up to `grace` for the exit, then SIGKILL.
    /// Blocks the calling thread (at most `grace` + 5 s).
    pub fn stop(&self, grace: Duration) -> Result<StopOutcome> {
        if !self.is_alive() {
            return Ok(StopOutcome::AlreadyGone);
        }
        self.signal(Signal::TERM, "SIGTERM")?;
        if wait_dead(&[*self], grace) {
            return Ok(StopOutcome::Terminated);
        }
        self.kill()
    }

    /// Sends SIGKILL and waits (up to 5 s) until the process is gone.
    pub fn kill(&self) -> Result<StopOutcome> {
        if !self.is_alive() {
            return Ok(StopOutcome::AlreadyGone);
        }
        self.signal(Signal::KILL, "SIGKILL")?;
        let waited = Duration::from_secs(5);
        if wait_dead(&[*self], waited) {
            Ok(StopOutcome::Killed)
        } else {
            Err(Error::Unkillable {
                pid: self.pid,
                waited,
            })
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) -> Result<()> {
        if self.is_alive() {
            self.signal(Signal::TERM, "SIGTERM")?;
        }
        Ok(())
    }
}

/// Polls until none of `ids` is alive; false on timeout.
pub fn wait_dead(ids: &[ProcessId], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ids.iter().all(|p| !p.is_alive()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long [`stop_all`] waits for processes to be gone after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Stops many processes at once: SIGTERM to all, wait up to `grace`, then
/// SIGKILL the rest (and wait for them to be gone). Returns the first error, after trying every process.
pub fn stop_all(ids: &[ProcessId], grace: Duration) -> Result<()> {
    let mut first_err = None;
    for id in ids {
        if let Err(e) = id.terminate() {
            first_err.get_or_insert(e);
        }
    }
    if !wait_dead(ids, grace) {
        for id in ids {
            if let Err(e) = id.kill() {
                first_err.get_or_insert(e);
            }
        }
        // SIGKILL is only queued: on a busy host the process may hold its sockets for a
        // moment longer. Return once it is gone, so callers can reuse its addresses.
        wait_dead(ids, KILL_WAIT);
    }
    first_err.map_or(Ok(()), Err)
}

/// Reads a pid file; `None` when it does not exist or is empty.
pub fn read_pid_file(path: &Path) -> Result<Option<u32>> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => s.trim().parse().map(Some).map_err(|_| Error::File {
            action: "parse pid file",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{s:?} is not a pid"),
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::File {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The last `n` lines of a text file (empty when unreadable).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How to start one tor daemon.
#[derive(Debug, Clone)]
pub struct TorLaunch {
    /// Our name for it, used in errors (`relay r1`).
    pub name: String,
    /// The tor binary (`tor` from `$PATH` by default).
    pub tor_binary: PathBuf,
    /// Its torrc.
    pub torrc: PathBuf,
    /// Where the daemon writes its pid (passed as `--PidFile`).
    pub pid_file: PathBuf,
    /// The log file the torrc configures; its tail goes into errors.
    pub log_file: PathBuf,
    /// Where the launching process's stdout/stderr go (config errors land
    /// here before the log file is open).
    pub launch_output: PathBuf,
    /// Words put before the tor command, e.g. `ip netns exec NS`; empty to
    /// run on the host.
    pub command_prefix: Vec<OsString>,
    /// How long the launch may take before it counts as failed.
    pub timeout: Duration,
}

impl TorLaunch {
    /// A launch with default binary, no prefix and a 60 s timeout.
    pub fn new(name: &str, torrc: PathBuf, pid_file: PathBuf, log_file: PathBuf) -> Self {
        let launch_output = torrc.with_extension("launch.log");
        TorLaunch {
            name: name.to_string(),
            tor_binary: PathBuf::from("tor"),
            torrc,
            pid_file,
            log_file,
            launch_output,
            command_prefix: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A running tor daemon that we started (or found by its pid file).
#[derive(Debug, Clone)]
pub struct TorProcess {
    name: String,
    id: ProcessId,
    log_file: PathBuf,
}

impl TorProcess {
    /// Starts `tor -f TORRC --RunAsDaemon 1 --PidFile PID` and returns once
    /// the daemon's pid file names a live process.
    pub async fn start(launch: &TorLaunch) -> Result<TorProcess> {
        let fail = |detail: String| {
            let mut tail = log_tail(&launch.launch_output, LOG_TAIL_LINES);
            let log = log_tail(&launch.log_file, LOG_TAIL_LINES);
            if !log.is_empty() {
                tail = format!("{tail}\n{log}");
            }
            Error::StartFailed {
                name: launch.name.clone(),
                detail,
                log: launch.log_file.clone(),
                tail,
            }
        };
        match std::fs::remove_file(&launch.pid_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::File {
                    action: "remove stale pid file",
                    path: launch.pid_file.clone(),
                    source,
                })
            }
        }
        let out = std::fs::File::create(&launch.launch_output).map_err(|source| Error::File {
            action: "create",
            path: launch.launch_output.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| Error::File {
            action: "duplicate handle of",
            path: launch.launch_output.clone(),
            source,
        })?;
        let mut words: Vec<OsString> = launch.command_prefix.clone();
        words.push(launch.tor_binary.clone().into_os_string());
        words.extend([
            OsString::from("-f"),
            launch.torrc.clone().into_os_string(),
            "--RunAsDaemon".into(),
            "1".into(),
            "--PidFile".into(),
            launch.pid_file.clone().into_os_string(),
        ]);
        let program = words.remove(0);
        let mut child = clean_environment(&mut tokio::process::Command::new(&program))
            .args(&words)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.to_string_lossy().into_owned(),
                source,
            })?;
        let status = tokio::time::timeout(launch.timeout, child.wait())
            .await
            .map_err(|_| {
                fail(format!(
                    "the launching tor did not return within {:?}",
                    launch.timeout
                ))
            })?
            .map_err(|e| fail(format!("waiting for the launching tor failed: {e}")))?;
        if !status.success() {
            return Err(fail(format!("tor exited with {status} during start")));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = read_pid_file(&launch.pid_file)? {
                break pid;
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "no pid file {} appeared",
                    launch.pid_file.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let id = ProcessId::of_pid(pid)
            .ok_or_else(|| fail(format!("the daemon (pid {pid}) exited right after start")))?;
        Ok(TorProcess {
            name: launch.name.clone(),
            id,
            log_file: launch.log_file.clone(),
        })
    }

    /// Re-attaches to a process known by its identity (e.g. from a state file).
    pub fn attach(name: &str, id: ProcessId, log_file: PathBuf) -> TorProcess {
        TorProcess {
            name: name.to_string(),
            id,
            log_file,
        }
    }

    /// Our name for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its identity.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.id.pid
    }

    /// Its log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// True while it runs.
    pub fn is_alive(&self) -> bool {
        self.id.is_alive()
    }

    /// `Err(Died)` with the tail of its log when it no longer runs.
    pub fn check_alive(&self) -> Result<()> {
        if self.is_alive() {
            return Ok(());
        }
        Err(Error::Died {
            name: self.name.clone(),
            pid: self.id.pid,
            log: self.log_file.clone(),
            tail: log_tail(&self.log_file, LOG_TAIL_LINES),
        })
    }

    /// SIGTERM, then SIGKILL after `grace`. Blocks the calling thread.
    pub fn stop(&self, grace: Duration) -> Result<StopOutcome> {
        self.id.stop(grace)
    }
}

/// How to start a foreground program in the background (e.g. Onionbalance).
#[derive(Debug, Clone)]
pub struct ChildLaunch {
    /// Our name for it, used in errors.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments (never secrets: argv is world-readable).
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory, if not ours.
    pub current_dir: Option<PathBuf>,
    /// Where its stdout and stderr go.
    pub log_file: PathBuf,
    /// Where we write its pid.
    pub pid_file: PathBuf,
    /// Words put before the command (e.g. `ip netns exec NS`).
    pub command_prefix: Vec<OsString>,
}

/// Starts `launch` as our child in its own process group, writes its pid
/// file, and reaps it in a background task when it exits. Returns as soon as
/// it has been spawned; use [`ProcessId::is_alive`] to watch it.
pub fn spawn_background(launch: &ChildLaunch) -> Result<ProcessId> {
    let out = std::fs::File::create(&launch.log_file).map_err(|source| Error::File {
        action: "create",
        path: launch.log_file.clone(),
        source,
    })?;
    let err = out.try_clone().map_err(|source| Error::File {
        action: "duplicate handle of",
        path: launch.log_file.clone(),
        source,
    })?;
    let mut words: Vec<OsString> = launch.command_prefix.clone();
    words.push(launch.program.clone().into_os_string());
    words.extend(launch.args.iter().cloned());
    let program = words.remove(0);
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&words)
        .envs(launch.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    if let Some(dir) = &launch.current_dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    let pid = child.id().ok_or_else(|| Error::StartFailed {
        name: launch.name.clone(),
        detail: "it exited before its pid could be read".to_string(),
        log: launch.log_file.clone(),
        tail: log_tail(&launch.log_file, LOG_TAIL_LINES),
    })?;
    let id = ProcessId::of_pid(pid).ok_or_else(|| Error::StartFailed {
        name: launch.name.clone(),
        detail: format!("pid {pid} exited right after start"),
        log: launch.log_file.clone(),
        tail: log_tail(&launch.log_file, LOG_TAIL_LINES),
    })?;
    std::fs::write(&launch.pid_file, format!("{pid}\n")).map_err(|source| Error::File {
        action: "write",
        path: launch.pid_file.clone(),
        source,
    })?;
    tokio::spawn(async move {
        // Reap the child so it never lingers as a zombie.
        let _ = child.wait().await;
    });
    Ok(id)
}

/// The only variables of the node's environment a tor child gets (when set): where to
/// find programs, the home directory (`~` in paths) and the time zone (log times).
pub const TOR_ENVIRONMENT: &[&str] = &["PATH", "HOME", "TZ"];

/// Give `cmd` a clean environment: nothing of ours but [`TOR_ENVIRONMENT`], and none of
/// the variables set on `cmd` so far.
///
/// Under systemd the node's environment carries `CREDENTIALS_DIRECTORY` (where the
/// master-key passphrase lies), `NOTIFY_SOCKET`, the invocation id and whatever the
/// operator set: a tor that inherited them would hand the passphrase's location to any
/// code that ran inside tor, and nothing in them is tor's business.
pub fn clean_environment(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    cmd.env_clear();
    for key in TOR_ENVIRONMENT {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd
}

/// Spawn a tor child from `cmd`: with a [`clean_environment`], and without the caller's
/// *ambient* capabilities.
///
/// Under systemd, `AmbientCapabilities=CAP_NET_ADMIN` (which the node needs for its
/// WireGuard interface) puts the capability in the ambient set, and Linux passes the
/// ambient set on to every program the process executes: tor would run with
/// CAP_NET_ADMIN too. Capabilities belong to threads, so the child is spawned from a
/// short-lived thread whose ambient set is cleared first; the node's own threads keep
/// theirs. Needs a tokio runtime (the child is a `tokio::process::Child`).
pub fn spawn_tor_child(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    clean_environment(cmd);
    let handle = tokio::runtime::Handle::current();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _runtime = handle.enter();
            // Fails only on kernels without ambient capabilities (before 4.3), where there
            // is nothing to clear.
            let _ = rustix::thread::clear_ambient_capability_set();
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_identity_and_dead_pid() {
        let me = ProcessId::of_pid(std::process::id()).unwrap();
        assert!(me.is_alive());
        let recycled = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(
            !recycled.is_alive(),
            "another start time is another process"
        );
    }

    #[tokio::test]
    async fn background_child_is_stopped_by_pid() {
        let dir = tempfile::tempdir().unwrap();
        let launch = ChildLaunch {
            name: "sleeper".into(),
            program: "sleep".into(),
            args: vec!["60".into()],
            env: vec![],
            current_dir: None,
            log_file: dir.path().join("sleep.log"),
            pid_file: dir.path().join("sleep.pid"),
            command_prefix: vec![],
        };
        let id = spawn_background(&launch).unwrap();
        assert_eq!(read_pid_file(&launch.pid_file).unwrap(), Some(id.pid));
        assert!(id.is_alive());
        let outcome = tokio::task::spawn_blocking(move || id.stop(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, StopOutcome::Terminated);
        assert!(!id.is_alive());
        assert_eq!(
            id.stop(Duration::from_secs(1)).unwrap(),
            StopOutcome::AlreadyGone
        );
    }

    #[tokio::test]
    async fn sigterm_ignoring_child_gets_killed() {
        let dir = tempfile::tempdir().unwrap();
        let launch = ChildLaunch {
            name: "stubborn".into(),
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "trap '' TERM; echo ready; sleep 60 & wait".into(),
            ],
            env: vec![],
            current_dir: None,
            log_file: dir.path().join("s.log"),
            pid_file: dir.path().join("s.pid"),
            command_prefix: vec![],
        };
        let id = spawn_background(&launch).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&launch.log_file)
            .unwrap_or_default()
            .contains("ready")
        {
            assert!(Instant::now() < deadline, "shell never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let outcome = tokio::task::spawn_blocking(move || id.stop(Duration::from_millis(300)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, StopOutcome::Killed);
    }

    #[tokio::test]
    async fn tor_with_bad_torrc_reports_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let torrc = dir.path().join("torrc");
        std::fs::write(&torrc, "NoSuchOption 1\n").unwrap();
        let launch = TorLaunch::new(
            "broken tor",
            torrc,
            dir.path().join("tor.pid"),
            dir.path().join("notice.log"),
        );
        match TorProcess::start(&launch).await {
            Err(Error::StartFailed { tail, name, .. }) => {
                assert_eq!(name, "broken tor");
                assert!(tail.contains("NoSuchOption"), "tail was: {tail}");
            }
            Err(Error::Spawn { .. }) => eprintln!("tor not installed; skipped"),
            other => panic!("expected StartFailed, got {other:?}"),
        }
    }

    /// The variables of `pid`'s environment, from `/proc/PID/environ`.
    fn environ(pid: u32) -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap()
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// A tor child gets none of the node's environment but [`TOR_ENVIRONMENT`]: above all
    /// not `CREDENTIALS_DIRECTORY`, where systemd put the master-key passphrase. (The
    /// variables are set on the command here, standing in for the node's own
    /// environment: setting them on this multi-threaded test process would race.)
    #[tokio::test]
    async fn a_tor_child_gets_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new("sleep");
        cmd.arg("30")
            .env("CREDENTIALS_DIRECTORY", dir.path())
            .env("NOTIFY_SOCKET", "/run/systemd/notify")
            .env("RB_DECOY", "1")
            .kill_on_drop(true);
        let mut child = spawn_tor_child(&mut cmd).unwrap();
        let env = environ(child.id().unwrap());
        let _ = child.kill().await;
        for v in &env {
            let key = v.split('=').next().unwrap_or("");
            assert!(
                TOR_ENVIRONMENT.contains(&key),
                "tor inherited {v:?}; its whole environment: {env:?}"
            );
        }
        if let Some(path) = std::env::var_os("PATH") {
            let want = format!("PATH={}", path.to_string_lossy());
            assert!(env.contains(&want), "PATH is kept: {env:?}");
        }
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, (1..=30).map(|i| format!("l{i}\n")).collect::<String>()).unwrap();
        let t = log_tail(&p, 3);
        assert_eq!(t, "l28\nl29\nl30");
        assert_eq!(log_tail(&dir.path().join("none"), 3), "");
    }
}
