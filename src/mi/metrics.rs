//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! The text is written by hand from the counters' current values rather than through a
//! metrics library: the hot-path counters are plain atomics owned by the rooms where the
//! events happen, and a library registry would either duplicate them or put its own
//! (locked) types on the SIP path. Collectors run only when `/metrics` is scraped.

use std::fmt::{Display, Write};
use std::sync::{Arc, RwLock};

/// What a family is, for its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The text being built for one scrape.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family: `bounds` are the upper bounds of the finite buckets, `cumulative`
    /// their cumulative counts followed by the +Inf bucket (which is also `_count`).
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], cumulative: &[u64], sum: f64) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for (le, count) in bounds.iter().zip(cumulative) {
            self.sample(&bucket, &[("le", &le.to_string())], count);
        }
        let total = cumulative.last().copied().unwrap_or(0);
        self.sample(&bucket, &[("le", "+Inf")], total);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], total);
    }

    pub fn into_text(self) -> String {
        self.out
    }
}

/// Something that writes families into a scrape.
pub type Collector = Arc<dyn Fn(&mut Exposition) + Send + Sync>;

/// Every collector, in registration order (the core's first, then modules').
#[derive(Default)]
pub struct Metrics {
    collectors: RwLock<Vec<Collector>>,
}

impl Metrics {
    pub fn register(&self, collector: impl Fn(&mut Exposition) + Send + Sync + 'static) {
        self.collectors.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(collector));
    }

    /// The whole exposition text.
    pub fn render(&self) -> String {
        let collectors: Vec<Collector> = self.collectors.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut e = Exposition::default();
        for c in collectors {
            c(&mut e);
        }
        e.into_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let m = Metrics::default();
        m.register(|e| {
            e.family("x_total", Kind::Counter, "Things.\nMore");
            e.sample("x_total", &[("method", "INVITE"), ("odd", "a\"b\\c")], 3);
            e.histogram("h_seconds", "Latency.", &[0.00001, 0.5], &[1, 4, 5], 0.25);
        });
        let text = m.render();
        let want = "# HELP x_total Things.\\nMore\n# TYPE x_total counter\n\
                    x_total{method=\"INVITE\",odd=\"a\\\"b\\\\c\"} 3\n\
                    # HELP h_seconds Latency.\n# TYPE h_seconds histogram\n\
                    h_seconds_bucket{le=\"0.00001\"} 1\nh_seconds_bucket{le=\"0.5\"} 4\n\
                    h_seconds_bucket{le=\"+Inf\"} 5\nh_seconds_sum 0.25\nh_seconds_count 5\n";
        assert_eq!(text, want);
    }
}
