//! The metrics that `deploy/monitoring/` (alert rules, Grafana dashboard) uses,
//! and the metrics a node's `/metrics` exposes, so that tests can check that
//! every metric a rule or panel names exists: statically against the sources
//! (test `monitoring`) and on live nodes (lab case in `lab_netns`).

use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The files of `deploy/monitoring/` that name metrics.
pub const FILES: [&str; 2] = ["alerts.yml", "grafana-dashboard.json"];

/// `deploy/monitoring/` of this source tree.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring")
}

/// Every `rustbalance_*` identifier in `text` (a metric name: letters, digits, `_`).
pub fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("rustbalance_") {
        // Only at the start of an identifier (not inside `x_rustbalance_...`).
        let starts = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if starts {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Every metric the rules and the dashboard use.
pub fn used_metrics() -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for f in FILES {
        let p = dir().join(f);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        out.extend(names_in(&text));
    }
    Ok(out)
}

/// The metric names in a Prometheus text exposition (sample lines; `# ` lines skipped).
pub fn exposed_metrics(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exposition() {
        let n = names_in("sum(rustbalance_a_total{x=\"y\"}) > x_rustbalance_b and rustbalance_c");
        assert_eq!(
            n.into_iter().collect::<Vec<_>>(),
            ["rustbalance_a_total", "rustbalance_c"]
        );
        let e = exposed_metrics("# HELP a x\n# TYPE a gauge\na 1\nb{l=\"v\"} 2\n\n");
        assert_eq!(e.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }
}
