//! The daemon's logs: `rustbalance run --log-format text|json` (the command
//! maps its flag to [`LogFormat`]).
//!
//! Text is for people (`journalctl -u rustbalance`); JSON is for machines
//! (Loki, Elasticsearch, `jq`): one object per line with the same fields as a
//! text line, flattened: `timestamp`, `level`, `target`, `message`, every
//! field of the event under its own name, and `spans` (the enclosing spans
//! with their fields) when there are any. `RUST_LOG` filters both (default
//! `info`). Colour only when stderr is a terminal, so journald and files get
//! plain text.

use std::io::IsTerminal;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How `run` writes its log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, same fields as text.
    Json,
}

/// `RUST_LOG`, or `info` when it is unset or does not parse.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The subscriber writing `format` lines to `writer`, filtered by `filter`.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(b.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            b.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Log to stderr in `format` for the rest of the process. A second call (a
/// subscriber already set) keeps the first one.
pub fn init(format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing::subscriber::set_global_default(subscriber(
        format,
        filter(),
        std::io::stderr,
        ansi,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'w> MakeWriter<'w> for Buf {
        type Writer = Buf;
        fn make_writer(&'w self) -> Buf {
            self.clone()
        }
    }

    /// The same events logged in `format`, as text.
    fn log(format: LogFormat) -> String {
        let buf = Buf::default();
        let sub = subscriber(format, EnvFilter::new("info"), buf.clone(), false);
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("publish", period = 20_000u64);
            let _g = span.enter();
            tracing::warn!(
                node = "node2",
                hsdirs = 6u64,
                "upload failed: check the node's clock and tor's log"
            );
            tracing::info!("second line\nwith a newline inside");
            tracing::debug!("filtered out");
        });
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_is_one_object_per_line_with_the_fields_of_text() {
        let text = log(LogFormat::Text);
        let json = log(LogFormat::Json);
        let text_lines: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
        assert_eq!(text_lines.len(), 1, "{text}");
        let t = text_lines[0];
        for part in [
            "WARN",
            "publish{period=20000}",
            "upload failed: check the node's clock and tor's log",
            "node=\"node2\"",
            "hsdirs=6",
        ] {
            assert!(t.contains(part), "text line lacks {part}: {t}");
        }

        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "two events pass the filter, one line each: {json}"
        );
        let w = &lines[0];
        assert!(
            w["timestamp"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{w}"
        );
        assert_eq!(w["level"], "WARN");
        assert_eq!(w["target"], module_path!());
        assert_eq!(
            w["message"],
            "upload failed: check the node's clock and tor's log"
        );
        assert_eq!(w["node"], "node2");
        assert_eq!(w["hsdirs"], 6);
        assert_eq!(w["spans"][0]["name"], "publish");
        assert_eq!(w["spans"][0]["period"], 20_000);
        // A newline inside a message stays inside its JSON string.
        assert_eq!(lines[1]["message"], "second line\nwith a newline inside");
    }
}
