//! `deploy/monitoring/`: the alert rules pass `promtool check rules` and their
//! unit tests (`promtool test rules`: each alert fires on the series that should
//! raise it, and a healthy cluster raises none); the Grafana dashboard is valid
//! JSON whose every panel queries something; and every metric a rule or a panel
//! names is one the node's sources register. (The lab case `monitoring` in
//! `lab_netns` checks the same names against live nodes' `/metrics`.)
//!
//! Needs `promtool` (Debian `prometheus`; scripts/test.sh installs it).

use rustbalance_testbed::monitoring::{dir, names_in, used_metrics};
use std::process::Command;

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): apt-get install prometheus (scripts/test.sh does)")
        });
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

#[test]
fn dashboard_panels_all_query_something() {
    let p = dir().join("grafana-dashboard.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let panels = d["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut ids = std::collections::BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "{title}: id repeated"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(
                !names_in(expr).is_empty(),
                "{title}: {expr} uses no metric of ours"
            );
        }
    }
}

/// Every metric a rule or a panel uses appears, as a string literal, in the
/// sources of a crate (where it is registered).
#[test]
fn every_metric_used_is_registered_in_the_sources() {
    let mut src = String::new();
    let crates = dir().join("../../crates");
    let mut stack = vec![crates];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.ends_with("tests") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                src.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let used = used_metrics().unwrap();
    assert!(used.len() > 10, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !src.contains(&format!("\"{m}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used by deploy/monitoring but registered nowhere: {missing:?}"
    );
}
