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
    /// Control port, as reachable from the host.
    pub control: Option<SocketAddr>,
    /// SOCKS port, as reachable from the host.
    pub socks: Option<SocketAddr>,
    /// Every address it listens on (inside its namespace, if any).
    pub listens: Vec<SocketAddr>,
    /// Its log file.
    pub log_file: PathBuf,
    /// The node namespace it runs in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
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
    /// The lab's network namespace, if it is namespaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Node hosts (namespaced labs), by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_hosts: Vec<crate::NodeHost>,
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
                control: Some(self.reach(n.control())),
                socks: n
                    .socks_port
                    .map(|p| self.reach(SocketAddr::from((n.ip, p)))),
                listens: n.listens(),
                log_file: self.layout.log_file(&n.name),
                netns: self.state.placement.netns().map(String::from),
            });
        }
        for r in records.iter().filter(|r| !r.role.is_core()) {
            processes.push(ProcessStatus {
                name: r.name.clone(),
                role: r.role,
                pid: Some(r.id.pid),
                alive: r.id.is_alive(),
                control: r.control.map(|a| self.reach(a)),
                socks: r.socks.map(|a| self.reach(a)),
                listens: r.listens.clone(),
                log_file: r.log_file.clone(),
                netns: r
                    .netns
                    .clone()
                    .or_else(|| self.state.placement.netns().map(String::from)),
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
            netns: self.state.placement.netns().map(String::from),
            node_hosts: self.node_hosts()?,
        })
    }
}
