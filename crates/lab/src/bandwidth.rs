//! Equal consensus weights for the lab's relays: a bandwidth file for the authorities
//! (`V3BandwidthsFile`), written by the lab itself.
//!
//! Why: a private network has no bandwidth authorities, so each relay's consensus weight
//! is the bandwidth it observed itself. On loopback that spreads over orders of
//! magnitude: in a 20-relay lab, 10 relays had `w Bandwidth=0` and most of the rest 2,
//! a few 11–19. Onion services pick intro points (and clients pick middles) weighted by
//! it, so the 24 intro points of 8 services sat on about 6 relays, and a descriptor
//! (one point per relay) listed 6 where the real network would list 20. With the file,
//! every relay the authorities measure weighs the same, as on a network whose relays are
//! alike.
//!
//! The file is the bandwidth-file format's version 1.0.0: a Unix timestamp line, then
//! `node_id=$FINGERPRINT bw=N` per relay. The authorities read it again at every vote, so
//! the lab writes it once with the authorities (before they start, so that no vote finds
//! it missing) and again with every relay once their fingerprints exist.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::err::{file_err, Error, Result};

/// The weight every listed relay gets (kilobytes per second in the file's unit).
pub(crate) const EQUAL_BW: u32 = 1000;

/// The file's text for `fingerprints` (40 hex digits each) at `now`.
pub(crate) fn render(now: SystemTime, fingerprints: &[String]) -> String {
    let ts = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = format!("{ts}\n");
    for fp in fingerprints {
        out.push_str(&format!("node_id=${fp} bw={EQUAL_BW}\n"));
    }
    out
}

/// Writes the file atomically (temporary file + rename: an authority voting meanwhile
/// reads the old file or the new one, never half of one).
pub(crate) fn write(path: &Path, fingerprints: &[String]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(SystemTime::now(), fingerprints))
        .map_err(|e| file_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err("rename into", path, e))
}

/// The relay fingerprint tor wrote in its data directory (`fingerprint`: `NICK HEX`).
fn read_fingerprint(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("fingerprint")).ok()?;
    let fp = text.split_whitespace().nth(1)?.to_string();
    (fp.len() == 40 && fp.chars().all(|c| c.is_ascii_hexdigit())).then_some(fp)
}

/// Polls until every data directory in `dirs` holds its fingerprint (tor writes it at
/// start-up, before it opens its control port); fails after `limit` naming the missing.
pub(crate) async fn fingerprints(dirs: &[PathBuf], limit: Duration) -> Result<Vec<String>> {
    let t0 = Instant::now();
    loop {
        let found: Vec<Option<String>> = dirs.iter().map(|d| read_fingerprint(d)).collect();
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        if t0.elapsed() > limit {
            let missing: Vec<String> = dirs
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(d, _)| d.display().to_string())
                .collect();
            return Err(Error::Timeout {
                what: "every relay's fingerprint file".into(),
                waited: limit,
                last: format!("none yet in {}", missing.join(", ")),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_relay_after_the_timestamp() {
        let fps = vec![
            "A".repeat(40),
            "0123456789ABCDEF0123456789ABCDEF01234567".into(),
        ];
        let text = render(UNIX_EPOCH + Duration::from_secs(1_765_000_000), &fps);
        assert_eq!(
            text,
            format!(
                "1765000000\nnode_id=${} bw=1000\nnode_id=$0123456789ABCDEF0123456789ABCDEF01234567 bw=1000\n",
                "A".repeat(40)
            )
        );
    }

    #[test]
    fn a_fingerprint_file_is_read_and_a_bad_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fingerprint"),
            "r1 0123456789ABCDEF0123456789ABCDEF01234567\n",
        )
        .unwrap();
        assert_eq!(
            read_fingerprint(dir.path()).as_deref(),
            Some("0123456789ABCDEF0123456789ABCDEF01234567")
        );
        std::fs::write(dir.path().join("fingerprint"), "r1 XYZ\n").unwrap();
        assert_eq!(read_fingerprint(dir.path()), None);
    }
}
