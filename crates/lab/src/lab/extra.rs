//! Extra processes joined to a running lab: tors (onion services, instance
//! tors, Onionbalance's tor) and other programs (Onionbalance).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustbalance_tor::process::{spawn_background, ChildLaunch, StopOutcome};
use rustbalance_tor::{ControlClient, ProcessId, TorProcess, Torrc};

use super::{wait_bootstrapped_at, Lab};
use crate::err::{file_err, Error, Result};
use crate::net::{CONTROL_PORT, EXTRA_HOSTS};
use crate::node::common;
use crate::state::{check_name, private_dir, read_json, write_json, ProcessRecord, Role};

/// A tor started with [`Lab::spawn_tor`].
#[derive(Debug, Clone)]
pub struct LabTor {
    name: String,
    ip: Ipv4Addr,
    control: SocketAddr,
    /// `control` as reachable from the host (the portal in a namespaced lab).
    host_control: SocketAddr,
    socks: Option<SocketAddr>,
    data_dir: PathBuf,
    process: TorProcess,
}

impl LabTor {
    /// Its name (also its nickname and directory name).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its own address (`127.B.C.H`, or `10.B.C.H` in a namespaced lab).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
    /// Its control port, where tor listens (for programs next to it).
    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }
    /// Its control port as reachable from the host (differs from
    /// [`Self::control_addr`] in a namespaced lab: the portal).
    pub fn host_control_addr(&self) -> SocketAddr {
        self.host_control
    }
    /// Its SOCKS port, when the extra torrc lines configured one.
    pub fn socks_addr(&self) -> Option<SocketAddr> {
        self.socks
    }
    /// Its DataDirectory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// Its log file.
    pub fn log_file(&self) -> &Path {
        self.process.log_file()
    }
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
    /// Its pid and start time.
    pub fn process_id(&self) -> ProcessId {
        self.process.id()
    }
    /// True while it runs.
    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
    }
    /// `Err` with the tail of its log when it no longer runs.
    pub fn check_alive(&self) -> Result<()> {
        Ok(self.process.check_alive()?)
    }
    /// An authenticated control connection.
    pub async fn control(&self) -> Result<ControlClient> {
        Ok(ControlClient::connect_authenticated(self.host_control).await?)
    }
    /// Waits until it reports bootstrap 100% (fails early if it dies).
    pub async fn wait_bootstrapped(&self, timeout: Duration) -> Result<()> {
        wait_bootstrapped_at(self.host_control, &self.name, timeout, || {
            self.check_alive()
        })
        .await
    }
    /// Stops it (SIGTERM, SIGKILL after 10 s). Blocks the calling thread.
    pub fn stop(&self) -> Result<StopOutcome> {
        Ok(self.process.stop(Duration::from_secs(10))?)
    }
}

/// A program started with [`Lab::spawn_program`].
#[derive(Debug, Clone)]
pub struct LabProcess {
    name: String,
    id: ProcessId,
    log_file: PathBuf,
}

impl LabProcess {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.id.pid
    }
    /// Its pid and start time.
    pub fn process_id(&self) -> ProcessId {
        self.id
    }
    /// Its stdout/stderr log.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }
    /// True while it runs.
    pub fn is_alive(&self) -> bool {
        self.id.is_alive()
    }
    /// `Err` with the tail of its log when it no longer runs.
    pub fn check_alive(&self) -> Result<()> {
        Ok(TorProcess::attach(&self.name, self.id, self.log_file.clone()).check_alive()?)
    }
    /// Stops it (SIGTERM, SIGKILL after 3 s). Blocks the calling thread.
    pub fn stop(&self) -> Result<StopOutcome> {
        Ok(self.id.stop(super::PROGRAM_GRACE)?)
    }
}

impl Lab {
    /// Claims a host number for an extra process or a node host (`owner`):
    /// the one it had before, else the lowest free one. Claims are files
    /// created with `create_new`, so concurrent claims (also from other
    /// programs) never get the same address.
    pub(super) fn claim_host(&self, owner: &str) -> Result<u8> {
        let name = owner;
        let hosts = self.layout.hosts();
        for h in EXTRA_HOSTS {
            let path = hosts.join(h.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => {
                    std::fs::write(&path, name).map_err(|e| file_err("write", &path, e))?;
                    return Ok(h);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::fs::read_to_string(&path).is_ok_and(|owner| owner == name) {
                        return Ok(h);
                    }
                }
                Err(e) => return Err(file_err("create", &path, e)),
            }
        }
        Err(Error::AddressesExhausted {
            block: self.state.block.to_string(),
            name: name.to_string(),
        })
    }

    /// Refuses a name that is a core node or a running extra process, and
    /// creates its directory (0700).
    pub(super) fn prepare_extra(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        if self.state.nodes.iter().any(|n| n.name == name) {
            return Err(Error::Name {
                name: name.to_string(),
                detail: "it is the name of a core lab node".into(),
            });
        }
        if let Ok(r) = read_json::<ProcessRecord>(&self.layout.record(name)) {
            if r.id.is_alive() {
                return Err(Error::Name {
                    name: name.to_string(),
                    detail: format!("a lab process of that name runs (pid {})", r.id.pid),
                });
            }
        }
        let dir = self.layout.node(name);
        private_dir(&dir)?;
        Ok(dir)
    }

    /// Starts an extra tor joined to the lab: its own DataDirectory
    /// (`DIR/nodes/NAME`, kept across restarts of the same name, so onion
    /// service keys survive), its own address with a control port (in a
    /// namespaced lab: inside the lab namespace, reached through the portal),
    /// a pid file, and `extra` appended to the lab's common torrc lines
    /// (`SocksPort 0` unless `extra` sets a SocksPort). Returns once the
    /// daemon runs; see [`LabTor::wait_bootstrapped`].
    pub async fn spawn_tor(&self, name: &str, extra: &Torrc) -> Result<LabTor> {
        if extra.contains("ControlPort") || extra.contains("DataDirectory") {
            return Err(Error::Options(format!(
                "spawn_tor {name}: the lab sets ControlPort and DataDirectory itself"
            )));
        }
        let dir = self.prepare_extra(name)?;
        let host = self.claim_host(name)?;
        let (block, placement) = (self.state.block, &self.state.placement);
        let ip = placement.listen_ip(block, host);
        placement.check_addr(block, ip)?;
        let mut socks = None;
        for v in extra.values("SocksPort") {
            let first = v.split_whitespace().next().unwrap_or("");
            if first == "0" {
                continue;
            }
            let addr: SocketAddr = first.parse().map_err(|_| {
                Error::Options(format!(
                    "spawn_tor {name}: SocksPort {first:?} must be an explicit IP:PORT on loopback (or the lab bridge)"
                ))
            })?;
            match addr.ip() {
                std::net::IpAddr::V4(v4) => placement.check_addr(block, v4)?,
                std::net::IpAddr::V6(_) => {
                    return Err(Error::AddressNotAllowed {
                        addr: addr.to_string(),
                    })
                }
            }
            socks.get_or_insert(addr);
        }
        let mut torrc = common(&self.layout, &self.state, name, ip)?;
        if !extra.contains("SocksPort") {
            torrc.push("SocksPort", 0)?;
        }
        torrc.extend(extra);
        torrc.write_to(&self.layout.torrc(name))?;
        let control = SocketAddr::from((ip, CONTROL_PORT));
        let mut listens = vec![control];
        listens.extend(socks);
        match placement.netns() {
            None => crate::net::probe_free(&listens, block)?,
            Some(ns) => crate::netns::add_lab_addr(ns, block, host)?,
        }
        let mut launch = rustbalance_tor::TorLaunch::new(
            &format!("tor {name}"),
            self.layout.torrc(name),
            self.layout.pid_file(name),
            self.layout.log_file(name),
        );
        launch.tor_binary = self.state.tor_binary.clone();
        launch.command_prefix = self.state.placement.command_prefix();
        let process = TorProcess::start(&launch).await?;
        write_json(
            &self.layout.record(name),
            &ProcessRecord {
                name: name.to_string(),
                role: Role::Tor,
                id: process.id(),
                ip: Some(ip),
                listens,
                control: Some(control),
                socks,
                log_file: self.layout.log_file(name),
                netns: None,
            },
        )?;
        self.ensure_portal()?;
        Ok(LabTor {
            name: name.to_string(),
            ip,
            control,
            host_control: self.reach(control),
            socks,
            data_dir: dir,
            process,
        })
    }

    /// Starts a foreground program as part of the lab (stopped with it): its
    /// stdout/stderr go to `DIR/nodes/NAME/output.log`, its pid to
    /// `DIR/nodes/NAME/pid`, and it runs in `DIR/nodes/NAME`. `args` are
    /// visible to every local user: never put secrets there.
    pub fn spawn_program(
        &self,
        name: &str,
        program: impl AsRef<Path>,
        args: &[OsString],
    ) -> Result<LabProcess> {
        self.spawn_program_with(
            name,
            program.as_ref(),
            args,
            self.state.placement.command_prefix(),
            None,
        )
    }

    /// [`Self::spawn_program`] with a command prefix and the node namespace
    /// it runs in, if any.
    pub(super) fn spawn_program_with(
        &self,
        name: &str,
        program: &Path,
        args: &[OsString],
        command_prefix: Vec<OsString>,
        netns: Option<String>,
    ) -> Result<LabProcess> {
        let dir = self.prepare_extra(name)?;
        let log_file = dir.join("output.log");
        let launch = ChildLaunch {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: Vec::new(),
            current_dir: Some(dir.clone()),
            log_file: log_file.clone(),
            pid_file: dir.join("pid"),
            command_prefix,
        };
        let id = spawn_background(&launch)?;
        write_json(
            &self.layout.record(name),
            &ProcessRecord {
                name: name.to_string(),
                role: Role::Program,
                id,
                ip: None,
                listens: Vec::new(),
                control: None,
                socks: None,
                log_file: log_file.clone(),
                netns,
            },
        )?;
        Ok(LabProcess {
            name: name.to_string(),
            id,
            log_file,
        })
    }
}
