//! The userspace WireGuard device (boringtun) runs in a child process of its own, never in
//! the node's process.
//!
//! Why: boringtun keeps its event handlers in a table indexed by file-descriptor number and
//! assumes that no other thread of its process closes descriptors while it opens its UDP
//! sockets. Bringing a device up binds a random port first and re-binds to the configured
//! port right after; when another thread closes a low descriptor in between (a busy
//! multi-threaded daemon does that all the time), defguard_boringtun 0.7.1 indexes past the
//! end of that table (`clear_event_by_fd`) and panics in its control thread. Its control
//! socket still answers "no error", the device is left without sockets and with its lock
//! held, so it neither carries traffic nor can be dropped (dropping it waits forever). The
//! CI run of 2026-12-06 under two CPU hogs hit exactly that; `rbmesh-node churn` (other
//! threads opening and closing descriptors) reproduces it within a few rounds in-process.
//!
//! In a process of its own the device shares its descriptor table with nobody: the child
//! is single-threaded when it creates the device, and after that only boringtun's threads
//! run there. A panic in the child aborts it (its panic hook), so a broken device is a dead
//! process the parent sees, never a silent one. The parent configures it over boringtun's
//! control socket (`/var/run/wireguard/IFNAME.sock`) as before, and the child lives exactly
//! as long as its stdin pipe: when the parent closes it, or dies, the child removes the
//! interface and exits.
//!
//! Every binary that may bring a userspace mesh up calls [`main_if_requested`] first thing
//! in `main`: the child is the same executable (`/proc/self/exe`) started with [`FLAG`].

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use defguard_wireguard_rs::error::WireguardInterfaceError;
use defguard_wireguard_rs::{Userspace, WGApi, WireguardInterfaceApi};

use crate::err::BackendFailure;

/// The first argument that makes a binary the device process of the interface named next.
pub const FLAG: &str = "--rustbalance-wireguard-device";

/// How long the parent waits for the child to report its device created.
const READY_WAIT: Duration = Duration::from_secs(20);

/// How long the parent waits for the child to exit after closing its stdin.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// If this process was started as a device process (`FLAG IFNAME`), run it and return its
/// exit code; else `None` and the binary goes on as usual.
pub fn main_if_requested() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [flag, ifname] if flag == FLAG => Some(run_child(ifname)),
        _ => None,
    }
}

/// The child: create the device, say `ready` (or `error: …`) on stdout, serve until stdin
/// closes, remove the device.
fn run_child(ifname: &str) -> ExitCode {
    // A panic in any of boringtun's threads leaves the device wedged (see the module
    // docs): end the process instead, so that the parent sees it.
    let default_hook = std::panic::take_hook();
    let name = ifname.to_owned();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("wireguard device process for {name:?}: a thread panicked; aborting so that the node sees the device gone");
        std::process::abort();
    }));
    let mut out = std::io::stdout();
    let mut api = match WGApi::<Userspace>::new(ifname) {
        Ok(api) => api,
        Err(e) => return report_failure(&mut out, &e),
    };
    if let Err(e) = api.create_interface() {
        return report_failure(&mut out, &e);
    }
    if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
        let _ = api.remove_interface();
        return ExitCode::FAILURE;
    }
    // Serve until the parent closes the pipe or dies.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    // The crate also clears per-interface DNS settings (we never set any), which fails on
    // hosts with neither systemd-resolved nor resolvconf: that part does not matter.
    match api.remove_interface() {
        Ok(()) | Err(WireguardInterfaceError::DnsError(_)) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wireguard device process for {ifname:?}: removing the interface: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report_failure(out: &mut impl Write, e: &WireguardInterfaceError) -> ExitCode {
    let line = e.to_string().replace('\n', " ");
    let _ = writeln!(out, "error: {line}");
    let _ = out.flush();
    ExitCode::FAILURE
}

/// The parent's handle on a device process.
pub(crate) struct DeviceProcess {
    child: Child,
    /// Closing it tells the child to remove the device and exit.
    stdin: Option<ChildStdin>,
}

impl DeviceProcess {
    /// Start the device process for `ifname` and wait until its device exists.
    pub(crate) fn start(ifname: &str) -> Result<Self, BackendFailure> {
        let mut child = Command::new("/proc/self/exe")
            .args([FLAG, ifname])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| BackendFailure::DeviceProcess(format!("cannot start it: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut process = DeviceProcess { child, stdin };
        let first_line = stdout.map(|out| {
            let (tx, rx) = std::sync::mpsc::channel();
            // The line is read on a thread so that a child that hangs cannot hang us.
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(out).read_line(&mut line);
                let _ = tx.send(line);
            });
            rx.recv_timeout(READY_WAIT)
        });
        match first_line {
            Some(Ok(line)) if line.trim() == "ready" => Ok(process),
            other => {
                // Stopped once, whatever it said: its exit status explains a silent exit.
                let status = process.stop();
                let why = match (other, status) {
                    (Some(Ok(line)), _) if line.starts_with("error: ") => {
                        line["error: ".len()..].trim().to_owned()
                    }
                    (Some(Ok(_)), Some(status)) => {
                        format!("it exited ({status}) before its device was up")
                    }
                    (Some(Ok(_)), None) => "it stopped answering before its device was up".into(),
                    _ => format!("its device was not up after {} s", READY_WAIT.as_secs()),
                };
                Err(BackendFailure::DeviceProcess(why))
            }
        }
    }

    /// `Some(status)` once the child has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The child's pid (for messages).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Close the child's stdin and wait for it to remove the device and exit; kill it (by
    /// its pid, through its handle) if it does not within [`EXIT_WAIT`]. Returns its exit
    /// status when it exited by itself.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_WAIT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for DeviceProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}
