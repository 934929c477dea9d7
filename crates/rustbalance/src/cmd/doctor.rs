//! `rustbalance doctor --config FILE`: print what [`rustbalance_node::doctor`]
//! finds, as text or JSON. Exit status 0 only when no check fails.

use anyhow::{bail, Result};
use rustbalance_node::doctor::{diagnose, Finding, System, Verdict};
use rustbalance_node::Config;
use std::path::Path;

/// Print `findings` as text or JSON.
fn print(findings: &[Finding], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(findings)?);
        return Ok(());
    }
    for f in findings {
        let v = match f.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Skip => "skip",
            Verdict::Fail => "FAIL",
        };
        println!("{v}  {:<7} {}", f.check, f.what);
        if let Some(fix) = &f.fix {
            println!("      {:<7} fix: {fix}", "");
        }
    }
    Ok(())
}

pub fn run(config: &Path, json: bool) -> Result<()> {
    let cfg = Config::load(config)?;
    let findings = diagnose(&cfg, &System::new()?);
    print(&findings, json)?;
    let failed = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    if failed > 0 {
        bail!("{failed} problem(s) found; each FAIL line above says how to fix it");
    }
    Ok(())
}
