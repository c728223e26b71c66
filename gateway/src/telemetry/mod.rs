//! Telemetry: Prometheus metrics (lock-free on the hot path) and logging setup.
//!
//! Counters are atomics reached through an `Arc` resolved when the runtime is built, so a request
//! never takes a lock or hashes a label to count itself.

pub(crate) mod names;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::stage::Stage;

const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Counters of one service (or of requests that matched no service).
#[derive(Debug)]
pub struct ServiceMetrics {
    by_stage_class: [[AtomicU64; 6]; Stage::ALL.len()],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        ServiceMetrics {
            by_stage_class: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl ServiceMetrics {
    /// Counts one answered request.
    pub fn observe(&self, stage: Stage, status: u16, elapsed: Duration) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        let stage_index = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.by_stage_class[stage_index][class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Open connections.
    pub open: AtomicU64,
    /// Accepted connections.
    pub total: AtomicU64,
    /// Connections refused at the limit.
    pub rejected: AtomicU64,
    /// Protocol errors at connection level.
    pub errors: AtomicU64,
}

/// All metrics of the process; survives reloads.
#[derive(Debug, Default)]
pub struct Metrics {
    services: Mutex<HashMap<String, Arc<ServiceMetrics>>>,
    listeners: Mutex<Vec<(String, Arc<ListenerMetrics>)>>,
    /// Successful reloads.
    pub reloads_ok: AtomicU64,
    /// Refused reloads.
    pub reloads_failed: AtomicU64,
}

/// The label used for requests that matched no service.
pub const NO_SERVICE: &str = "-";

impl Metrics {
    /// The counters of a service, created on first use (at build time, not per request).
    pub fn service(&self, id: &str) -> Arc<ServiceMetrics> {
        self.services
            .lock()
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// The counters of a listener.
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let mut listeners = self.listeners.lock();
        if let Some((_, m)) = listeners.iter().find(|(n, _)| n == name) {
            return m.clone();
        }
        let m = Arc::new(ListenerMetrics::default());
        listeners.push((name.to_owned(), m.clone()));
        m
    }

    /// Renders the Prometheus text exposition of the gateway's own counters.
    pub fn render(&self, out: &mut String) {
        let services: Vec<(String, Arc<ServiceMetrics>)> = self
            .services
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let _ = writeln!(
            out,
            "# HELP {} Requests answered, by service, stage and status class.",
            names::REQUESTS
        );
        let _ = writeln!(out, "# TYPE {} counter", names::REQUESTS);
        for (id, m) in &services {
            for (si, stage) in Stage::ALL.iter().enumerate() {
                for (ci, class) in CLASSES.iter().enumerate() {
                    let v = m.by_stage_class[si][ci].load(Ordering::Relaxed);
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "{}{{service=\"{}\",stage=\"{}\",status_class=\"{}\"}} {}",
                            names::REQUESTS,
                            escape(id),
                            stage.as_str(),
                            class,
                            v
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP {} Request duration in seconds, by service.",
            names::REQUEST_SECONDS
        );
        let _ = writeln!(out, "# TYPE {} histogram", names::REQUEST_SECONDS);
        for (id, m) in &services {
            let mut cumulative = 0u64;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += m.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{}_bucket{{service=\"{}\",le=\"{}\"}} {}",
                    names::REQUEST_SECONDS,
                    escape(id),
                    bound,
                    cumulative
                );
            }
            cumulative += m.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{}_bucket{{service=\"{}\",le=\"+Inf\"}} {}",
                names::REQUEST_SECONDS,
                escape(id),
                cumulative
            );
            let sum = m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "{}_sum{{service=\"{}\"}} {}",
                names::REQUEST_SECONDS,
                escape(id),
                sum
            );
            let _ = writeln!(
                out,
                "{}_count{{service=\"{}\"}} {}",
                names::REQUEST_SECONDS,
                escape(id),
                cumulative
            );
        }
        let listeners = self.listeners.lock().clone();
        for (metric, kind, help, get) in [
            (names::CONNECTIONS_OPEN, "gauge", "Open connections.", 0),
            (
                names::CONNECTIONS_TOTAL,
                "counter",
                "Accepted connections.",
                1,
            ),
            (
                names::CONNECTIONS_REJECTED,
                "counter",
                "Connections closed at the connection limit.",
                2,
            ),
            (
                names::CONNECTION_ERRORS,
                "counter",
                "Connection-level protocol and TLS errors.",
                3,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for (name, m) in &listeners {
                let v = match get {
                    0 => m.open.load(Ordering::Relaxed),
                    1 => m.total.load(Ordering::Relaxed),
                    2 => m.rejected.load(Ordering::Relaxed),
                    _ => m.errors.load(Ordering::Relaxed),
                };
                let _ = writeln!(out, "{metric}{{listener=\"{}\"}} {v}", escape(name));
            }
        }
        let _ = writeln!(
            out,
            "# HELP {} Config reloads by result.\n# TYPE {} counter",
            names::RELOADS,
            names::RELOADS
        );
        let _ = writeln!(
            out,
            "{}{{result=\"ok\"}} {}",
            names::RELOADS,
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "{}{{result=\"refused\"}} {}",
            names::RELOADS,
            self.reloads_failed.load(Ordering::Relaxed)
        );
    }
}

/// Escapes a Prometheus label value.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Sets up `tracing` output (text or JSON) filtered by `RUST_LOG` (default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_requests() {
        let metrics = Metrics::default();
        let s = metrics.service("kependudukan");
        s.observe(Stage::Dispatch, 200, Duration::from_millis(3));
        s.observe(Stage::Route, 404, Duration::from_micros(50));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("penghubung_requests_total{service=\"kependudukan\",stage=\"dispatch\",status_class=\"2xx\"} 1"));
        assert!(out.contains("penghubung_requests_total{service=\"kependudukan\",stage=\"route\",status_class=\"4xx\"} 1"));
        assert!(
            out.contains("penghubung_request_duration_seconds_count{service=\"kependudukan\"} 2")
        );
    }
}
