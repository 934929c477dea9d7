//! Node hosts of a namespaced lab: one network namespace per RustBalance
//! node, attached to the lab bridge, which can be cut off and healed.
//!
//! ```text
//! add_node_host ─▶ attached ─ cut ─▶ cut off (bridge port down) ─ heal ─▶ attached
//!                        └──────────── stop: processes stopped, namespace deleted
//! ```

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;

use super::{Lab, LabProcess, PROGRAM_GRACE};
use crate::err::{file_err, Error, Result};
use crate::netns::{self, NodeHost};
use crate::state::{check_name, private_dir, read_json, write_json};

impl Lab {
    /// `addr` as reachable from the host (see [`crate::Placement::host_view`]).
    pub(super) fn reach(&self, addr: SocketAddr) -> SocketAddr {
        self.state.placement.host_view(self.state.block, addr)
    }

    /// In a namespaced lab whose namespace exists, makes sure this process
    /// forwards every lab listener (core and extra tors) to the host.
    pub(crate) fn ensure_portal(&self) -> Result<()> {
        let Some(ns) = self.state.placement.netns() else {
            return Ok(());
        };
        if !netns::exists(ns) {
            return Ok(());
        }
        let mut targets: Vec<SocketAddr> =
            self.state.nodes.iter().flat_map(|n| n.listens()).collect();
        for r in self.layout.records()? {
            if r.netns.is_none() {
                targets.extend(r.listens);
            }
        }
        let pairs: Vec<(SocketAddr, SocketAddr)> = targets
            .into_iter()
            .filter(|t| self.reach(*t) != *t)
            .map(|t| (self.reach(t), t))
            .collect();
        netns::portal::forward(ns, &pairs, &self.state.block.to_string())
    }

    /// Deletes the namespaces of a namespaced lab (nodes first), stopping
    /// whatever still runs in them, and closes the portal.
    pub(super) fn teardown_netns(&self) -> Result<()> {
        let Some(ns) = self.state.placement.netns() else {
            return Ok(());
        };
        for host in self.node_hosts()? {
            netns::remove(&host.netns, PROGRAM_GRACE)?;
            let path = self.layout.node_host(&host.name);
            std::fs::remove_file(&path).map_err(|e| file_err("remove", &path, e))?;
        }
        // Node namespaces not recorded (a crash between `ip netns add` and
        // the record): they carry the lab's prefix.
        for other in netns::list(ns).into_iter().filter(|n| n != ns) {
            netns::remove(&other, PROGRAM_GRACE)?;
        }
        netns::portal::close(ns);
        netns::remove(ns, PROGRAM_GRACE)
    }

    fn lab_netns(&self, what: &str) -> Result<&str> {
        let ns = self
            .state
            .placement
            .netns()
            .ok_or_else(|| Error::NotNamespaced { what: what.into() })?;
        if !netns::exists(ns) {
            return Err(Error::NotRunning {
                dir: self.layout.dir.clone(),
            });
        }
        Ok(ns)
    }

    /// Creates the network namespace of node `name` (`rbl-XXXXXX-NAME`):
    /// `lo` up, `eth0` with its own `10.B.C.H/24` on the lab bridge, default
    /// route via the bridge (`10.B.C.1`); no route leaves the lab. From
    /// there the node reaches the lab's relays (see
    /// [`Self::dir_authority_lines`]) and every other node host, over TCP
    /// and UDP. Needs a started namespaced lab; `name` is 1 to 19 letters
    /// and digits.
    pub fn add_node_host(&self, name: &str) -> Result<NodeHost> {
        let ns = self.lab_netns("add_node_host")?;
        check_name(name)?;
        if self.layout.node_host(name).exists() {
            return Err(Error::Name {
                name: name.to_string(),
                detail: "a node host of that name exists".into(),
            });
        }
        private_dir(&self.layout.netns_dir())?;
        let host = self.claim_host(&format!("node {name}"))?;
        let node = netns::create_node(ns, name, self.state.block, host)?;
        write_json(&self.layout.node_host(name), &node)?;
        Ok(node)
    }

    /// The node host `name` (e.g. after [`Lab::open`]).
    pub fn node_host(&self, name: &str) -> Result<NodeHost> {
        let path = self.layout.node_host(name);
        if !path.exists() {
            return Err(Error::NoNodeHost {
                name: name.to_string(),
            });
        }
        read_json(&path)
    }

    /// Every node host, by name.
    pub fn node_hosts(&self) -> Result<Vec<NodeHost>> {
        let dir = self.layout.netns_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(file_err("list", &dir, e)),
        };
        let mut hosts = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| file_err("list", &dir, e))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                hosts.push(read_json::<NodeHost>(&path)?);
            }
        }
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hosts)
    }

    /// Starts a foreground program inside `host`'s namespace, as part of
    /// the lab (see [`Self::spawn_program`]: pid file, log, working
    /// directory `DIR/nodes/NAME`; stopped by [`Self::stop`]).
    pub fn spawn_program_in(
        &self,
        name: &str,
        host: &NodeHost,
        program: impl AsRef<Path>,
        args: &[OsString],
    ) -> Result<LabProcess> {
        self.lab_netns("spawn_program_in")?;
        if !netns::exists(&host.netns) {
            return Err(Error::NoNodeHost {
                name: host.name.clone(),
            });
        }
        self.spawn_program_with(
            name,
            program.as_ref(),
            args,
            host.exec_prefix.clone(),
            Some(host.netns.clone()),
        )
    }

    /// Cuts node host `name` off: the bridge side of its veth goes down, so
    /// it loses every link (to relays and to other nodes, both ways) while
    /// its processes keep running.
    pub fn cut(&self, name: &str) -> Result<()> {
        let ns = self.lab_netns("cut")?;
        netns::set_port(ns, &self.node_host(name)?, false)
    }

    /// Reattaches a node host cut off with [`Self::cut`].
    pub fn heal(&self, name: &str) -> Result<()> {
        let ns = self.lab_netns("heal")?;
        netns::set_port(ns, &self.node_host(name)?, true)
    }

    /// SIGKILLs every process in node host `name`'s namespace (also those
    /// its programs started themselves, e.g. a node's tor), or, for a lab
    /// process `name`, that process. Returns how many were killed.
    pub fn kill(&self, name: &str) -> Result<usize> {
        if self.layout.node_host(name).exists() {
            return netns::kill_all(&self.node_host(name)?.netns);
        }
        let record = self.layout.record(name);
        if !record.exists() {
            return Err(Error::Name {
                name: name.to_string(),
                detail: "no such node host or lab process".into(),
            });
        }
        let r: crate::state::ProcessRecord = read_json(&record)?;
        Ok(match r.id.kill()? {
            rustbalance_tor::process::StopOutcome::AlreadyGone => 0,
            _ => 1,
        })
    }
}
