//! What a lab cluster has published, read from the nodes' `/status`
//! (`cluster.role`, `cluster.last_publish`), and waiting for a publication.

use crate::poll::poll_until;
use anyhow::Result;
use rustbalance_lab::Lab;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// A cluster node whose `/status` can be read.
pub trait StatusSource {
    /// The node's `/status`.
    fn status(&self) -> impl std::future::Future<Output = Option<Value>> + Send;
    /// The node's name.
    fn name(&self) -> &str;
}

/// Print [`node_states`] (why a node may be missing from a publication: nothing
/// advertised and why, ejected by the canary, its target down).
pub async fn print_canaries<N: StatusSource>(nodes: &[N]) {
    eprint!("{}", node_states(nodes).await);
}

/// One line per node from its `/status`: role, what it advertises and why, why it does
/// not publish, its target, and the peers its canary fails.
pub async fn node_states<N: StatusSource>(nodes: &[N]) -> String {
    let mut out = String::new();
    for n in nodes {
        let line = match n.status().await {
            Some(st) => {
                let c = &st["cluster"];
                let failing: Vec<&str> = c["canary"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(_, v)| v["verdict"] != "pass")
                            .map(|(k, _)| k.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                let dead: Vec<&str> = c["members"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|m| m["live"] == false)
                            .filter_map(|m| m["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "  {}: {} {}, advert [{}], not publishing [{}], target {}, canary not passing {failing:?}, members dead {dead:?}\n",
                    n.name(),
                    c["role"].as_str().unwrap_or("?"),
                    c["own_intro_points"],
                    c["advert"].as_str().unwrap_or("?"),
                    c["not_publishing_because"].as_str().unwrap_or("-"),
                    st["target"],
                )
            }
            None => format!("  {}: no /status\n", n.name()),
        };
        out.push_str(&line);
    }
    out
}

/// A publication record without its per-slot detail: who published when, why, and each
/// node's intro points.
pub fn brief(p: &Value) -> String {
    format!(
        "at {} ({}): {}",
        p["at"].as_str().unwrap_or("?"),
        p["reason"].as_str().unwrap_or("?"),
        p["intro_points"]
    )
}

/// One publication seen at a publisher.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Index of the node that published.
    pub node: usize,
    /// Its `cluster.last_publish` record.
    pub record: Value,
    /// How long the wait for it took.
    pub waited: Duration,
}

impl Publication {
    /// When the publication started (Unix seconds; 0 if unknown).
    pub fn at_unix(&self) -> u64 {
        at_unix(&self.record)
    }
}

/// The node that currently publishes, not counting the nodes in `skip`, and
/// its last publication (`/status` → `cluster.last_publish`).
pub async fn publisher<N: StatusSource>(nodes: &[N], skip: &[usize]) -> Option<(usize, Value)> {
    for (i, n) in nodes.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        if let Some(s) = n.status().await {
            if s["cluster"]["role"] == "publisher" && !s["cluster"]["last_publish"].is_null() {
                return Some((i, s["cluster"]["last_publish"].clone()));
            }
        }
    }
    None
}

/// Wait until exactly one node of `nodes` is not a follower (no node may fail to answer
/// `/status`) and its newest publication (`cluster.last_publish`) satisfies `accept`.
/// Returns that node's index and publication. A node cut off from the others may
/// publish alone for a while (quorum mode `live`), and after a heal or a restart the
/// worse-ranked holder withdraws only once gossip shows it the other lease: polled,
/// never read once.
pub async fn sole_publisher<N: StatusSource>(
    nodes: &[N],
    timeout: Duration,
    accept: impl Fn(&Value) -> bool,
) -> Result<Publication> {
    let ((node, record), waited) = poll_until(
        "exactly one publisher",
        timeout,
        Duration::from_millis(500),
        async || {
            let mut publishing = Vec::new();
            for (i, n) in nodes.iter().enumerate() {
                let Some(st) = n.status().await else {
                    return Ok(None);
                };
                if st["cluster"]["role"] != "follower" {
                    publishing.push((i, st["cluster"]["last_publish"].clone()));
                }
            }
            Ok(match &publishing[..] {
                [(i, last)] if accept(last) => Some((*i, last.clone())),
                _ => None,
            })
        },
    )
    .await?;
    Ok(Publication {
        node,
        record,
        waited,
    })
}

/// Node names whose intro points a publication lists.
pub fn published_nodes(p: &Value) -> Vec<String> {
    p["intro_points"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// How many intro points a publication lists, over all nodes.
pub fn listed_intro_points(p: &Value) -> usize {
    p["intro_points"]
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum::<u64>())
        .unwrap_or(0) as usize
}

/// The revision a publication uploaded for time period `period` (None: no such slot).
pub fn revision_for(p: &Value, period: u64) -> Option<u64> {
    p["slots"]
        .as_array()?
        .iter()
        .find(|s| s["period_num"].as_u64() == Some(period))
        .and_then(|s| s["revision"].as_u64())
}

/// When a publication started, in Unix seconds (0 if unknown).
pub fn at_unix(p: &Value) -> u64 {
    p["at"]
        .as_str()
        .and_then(|a| humantime::parse_rfc3339(a).ok())
        .map(rustbalance_hs::time::unix_secs)
        .unwrap_or(0)
}

/// Every descriptor of the publication was confirmed by at least one HSDir.
pub fn confirmed(p: &Value) -> bool {
    p["slots"].as_array().is_some_and(|s| {
        !s.is_empty()
            && s.iter().all(|s| {
                s["hsdirs"]
                    .as_object()
                    .is_some_and(|h| h.values().any(|v| v == "UPLOADED"))
            })
    })
}

/// Wait until a node not in `not` has published, at or after `since`,
/// descriptors listing exactly the nodes `want` and confirmed by at least
/// one HSDir each.
pub async fn wait_published<N: StatusSource>(
    nodes: &[N],
    not: &[usize],
    since: SystemTime,
    want: &[&str],
    timeout: Duration,
) -> Result<Publication> {
    let what = format!("a publication listing {want:?}");
    wait_publication(nodes, not, since, &what, timeout, |p| {
        published_nodes(p) == want
    })
    .await
}

/// Wait until a node not in `not` has published, at or after `since`, descriptors
/// confirmed by at least one HSDir each whose `cluster.last_publish` record satisfies
/// `accept`; `what` names it in the error.
pub async fn wait_publication<N: StatusSource>(
    nodes: &[N],
    not: &[usize],
    since: SystemTime,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&Value) -> bool,
) -> Result<Publication> {
    let since_s = rustbalance_hs::time::unix_secs(since);
    let mut last = None;
    let found = poll_until(what, timeout, Duration::from_millis(200), async || {
        let Some((i, p)) = publisher(nodes, not).await else {
            return Ok(None);
        };
        if at_unix(&p) >= since_s && accept(&p) && confirmed(&p) {
            return Ok(Some((i, p)));
        }
        last = Some((i, p));
        Ok(None)
    })
    .await;
    match found {
        Ok(((node, record), waited)) => Ok(Publication {
            node,
            record,
            waited,
        }),
        Err(e) => {
            // Why a node is missing: what it advertises and why, the canary's
            // verdicts, its target, what every member sees. In the error too: a CI
            // report may show only the failing test's summary.
            let states = node_states(nodes).await;
            eprint!("{states}");
            eprintln!("last publication seen, in full: {last:?}");
            let last = last.map(|(i, p)| format!("node index {i}, {}", brief(&p)));
            Err(e.context(format!(
                "last publication seen: {}; the nodes now:\n{states}",
                last.as_deref().unwrap_or("none")
            )))
        }
    }
}

/// A freshly started cluster is up: some node published descriptors listing every node
/// of `nodes` within `publish_timeout`, and the lab client reaches `url` ("served by").
/// Prints who published and when; returns the publication.
pub async fn wait_cluster_up<N: StatusSource>(
    lab: &Lab,
    nodes: &[N],
    url: &str,
    publish_timeout: Duration,
) -> Result<Publication> {
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    names.sort_unstable();
    let p = wait_published(nodes, &[], SystemTime::UNIX_EPOCH, &names, publish_timeout).await?;
    eprintln!(
        "{} published all {} nodes after {:.1}s",
        nodes[p.node].name(),
        names.len(),
        p.waited.as_secs_f64()
    );
    // The lab client holds that publication first (an HSDir the upload has not reached
    // yet may hand out an older one, which a tor client then keeps), then it must answer.
    let host = url
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if let Ok(master) = rustbalance_hs::OnionAddress::parse(host) {
        crate::client_cache::refetch_publication(lab, &master, &p.record, publish_timeout).await?;
    }
    lab.wait_http(
        url,
        "served by",
        publish_timeout.max(Duration::from_secs(120)),
    )
    .await?;
    Ok(p)
}

impl StatusSource for super::ClusterNodeProc {
    async fn status(&self) -> Option<Value> {
        super::ClusterNodeProc::status(self).await
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl StatusSource for super::NsNode {
    async fn status(&self) -> Option<Value> {
        super::NsNode::status(self).await
    }
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fake(&'static str, Option<Value>);

    impl StatusSource for Fake {
        async fn status(&self) -> Option<Value> {
            self.1.clone()
        }
        fn name(&self) -> &str {
            self.0
        }
    }

    #[tokio::test]
    async fn node_states_say_why_a_node_is_missing() {
        let waiting = json!({
            "target": "up",
            "cluster": {
                "role": "follower",
                "own_intro_points": 0,
                "advert": "nothing yet: waiting for the running period's instance descriptor",
                "not_publishing_because": null,
                "canary": {"node1": {"verdict": "pass"}, "node3": {"verdict": "fail"}},
                "members": [{"name": "node1", "live": true}, {"name": "node3", "live": false}],
            }
        });
        let nodes = [Fake("node2", Some(waiting)), Fake("node3", None)];
        let s = node_states(&nodes).await;
        assert_eq!(
            s,
            "  node2: follower 0, advert [nothing yet: waiting for the running period's \
             instance descriptor], not publishing [-], target \"up\", canary not passing \
             [\"node3\"], members dead [\"node3\"]\n  node3: no /status\n"
        );
        let p = json!({"at": "2026-12-07T02:20:14Z", "reason": "changed",
                       "intro_points": {"node1": 3}, "slots": [1, 2, 3]});
        assert_eq!(
            brief(&p),
            "at 2026-12-07T02:20:14Z (changed): {\"node1\":3}"
        );
    }
}
