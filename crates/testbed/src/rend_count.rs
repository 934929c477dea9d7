//! Which tor served: the rendezvous circuits each service tor builds, counted from its
//! `CIRC` events (`PURPOSE=HS_SERVICE_REND`, `BUILT`). A tor builds one per introduction
//! it answers, so a tor whose count grows served a client; the proxy behind several tors
//! (turbo mode) cannot tell them apart, their tors can.
//!
//! ```text
//!  per tor: control connection ─▶ SETEVENTS CIRC ─▶ task: CIRC <id> BUILT … PURPOSE=HS_SERVICE_REND
//!          ─▶ distinct ids counted under the tor's label ─▶ counts()
//! ```

use anyhow::Result;
use rustbalance_tor::control::Circuit;
use rustbalance_tor::ControlClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Counts, per labelled tor, the rendezvous circuits it built since [`RendCounter::watch`].
pub struct RendCounter {
    seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The id of a service-side rendezvous circuit that `event` reports built (`None` for any
/// other event).
pub fn built_rend_circuit(event_text: &str) -> Option<String> {
    let c = Circuit::parse(event_text.strip_prefix("CIRC ")?)?;
    (c.status == "BUILT" && c.purpose.as_deref() == Some("HS_SERVICE_REND")).then_some(c.id)
}

impl RendCounter {
    /// Start counting on each `(label, control connection)`.
    pub async fn watch(tors: Vec<(String, ControlClient)>) -> Result<RendCounter> {
        let seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let mut tasks = Vec::new();
        for (label, ctl) in tors {
            let mut events = ctl
                .take_events()
                .ok_or_else(|| anyhow::anyhow!("{label}: events already taken"))?;
            ctl.setevents(&["CIRC"]).await?;
            seen.lock().unwrap().entry(label.clone()).or_default();
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                // The connection lives as long as the task.
                let _ctl = ctl;
                while let Some(e) = events.recv().await {
                    if let Some(id) = built_rend_circuit(e.text()) {
                        seen.lock()
                            .unwrap()
                            .entry(label.clone())
                            .or_default()
                            .insert(id);
                    }
                }
            }));
        }
        Ok(RendCounter { seen, tasks })
    }

    /// Per label, the rendezvous circuits built so far.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }
}

impl Drop for RendCounter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_built_service_rendezvous_circuits_count() {
        let built = "CIRC 42 BUILT $AAAA~r1,$BBBB~r2 BUILD_FLAGS=IS_INTERNAL,NEED_CAPACITY \
                     PURPOSE=HS_SERVICE_REND HS_STATE=HSSR_CONNECTING REND_QUERY=abc";
        assert_eq!(built_rend_circuit(built), Some("42".into()));
        let launched = built.replace("BUILT", "LAUNCHED");
        assert_eq!(built_rend_circuit(&launched), None);
        let intro = built.replace("HS_SERVICE_REND", "HS_SERVICE_INTRO");
        assert_eq!(built_rend_circuit(&intro), None);
        assert_eq!(built_rend_circuit("HS_DESC UPLOADED x"), None);
    }
}
