//! What a lab test prints when a node listed in the master descriptor serves no request
//! (issue 15, "alive, listed and silent"; docs/ELECTION.md): the intro-point lines of the
//! node's tor logs (the notice log and the `tor.debug_log` one, which lab nodes write at
//! `[rend]info`: introductions received, descriptors built, Onionbalance keys refreshed)
//! and of its daemon log.

use rustbalance_node::layout::Layout;
use std::path::Path;

/// Words that mark the lines worth printing, per log.
const NOTICE_WORDS: &[&str] = &["intro", "warn", "rend"];
const DEBUG_WORDS: &[&str] = &[
    "introduce2",
    "onionbalance",
    "rotate",
    "built",
    "intro point",
    "introduction point",
    "rendezvous",
    "descriptor",
];

/// Print the last lines of node `name`'s logs that say something about intro points.
/// `data_dir` is the node's `node.data_dir`; `daemon_log` its output, when known.
pub fn report(name: &str, data_dir: &Path, daemon_log: Option<&Path>) {
    let layout = Layout::new(data_dir);
    let logs = [
        ("tor notice", Some(layout.tor_log()), NOTICE_WORDS, 12),
        ("tor debug", Some(layout.tor_debug_log()), DEBUG_WORDS, 40),
        (
            "daemon",
            daemon_log.map(Path::to_path_buf),
            NOTICE_WORDS,
            12,
        ),
    ];
    for (what, path, words, keep) in logs {
        let Some(path) = path else { continue };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                words.iter().any(|w| l.contains(w))
            })
            .collect();
        eprintln!(
            "  {name} {what} log ({}), {} matching lines, the last {keep}:",
            path.display(),
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(keep)..] {
            eprintln!("    {l}");
        }
    }
}

/// Lines of the lab's own tors (relays, authorities, the client: `DIR/nodes/*/notice.log`,
/// which log `[rend,protocol]info`) that say an introduction was refused or given up:
/// an intro point with no circuit for the auth key the client used, the intro point's DoS
/// limit, a NACK the client received. Printed per log file: how many, and the last few.
pub fn report_lab(lab_dir: &Path) {
    const REFUSALS: &[&str] = &[
        "no intro circuit found",
        "can't relay introduce1",
        "introduce_ack nack",
    ];
    let Ok(entries) = std::fs::read_dir(lab_dir.join("nodes")) else {
        return;
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for dir in names {
        let text = std::fs::read_to_string(dir.join("notice.log")).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                REFUSALS.iter().any(|w| l.contains(w))
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        eprintln!(
            "  lab tor {}: {} refused or failed introductions, the last 5:",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(5)..] {
            eprintln!("    {l}");
        }
    }
}
