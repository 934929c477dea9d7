//! Where a node keeps its files, all under `node.data_dir` (0700).

use std::path::{Path, PathBuf};

/// Paths of one node.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `node.data_dir`.
    pub data_dir: PathBuf,
}

impl Layout {
    /// How to run this node's tor: its torrc, control-port file, logs and pid file in
    /// this layout, restarted with backoff from 1 s up to `backoff_max`.
    pub fn tor_spec(
        &self,
        binary: PathBuf,
        backoff_max: std::time::Duration,
    ) -> rustbalance_tor::TorSpec {
        rustbalance_tor::TorSpec {
            binary,
            torrc: self.torrc(),
            control_port_file: self.control_port_file(),
            log_file: self.tor_log(),
            output_file: self.tor_output(),
            pid_file: self.tor_pid(),
            backoff_min: std::time::Duration::from_secs(1),
            backoff_max,
        }
    }

    /// The layout under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Layout {
            data_dir: data_dir.to_path_buf(),
        }
    }
    /// Turbo mode: the files of this node's extra tor number `k` (1..): its own torrc,
    /// tor data directory, instance key, logs and pid file, under `DATA/instance-<k>/`.
    pub fn extra_instance(&self, k: usize) -> Layout {
        Layout::new(&self.data_dir.join(format!("instance-{k}")))
    }
    /// The files of this node's tor `slot`: 0 is the first tor (this layout), then
    /// [`Self::extra_instance`].
    pub fn tor_slot(&self, slot: usize) -> Layout {
        if slot == 0 {
            self.clone()
        } else {
            self.extra_instance(slot)
        }
    }
    /// tor's DataDirectory.
    pub fn tor_dir(&self) -> PathBuf {
        self.data_dir.join("tor")
    }
    /// HiddenServiceDir of the master service (single-node mode).
    pub fn master_hs_dir(&self) -> PathBuf {
        self.data_dir.join("hs-master")
    }
    /// HiddenServiceDir of this node's instance (cluster mode).
    pub fn instance_hs_dir(&self) -> PathBuf {
        self.data_dir.join("hs-instance")
    }
    /// The rendered torrc.
    pub fn torrc(&self) -> PathBuf {
        self.data_dir.join("torrc")
    }
    /// `PORT=...` written by tor.
    pub fn control_port_file(&self) -> PathBuf {
        self.tor_dir().join("control-port")
    }
    /// tor's notice log.
    pub fn tor_log(&self) -> PathBuf {
        self.data_dir.join("tor-notice.log")
    }
    /// tor's second log (`tor.debug_log`), for diagnosis.
    pub fn tor_debug_log(&self) -> PathBuf {
        self.data_dir.join("tor-debug.log")
    }
    /// tor's stdout/stderr.
    pub fn tor_output(&self) -> PathBuf {
        self.data_dir.join("tor-output.log")
    }
    /// Pid file of the tor child.
    pub fn tor_pid(&self) -> PathBuf {
        self.data_dir.join("tor.pid")
    }
    /// The admin endpoint's cookie (0600, new at every start).
    pub fn admin_cookie(&self) -> PathBuf {
        self.data_dir.join("admin.cookie")
    }
    /// Pid file of the RustBalance daemon.
    pub fn daemon_pid(&self) -> PathBuf {
        self.data_dir.join("rustbalance.pid")
    }
    /// The join generation this node is at (`N` or `N SALTHEX`).
    pub fn join_generation(&self) -> PathBuf {
        self.data_dir.join("join-generation")
    }
    /// Mesh peers learned at run time (joins, gossip).
    pub fn mesh_peers(&self) -> PathBuf {
        self.data_dir.join("mesh-peers.json")
    }
    /// Nodes removed from the cluster.
    pub fn mesh_removed(&self) -> PathBuf {
        self.data_dir.join("mesh-removed.json")
    }
    /// Written when this node learns it was removed; it then refuses to start.
    pub fn removed_marker(&self) -> PathBuf {
        self.data_dir.join("removed")
    }
    /// This node's identity key (secret, 0600; see `keystore::identity`).
    pub fn node_identity(&self) -> PathBuf {
        self.data_dir.join("node-identity.key")
    }
    /// This node's member certificate, as issued by the authority (workers: at join).
    pub fn member_cert(&self) -> PathBuf {
        self.data_dir.join("member.cert")
    }
    /// The authority's public key this node trusts (workers: learned at join).
    pub fn authority_key(&self) -> PathBuf {
        self.data_dir.join("authority.pub")
    }
}
