//! What the benchmark programs (`examples/`) share: their `--name value`
//! arguments, the machine they ran on, and rounding.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The `--name value` flags of the lab benchmark programs.
pub struct BenchArgs(Vec<String>);

impl BenchArgs {
    /// This process's arguments.
    pub fn from_env() -> Self {
        BenchArgs(std::env::args().collect())
    }

    /// Every value given to `--name` (a flag may repeat).
    pub fn values(&self, name: &str) -> Vec<String> {
        self.0
            .windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].clone())
            .collect()
    }

    /// The first value of `--name`.
    pub fn value(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }

    /// `--name N` parsed, or `default`.
    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.value(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// `--name SECONDS`, or `default` seconds.
    pub fn secs(&self, name: &str, default: u64) -> Duration {
        Duration::from_secs(self.number(name, default))
    }

    /// Whether the bare flag `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// `--name PATH`, if given.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.value(name).map(PathBuf::from)
    }

    /// The rustbalance binary the nodes run: `--bin`, by default `target/release/rustbalance`,
    /// made absolute (nodes in a namespace start in another directory: a relative path
    /// made every node fail with "No such file or directory").
    pub fn bin(&self) -> PathBuf {
        let p = PathBuf::from(
            self.value("--bin")
                .unwrap_or_else(|| "target/release/rustbalance".into()),
        );
        std::path::absolute(&p).unwrap_or(p)
    }

    /// This process's arguments, checked: none but `with_value` flags (each with its
    /// value) and `bare` ones, and `--bin` naming an existing file; with that binary's
    /// absolute path.
    pub fn checked(with_value: &[&str], bare: &[&str]) -> anyhow::Result<(BenchArgs, PathBuf)> {
        let b = BenchArgs::from_env();
        let unknown = b.unknown(with_value, bare);
        anyhow::ensure!(unknown.is_empty(), "unknown argument {:?}", unknown[0]);
        let bin = b.path("--bin").unwrap_or_default();
        anyhow::ensure!(bin.is_file(), "--bin must name the rustbalance binary");
        let bin = bin.canonicalize()?;
        Ok((b, bin))
    }

    /// Arguments that are neither a known flag nor a known flag's value.
    pub fn unknown(&self, with_value: &[&str], bare: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.0.iter().skip(1);
        while let Some(a) = it.next() {
            if with_value.contains(&a.as_str()) {
                it.next();
            } else if !bare.contains(&a.as_str()) {
                out.push(a.clone());
            }
        }
        out
    }
}

/// A progress line on stderr, stamped with the time.
pub fn log(msg: impl AsRef<str>) {
    eprintln!(
        "[{}] {}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        msg.as_ref()
    );
}

/// Seconds rounded to one decimal.
pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The median of the finite values (NaN if there are none).
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default()
}

/// Number of CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// A benchmark directory: `--work DIR` (created), else a temporary one
/// (kept alive by the returned guard).
pub fn work_dir(
    work: Option<PathBuf>,
    prefix: &str,
) -> std::io::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match work {
        Some(w) => {
            std::fs::create_dir_all(&w)?;
            Ok((w, None))
        }
        None => {
            let t = tempfile::Builder::new().prefix(prefix).tempdir()?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

/// `12.3 s` for a JSON number of seconds, `—` for anything else (not measured).
pub fn fmt_s(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.1} s"),
        None => "—".into(),
    }
}

/// A benchmark's work directory (`work`, or a fresh temporary one named `prefix…`, kept
/// alive by the returned guard), its `lab/` subdirectory emptied, and the JSON output
/// started with the machine (cores, CPU, load). Logs where the lab goes.
pub fn bench_start(
    work: Option<PathBuf>,
    prefix: &str,
) -> std::io::Result<(PathBuf, Option<tempfile::TempDir>, serde_json::Value)> {
    let (work, tmp) = work_dir(work, prefix)?;
    let labdir = work.join("lab");
    if labdir.exists() {
        std::fs::remove_dir_all(&labdir)?;
    }
    log(format!("lab in {} (load {})", labdir.display(), loadavg()));
    let out = serde_json::json!({
        "machine": {"cores": cores(), "cpu": cpu_model(), "load_start": loadavg()},
    });
    Ok((labdir, tmp, out))
}

/// A fresh lab directory `work/name` (an earlier run's is removed first).
pub fn fresh_lab_dir(work: &std::path::Path, name: &str) -> std::io::Result<PathBuf> {
    let dir = work.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(dir)
}

/// Run time of every thread of process `pid`, in seconds (0 if unreadable):
/// `/proc/PID/task/*/schedstat`.
pub fn cpu_secs(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// The lab's start-up phases as [`log`] lines.
pub fn lab_progress(p: &rustbalance_lab::Progress) {
    log(format!(
        "lab: {} ({:.1}s)",
        p.phase,
        p.elapsed.as_secs_f64()
    ))
}

/// Writes a benchmark's JSON output to `path`, when one was asked for (`--json`).
pub fn save_json(path: Option<&std::path::Path>, out: &serde_json::Value) -> std::io::Result<()> {
    if let Some(p) = path {
        let text = serde_json::to_string_pretty(out).map_err(std::io::Error::other)?;
        std::fs::write(p, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_medians() {
        let a = BenchArgs(
            [
                "prog",
                "--runs",
                "3",
                "--tor-line",
                "A 1",
                "--tor-line",
                "B 2",
                "--x",
                "--json",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(a.number("--runs", 1usize), 3);
        assert_eq!(a.number("--missing", 7usize), 7);
        assert_eq!(a.values("--tor-line"), ["A 1", "B 2"]);
        assert!(a.flag("--x"));
        assert_eq!(a.unknown(&["--runs", "--tor-line"], &["--x"]), ["--json"]);
        assert_eq!(median(&[3.0, 1.0, f64::NAN, 2.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert!(median(&[]).is_nan());
        assert_eq!(secs(Duration::from_millis(1249)), 1.2);
    }
}
