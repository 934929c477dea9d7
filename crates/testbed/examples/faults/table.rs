//! The faults benchmark's summary table.

use super::*;

pub(super) fn fmt_s(v: &Value) -> String {
    v.as_f64()
        .map(|s| format!("{s:.1} s"))
        .unwrap_or_else(|| "—".into())
}

/// One table row: a fault under one system.
pub(super) fn row(o: &Value, side: &str, fault: &str, what: &str, cap: Option<u64>) {
    let f = &o[side][fault];
    if f.is_null() {
        return;
    }
    if let Some(e) = f["error"].as_str() {
        println!("| {what} | {side} | failed: {e} | | | | | | |");
        return;
    }
    let (b, d) = (&f["before"], &f["during"]);
    let recovery = match (f["recovery_s"].as_f64(), cap) {
        (Some(s), _) => format!("{s:.1} s"),
        (None, Some(c)) => format!("none within {c} s"),
        (None, None) => "none".into(),
    };
    println!(
        "| {what} | {side} | {} | {recovery} | {}/{} | {}/{} ({}%) | {} / {} | {} |",
        fmt_s(&f["reaction_s"]),
        b["summary"]["ok"],
        b["summary"]["requests"],
        d["summary"]["ok"],
        d["summary"]["requests"],
        d["summary"]["ok_pct"],
        fmt_s(&d["summary"]["p50_s"]),
        fmt_s(&d["p90_s"]),
        fmt_s(&d["longest_gap_s"]),
    );
}

pub(super) fn print_table(o: &Value) {
    println!(
        "\nmachine: {} cores, {}, load {} → {}; {} GETs at a time, before window {} s, tail {} s",
        o["machine"]["cores"],
        o["machine"]["cpu"].as_str().unwrap_or(""),
        o["machine"]["load_start"].as_str().unwrap_or(""),
        o["machine"]["load_end"].as_str().unwrap_or(""),
        o["concurrency"],
        o["before_s"],
        o["tail_s"]
    );
    println!("\n| fault | system | reaction | recovery | before: served | fault → recovery + tail: served | p50 / p90 | longest gap without success |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let cap = o["ob_cap_s"].as_u64();
    row(o, "rustbalance", "tor", "publisher's tor SIGKILLed", None);
    row(
        o,
        "rustbalance",
        "silent",
        "silent node (target SIGSTOP)",
        None,
    );
    row(
        o,
        "rustbalance",
        "frozen",
        "frozen node (tor SIGSTOP)",
        None,
    );
    row(
        o,
        "onionbalance",
        "silent",
        "silent instance (tor SIGSTOP)",
        cap,
    );
    row(
        o,
        "rustbalance",
        "hsdir",
        "HSDir restarted, empty cache",
        None,
    );
    row(
        o,
        "onionbalance",
        "hsdir",
        "HSDir restarted, empty cache",
        cap,
    );
    let cut = format!("publisher cut off {} s, healed", o["cut_s"]);
    row(o, "rustbalance", "cut", &cut, None);
    for fault in ["silent", "hsdir"] {
        let (rb, ob) = (&o["rustbalance"][fault], &o["onionbalance"][fault]);
        let gap = |v: &Value| v["during"]["longest_gap_s"].as_f64();
        if let (Some(r), Some(b)) = (gap(rb), gap(ob)) {
            println!(
                "{fault}: longest gap Onionbalance / RustBalance {:.1}×",
                b / r.max(0.1)
            );
        }
    }
    for side in ["rustbalance", "onionbalance"] {
        for (k, f) in o[side].as_object().into_iter().flatten() {
            if f.is_object() {
                println!(
                    "{side} {k}: outcomes {} detail {}",
                    f["during"]["summary"]["outcomes"], f["detail"]
                );
            }
        }
    }
}
