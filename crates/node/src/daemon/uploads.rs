//! The upload watcher: follows tor's `HS_DESC` events for the master address and counts
//! the uploads HSDirs confirmed or refused (single-node mode: tor uploads itself).

use rustbalance_tor::TorSupervisor;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Last descriptor upload seen on tor's control port.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadStatus {
    /// `HS_DESC UPLOADED` events seen.
    pub uploaded: u64,
    /// `HS_DESC FAILED` events seen (uploads).
    pub failed: u64,
    /// When the last successful upload was confirmed (RFC 3339).
    pub last_uploaded: Option<String>,
}

impl UploadStatus {
    /// Count one `HS_DESC` event of the master address.
    fn count(&mut self, action: &str, now: SystemTime) {
        match action {
            "UPLOADED" => {
                self.uploaded += 1;
                self.last_uploaded = Some(humantime::format_rfc3339_seconds(now).to_string());
            }
            "FAILED" => self.failed += 1,
            _ => {}
        }
    }
}

/// Follow `HS_DESC` events of the master address (`addr`, without `.onion`) on tor's
/// control port; reconnects after tor restarts.
pub(super) async fn watch_uploads(
    tor: Arc<TorSupervisor>,
    addr: String,
    uploads: Arc<Mutex<UploadStatus>>,
) {
    loop {
        let ctl = match tor.control().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(mut events) = ctl.take_events() else {
            return;
        };
        if ctl.setevents(&["HS_DESC"]).await.is_err() {
            continue;
        }
        while let Some(ev) = events.recv().await {
            let Some(h) = ev.hs_desc() else { continue };
            if h.address != addr {
                continue;
            }
            if let Ok(mut u) = uploads.lock() {
                u.count(&h.action, SystemTime::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_and_failures_are_counted() {
        let mut u = UploadStatus::default();
        for a in ["UPLOAD", "UPLOADED", "FAILED", "RECEIVED", "UPLOADED"] {
            u.count(a, SystemTime::UNIX_EPOCH);
        }
        assert_eq!((u.uploaded, u.failed), (2, 1));
        assert_eq!(u.last_uploaded.as_deref(), Some("1970-01-01T00:00:00Z"));
    }
}
