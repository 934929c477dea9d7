//! Lab test binaries (`harness = false`): one lab per binary, its
//! scenarios run one after another against it, each reported with its
//! time, and the lab always stopped.
//!
//! ```text
//! main ─▶ runtime ─▶ with_lab ─▶ scenario 1 (own local task: a panic fails it, not the run) ─▶ … ─▶ stop lab ─▶ exit status
//! ```
//!
//! Every scenario gets a clone of the lab handle and runs in its own task
//! (a local one: a panic fails the scenario, not the run) on the one
//! runtime, which lives as long as the lab: nothing a scenario holds is
//! bound to another scenario's runtime. Scenarios use their own
//! service and node names, and stop the processes they started.
//!
//! Arguments: words not starting with `-` select scenarios by substring
//! (none: all); `--shard K/N` keeps every N-th of those, from the K-th (so N
//! processes with K = 1..N run each selected scenario exactly once, each on a lab
//! of its own: scripts/test.sh runs lanes that way); `--list` lists them; other
//! flags (`--test-threads=1`, …) are accepted and ignored. A binary none of whose scenarios is selected
//! boots no lab.

use crate::harness::with_lab;
use anyhow::Result;
use rustbalance_lab::{Lab, LabOptions};
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What a scenario is: an async function of the shared lab (run on the
/// main thread; it need not be `Send`, what it spawns runs on the runtime).
pub type ScenarioFn = fn(Lab) -> Pin<Box<dyn Future<Output = Result<()>>>>;

/// One scenario of a lab test binary.
pub struct Scenario {
    /// Its name (selects it on the command line).
    pub name: &'static str,
    /// The scenario.
    pub run: ScenarioFn,
}

/// Flags that take a value (`--skip NAME`).
const WITH_VALUE: [&str; 3] = ["--skip", "--test-threads", "--shard"];

/// `K/N` of `--shard K/N`, 1 ≤ K ≤ N.
fn parse_shard(v: &str) -> Option<(usize, usize)> {
    let (k, n) = v.split_once('/')?;
    let (k, n) = (k.parse().ok()?, n.parse().ok()?);
    (1..=n).contains(&k).then_some((k, n))
}

/// The scenarios selected by the command-line words in `args`.
fn selected<'a>(scenarios: &'a [Scenario], args: &[String]) -> Result<Vec<&'a Scenario>> {
    let mut words = Vec::new();
    let mut skip = Vec::new();
    let mut shard = (1, 1);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            if let Some(v) = it.next() {
                if a == "--skip" {
                    skip.push(v.as_str());
                } else if a == "--shard" {
                    shard = parse_shard(v).ok_or_else(|| {
                        anyhow::anyhow!("--shard {v}: write K/N with 1 <= K <= N, e.g. 1/2")
                    })?;
                }
            }
        } else if !a.starts_with('-') {
            words.push(a.as_str());
        }
    }
    let (k, n) = shard;
    Ok(scenarios
        .iter()
        .filter(|s| words.is_empty() || words.iter().any(|w| s.name.contains(w)))
        .filter(|s| !skip.iter().any(|w| s.name.contains(w)))
        .enumerate()
        .filter(|(i, _)| i % n == k - 1)
        .map(|(_, s)| s)
        .collect())
}

/// Runs `scenarios` against one lab created with `options` under a
/// temporary directory named after `title`; the exit status says whether
/// all passed.
pub fn run_suite(title: &str, options: LabOptions, scenarios: &[Scenario]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for s in scenarios {
            println!("{}: test", s.name);
        }
        return ExitCode::SUCCESS;
    }
    let chosen = match selected(scenarios, &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{title}: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if chosen.is_empty() {
        println!("{title}: no scenario selected; no lab started");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{title}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t0 = Instant::now();
    let (results, lab_result) = rt.block_on(run_all(title, options, &chosen));
    let failed = results.iter().filter(|r| r.1.is_err()).count();
    println!("\n== {title}: {} scenarios", results.len());
    for (name, r, took) in &results {
        match r {
            Ok(()) => println!("   ok      {name} ({:.1} s)", took.as_secs_f64()),
            Err(e) => println!("   FAILED  {name} ({:.1} s): {e}", took.as_secs_f64()),
        }
    }
    if let Err(e) = &lab_result {
        println!("   FAILED  the lab: {e:#}");
    }
    let never_ran = chosen.len() - results.len();
    println!(
        "== {title}: {} passed, {} failed, {never_ran} not run; {:.1} s in all",
        results.len() - failed,
        failed,
        t0.elapsed().as_secs_f64()
    );
    if failed == 0 && never_ran == 0 && lab_result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

type Outcome = (&'static str, std::result::Result<(), String>, Duration);

async fn run_all(
    title: &str,
    options: LabOptions,
    chosen: &[&Scenario],
) -> (Vec<Outcome>, Result<()>) {
    let dir = match tempfile::Builder::new()
        .prefix(&format!("rb-{title}-"))
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => return (Vec::new(), Err(e.into())),
    };
    let mut results = Vec::new();
    let lab = with_lab(
        dir.path(),
        options,
        |p| eprintln!("[{title}] [{:5.1}s] {}", p.elapsed.as_secs_f64(), p.phase),
        async |lab, started| {
            eprintln!(
                "[{title}] lab usable after {:.1}s",
                started.report.total.as_secs_f64()
            );
            for s in chosen {
                eprintln!("\n[{title}] -- scenario {} --", s.name);
                let t = Instant::now();
                let local = tokio::task::LocalSet::new();
                let task = local.spawn_local((s.run)(lab.clone()));
                let r = match local.run_until(task).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(e) => Err(format!("panicked: {e}")),
                };
                let took = t.elapsed();
                match &r {
                    Ok(()) => eprintln!("[{title}] ok: {} ({:.1} s)", s.name, took.as_secs_f64()),
                    Err(e) => eprintln!(
                        "[{title}] FAILED: {} ({:.1} s): {e}",
                        s.name,
                        took.as_secs_f64()
                    ),
                }
                results.push((s.name, r, took));
            }
            Ok(())
        },
    )
    .await;
    // For a look after the run: `RUSTBALANCE_LAB_KEEP_ON_FAILURE=1` keeps the lab directory
    // (every tor's and node's log; the processes are stopped) when a scenario failed.
    let failed = lab.is_err() || results.iter().any(|(_, r, _)| r.is_err());
    if failed && std::env::var_os("RUSTBALANCE_LAB_KEEP_ON_FAILURE").is_some() {
        eprintln!("[{title}] lab directory kept: {}", dir.keep().display());
    }
    (results, lab)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: Lab) -> Pin<Box<dyn Future<Output = Result<()>>>> {
        Box::pin(async { Ok(()) })
    }

    #[test]
    fn selection_by_words_and_skip() {
        let all = [
            Scenario {
                name: "cluster_failover",
                run: nothing,
            },
            Scenario {
                name: "single_node",
                run: nothing,
            },
        ];
        let names = |args: &[&str]| -> Vec<&str> {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            selected(&all, &args)
                .unwrap()
                .iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(
            names(&["--test-threads", "1"]),
            ["cluster_failover", "single_node"]
        );
        assert_eq!(names(&["--test-threads=1", "single"]), ["single_node"]);
        assert_eq!(names(&["--skip", "single"]), ["cluster_failover"]);
        assert!(names(&["unit_test_name"]).is_empty());
    }

    #[test]
    fn shards_run_every_selected_scenario_once() {
        let names = ["a1", "b2", "a3", "b4", "a5"];
        let all: Vec<Scenario> = names
            .iter()
            .map(|n| Scenario {
                name: n,
                run: nothing,
            })
            .collect();
        let pick = |args: &[&str]| -> Vec<&str> {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            selected(&all, &args)
                .unwrap()
                .iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(pick(&["--shard", "1/2"]), ["a1", "a3", "a5"]);
        assert_eq!(pick(&["--shard", "2/2"]), ["b2", "b4"]);
        assert_eq!(pick(&["a", "--shard", "2/2"]), ["a3"]);
        assert_eq!(pick(&["--shard", "1/1"]), names);
        for bad in ["0/2", "3/2", "2", "x/y", "1/0"] {
            let args = vec!["--shard".to_string(), bad.to_string()];
            assert!(selected(&all, &args).is_err(), "{bad}");
        }
    }
}
