//! Telemetry: Prometheus metrics (lock-free on the hot path) and logging setup.
//!
//! Telemetry owns the metrics: their names ([`names`]), their types and help texts, and the
//! exposition ([`exposition`], an OpenMetrics text rendered by `prometheus-client`). Subsystems
//! only count: request and connection counters are atomics reached through an `Arc` resolved when
//! the snapshot is built (a request never takes a lock or hashes a label to count itself); auth,
//! throttle, evidence and refusal accounting keep their own atomics and hand a plain stats struct
//! to the scrape ([`Scrape`]), which a `prometheus-client` `Collector` encodes.

pub mod exposition;
pub mod names;
pub mod opdata;
pub mod trace;

pub use exposition::{
    render, AuthStats, CredentialExpiryStats, IssuerStats, ProcessStats, RefusalStats, Scrape,
    ThrottleStats, UpstreamTargetStats, CONTENT_TYPE,
};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::stage::Stage;

/// Requests by status class (in [`CLASSES`] order).
type ClassCounters = [AtomicU64; 6];

/// Counters of one service (or of requests that matched no service): requests by the stage
/// that answered and status class, a duration histogram per answering stage, and requests per
/// consumer OPD (the catalogue's OPDs, looked up by binary search: no lock, no hashing).
#[derive(Debug)]
pub struct ServiceMetrics {
    by_stage_class: [ClassCounters; Stage::ALL.len()],
    buckets: [[AtomicU64; BUCKETS.len() + 1]; Stage::ALL.len()],
    sum_micros: [AtomicU64; Stage::ALL.len()],
    by_opd: ArcSwap<Vec<(String, Arc<ClassCounters>)>>,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        ServiceMetrics {
            by_stage_class: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            sum_micros: std::array::from_fn(|_| AtomicU64::new(0)),
            by_opd: ArcSwap::from_pointee(Vec::new()),
        }
    }
}

fn class_of(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

impl ServiceMetrics {
    /// Counts one answered request: `stage` answered it (the refusing stage, or dispatch),
    /// `opd` is the consumer's OPD once authenticated.
    pub fn observe(&self, stage: Stage, status: u16, elapsed: Duration, opd: Option<&str>) {
        let class = class_of(status);
        let stage_index = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.by_stage_class[stage_index][class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[stage_index][bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros[stage_index].fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(opd) = opd {
            let table = self.by_opd.load();
            if let Ok(i) = table.binary_search_by(|(id, _)| id.as_str().cmp(opd)) {
                table[i].1[class].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sets the OPDs counted (sorted, deduplicated); an OPD kept keeps its counts.
    fn set_opds(&self, opds: &[String]) {
        let old = self.by_opd.load_full();
        let table = opds
            .iter()
            .map(|id| {
                let counters = match old.binary_search_by(|(o, _)| o.cmp(id)) {
                    Ok(i) => old[i].1.clone(),
                    Err(_) => Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
                };
                (id.clone(), counters)
            })
            .collect();
        self.by_opd.store(Arc::new(table));
    }

    /// A copy of the counters for one scrape.
    pub fn counts(&self) -> ServiceCounts {
        let load = |c: &ClassCounters| std::array::from_fn(|i| c[i].load(Ordering::Relaxed));
        ServiceCounts {
            by_stage_class: std::array::from_fn(|s| load(&self.by_stage_class[s])),
            buckets: std::array::from_fn(|s| {
                std::array::from_fn(|b| self.buckets[s][b].load(Ordering::Relaxed))
            }),
            sum_micros: std::array::from_fn(|s| self.sum_micros[s].load(Ordering::Relaxed)),
            by_opd: self
                .by_opd
                .load()
                .iter()
                .map(|(id, c)| (id.clone(), load(c)))
                .filter(|(_, c)| c.iter().any(|v| *v > 0))
                .collect(),
        }
    }
}

/// Upper bounds (seconds) of the request duration histogram's buckets (`+Inf` follows).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Status classes, the `status_class` label values, in counter order.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The counters of one service at one scrape.
#[derive(Debug, Clone)]
pub struct ServiceCounts {
    /// Requests by stage (in [`Stage::ALL`] order) and status class (in [`CLASSES`] order).
    pub by_stage_class: [[u64; 6]; Stage::ALL.len()],
    /// Requests per histogram bucket by answering stage (not cumulative; the last is `+Inf`).
    pub buckets: [[u64; BUCKETS.len() + 1]; Stage::ALL.len()],
    /// Sum of request durations in microseconds, by answering stage.
    pub sum_micros: [u64; Stage::ALL.len()],
    /// Requests by consumer OPD and status class (OPDs with none left out).
    pub by_opd: Vec<(String, [u64; 6])>,
}

/// The counters of one listener at one scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerCounts {
    /// Open connections.
    pub open: u64,
    /// Accepted connections.
    pub total: u64,
    /// Connections refused at the limit.
    pub rejected: u64,
    /// Connection-level errors.
    pub errors: u64,
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

impl ListenerMetrics {
    /// A copy of the counters for one scrape.
    pub fn counts(&self) -> ListenerCounts {
        ListenerCounts {
            open: self.open.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// All metrics of the process; survives reloads.
#[derive(Debug, Default)]
pub struct Metrics {
    services: Mutex<HashMap<String, Arc<ServiceMetrics>>>,
    opds: Mutex<Vec<String>>,
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
        let mut services = self.services.lock();
        if let Some(found) = services.get(id) {
            return found.clone();
        }
        let created = Arc::new(ServiceMetrics::default());
        created.set_opds(&self.opds.lock());
        services.insert(id.to_owned(), created.clone());
        created
    }

    /// The catalogue's OPDs, whose requests are counted per service (at build time).
    pub fn set_opds(&self, opds: &[String]) {
        let mut sorted = opds.to_vec();
        sorted.sort();
        sorted.dedup();
        for service in self.services.lock().values() {
            service.set_opds(&sorted);
        }
        *self.opds.lock() = sorted;
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

    /// The process counters (services, listeners, reloads), copied for one scrape.
    pub fn stats(&self) -> ProcessStats {
        let mut services: Vec<(String, ServiceCounts)> = self
            .services
            .lock()
            .iter()
            .map(|(id, m)| (id.clone(), m.counts()))
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        let listeners = self
            .listeners
            .lock()
            .iter()
            .map(|(name, m)| (name.clone(), m.counts()))
            .collect();
        ProcessStats {
            services,
            listeners,
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_refused: self.reloads_failed.load(Ordering::Relaxed),
        }
    }
}

/// The `[telemetry]` table.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OpenTelemetry traces over OTLP/gRPC; absent means off (restart to change).
    #[serde(default)]
    pub traces: Option<trace::TraceSettings>,
    /// The operational-data index, built from the evidence log; absent means none.
    #[serde(default)]
    pub opdata: Option<opdata::OpdataSettings>,
}

impl TelemetrySettings {
    /// Every problem with its path.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = self
            .traces
            .as_ref()
            .map(trace::TraceSettings::problems)
            .unwrap_or_default();
        if let Some(opdata) = &self.opdata {
            found.extend(opdata.problems());
        }
        found
    }
}

/// Sets up `tracing` output (text or JSON) filtered by `RUST_LOG` (default `info`).
pub fn init_logging(json: bool) {
    let _ = init(json, None, "");
}

/// Sets up `tracing` output (text or JSON, filtered by `RUST_LOG`, default `info`) and, when
/// `traces` is given, OpenTelemetry traces (see [`trace`]; must then run inside a tokio
/// runtime). The log output never shows the trace spans. Returns what must be flushed at exit.
pub fn init(
    json: bool,
    traces: Option<&trace::TraceSettings>,
    node: &str,
) -> Result<Option<trace::Tracing>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let filter = match format!("{}=off", trace::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    match traces {
        None => {
            let _ = registry.try_init();
            Ok(None)
        }
        Some(settings) => {
            let (tracing, layer) = trace::install(settings, node)?;
            let only_traces = tracing_subscriber::filter::Targets::new()
                .with_target(trace::TARGET, tracing::Level::TRACE);
            registry
                .with(layer.with_filter(only_traces))
                .try_init()
                .map_err(|e| format!("telemetry: {e}"))?;
            Ok(Some(tracing))
        }
    }
}

#[cfg(test)]
mod tests;
