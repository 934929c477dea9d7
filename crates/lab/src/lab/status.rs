//! What `rustbalance lab status [--json]` shows.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::Lab;
use crate::err::Result;
use crate::state::Role;

/// One process of the lab.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// Name (tor nickname).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Pid, once started.
    pub pid: Option<u32>,
    /// True while it runs.
    pub alive: bool,
    /// Control port.
    pub control: Option<SocketAddr>,
    /// SOCKS port.
    pub socks: Option<SocketAddr>,
    /// Every address it listens on.
    pub listens: Vec<SocketAddr>,
    /// Its log file.
    pub log_file: PathBuf,
}

/// The whole lab.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// Lab directory.
    pub dir: PathBuf,
    /// `127.B.C.0/24`.
    pub block: String,
    /// True when every core process runs.
    pub running: bool,
    /// The client's SOCKS address.
    pub socks: SocketAddr,
    /// Every process, core nodes first (in start order), then extras by name.
    pub processes: Vec<ProcessStatus>,
}

/// What [`Lab::stop`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StopReport {
    /// Names of the processes that were running and were stopped.
    pub stopped: Vec<String>,
}

impl Lab {
    /// The state of every process of the lab.
    pub fn status(&self) -> Result<LabStatus> {
        let records = self.layout.records()?;
        let mut processes = Vec::new();
        for n in &self.state.nodes {
            let rec = records.iter().find(|r| r.name == n.name);
            processes.push(ProcessStatus {
                name: n.name.clone(),
                role: n.role,
                pid: rec.map(|r| r.id.pid),
                alive: rec.is_some_and(|r| r.id.is_alive()),
                control: Some(n.control()),
                socks: n.socks_port.map(|p| SocketAddr::from((n.ip, p))),
                listens: n.listens(),
                log_file: self.layout.log_file(&n.name),
            });
        }
        for r in records.iter().filter(|r| !r.role.is_core()) {
            processes.push(ProcessStatus {
                name: r.name.clone(),
                role: r.role,
                pid: Some(r.id.pid),
                alive: r.id.is_alive(),
                control: r.control,
                socks: r.socks,
                listens: r.listens.clone(),
                log_file: r.log_file.clone(),
            });
        }
        let running = processes
            .iter()
            .filter(|p| p.role.is_core())
            .all(|p| p.alive);
        Ok(LabStatus {
            dir: self.layout.dir.clone(),
            block: self.state.block.to_string(),
            running,
            socks: self.socks_addr(),
            processes,
        })
    }
}
