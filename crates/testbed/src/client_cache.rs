//! What the lab client holds for a master address, and making it fetch afresh.
//!
//! A tor client keeps a fetched descriptor until it expires or every intro point in it
//! has failed (`hs_cache.c`). After a publisher uploads a newer descriptor, a client that
//! fetched the older one keeps using the older intro points: a node added since is
//! listed at the HSDirs and never asked by that client. Publishing is confirmed by
//! *one* HSDir per descriptor ([`crate::confirmed`]); another HSDir of the same slot may
//! still hold the older descriptor for a moment, so even a fresh fetch can get it. A lab
//! test that counts which node served must first make its client hold the newest
//! descriptor ([`refetch_until`]), or a node looks silent when the client simply never
//! learnt of it.

use anyhow::{Context, Result};
use rustbalance_hs::descriptor::{parse_descriptor, ParsedDescriptor};
use rustbalance_hs::{OnionAddress, TimeParams};
use rustbalance_lab::Lab;
use rustbalance_tor::ControlClient;
use std::time::{Duration, Instant, SystemTime};

/// tor delays a NEWNYM that comes within 10 s of the previous one.
const NEWNYM_SPACING: Duration = Duration::from_secs(11);

/// The descriptor of `master` the lab client holds now, parsed (None: none cached).
pub async fn cached(
    ctl: &ControlClient,
    master: &OnionAddress,
) -> Result<Option<ParsedDescriptor>> {
    let Ok(text) = ctl
        .getinfo(&format!("hs/client/desc/id/{}", master.without_suffix()))
        .await
    else {
        // tor answers 551 when it has no descriptor for the address.
        return Ok(None);
    };
    let d = parse_descriptor(&text, master, &TimeParams::testing(20), SystemTime::now())
        .context("parse the lab client's cached master descriptor")?;
    Ok(Some(d))
}

/// One line for a test log: what the lab client holds for `master`.
pub async fn describe(ctl: &ControlClient, master: &OnionAddress) -> String {
    match cached(ctl, master).await {
        Ok(Some(d)) => format!(
            "the lab client holds revision {} with {} intro points",
            d.revision,
            d.intro_points.len()
        ),
        Ok(None) => "the lab client holds no descriptor".into(),
        Err(e) => format!("the lab client's descriptor: {e:#}"),
    }
}

/// NEWNYM to the lab client (it forgets descriptors, failure caches, circuits and every
/// client-authorization key given over the control port); tor refuses to act on one
/// within 10 s of the last, so this keeps them [`NEWNYM_SPACING`] apart (a rate limit of
/// tor's, not a wait for something to happen).
#[derive(Debug, Default)]
pub struct Newnym(Option<Instant>);

impl Newnym {
    /// A pacer that counts one NEWNYM as sent just now: its first [`Self::send`] waits
    /// the whole spacing (when another pacer, or another scenario, may have sent one).
    pub fn assume_recent() -> Self {
        Newnym(Some(Instant::now()))
    }

    /// Waits out the spacing since the previous one this pacer sent.
    pub async fn wait(&self) {
        if let Some(at) = self.0 {
            tokio::time::sleep(NEWNYM_SPACING.saturating_sub(at.elapsed())).await;
        }
    }

    /// Sends one, waiting out the spacing since the previous one this pacer sent.
    pub async fn send(&mut self, ctl: &ControlClient) -> Result<()> {
        self.wait().await;
        ctl.signal("NEWNYM").await?;
        self.0 = Some(Instant::now());
        Ok(())
    }
}

/// NEWNYM to the lab client every [`NEWNYM_SPACING`] until stopped, beside a client loop:
/// each makes it forget its descriptors, so its next request fetches one again from a
/// random responsible HSDir — as clients over time do, rather than one client holding
/// one descriptor for the whole run (per-HSDir descriptors differ by HSDir, and tor
/// changes its `pow-params` at most every 5 minutes).
pub struct NewnymLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<Result<usize>>,
}

impl NewnymLoop {
    /// Starts it (its first NEWNYM waits one spacing).
    pub async fn spawn(lab: &Lab) -> Result<NewnymLoop> {
        let ctl = ControlClient::connect_authenticated(lab.client_control_addr()).await?;
        Ok(Self::spawn_for(vec![ctl]))
    }

    /// The same for each of `ctls` (a flood's client tors: a flood from many clients
    /// fetches descriptors from every HSDir, not the one each tor fetched first).
    pub fn spawn_for(ctls: Vec<ControlClient>) -> NewnymLoop {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = tokio::spawn(async move {
            let mut newnym = Newnym::assume_recent();
            let mut sent = 0;
            loop {
                newnym.wait().await;
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(sent);
                }
                for ctl in &ctls {
                    ctl.signal("NEWNYM").await?;
                }
                newnym = Newnym::assume_recent();
                sent += 1;
            }
        });
        NewnymLoop { stop, handle }
    }

    /// Stops it; how many NEWNYMs it sent (0 if it failed, with the error printed).
    pub async fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        match self.handle.await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                eprintln!("the NEWNYM loop stopped: {e:#}");
                0
            }
            Err(_) => 0,
        }
    }
}

/// Make the lab client forget its descriptors (NEWNYM), reach `master` (which fetches
/// the descriptor again from an HSDir) and read what it fetched, until `accept` takes it.
/// NEWNYMs are kept 11 s apart (tor's rate limit, not a wait for something). Fails
/// after `timeout` with what the client last held.
pub async fn refetch_until(
    lab: &Lab,
    master: &OnionAddress,
    timeout: Duration,
    mut accept: impl FnMut(&ParsedDescriptor) -> bool,
) -> Result<(ParsedDescriptor, Duration)> {
    let ctl = ControlClient::connect_authenticated(lab.client_control_addr()).await?;
    let url = format!("http://{master}/");
    let t0 = Instant::now();
    let mut newnym = Newnym::default();
    let mut held = String::from("nothing yet");
    loop {
        newnym.send(&ctl).await?;
        // A failed request is retried by the loop: the fetch is what matters.
        let _ = lab
            .wait_http(&url, "served by", Duration::from_secs(60))
            .await;
        if let Some(d) = cached(&ctl, master).await? {
            if accept(&d) {
                return Ok((d, t0.elapsed()));
            }
            held = format!(
                "revision {} with {} intro points",
                d.revision,
                d.intro_points.len()
            );
        }
        anyhow::ensure!(
            t0.elapsed() < timeout,
            "the lab client never fetched the descriptor wanted within {timeout:?}; it last held {held}"
        );
    }
}

/// [`refetch_until`] the lab client holds a descriptor at least as new as the one
/// `publication` (a node's `last_publish` record) uploaded for the same time period.
pub async fn refetch_publication(
    lab: &Lab,
    master: &OnionAddress,
    publication: &serde_json::Value,
    timeout: Duration,
) -> Result<ParsedDescriptor> {
    let (d, took) = refetch_until(lab, master, timeout, |d| {
        crate::cluster::publication::revision_for(publication, d.period_num)
            .is_some_and(|r| d.revision >= r)
    })
    .await?;
    eprintln!(
        "the lab client fetched the publication (revision {}, {} intro points) in {:.1}s",
        d.revision,
        d.intro_points.len(),
        took.as_secs_f64()
    );
    Ok(d)
}
