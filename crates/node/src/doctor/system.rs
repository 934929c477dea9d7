//! The real machine behind [`Env`].

use super::{Env, FileInfo};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// How long a TCP connection or the admin endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// This machine, as the checks see it.
pub struct System {
    rt: tokio::runtime::Runtime,
}

impl System {
    /// The machine, with a small runtime of its own to ask the admin endpoint.
    pub fn new() -> crate::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| crate::Error::Io {
                action: "cannot start the async runtime for",
                path: "doctor".into(),
                source,
            })?;
        Ok(Self { rt })
    }
}

impl Env for System {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn run(&self, program: &Path, args: &[&str]) -> std::io::Result<String> {
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!("exited with {}", out.status)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn file(&self, path: &Path) -> Option<FileInfo> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileInfo {
            mode: m.mode(),
            uid: m.uid(),
        })
    }

    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn status(&self, admin: SocketAddr, cookie: &Path) -> Option<serde_json::Value> {
        let body = self
            .rt
            .block_on(async {
                tokio::time::timeout(TIMEOUT, crate::admin::status(admin, cookie)).await
            })
            .ok()?
            .ok()?;
        serde_json::from_str(&body).ok()
    }

    fn can_bind(&self, addr: SocketAddr) -> bool {
        TcpListener::bind(addr).is_ok()
    }

    fn can_connect(&self, host: &str, port: u16) -> bool {
        (host, port)
            .to_socket_addrs()
            .map(|mut a| a.any(|a| TcpStream::connect_timeout(&a, TIMEOUT).is_ok()))
            .unwrap_or(false)
    }

    fn free_bytes(&self, path: &Path) -> Option<u64> {
        let s = rustix::fs::statvfs(path).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }
}
