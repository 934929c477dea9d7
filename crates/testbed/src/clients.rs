//! Lab clients asking a master address: GETs on fresh circuits, counted by
//! answer ("served by NAME") or by a short, stable failure label.

use rustbalance_lab::{HttpResponse, Lab};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per-request limit of the client batches.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The label of one GET's outcome: the body for a 200, `HTTP CODE`, or
/// `failed: CAUSE`.
pub fn outcome(r: &rustbalance_lab::Result<HttpResponse>) -> String {
    match r {
        Ok(r) if r.status == 200 => r.text().trim().to_string(),
        Ok(r) => format!("HTTP {}", r.status),
        Err(e) => failure_kind(&e.to_string()),
    }
}

/// An error message → a short, stable label for counting.
pub fn failure_kind(e: &str) -> String {
    let e = e.to_lowercase();
    if e.contains("no complete response within") {
        return "failed: no answer within the 30 s limit".into();
    }
    for k in [
        "descriptor not found",
        "introduction failed",
        "introduction timed out",
        "rendezvous failed",
        "timed out",
        "ttl expired",
        "general failure",
        "connection refused",
    ] {
        if e.contains(k) {
            return format!("failed: {k}");
        }
    }
    // The cause is at the end of the message (after the URL).
    let tail: String = e
        .chars()
        .rev()
        .take(100)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("failed: ...{tail}")
}

/// One round of `n` requests on fresh circuits ([`split`]) added to `tally` and printed;
/// the names of `names` no request has been "served by" yet.
pub async fn round_and_silent<'a>(
    lab: &Lab,
    url: &str,
    n: usize,
    tally: &mut BTreeMap<String, usize>,
    names: &[&'a str],
) -> Vec<&'a str> {
    for (k, v) in split(lab, url, n).await {
        *tally.entry(k).or_insert(0) += v;
    }
    eprintln!("{} requests: {tally:?}", tally.values().sum::<usize>());
    names
        .iter()
        .copied()
        .filter(|name| !tally.contains_key(&format!("served by {name}")))
        .collect()
}

/// `n` GETs of `url` through the lab client, one after another, each on a
/// fresh circuit; counts outcomes ([`outcome`]).
pub async fn split(lab: &Lab, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let r = lab.http_get(url, REQUEST_TIMEOUT).await;
        *m.entry(outcome(&r)).or_insert(0) += 1;
    }
    m
}

/// How many of a [`split`] were served.
pub fn served(split: &BTreeMap<String, usize>) -> usize {
    split
        .iter()
        .filter(|(k, _)| k.starts_with("served by"))
        .map(|(_, v)| v)
        .sum()
}

/// One request of a batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Req {
    /// Start, seconds after the batch's reference moment.
    pub start: f64,
    /// End, seconds after the batch's reference moment.
    pub end: f64,
    /// Its [`outcome`].
    pub outcome: String,
}

/// `n` GETs, `conc` at a time, each on a fresh circuit, timed from `t0`;
/// sorted by start.
pub fn spawn_batch(
    lab: &Lab,
    url: &str,
    n: usize,
    conc: usize,
    t0: Instant,
) -> tokio::task::JoinHandle<Vec<Req>> {
    let next = AtomicUsize::new(0);
    spawn_requests(lab, url, conc, t0, Arc::default(), move || {
        next.fetch_add(1, Ordering::SeqCst) < n
    })
}

/// Requests that started at or after `from` (seconds on the batch's clock) and were
/// served.
pub fn served_after(reqs: &[Req], from: f64) -> usize {
    reqs.iter()
        .filter(|r| r.start >= from && r.outcome.starts_with("served by"))
        .count()
}

/// A client loop whose finished requests can be read while it runs: a test waits
/// for what it needs to see (a request served after some moment) instead of
/// stopping at a moment that may fall while every running request is in trouble.
pub struct ClientLoop {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<Req>>>,
    handle: tokio::task::JoinHandle<Vec<Req>>,
}

impl ClientLoop {
    /// `conc` GET loops on fresh circuits, times measured from `t0`, until
    /// [`ClientLoop::finish`].
    pub fn spawn(lab: &Lab, url: &str, conc: usize, t0: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(Mutex::new(Vec::new()));
        let s = stop.clone();
        let handle = spawn_requests(lab, url, conc, t0, done.clone(), move || {
            !s.load(Ordering::SeqCst)
        });
        Self { stop, done, handle }
    }

    /// [`served_after`] over the requests finished so far.
    pub fn served_since(&self, from: f64) -> usize {
        served_after(&lock(&self.done), from)
    }

    /// The nodes that served a request started at or after `from`, over the requests
    /// finished so far (the names after "served by ").
    pub fn nodes_served_since(&self, from: f64) -> std::collections::BTreeSet<String> {
        lock(&self.done)
            .iter()
            .filter(|r| r.start >= from)
            .filter_map(|r| r.outcome.strip_prefix("served by "))
            .map(|n| n.trim().to_string())
            .collect()
    }

    /// Stops the loop (running requests finish) and returns every request, sorted by
    /// start.
    pub async fn finish(self) -> Vec<Req> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.unwrap_or_default()
    }
}

/// The finished requests (a panicked request task leaves them readable).
fn lock(done: &Mutex<Vec<Req>>) -> std::sync::MutexGuard<'_, Vec<Req>> {
    done.lock().unwrap_or_else(|e| e.into_inner())
}

/// `conc` request loops that go on while `more()` says so, each finished request
/// appended to `done`; the handle returns them all, sorted by start.
fn spawn_requests(
    lab: &Lab,
    url: &str,
    conc: usize,
    t0: Instant,
    done: Arc<Mutex<Vec<Req>>>,
    more: impl Fn() -> bool + Send + Sync + 'static,
) -> tokio::task::JoinHandle<Vec<Req>> {
    let lab = lab.clone();
    let url = url.to_string();
    let more = Arc::new(more);
    tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..conc {
            let (lab, url, more, done) = (lab.clone(), url.clone(), more.clone(), done.clone());
            set.spawn(async move {
                while more() {
                    let start = t0.elapsed();
                    let r = lab.http_get(&url, REQUEST_TIMEOUT).await;
                    lock(&done).push(Req {
                        start: start.as_secs_f64(),
                        end: t0.elapsed().as_secs_f64(),
                        outcome: outcome(&r),
                    });
                }
            });
        }
        while set.join_next().await.is_some() {}
        let mut all = std::mem::take(&mut *lock(&done));
        all.sort_by(|a, b| a.start.total_cmp(&b.start));
        all
    })
}

/// What a batch came to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchSummary {
    /// Requests sent.
    pub requests: usize,
    /// Served.
    pub ok: usize,
    /// Not served.
    pub failed: usize,
    /// Served, in percent (one decimal).
    pub ok_pct: f64,
    /// Count per outcome.
    pub outcomes: BTreeMap<String, usize>,
    /// Requests started before the fresh publication was seen.
    pub before_fix: usize,
    /// How many of those failed.
    pub before_fix_failed: usize,
    /// End of the last request, seconds.
    pub duration_s: f64,
    /// Median latency, seconds.
    pub p50_s: f64,
    /// Longest latency, seconds.
    pub max_s: f64,
}

/// The longest stretch (seconds on the batch's clock) in which no request succeeded:
/// between the ends of consecutive served requests, from the first start to the first
/// success, and from the last success to the last end (all of it without a success).
pub fn longest_gap(reqs: &[Req]) -> f64 {
    let first = reqs.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
    let last = reqs.iter().map(|r| r.end).fold(0.0, f64::max);
    if reqs.is_empty() {
        return 0.0;
    }
    let mut ok: Vec<f64> = reqs
        .iter()
        .filter(|r| r.outcome.starts_with("served by"))
        .map(|r| r.end)
        .collect();
    ok.sort_by(f64::total_cmp);
    let mut marks = vec![first];
    marks.extend(ok);
    marks.push(last);
    marks.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// The requests of a client loop that started in one stretch of time, summed up.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    /// Start of the stretch, seconds on the loop's clock.
    pub from_s: f64,
    /// Its end (requests starting before it count).
    pub to_s: f64,
    /// Counts and latencies ([`summarize`]).
    pub summary: BatchSummary,
    /// 90th percentile latency, seconds.
    pub p90_s: f64,
    /// [`longest_gap`] over these requests.
    pub longest_gap_s: f64,
}

/// The requests that started in `[from, to)` (seconds on the loop's clock), summed up.
pub fn window(reqs: &[Req], from: f64, to: f64) -> Window {
    let w: Vec<Req> = reqs
        .iter()
        .filter(|r| r.start >= from && r.start < to)
        .cloned()
        .collect();
    let mut lat: Vec<f64> = w.iter().map(|r| r.end - r.start).collect();
    lat.sort_by(f64::total_cmp);
    Window {
        from_s: from,
        to_s: to,
        summary: summarize(&w, None),
        p90_s: lat.get(lat.len() * 9 / 10).copied().unwrap_or(0.0),
        longest_gap_s: longest_gap(&w),
    }
}

/// Sums up a batch; `fix_after_kill`: when the repairing publication was
/// seen (seconds on the batch's clock), if it was.
pub fn summarize(reqs: &[Req], fix_after_kill: Option<f64>) -> BatchSummary {
    let mut outcomes = BTreeMap::new();
    for r in reqs {
        *outcomes.entry(r.outcome.clone()).or_insert(0) += 1;
    }
    let is_ok = |r: &Req| r.outcome.starts_with("served by");
    let ok = reqs.iter().filter(|r| is_ok(r)).count();
    let fix = fix_after_kill.unwrap_or(f64::INFINITY);
    let before: Vec<&Req> = reqs.iter().filter(|r| r.start < fix).collect();
    let mut lat: Vec<f64> = reqs.iter().map(|r| r.end - r.start).collect();
    lat.sort_by(f64::total_cmp);
    BatchSummary {
        requests: reqs.len(),
        ok,
        failed: reqs.len() - ok,
        ok_pct: if reqs.is_empty() {
            0.0
        } else {
            (1000.0 * ok as f64 / reqs.len() as f64).round() / 10.0
        },
        outcomes,
        before_fix: before.len(),
        before_fix_failed: before.iter().filter(|r| !is_ok(r)).count(),
        duration_s: reqs.iter().map(|r| r.end).fold(0.0, f64::max),
        p50_s: lat.get(lat.len() / 2).copied().unwrap_or(0.0),
        max_s: lat.last().copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_get_stable_labels() {
        assert_eq!(
            failure_kind(
                "GET http://x.onion/ failed: SOCKS error 0xF2: onion service introduction failed"
            ),
            "failed: introduction failed"
        );
        assert_eq!(
            failure_kind("GET u failed: no complete response within 30s"),
            "failed: no answer within the 30 s limit"
        );
        assert_eq!(failure_kind("odd"), "failed: ...odd");
    }

    #[test]
    fn batches_sum_up() {
        let r = |start: f64, end: f64, o: &str| Req {
            start,
            end,
            outcome: o.into(),
        };
        let s = summarize(
            &[
                r(0.0, 1.0, "served by a"),
                r(0.5, 3.0, "failed: x"),
                r(2.0, 2.5, "served by b"),
            ],
            Some(1.0),
        );
        assert_eq!((s.requests, s.ok, s.failed), (3, 2, 1));
        assert_eq!((s.before_fix, s.before_fix_failed), (2, 1));
        assert_eq!((s.ok_pct, s.duration_s, s.max_s), (66.7, 3.0, 2.5));
    }

    #[test]
    fn windows_take_the_requests_started_in_them() {
        let r = |start: f64, end: f64, o: &str| Req {
            start,
            end,
            outcome: o.into(),
        };
        let reqs = [
            r(0.0, 1.0, "served by a"),
            r(2.0, 9.0, "failed: x"),
            r(3.0, 4.0, "served by b"),
            r(9.0, 10.0, "served by b"),
        ];
        let w = window(&reqs, 2.0, 9.0);
        assert_eq!((w.summary.requests, w.summary.ok), (2, 1));
        assert_eq!((w.p90_s, w.longest_gap_s), (7.0, 5.0));
        assert_eq!(window(&reqs, 20.0, 30.0).summary.requests, 0);
    }

    #[test]
    fn the_longest_gap_counts_from_success_to_success_and_the_edges() {
        let r = |start: f64, end: f64, o: &str| Req {
            start,
            end,
            outcome: o.into(),
        };
        let reqs = [
            r(0.0, 1.0, "served by a"),
            r(1.0, 9.0, "failed: x"),
            r(2.0, 6.0, "served by b"),
            r(6.0, 7.0, "served by b"),
            r(7.0, 12.0, "failed: y"),
        ];
        // 1 → 6 between successes; 7 → 12 after the last one.
        assert_eq!(longest_gap(&reqs), 5.0);
        assert_eq!(longest_gap(&reqs[..4]), 5.0);
        assert_eq!(longest_gap(&[r(0.5, 3.0, "failed: z")]), 2.5);
        assert_eq!(longest_gap(&[]), 0.0);
    }
}
