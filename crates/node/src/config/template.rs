//! The config file `rustbalance init` and `rustbalance lab node-config` write.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What `rustbalance init` and `rustbalance lab node-config` fill in.
#[derive(Debug, Clone)]
pub struct Template {
    /// `node.name`.
    pub name: String,
    /// `node.data_dir`.
    pub data_dir: PathBuf,
    /// `service.master_key` (publisher-eligible nodes).
    pub master_key: Option<PathBuf>,
    /// `service.master_key_passphrase_file` (a sealed master key).
    pub passphrase_file: Option<PathBuf>,
    /// `service.master_address` (needed when there is no master key).
    pub master_address: Option<String>,
    /// `service.virtual_port`.
    pub virtual_port: u16,
    /// `target.url`; `None`: a publisher-only node (no `[target]`, no `[proxy]`).
    pub target: Option<String>,
    /// `admin.listen`.
    pub admin: SocketAddr,
    /// `tor.extra_torrc`.
    pub extra_torrc: Vec<String>,
    /// `tor.testing_network`.
    pub testing_network: bool,
    /// `[cluster]`, for a cluster node.
    pub cluster: Option<ClusterTemplate>,
    /// `[mesh]`, for a cluster node on a WireGuard mesh.
    pub mesh: Option<MeshTemplate>,
}

/// The `[mesh]` part of a [`Template`].
#[derive(Debug, Clone)]
pub struct MeshTemplate {
    /// `mesh.interface`.
    pub interface: String,
    /// `mesh.private_key_file`.
    pub private_key_file: PathBuf,
    /// `mesh.listen_port`.
    pub listen_port: u16,
    /// `mesh.endpoint`.
    pub endpoint: Option<SocketAddr>,
    /// `mesh.peers`: (public key, endpoint).
    pub peers: Vec<(String, SocketAddr)>,
}

/// The `[cluster]` part of a [`Template`].
#[derive(Debug, Clone)]
pub struct ClusterTemplate {
    /// `cluster.secret_file`.
    pub secret_file: PathBuf,
    /// `cluster.listen`.
    pub listen: SocketAddr,
    /// `cluster.seeds`.
    pub seeds: Vec<SocketAddr>,
    /// `cluster.priority`.
    pub priority: u32,
    /// `cluster.cluster_id` (`None`: the default).
    pub cluster_id: Option<String>,
    /// `cluster.quorum` (`None`: the default).
    pub quorum: Option<rustbalance_cluster::QuorumMode>,
    /// `cluster.gossip_signatures` (`None`: the default, `require`).
    pub gossip_signatures: Option<rustbalance_cluster::SignatureMode>,
}

impl ClusterTemplate {
    /// The first node of a cluster (or a cluster of one): no seeds, priority 10, and the
    /// defaults for the cluster id, the quorum and gossip signatures.
    pub fn first_node(secret_file: PathBuf, listen: SocketAddr) -> Self {
        ClusterTemplate {
            secret_file,
            listen,
            seeds: Vec::new(),
            priority: 10,
            cluster_id: None,
            quorum: None,
            gossip_signatures: None,
        }
    }
}

/// TOML quoting of a string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Template {
    fn service_lines(&self) -> String {
        let mut s = String::new();
        if let Some(k) = &self.master_key {
            s += "# Holding the master key makes this node publisher-eligible.\n";
            s += &format!("master_key = {}\n", q(&k.display().to_string()));
        }
        if let Some(p) = &self.passphrase_file {
            s += &format!(
                "master_key_passphrase_file = {}\n",
                q(&p.display().to_string())
            );
        }
        if let Some(a) = &self.master_address {
            s += &format!("master_address = {}\n", q(a));
        }
        s
    }

    /// A complete, commented config file.
    pub fn render(&self) -> String {
        let extra: Vec<String> = self
            .extra_torrc
            .iter()
            .map(|l| format!("  {},", q(l)))
            .collect();
        format!(
            "# RustBalance node configuration; every key is described in docs/CONFIG.md.\n\
             [node]\nname = {name}\ndata_dir = {data}\n\n\
             [service]\n{service}virtual_port = {vport}\n\n\
             {target}\
             [pow]\nenabled = true\nqueue_rate = 250\nqueue_burst = 2500\n\n\
             [intro_dos]\n# enabled = true (unset: on for cluster nodes, off for a single node while [pow] is on)\nrate_per_sec = 25\nburst_per_sec = 200\n\n\
             [tor]\nbinary = \"tor\"\nbootstrap_timeout_secs = 300\ntesting_network = {testing}\nextra_torrc = [\n{extra}\n]\n\n\
             [admin]\nlisten = {admin}\n{cluster}",
            name = q(&self.name),
            data = q(&self.data_dir.display().to_string()),
            service = self.service_lines(),
            vport = self.virtual_port,
            target = match &self.target {
                Some(t) => format!(
                    "[target]\n# tcp://HOST:PORT (local application) or onion://ADDRESS.onion:PORT\nurl = {}\nmode = \"tcp\"\n\n\
                     [proxy]\nlisten = \"127.0.0.1:0\"\nconnect_timeout_secs = 5\nidle_timeout_secs = 300\nhead_timeout_secs = 20\nmax_connections = 4096\n\
                     max_streams_per_circuit = 128\nclose_circuit_over_max_streams = true\nproxy_protocol = \"none\"\nexport_circuit_id = false\n\n",
                    q(t)
                ),
                None => "# No [target]: a publisher-only node. It serves no clients itself and publishes\n\
                         # the master descriptor for the [[backends]] (docs/CONFIG.md).\n\n"
                    .to_string(),
            },
            testing = self.testing_network,
            extra = extra.join("\n"),
            admin = q(&self.admin.to_string()),
            cluster = self.cluster.as_ref().map(|c| format!(
                "\n[cluster]\nsecret_file = {}\nlisten = {}\nseeds = [{}]\npriority = {}\n{}{}{}",
                q(&c.secret_file.display().to_string()),
                q(&c.listen.to_string()),
                c.seeds.iter().map(|s| q(&s.to_string())).collect::<Vec<_>>().join(", "),
                c.priority,
                c.cluster_id.as_ref().map(|i| format!("cluster_id = {}\n", q(i))).unwrap_or_default(),
                c.quorum.map(|m| format!("quorum = {}\n", q(m.as_str()))).unwrap_or_default(),
                c.gossip_signatures.map(|m| format!("gossip_signatures = {}\n", q(m.as_str()))).unwrap_or_default()
            )).unwrap_or_default() + &self.mesh.as_ref().map(|m| format!(
                "\n[mesh]\ninterface = {}\nprivate_key_file = {}\nlisten_port = {}\n{}{}",
                q(&m.interface),
                q(&m.private_key_file.display().to_string()),
                m.listen_port,
                m.endpoint.map(|e| format!("endpoint = {}\n", q(&e.to_string()))).unwrap_or_default(),
                m.peers.iter().map(|(k, e)| format!("\n[[mesh.peers]]\npublic_key = {}\nendpoint = {}\n", q(k), q(&e.to_string()))).collect::<String>()
            )).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod template_test {
    use super::*;
    use crate::Config;

    #[test]
    fn rendered_template_is_valid() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(&key, b"x").unwrap();
        let t = Template {
            name: "n1".into(),
            data_dir: d.path().join("data"),
            master_key: Some(key),
            passphrase_file: None,
            master_address: None,
            virtual_port: 80,
            target: Some("tcp://127.0.0.1:8080".into()),
            admin: "127.0.0.1:9661".parse().unwrap(),
            extra_torrc: vec![
                "TestingTorNetwork 1".into(),
                "DirAuthority a \"quoted\"".into(),
            ],
            testing_network: true,
            cluster: None,
            mesh: None,
        };
        let p = d.path().join("c.toml");
        std::fs::write(&p, t.render()).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.tor.extra_torrc.len(), 2);
        assert!(c.tor.testing_network);
    }

    /// The cluster knobs a template sets come back from the config it renders.
    #[test]
    fn cluster_knobs_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(&key, b"x").unwrap();
        let secret = d.path().join("s");
        std::fs::write(&secret, [7u8; 32]).unwrap();
        let t = Template {
            name: "n1".into(),
            data_dir: d.path().join("data"),
            master_key: Some(key),
            passphrase_file: None,
            master_address: None,
            virtual_port: 80,
            target: Some("tcp://127.0.0.1:8080".into()),
            admin: "127.0.0.1:9661".parse().unwrap(),
            extra_torrc: vec![],
            testing_network: true,
            cluster: Some(ClusterTemplate {
                secret_file: secret,
                listen: "127.0.0.1:7946".parse().unwrap(),
                seeds: vec!["127.0.0.1:7947".parse().unwrap()],
                priority: 10,
                cluster_id: None,
                quorum: Some(rustbalance_cluster::QuorumMode::Majority),
                gossip_signatures: Some(rustbalance_cluster::SignatureMode::Off),
            }),
            mesh: None,
        };
        let p = d.path().join("c.toml");
        std::fs::write(&p, t.render()).unwrap();
        let c = Config::load(&p)
            .unwrap()
            .cluster
            .expect("a [cluster] table");
        assert_eq!(
            c.gossip_signatures,
            Some(rustbalance_cluster::SignatureMode::Off)
        );
        assert_eq!(c.quorum, rustbalance_cluster::QuorumMode::Majority);
    }
}
