//! Following a growing log file (Onionbalance's) and remembering when each
//! line first appeared.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Polls a log file; every whole new line is kept with the moment it was
/// first seen.
pub struct LogWatch {
    path: PathBuf,
    offset: usize,
    /// Lines seen so far, with when they were first seen.
    pub lines: Vec<(Instant, String)>,
}

impl LogWatch {
    /// Watch `path` (it may not exist yet).
    pub fn new(path: &Path) -> Self {
        LogWatch {
            path: path.to_path_buf(),
            offset: 0,
            lines: Vec::new(),
        }
    }

    /// Read what was appended since the last poll (whole lines only).
    pub fn poll(&mut self) {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return;
        };
        if bytes.len() <= self.offset {
            return;
        }
        let now = Instant::now();
        let new = &bytes[self.offset..];
        let Some(end) = new.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        for l in String::from_utf8_lossy(&new[..end]).lines() {
            self.lines.push((now, l.to_string()));
        }
        self.offset += end + 1;
    }

    /// Index past the last line seen so far.
    pub fn mark(&self) -> usize {
        self.lines.len()
    }

    /// When the first line matching `pred` was seen.
    pub fn first(&self, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        self.lines.iter().find(|(_, l)| pred(l)).map(|(t, _)| *t)
    }

    /// The last `n` lines, oldest first, one per line.
    pub fn tail(&self, n: usize) -> String {
        let from = self.lines.len().saturating_sub(n);
        self.lines[from..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("log");
        let mut w = LogWatch::new(&f);
        w.poll();
        assert_eq!(w.mark(), 0);
        std::fs::write(&f, "one\ntw").unwrap();
        w.poll();
        assert_eq!(w.mark(), 1);
        std::fs::write(&f, "one\ntwo\nthree\n").unwrap();
        w.poll();
        assert_eq!(w.tail(5), "one\ntwo\nthree");
        assert!(w.first(|l| l == "two").is_some());
        assert!(w.first(|l| l == "four").is_none());
    }
}
