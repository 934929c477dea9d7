//! A throw-away offline tor for control-port cross-checks.

use rustbalance_tor::control::ControlClient;
use rustbalance_tor::process::{TorLaunch, TorProcess};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct OfflineTor {
    proc: TorProcess,
    dir: PathBuf,
}

impl OfflineTor {
    /// Start tor with no network, a control port on 127.0.0.1 (port chosen
    /// by tor, read back from ControlPortWriteToFile) and cookie auth.
    pub async fn start(base: &Path) -> OfflineTor {
        let dir = base.join("tor");
        std::fs::create_dir_all(&dir).unwrap();
        let torrc = dir.join("torrc");
        std::fs::write(
            &torrc,
            format!(
                "DataDirectory {d}\nDisableNetwork 1\nSocksPort 0\nControlPort 127.0.0.1:auto\n\
                 ControlPortWriteToFile {d}/control-port\nCookieAuthentication 1\n\
                 PidFile {d}/tor.pid\nRunAsDaemon 1\nLog notice file {d}/notice.log\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let launch = TorLaunch::new(
            "offline",
            torrc,
            dir.join("tor.pid"),
            dir.join("notice.log"),
        );
        let proc = TorProcess::start(&launch)
            .await
            .expect("start tor (apt-get install tor)");
        OfflineTor { proc, dir }
    }

    pub async fn control(&self) -> ControlClient {
        let f = self.dir.join("control-port");
        for _ in 0..100 {
            if let Ok(s) = std::fs::read_to_string(&f) {
                if let Some(a) = s.trim().strip_prefix("PORT=") {
                    let addr: SocketAddr = a.parse().unwrap();
                    return ControlClient::connect_authenticated(addr).await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tor wrote no control-port file");
    }

    pub fn stop(&self) {
        self.proc.stop(Duration::from_secs(5)).unwrap();
    }
}
