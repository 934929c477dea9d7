//! A lab flood: introductions at an onion address from extra lab client tors, paced,
//! bounded in count and in time, stopping by itself (issue 16 item 5).
//!
//! Every request is a GET on a fresh circuit (its own SOCKS isolation), so each one makes
//! the client tor build a new rendezvous circuit and send a new INTRODUCE1: the service
//! sees one introduction per request. The flood's clients solve no puzzle as long as the
//! descriptor suggests effort 0; when it suggests more, tor solves for them as for any
//! client.
//!
//! ```text
//!  FloodClients::start ─▶ K lab tors (SocksPort on 127.0.0.1, fresh circuit per request)
//!  Flood::spawn ─▶ request i starts at i / rate ─▶ stop at `count`, at `duration`,
//!                  or on Flood::stop ─▶ FloodReport (sent, served, failures by kind)
//! ```
//!
//! The pacing and the bounds are pure ([`FloodPlan::due`], [`FloodPlan::done`]); the
//! driver only sleeps until the next request is due and counts answers.

use crate::clients::outcome;
use anyhow::{bail, Context, Result};
use rustbalance_lab::{http_get_via, Lab, LabTor, Torrc};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How a flood runs: pace and bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodPlan {
    /// Requests started per second.
    pub rate: f64,
    /// At most this many requests in all.
    pub count: u64,
    /// No request starts after this long.
    pub duration: Duration,
    /// Each request gives up after this long.
    pub request_timeout: Duration,
    /// At most this many requests at once (a slow service must not make the flood grow
    /// without bound); a due request waits for a free place.
    pub max_in_flight: usize,
}

impl FloodPlan {
    /// `rate` requests per second, at most `count` of them and none after `duration`;
    /// 30 s per request, at most 30 s worth of requests in flight (at least 1).
    pub fn new(rate: f64, count: u64, duration: Duration) -> Result<FloodPlan> {
        if !(rate.is_finite() && rate > 0.0 && rate <= 1000.0) {
            bail!("flood rate {rate}/s: give a rate above 0 and at most 1000 requests per second");
        }
        if count == 0 {
            bail!("flood count 0: give the number of requests to send (at least 1)");
        }
        let request_timeout = Duration::from_secs(30);
        Ok(FloodPlan {
            rate,
            count,
            duration,
            request_timeout,
            // Invariant: rate ≤ 1000, so this is at most 30 000.
            max_in_flight: ((rate * request_timeout.as_secs_f64()).ceil() as usize).max(1),
        })
    }

    /// When request `i` (from 0) is due, counted from the flood's start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Whether the flood is over after `sent` requests at `elapsed`: the count is
    /// reached, or the next request would start after `duration`.
    pub fn done(&self, sent: u64, elapsed: Duration) -> bool {
        sent >= self.count || elapsed >= self.duration || self.due(sent) >= self.duration
    }
}

/// What a flood came to.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FloodReport {
    /// Requests started.
    pub sent: u64,
    /// Requests answered with a 200.
    pub served: u64,
    /// Count per outcome (`served by NAME`, `HTTP CODE`, `failed: CAUSE`).
    pub outcomes: BTreeMap<String, u64>,
    /// From the first request to the end of the last one, seconds.
    pub seconds: f64,
    /// Why it ended: `count`, `duration` or `stopped`.
    pub ended_by: String,
}

/// A running flood; [`Flood::stop`] ends it early, [`Flood::finish`] waits for it.
pub struct Flood {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<FloodReport>,
}

impl Flood {
    /// Start flooding `url` through the SOCKS ports `socks` (taken in turn).
    pub fn spawn(socks: Vec<SocketAddr>, url: String, plan: FloodPlan) -> Result<Flood> {
        if socks.is_empty() {
            bail!("a flood needs at least one client SOCKS port");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(socks, url, plan, stop.clone()));
        Ok(Flood { stop, task })
    }

    /// Ask the flood to send no more requests (those in flight finish).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the flood has ended by itself (count or duration) or after [`Self::stop`].
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stop it and wait for the requests in flight; the report.
    pub async fn finish(self) -> Result<FloodReport> {
        self.stop();
        self.task.await.context("the flood task died")
    }
}

/// The flood's driver: start requests when due, within the bounds, count the answers.
async fn run(
    socks: Vec<SocketAddr>,
    url: String,
    plan: FloodPlan,
    stop: Arc<AtomicBool>,
) -> FloodReport {
    let t0 = Instant::now();
    let mut report = FloodReport::default();
    let mut set = tokio::task::JoinSet::new();
    report.ended_by = loop {
        if stop.load(Ordering::SeqCst) {
            break "stopped";
        }
        if plan.done(report.sent, t0.elapsed()) {
            break if report.sent >= plan.count {
                "count"
            } else {
                "duration"
            };
        }
        while set.len() >= plan.max_in_flight {
            if let Some(Ok(label)) = set.join_next().await {
                tally(&mut report, label);
            }
        }
        tokio::time::sleep_until(t0 + plan.due(report.sent)).await;
        // Invariant: socks is not empty (checked in Flood::spawn).
        let via = socks[(report.sent % socks.len() as u64) as usize];
        let url = url.clone();
        let limit = plan.request_timeout;
        set.spawn(async move { outcome(&http_get_via(via, &url, limit).await) });
        report.sent += 1;
        // Collect what has finished meanwhile, without waiting.
        while let Some(r) = set.try_join_next() {
            if let Ok(label) = r {
                tally(&mut report, label);
            }
        }
    }
    .to_string();
    while let Some(r) = set.join_next().await {
        if let Ok(label) = r {
            tally(&mut report, label);
        }
    }
    report.seconds = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    report
}

/// Count one answer (`crate::clients::outcome` labels a 200 by its body).
fn tally(report: &mut FloodReport, label: String) {
    if !label.starts_with("failed:") && !label.starts_with("HTTP ") {
        report.served += 1;
    }
    *report.outcomes.entry(label).or_insert(0) += 1;
}

/// Extra lab client tors to flood from (`NAME1..n`), each with a SOCKS port on
/// 127.0.0.1 (host-loopback labs only).
pub struct FloodClients {
    tors: Vec<LabTor>,
    socks: Vec<SocketAddr>,
}

impl FloodClients {
    /// Start `n` client tors named `prefix1..n` and wait until they have bootstrapped
    /// (at most `timeout`: a liveness bound).
    pub async fn start(lab: &Lab, prefix: &str, n: usize, timeout: Duration) -> Result<Self> {
        if lab.placement().netns().is_some() {
            bail!("lab flood runs on host-loopback labs only (`lab up` without --netns)");
        }
        let mut out = FloodClients {
            tors: Vec::new(),
            socks: Vec::new(),
        };
        for i in 1..=n {
            // A free port now; tor binds it a moment later (a lab on loopback: nothing
            // else of ours races for it).
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let socks = SocketAddr::from(([127, 0, 0, 1], port));
            let mut torrc = Torrc::new();
            torrc.push("SocksPort", socks)?;
            let tor = lab.spawn_tor(&format!("{prefix}{i}"), &torrc).await?;
            out.tors.push(tor);
            out.socks.push(socks);
        }
        for t in &out.tors {
            t.wait_bootstrapped(timeout).await?;
        }
        Ok(out)
    }

    /// A control connection to each.
    pub async fn controls(&self) -> Result<Vec<rustbalance_tor::ControlClient>> {
        let mut out = Vec::new();
        for t in &self.tors {
            out.push(t.control().await?);
        }
        Ok(out)
    }

    /// Their SOCKS ports.
    pub fn socks(&self) -> Vec<SocketAddr> {
        self.socks.clone()
    }

    /// Stop the client tors.
    pub async fn stop(self) -> Result<()> {
        for t in self.tors {
            tokio::task::spawn_blocking(move || t.stop())
                .await
                .context("stopping a flood client tor")??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_and_bounds() {
        let p = FloodPlan::new(4.0, 10, Duration::from_secs(60)).unwrap();
        assert_eq!(p.due(0), Duration::ZERO);
        assert_eq!(p.due(6), Duration::from_millis(1500));
        assert_eq!(p.max_in_flight, 120);
        assert!(!p.done(9, Duration::from_secs(2)));
        assert!(p.done(10, Duration::from_secs(2)), "count reached");
        let p = FloodPlan::new(2.0, 1000, Duration::from_secs(5)).unwrap();
        assert!(!p.done(9, Duration::from_millis(4500)));
        assert!(
            p.done(10, Duration::from_millis(4500)),
            "next one due at 5 s"
        );
        assert!(p.done(3, Duration::from_secs(5)), "duration over");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1001.0] {
            assert!(
                FloodPlan::new(bad, 1, Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
        assert!(FloodPlan::new(1.0, 0, Duration::from_secs(1)).is_err());
    }

    /// A port nobody listens on: every request fails at once, and the flood stops by
    /// itself at its count, or at its duration, or when told to.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stops_by_itself_at_count_or_duration_or_when_told() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socks = vec![dead.local_addr().unwrap()];
        drop(dead);
        let url = "http://example.onion/".to_string();
        let plan = FloodPlan::new(200.0, 20, Duration::from_secs(3600)).unwrap();
        let r = Flood::spawn(socks.clone(), url.clone(), plan).unwrap();
        let report = r.task.await.unwrap();
        assert_eq!((report.sent, report.served), (20, 0));
        assert_eq!(report.ended_by, "count");
        assert_eq!(report.outcomes.values().sum::<u64>(), 20);

        let plan = FloodPlan::new(200.0, 1_000_000, Duration::from_millis(100)).unwrap();
        let report = Flood::spawn(socks.clone(), url.clone(), plan)
            .unwrap()
            .task
            .await
            .unwrap();
        assert_eq!(report.ended_by, "duration");
        assert!(report.sent <= 21, "paced: {}", report.sent);

        let plan = FloodPlan::new(100.0, 1_000_000, Duration::from_secs(3600)).unwrap();
        let f = Flood::spawn(socks, url, plan).unwrap();
        let report = f.finish().await.unwrap();
        assert_eq!(report.ended_by, "stopped");
    }
}
