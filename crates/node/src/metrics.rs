//! One metrics registry for the node: each component registers a closure
//! that writes its own series in the Prometheus text format. Labels never
//! carry keys, onion addresses or client data.

use std::fmt::Write;
use std::sync::{Arc, Mutex};

type Source = Box<dyn Fn(&mut MetricsWriter<'_>) + Send + Sync>;

/// The registry.
#[derive(Default, Clone)]
pub struct Metrics {
    sources: Arc<Mutex<Vec<Source>>>,
}

/// Writes series in the Prometheus text exposition format.
pub struct MetricsWriter<'a> {
    out: &'a mut String,
}

impl MetricsWriter<'_> {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A counter (monotonic).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// A gauge with one label (the value must be a fixed word, never client data).
    pub fn gauge_labeled(&mut self, name: &str, help: &str, label: &str, values: &[(&str, f64)]) {
        self.header(name, help, "gauge");
        for (l, v) in values {
            let _ = writeln!(self.out, "{name}{{{label}=\"{l}\"}} {v}");
        }
    }
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a component's series.
    pub fn register(&self, f: impl Fn(&mut MetricsWriter<'_>) + Send + Sync + 'static) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    /// The whole exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut w = MetricsWriter { out: &mut out };
        for s in self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            s(&mut w);
        }
        out
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = Metrics::new();
        m.register(|w| w.counter("rb_x_total", "X things.", 3));
        m.register(|w| w.gauge_labeled("rb_up", "Up.", "component", &[("tor", 1.0)]));
        let t = m.render();
        assert!(
            t.contains("# TYPE rb_x_total counter\nrb_x_total 3\n"),
            "{t}"
        );
        assert!(t.contains("rb_up{component=\"tor\"} 1\n"), "{t}");
    }
}
