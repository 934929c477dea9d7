//! Onionbalance (Debian's 0.2.2) in the lab: the anchor RustBalance is
//! compared with, on the same network and inputs.
//!
//! [`OnionbalanceSetup::start`] builds the documented layout: a master key
//! from `onionbalance-config`, N instance tors with
//! `HiddenServiceOnionbalanceInstance 1` and an `ob_config` naming the
//! master (written, in a 0700 HiddenServiceDir, before the tor starts: an
//! empty `MasterOnionAddress` crashes tor 0.4.9.11), each instance serving
//! its own [`DemoTarget`], a tor for Onionbalance's control port
//! (bootstrapped first: Onionbalance crashes without a consensus), and
//! `onionbalance --is-testnet` itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustbalance_tor::process::stop_all;
use rustbalance_tor::Torrc;

use crate::err::{file_err, Error, Result};
use crate::state::private_dir;
use crate::{DemoTarget, Lab, LabProcess, LabTor};

/// The Onionbalance daemon.
pub const ONIONBALANCE: &str = "/usr/sbin/onionbalance";
/// Its config generator.
pub const ONIONBALANCE_CONFIG: &str = "/usr/sbin/onionbalance-config";

/// One backend instance.
#[derive(Debug)]
pub struct ObInstance {
    /// Its tor.
    pub tor: LabTor,
    /// Its own onion address (with `.onion`).
    pub address: String,
    /// The HTTP target it serves; bodies read `served by NAME`.
    pub target: DemoTarget,
}

/// A running Onionbalance setup.
#[derive(Debug)]
pub struct OnionbalanceSetup {
    name: String,
    dir: PathBuf,
    master: String,
    instances: Vec<ObInstance>,
    control_tor: LabTor,
    daemon: LabProcess,
    started: Instant,
}

/// Backend instances of a master key, as Onionbalance's documentation sets them up,
/// with the `config.yaml` naming them, and no Onionbalance daemon: what any publisher
/// (Onionbalance, or RustBalance's fetch mode) starts from.
#[derive(Debug)]
pub struct ObBackends {
    /// The setup's directory (master key, config.yaml, HiddenServiceDirs).
    pub dir: PathBuf,
    /// The master key file `onionbalance-config` wrote.
    pub key: PathBuf,
    /// The master address, with `.onion`.
    pub master: String,
    /// The backends, each serving `served by <name>i<N>`.
    pub instances: Vec<ObInstance>,
    /// Onionbalance's `config.yaml` listing them (instance names: their tors' names).
    pub config: PathBuf,
    /// Further master keys the same backends are instances of (tor's `ob_config` takes
    /// several `MasterOnionAddress` lines), each with a `config.yaml` of its own: two
    /// publishers can serve the same backends side by side under two addresses.
    pub more: Vec<ObMaster>,
}

/// One more master key of [`ObBackends`].
#[derive(Debug)]
pub struct ObMaster {
    /// The key file `onionbalance-config` wrote.
    pub key: PathBuf,
    /// The master address, with `.onion`.
    pub master: String,
    /// A `config.yaml` naming this key and every backend.
    pub config: PathBuf,
}

/// An Onionbalance daemon with the tor whose control port it uses, publishing for a
/// `config.yaml` written elsewhere (e.g. by [`ObBackends`]).
#[derive(Debug)]
pub struct ObDaemon {
    control_tor: LabTor,
    daemon: LabProcess,
    started: Instant,
}

/// The `[rend]info` log of instance `inst` of the setup in `dir`.
pub fn rend_log(dir: &Path, inst: &str) -> PathBuf {
    dir.join(format!("{inst}-rend.log"))
}

impl ObBackends {
    /// Starts `instances` backend tors for a new master key in `lab` (`name`: letters
    /// and digits, at most 14) and writes the `config.yaml`; returns once each tor wrote
    /// its hostname (not bootstrapped).
    pub async fn start(lab: &Lab, name: &str, instances: usize) -> Result<Self> {
        Self::start_for(lab, name, instances, 1).await
    }

    /// [`Self::start`] with backends that are instances of `masters` master keys (at
    /// least 1): the first is [`Self::master`], the others are in [`Self::more`].
    pub async fn start_for(
        lab: &Lab,
        name: &str,
        instances: usize,
        masters: usize,
    ) -> Result<Self> {
        Self::start_with(lab, name, instances, masters, &[]).await
    }

    /// [`Self::start_for`] with restricted discovery on every backend: each tor's
    /// `authorized_clients/` holds `auth_lines` (tor `.auth` lines,
    /// `descriptor:x25519:KEY`) as `c0.auth`, `c1.auth`, …, so that its own descriptor
    /// is readable only with one of those clients' keys.
    pub async fn start_with(
        lab: &Lab,
        name: &str,
        instances: usize,
        masters: usize,
        auth_lines: &[String],
    ) -> Result<Self> {
        Self::start_with_options(lab, name, instances, masters, auth_lines, &[]).await
    }

    /// [`Self::start_with`] with `service_options` (torrc `(key, value)` lines, e.g.
    /// tor's PoW defences) after each backend's `HiddenServicePort`.
    pub async fn start_with_options(
        lab: &Lab,
        name: &str,
        instances: usize,
        masters: usize,
        auth_lines: &[String],
        service_options: &[(String, String)],
    ) -> Result<Self> {
        if name.is_empty() || name.len() > 14 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::Name {
                name: name.into(),
                detail: "an Onionbalance setup name is 1 to 14 letters and digits".into(),
            });
        }
        if instances == 0 || masters == 0 {
            return Err(Error::Options(
                "an Onionbalance setup needs at least one instance and one master key".into(),
            ));
        }
        let dir = lab.dir().join("onionbalance").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| file_err("remove", &dir, e))?;
        }
        private_dir(&dir)?;
        let mut keys = Vec::new();
        for m in 0..masters {
            keys.push(generate_master(&dir.join(format!("gen{m}"))).await?);
        }
        let ob_lines: String = keys
            .iter()
            .map(|(_, master)| format!("MasterOnionAddress {master}\n"))
            .collect();

        let mut backends = Vec::new();
        for i in 1..=instances {
            let inst = format!("{name}i{i}");
            let target = DemoTarget::start(&format!("served by {inst}")).await?;
            let hs = dir.join(format!("{inst}-hs"));
            private_dir(&hs)?;
            let ob_config = hs.join("ob_config");
            std::fs::write(&ob_config, &ob_lines).map_err(|e| file_err("write", &ob_config, e))?;
            if !auth_lines.is_empty() {
                let auth = hs.join("authorized_clients");
                private_dir(&auth)?;
                for (c, line) in auth_lines.iter().enumerate() {
                    let f = auth.join(format!("c{c}.auth"));
                    std::fs::write(&f, format!("{line}\n"))
                        .map_err(|e| file_err("write", &f, e))?;
                }
            }
            let mut torrc = Torrc::new()
                .with("HiddenServiceDir", hs.display())?
                .with("HiddenServicePort", format!("80 {}", target.addr()))?;
            for (k, v) in service_options {
                torrc.push(k, v)?;
            }
            let torrc = torrc
                .with("HiddenServiceOnionbalanceInstance", 1)?
                // What the instance did with each introduction (INTRODUCE2 decrypted with
                // which subcredential, or refused): read by tests when a backend is silent.
                .with(
                    "Log",
                    format!("[rend]info file {}", rend_log(&dir, &inst).display()),
                )?;
            let tor = lab.spawn_tor(&inst, &torrc).await?;
            let address = read_hostname(&hs.join("hostname"), &tor).await?;
            backends.push(ObInstance {
                tor,
                address,
                target,
            });
        }
        let mut more = Vec::new();
        for (m, (key, master)) in keys.into_iter().enumerate() {
            let config = match m {
                0 => dir.join("config.yaml"),
                m => dir.join(format!("config-{m}.yaml")),
            };
            write_config(&config, &key, &backends)?;
            more.push(ObMaster {
                key,
                master,
                config,
            });
        }
        let ObMaster {
            key,
            master,
            config,
        } = more.remove(0);
        Ok(ObBackends {
            dir,
            key,
            master,
            instances: backends,
            config,
            more,
        })
    }

    /// Stops the backend tors still running. Blocks the calling thread.
    pub fn stop(&self) -> Result<()> {
        let tors: Vec<_> = self
            .instances
            .iter()
            .filter(|b| b.tor.is_alive())
            .map(|b| b.tor.process_id())
            .collect();
        for id in &tors {
            id.terminate()?;
        }
        stop_all(&tors, Duration::from_secs(10))?;
        Ok(())
    }
}

impl ObDaemon {
    /// Starts a tor for Onionbalance's control port named `NAMEctl`, waits (up to
    /// `timeout`) for it to bootstrap (Onionbalance crashes without a consensus), then
    /// starts `onionbalance --is-testnet -v info` on `config`, named `NAMEob`.
    pub async fn start(lab: &Lab, name: &str, config: &Path, timeout: Duration) -> Result<Self> {
        let control_tor = lab.spawn_tor(&format!("{name}ctl"), &Torrc::new()).await?;
        control_tor.wait_bootstrapped(timeout).await?;
        let ctl = control_tor.control_addr();
        let args: Vec<OsString> = vec![
            "--is-testnet".into(),
            "-s".into(),
            "".into(),
            "-i".into(),
            ctl.ip().to_string().into(),
            "-p".into(),
            ctl.port().to_string().into(),
            "-c".into(),
            config.into(),
            "-v".into(),
            "info".into(),
        ];
        let daemon = lab.spawn_program(&format!("{name}ob"), ONIONBALANCE, &args)?;
        Ok(ObDaemon {
            control_tor,
            daemon,
            started: Instant::now(),
        })
    }

    /// The Onionbalance process.
    pub fn daemon(&self) -> &LabProcess {
        &self.daemon
    }
    /// When Onionbalance was started.
    pub fn started_at(&self) -> Instant {
        self.started
    }

    /// Stops Onionbalance and its tor. Blocks the calling thread.
    pub fn stop(&self) -> Result<()> {
        let daemon = [self.daemon.process_id()];
        let tor = [self.control_tor.process_id()];
        for id in daemon.iter().chain(&tor) {
            id.terminate()?;
        }
        stop_all(&daemon, crate::lab::PROGRAM_GRACE)?;
        stop_all(&tor, Duration::from_secs(10))?;
        Ok(())
    }
}

impl OnionbalanceSetup {
    /// Starts a setup named `name` (letters/digits, at most 14) with
    /// `instances` backends in `lab`, and returns right after Onionbalance
    /// started (see [`Self::wait_master_reachable`]).
    pub async fn start(lab: &Lab, name: &str, instances: usize, timeout: Duration) -> Result<Self> {
        let ObBackends {
            dir,
            master,
            instances: backends,
            config,
            ..
        } = ObBackends::start(lab, name, instances).await?;
        let ObDaemon {
            control_tor,
            daemon,
            started,
        } = ObDaemon::start(lab, name, &config, timeout).await?;
        Ok(OnionbalanceSetup {
            name: name.to_string(),
            dir,
            master,
            instances: backends,
            control_tor,
            daemon,
            started,
        })
    }

    /// The setup's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its directory (master key, config.yaml, HiddenServiceDirs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The master address, with `.onion`.
    pub fn master_address(&self) -> &str {
        &self.master
    }
    /// `http://MASTER/`.
    pub fn master_url(&self) -> String {
        format!("http://{}/", self.master)
    }
    /// The backends.
    pub fn instances(&self) -> &[ObInstance] {
        &self.instances
    }
    /// The tor whose control port Onionbalance uses.
    pub fn control_tor(&self) -> &LabTor {
        &self.control_tor
    }
    /// The Onionbalance process.
    pub fn daemon(&self) -> &LabProcess {
        &self.daemon
    }
    /// When Onionbalance was started.
    pub fn started_at(&self) -> Instant {
        self.started
    }

    /// Waits until `GET` of the master address through the lab client
    /// answers from one of the instances; returns the time from Onionbalance's
    /// start. Fails early if Onionbalance dies.
    pub async fn wait_master_reachable(&self, lab: &Lab, timeout: Duration) -> Result<Duration> {
        let deadline = self.started + timeout;
        let url = self.master_url();
        let mut last = String::from("no attempt yet");
        while Instant::now() < deadline {
            self.daemon.check_alive()?;
            for b in &self.instances {
                b.tor.check_alive()?;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match lab.http_get(&url, left.min(Duration::from_secs(30))).await {
                Ok(r) if r.status == 200 && r.text().starts_with("served by ") => {
                    return Ok(self.started.elapsed());
                }
                Ok(r) => last = format!("HTTP {} {:?}", r.status, r.text()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Timeout {
            what: format!("Onionbalance's master {} to answer", self.master),
            waited: timeout,
            last: format!(
                "{last}; Onionbalance log tail:\n{}",
                rustbalance_tor::process::log_tail(self.daemon.log_file(), 20)
            ),
        })
    }

    /// Stops Onionbalance, its tor and the instances. Blocks the calling thread.
    pub fn stop(&self) -> Result<()> {
        let daemon = [self.daemon.process_id()];
        let tors: Vec<_> = std::iter::once(&self.control_tor)
            .chain(self.instances.iter().map(|b| &b.tor))
            .map(LabTor::process_id)
            .collect();
        for id in daemon.iter().chain(&tors) {
            id.terminate()?;
        }
        stop_all(&daemon, crate::lab::PROGRAM_GRACE)?;
        stop_all(&tors, Duration::from_secs(10))?;
        Ok(())
    }
}

/// Onionbalance's `config.yaml` for one master key and the backends (instance names:
/// their tors' names).
fn write_config(config: &Path, key: &Path, backends: &[ObInstance]) -> Result<()> {
    let mut yaml = format!("services:\n- key: {}\n  instances:\n", key.display());
    for b in backends {
        yaml.push_str(&format!(
            "  - address: {}\n    name: {}\n",
            b.address,
            b.tor.name()
        ));
    }
    std::fs::write(config, yaml).map_err(|e| file_err("write", config, e))
}

/// Runs `onionbalance-config` in `gen`; returns the master key path and the master
/// address (`<address>.onion`).
async fn generate_master(gen: &Path) -> Result<(PathBuf, String)> {
    let out = tokio::process::Command::new(ONIONBALANCE_CONFIG)
        .args([
            "--hs-version",
            "v3",
            "--no-interactive",
            "-n",
            "2",
            "--output",
        ])
        .arg(gen)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Helper {
            program: ONIONBALANCE_CONFIG.into(),
            status: format!("cannot start: {e}"),
            output: String::new(),
        })?;
    if !out.status.success() {
        return Err(Error::Helper {
            program: ONIONBALANCE_CONFIG.into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let entries = std::fs::read_dir(gen).map_err(|e| file_err("list", gen, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "key") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                let master = format!("{stem}.onion");
                return Ok((path.clone(), master));
            }
        }
    }
    Err(Error::Helper {
        program: ONIONBALANCE_CONFIG.into(),
        status: "wrote no <master>.key".into(),
        output: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Waits (up to 30 s) for tor to write the onion service's hostname file.
async fn read_hostname(path: &Path, tor: &LabTor) -> Result<String> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            let s = s.trim();
            if s.ends_with(".onion") {
                return Ok(s.to_string());
            }
        }
        tor.check_alive()?;
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(Error::Timeout {
                what: format!("{} to write {}", tor.name(), path.display()),
                waited: Duration::from_secs(30),
                last: "no hostname file".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
