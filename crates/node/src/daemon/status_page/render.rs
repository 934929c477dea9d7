//! The page itself: HTML made on the node from the `/status` document, every string from it
//! escaped ([`esc`]), no script, one inline style allowed by a per-response nonce, a
//! `<meta http-equiv="refresh">` to refresh. Node names, HSDir names and event texts come
//! from gossip: a hostile member may put markup in them, and it is shown as text.

use serde_json::Value;
use std::fmt::Write;

/// Seconds between refreshes.
pub const REFRESH_SECS: u32 = 5;

/// `s` safe as HTML text and as a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as plain text: a string as is, `null` as empty, anything else as JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// [`text_of`], escaped, `—` when empty.
fn show(v: &Value) -> String {
    let t = text_of(v);
    if t.is_empty() {
        "—".into()
    } else {
        esc(&t)
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:.5em;background:#fafafa;color:#222}\
h1{font-size:1.2em;margin:.2em 0}h2{font-size:1.05em;margin:.8em 0 .3em}\
main{display:grid;gap:.8em}section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em .7em;min-width:0}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.2em .4em;border-bottom:1px solid #eee;white-space:nowrap}\
code{word-break:break-all;white-space:normal}.kv td{white-space:normal;overflow-wrap:anywhere}.ok{color:#176d2c}.bad{color:#b00020;font-weight:bold}.warn{color:#a05a00}\
ol{padding-left:1.2em;margin:0}small{color:#666}\
@media (min-width:600px){main{grid-template-columns:1fr 1fr}.wide{grid-column:1/-1}}";

/// The whole page for the `/status` document `doc`; `nonce` allows the inline style.
pub fn page(doc: &Value, nonce: &str) -> String {
    let mut h = String::with_capacity(8192);
    let node = show(&doc["node"]);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
<title>RustBalance · {node}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body>\
<h1>RustBalance cluster, seen from {node}</h1>\
<p>Master address <code id=\"master\">{}</code><br><small>refreshes every {REFRESH_SECS} s</small></p><main>",
        show(&doc["master_address"]),
    );
    this_node(&mut h, doc);
    publisher(&mut h, doc);
    nodes(&mut h, doc);
    events(&mut h, doc);
    descriptors(&mut h, doc);
    h.push_str("</main></body></html>\n");
    h
}

fn this_node(h: &mut String, doc: &Value) {
    let tor = &doc["tor"];
    let health = &doc["target"]["health"];
    let target = match health["up"].as_bool() {
        Some(true) => format!("up ({})", show(&health["source"])),
        Some(false) => format!(
            "<span class=\"bad\">down</span>: {}",
            show(&health["last_error"])
        ),
        None if doc["mode"] == "publisher-only" => "none (publisher-only node)".into(),
        None => "unknown (no connection yet)".into(),
    };
    let _ = write!(
        h,
        "<section><h2>This node</h2><table class=\"kv\">\
<tr><th>name</th><td>{}</td></tr><tr><th>mode</th><td>{}</td></tr>\
<tr><th>role</th><td id=\"role\">{}</td></tr>\
<tr><th>tor</th><td>{} · bootstrap {} % · restarts {}</td></tr>\
<tr><th>target</th><td>{}</td></tr>\
<tr><th>uploads</th><td>{} confirmed, {} failed, last {}</td></tr></table></section>",
        show(&doc["node"]),
        show(&doc["mode"]),
        show(&doc["cluster"]["role"]),
        show(&tor["phase"]),
        show(&tor["bootstrap"]),
        show(&tor["restarts"]),
        target,
        show(&doc["uploads"]["uploaded"]),
        show(&doc["uploads"]["failed"]),
        show(&doc["uploads"]["last_uploaded"]),
    );
}

fn publisher(h: &mut String, doc: &Value) {
    let c = &doc["cluster"];
    let holders: Vec<String> = c["lease_holders"]
        .as_array()
        .map(|l| l.iter().map(text_of).collect())
        .unwrap_or_default();
    let _ = write!(
        h,
        "<section><h2>Publisher and lease</h2><p id=\"publisher\" data-publisher=\"{}\">",
        esc(&holders.join(","))
    );
    if holders.is_empty() {
        h.push_str("<span class=\"bad\">no node holds the lease</span>");
    } else if holders.len() > 1 {
        let _ = write!(
            h,
            "<span class=\"bad\">several lease holders: {}</span>",
            esc(&holders.join(", "))
        );
    } else {
        let _ = write!(h, "<b>{}</b>", esc(&holders[0]));
    }
    h.push_str("</p>");
    for m in c["members"].as_array().into_iter().flatten() {
        if m["lease"].is_object() && holders.contains(&text_of(&m["name"])) {
            let l = &m["lease"];
            let _ = write!(
                h,
                "<p><small>lease of {}: renewal {} (run {}), valid {} ms per renewal</small></p>",
                show(&m["name"]),
                show(&l["seq"]),
                show(&l["incarnation"]),
                show(&l["ttl_ms"]),
            );
        }
    }
    h.push_str("</section>");
}

/// `healthy`, `down` (no gossip) or `target-down`, with its CSS class.
fn health(m: &Value) -> (&'static str, &'static str) {
    if m["live"] != true {
        ("down", "bad")
    } else if m["target"] == "down" {
        ("target-down", "warn")
    } else {
        ("healthy", "ok")
    }
}

fn nodes(h: &mut String, doc: &Value) {
    h.push_str(
        "<section class=\"wide\"><h2>Nodes</h2><div class=\"scroll\"><table id=\"nodes\">\
<tr><th>name</th><th>role</th><th>health</th><th>target</th><th>canary</th><th>tor</th>\
<th>intro points</th><th>last seen</th><th>last publish</th></tr>",
    );
    let me = text_of(&doc["node"]);
    let members = doc["cluster"]["members"].as_array();
    for m in members.into_iter().flatten() {
        let (state, class) = health(m);
        // Only this node's own tor is known here; the others' are not gossiped.
        let tor = if text_of(&m["name"]) == me {
            show(&doc["tor"]["phase"])
        } else {
            "—".into()
        };
        let _ = write!(
            h,
            "<tr class=\"node\" data-name=\"{}\" data-health=\"{state}\"><td>{}</td><td>{}</td>\
<td class=\"{class}\">{state}</td><td>{}</td><td>{}</td><td>{tor}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text_of(&m["name"])),
            show(&m["name"]),
            show(&m["role"]),
            show(&m["target"]),
            show(&m["canary"]),
            show(&m["intro_points"]),
            show(&m["last_seen"]),
            last_publish(&m["last_publish"]),
        );
    }
    if members.is_none_or(|m| m.is_empty()) {
        h.push_str("<tr><td colspan=\"9\">single node, or no member known yet</td></tr>");
    }
    h.push_str("</table></div></section>");
}

/// A gossiped `last_publish` (`<unix secs> ok|failed`) with its time readable.
fn last_publish(v: &Value) -> String {
    let t = text_of(v);
    let Some((secs, outcome)) = t.split_once(' ') else {
        return show(v);
    };
    /// 9999-12-31T23:59:59Z: RFC 3339 writes no later time (humantime's formatter fails).
    const LAST_WRITABLE: u64 = 253_402_300_799;
    let at = secs
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= LAST_WRITABLE)
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)));
    match at {
        Some(at) => esc(&format!(
            "{} {outcome}",
            humantime::format_rfc3339_seconds(at)
        )),
        // Gossip is a member's word: a time no calendar shows is shown as it came.
        None => esc(&t),
    }
}

fn descriptors(h: &mut String, doc: &Value) {
    h.push_str("<section class=\"wide\"><h2>Live descriptors per HSDir</h2>");
    let lp = &doc["cluster"]["last_publish"];
    if !lp.is_object() {
        let holders = text_of(&doc["cluster"]["lease_holders"]);
        let _ = write!(
            h,
            "<p id=\"descriptors\" data-published=\"no\">This node has not published a descriptor; \
the publisher's page shows them (lease holders: {}).</p></section>",
            esc(&holders)
        );
        return;
    }
    let from: Vec<String> = lp["intro_points"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{} ×{}", esc(k), show(v)))
                .collect()
        })
        .unwrap_or_default();
    let _ = write!(
        h,
        "<p id=\"descriptors\" data-published=\"yes\" data-at=\"{}\">Published {} ({}), intro points from {}</p>\
<div class=\"scroll\"><table><tr><th>HSDir</th><th>period</th><th>revision</th><th>intro points</th><th>state</th></tr>",
        show(&lp["at"]),
        show(&lp["at"]),
        show(&lp["reason"]),
        from.join(", "),
    );
    for slot in lp["slots"].as_array().into_iter().flatten() {
        for (dir, st) in slot["hsdirs"].as_object().into_iter().flatten() {
            let state = text_of(st);
            let class = if state == "UPLOADED" { "ok" } else { "bad" };
            let shown = if state == "UPLOADED" {
                "confirmed".to_string()
            } else {
                esc(&state)
            };
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{shown}</td></tr>",
                esc(dir.get(..16).unwrap_or(dir)),
                show(&slot["period_num"]),
                show(&slot["revision"]),
                show(&slot["intro_points"]),
            );
        }
    }
    h.push_str("</table></div></section>");
}

fn events(h: &mut String, doc: &Value) {
    h.push_str("<section class=\"wide\"><h2>Recent events</h2><ol id=\"events\">");
    let list = doc["events"].as_array();
    for e in list.into_iter().flatten() {
        let _ = write!(
            h,
            "<li data-kind=\"{}\"><small>{}</small> {}</li>",
            esc(&text_of(&e["kind"])),
            show(&e["at"]),
            show(&e["text"]),
        );
    }
    if list.is_none_or(|l| l.is_empty()) {
        h.push_str("<li>nothing yet</li>");
    }
    h.push_str("</ol></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOSTILE: &str = "<img src=x onerror=alert(1)>";

    /// A member whose gossiped name is markup: everywhere the page shows it (node row,
    /// publisher, lease, descriptor, events), it is text.
    #[test]
    fn a_hostile_node_name_is_shown_as_text() {
        let doc = json!({
            "node": "node1",
            "master_address": "abc.onion",
            "cluster": {
                "role": "follower",
                "lease_holders": [HOSTILE],
                "members": [
                    {"name": "node1", "live": true, "target": "up", "intro_points": 3},
                    {"name": HOSTILE, "live": true, "target": "up", "intro_points": 3,
                     "role": "\"><script>alert(2)</script>", "lease": {"seq": 4, "ttl_ms": 9000}},
                ],
                "last_publish": {"at": "2026-12-05T21:00:00Z", "reason": "changed",
                    "intro_points": {HOSTILE: 3},
                    "slots": [{"period_num": 1, "revision": 2, "intro_points": 3,
                               "hsdirs": {HOSTILE: "UPLOADED"}}]},
            },
            "events": [{"at": "t", "kind": "joined", "text": format!("{HOSTILE} joined")}],
        });
        let page = page(&doc, "n0nce");
        assert!(
            !page.contains("<img"),
            "markup from gossip reached the page: {page}"
        );
        assert!(!page.contains("<script"), "{page}");
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        assert!(
            page.contains("data-name=\"&lt;img src=x onerror=alert(1)&gt;\""),
            "{page}"
        );
        assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
    }

    /// A member gossiping a publication time past year 9999 (or past what `SystemTime`
    /// holds) gets its text shown; the page still renders (it panicked before).
    #[test]
    fn a_hostile_publication_time_is_shown_as_text() {
        for t in ["253402300800 ok", "18446744073709551615 ok"] {
            let doc = json!({
                "node": "node1",
                "cluster": {"members": [
                    {"name": "node2", "live": true, "target": "up", "last_publish": t},
                ]},
            });
            let p = page(&doc, "n");
            assert!(p.contains(t), "{p}");
        }
        let doc = json!({"node": "node1", "cluster": {"members": [
            {"name": "node2", "live": true, "target": "up", "last_publish": "1796500000 ok"},
        ]}});
        assert!(
            page(&doc, "n").contains("2026-12-05T"),
            "a real time is still readable"
        );
    }

    #[test]
    fn the_page_shows_health_publisher_and_descriptors() {
        let doc = json!({
            "node": "node2",
            "tor": {"phase": "running"},
            "cluster": {
                "lease_holders": ["node2"],
                "members": [
                    {"name": "node1", "live": false, "target": "up"},
                    {"name": "node2", "live": true, "target": "up", "last_publish": "0 ok"},
                    {"name": "node3", "live": true, "target": "down"},
                ],
            },
        });
        let p = page(&doc, "n");
        assert!(
            p.contains("data-name=\"node1\" data-health=\"down\""),
            "{p}"
        );
        assert!(
            p.contains("data-name=\"node2\" data-health=\"healthy\""),
            "{p}"
        );
        assert!(
            p.contains("data-name=\"node3\" data-health=\"target-down\""),
            "{p}"
        );
        assert!(p.contains("data-publisher=\"node2\""), "{p}");
        assert!(p.contains("data-published=\"no\""), "{p}");
        assert!(p.contains("<style nonce=\"n\">"), "{p}");
        assert!(!p.contains("<script"), "{p}");
        assert!(
            p.contains("content=\"width=device-width, initial-scale=1\""),
            "{p}"
        );
        assert!(
            p.contains("@media (min-width:600px)"),
            "one column below 600 px: {p}"
        );
        assert!(p.contains("unknown (no connection yet)"), "{p}");
        assert!(p.contains("<td>1970-01-01T00:00:00Z ok</td>"), "{p}");
    }
}
