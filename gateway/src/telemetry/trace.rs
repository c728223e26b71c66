//! OpenTelemetry traces: one span per exchange, a child span per pipeline stage, one per upstream
//! attempt, exported over OTLP/gRPC (tonic) when `[telemetry.traces]` is configured.
//!
//! **Off by default, and nil when off.** Nothing here creates a span unless [`install`] ran
//! (the `[telemetry.traces]` table is present): [`exchange`] and [`stage`] check one atomic flag
//! and return `Span::none()`, and the upstream adapter's attempt hook is not installed. The
//! `tracing` callsites of the spans use their own target ([`TARGET`]), which the log output
//! never shows, so turning logs up does not create them either.
//!
//! **Spans.** `exchange` (kind server, from `pipeline::handle`): `admit`, `route`,
//! `authenticate`, `authorize`, `throttle`, `record_request`, `dispatch` (with one `attempt` per
//! upstream attempt, inside the adapter), `record_outcome` (or `record_refusal`). Attributes hold
//! ids only — exchange id, service (Layanan) id, consumer OPD and application ids, grant id,
//! upstream target, status, refusal stage and reason — never a path, query, header or body
//! value.
//!
//! **Trace context.** A valid incoming `traceparent` is the exchange span's parent; the trace id
//! the evidence records carry is the span's, and upstreams get a `traceparent` naming the
//! attempt span as their parent.
//!
//! **Sampling** ([`GatewaySampler`]): parent-based, with the ratio for new traces. An exchange
//! not sampled is still recorded (not its stages), so that a refusal is always exported; the
//! processor ([`QueueProcessor`]) drops unsampled spans that are not refusals.
//!
//! **Exporting never slows or fails a request**: a finished span goes into a bounded queue with
//! `try_send`; when the queue is full, or an export fails or times out, the spans are counted as
//! dropped (`penghubung_trace_spans_dropped_total`) and forgotten.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, SpanKind, TraceContextExt, TraceId, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, ShouldSample, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span exported as a trace (the log output filters it out).
pub const TARGET: &str = "penghubung::otel";

/// The attribute that marks a refused exchange (its value is the refusal's reason code).
pub const REFUSAL_REASON: &str = "penghubung.refusal.reason";

/// The `[telemetry.traces]` table. Its presence turns tracing on (it needs a restart to change).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceSettings {
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// The share of new traces sampled (0.0 to 1.0); a client's `traceparent` decides for the
    /// traces it continues. Refusals are exported whatever this says.
    #[serde(default = "default_ratio")]
    pub sampling_ratio: f64,
    /// Finished spans waiting for export; beyond it, spans are dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue_size: usize,
}

fn default_ratio() -> f64 {
    1.0
}

fn default_queue() -> usize {
    2048
}

impl TraceSettings {
    /// Every problem with its path under `telemetry.traces`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let scheme_ok =
            self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://");
        if !scheme_ok || self.endpoint.parse::<http::Uri>().is_err() {
            found.push((
                "telemetry.traces.endpoint".to_owned(),
                format!("not an http(s) URL: {:?}", self.endpoint),
            ));
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            found.push((
                "telemetry.traces.sampling_ratio".to_owned(),
                "must be between 0.0 and 1.0".to_owned(),
            ));
        }
        if !(1..=1_000_000).contains(&self.queue_size) {
            found.push((
                "telemetry.traces.queue_size".to_owned(),
                "must be 1 to 1000000".to_owned(),
            ));
        }
        found
    }
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether traces are on (set once by [`install`]).
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Spans exported and spans dropped (queue full, export failed or timed out), for `/metrics`.
pub fn span_counts() -> (u64, u64) {
    (
        EXPORTED.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
    )
}

/// The exchange span, continuing the client's `traceparent` when valid. `Span::none()` when
/// traces are off.
pub fn exchange(headers: &http::HeaderMap, exchange_id: &str, method: &str) -> tracing::Span {
    if !active() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "exchange",
        otel.kind = "server",
        otel.status_code = Empty,
        penghubung.exchange_id = exchange_id,
        http.request.method = method,
        penghubung.service = Empty,
        penghubung.consumer.opd = Empty,
        penghubung.consumer.application = Empty,
        penghubung.grant = Empty,
        http.response.status_code = Empty,
        penghubung.refusal.stage = Empty,
        penghubung.refusal.reason = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// A stage's span, a child of the current span (the exchange, whose future is instrumented).
/// `Span::none()` when traces are off.
pub fn stage(name: &'static str) -> tracing::Span {
    if !active() {
        return tracing::Span::none();
    }
    tracing::info_span!(target: TARGET, "stage", otel.name = name)
}

/// The current span when traces are on (to parent work that outlives the exchange's future, such
/// as recording the outcome when a streamed body ends); `Span::none()` otherwise.
pub fn current() -> tracing::Span {
    if !active() {
        return tracing::Span::none();
    }
    tracing::Span::current()
}

/// A stage's span under `parent` (see [`current`]).
pub fn stage_under(parent: &tracing::Span, name: &'static str) -> tracing::Span {
    if parent.is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(target: TARGET, parent: parent, "stage", otel.name = name)
}

/// The trace context of the current span as (trace id, span id, flags), when traces are on:
/// admission takes it as the exchange's W3C trace context, so evidence and traces agree.
pub fn current_context() -> Option<(u128, u64, u8)> {
    if !active() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        (
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
            sc.trace_flags().to_u8(),
        )
    })
}

/// What an exchange came to, for its span's attributes (ids only).
#[derive(Debug, Default)]
pub struct Finished<'a> {
    /// Service (Layanan) id.
    pub service: Option<&'a str>,
    /// Consumer OPD id.
    pub opd: Option<&'a str>,
    /// Consumer application id.
    pub application: Option<&'a str>,
    /// Grant id.
    pub grant: Option<&'a str>,
    /// Response status.
    pub status: u16,
    /// The refusal's stage and reason code.
    pub refusal: Option<(&'a str, &'a str)>,
}

/// Writes the exchange's attributes on its span.
pub fn finish(span: &tracing::Span, facts: &Finished<'_>) {
    if span.is_none() {
        return;
    }
    if let Some(service) = facts.service {
        span.record("penghubung.service", service);
    }
    if let Some(opd) = facts.opd {
        span.record("penghubung.consumer.opd", opd);
    }
    if let Some(application) = facts.application {
        span.record("penghubung.consumer.application", application);
    }
    if let Some(grant) = facts.grant {
        span.record("penghubung.grant", grant);
    }
    span.record("http.response.status_code", facts.status);
    if let Some((stage, reason)) = facts.refusal {
        span.record("penghubung.refusal.stage", stage);
        span.record(REFUSAL_REASON, reason);
    }
    if facts.status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// The span of one upstream attempt (installed as the adapter's hook by [`install`]).
fn attempt_span(target: &str, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "attempt",
        otel.kind = "client",
        penghubung.upstream = target,
        penghubung.attempt = attempt,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

fn attempt_inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

fn attempt_end(span: &tracing::Span, result: Result<u16, &'static str>) {
    match result {
        Ok(status) => span.record("http.response.status_code", status),
        Err(class) => span.record("error.type", class),
    };
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Parent-based sampling with a ratio for new traces, recording (not exporting) what it does not
/// sample so that a refusal can still be exported: a remote parent's flag or the ratio decides
/// for the exchange span (`RecordOnly` when not sampled); a local parent's flag decides for its
/// children (`Drop` when not sampled: stages of unsampled exchanges are never recorded).
#[derive(Debug, Clone)]
pub struct GatewaySampler {
    ratio: Sampler,
}

impl GatewaySampler {
    /// Samples new traces at `ratio`.
    pub fn new(ratio: f64) -> GatewaySampler {
        GatewaySampler {
            ratio: Sampler::TraceIdRatioBased(ratio),
        }
    }
}

impl ShouldSample for GatewaySampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .map(|c| c.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let decision = match &parent {
            Some(p) if p.is_sampled() => SamplingDecision::RecordAndSample,
            Some(p) if !p.is_remote() => SamplingDecision::Drop,
            Some(_) => SamplingDecision::RecordOnly,
            None => match self
                .ratio
                .should_sample(None, trace_id, name, span_kind, attributes, links)
                .decision
            {
                SamplingDecision::RecordAndSample => SamplingDecision::RecordAndSample,
                _ => SamplingDecision::RecordOnly,
            },
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
        }
    }
}

/// Whether a finished span is exported: sampled, or an unsampled exchange that was refused.
fn exported(span: &SpanData) -> bool {
    span.span_context.is_sampled()
        || span
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == REFUSAL_REASON)
}

/// The span processor: a bounded queue in front of a tokio task that exports in batches.
/// `on_end` never waits; a full queue drops the span (counted). The task exports when 512 spans
/// are waiting or 200 ms after the first one, each export bounded by 5 s; a failed or timed-out
/// export counts its spans as dropped.
#[derive(Debug)]
pub struct QueueProcessor {
    queue: mpsc::Sender<SpanData>,
    flush: Arc<tokio::sync::Notify>,
    busy: Arc<AtomicBool>,
}

const BATCH: usize = 512;
const LINGER: Duration = Duration::from_millis(200);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

impl QueueProcessor {
    /// Starts the export task on the current tokio runtime.
    pub fn start<E: SpanExporter + 'static>(exporter: E, queue_size: usize) -> QueueProcessor {
        let (queue, spans) = mpsc::channel(queue_size);
        let flush = Arc::new(tokio::sync::Notify::new());
        let busy = Arc::new(AtomicBool::new(false));
        tokio::spawn(export_loop(exporter, spans, flush.clone(), busy.clone()));
        QueueProcessor { queue, flush, busy }
    }
}

async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    flush: Arc<tokio::sync::Notify>,
    busy: Arc<AtomicBool>,
) {
    while let Some(first) = spans.recv().await {
        busy.store(true, Ordering::SeqCst);
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                next = spans.recv() => match next {
                    Some(span) => batch.push(span),
                    None => break,
                },
                _ = &mut linger => break,
                _ = flush.notified() => break,
            }
        }
        let count = batch.len() as u64;
        match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await {
            Ok(Ok(())) => EXPORTED.fetch_add(count, Ordering::Relaxed),
            Ok(Err(error)) => {
                tracing::debug!(%error, spans = count, "trace export failed; spans dropped");
                DROPPED.fetch_add(count, Ordering::Relaxed)
            }
            Err(_) => {
                tracing::debug!(spans = count, "trace export timed out; spans dropped");
                DROPPED.fetch_add(count, Ordering::Relaxed)
            }
        };
        busy.store(false, Ordering::SeqCst);
    }
}

impl opentelemetry_sdk::trace::SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !exported(&span) {
            return;
        }
        if self.queue.try_send(span).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the export task to send what it holds now (it does not wait for the export: this
    /// may be called on a runtime thread).
    fn force_flush(&self) -> OTelSdkResult {
        self.flush.notify_one();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.flush.notify_one();
        Ok(())
    }
}

/// Tracing in force: the provider and the processor's queue, kept so that
/// [`Tracing::shutdown`] can flush them.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    queue: mpsc::Sender<SpanData>,
    flush: Arc<tokio::sync::Notify>,
    busy: Arc<AtomicBool>,
}

impl Tracing {
    /// Exports what is queued, waiting at most the linger plus one export's timeout.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + LINGER + EXPORT_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let idle = self.queue.capacity() == self.queue.max_capacity()
                && !self.busy.load(Ordering::SeqCst);
            if idle {
                break;
            }
            self.flush.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.provider.shutdown();
    }
}

/// Builds the OTLP/gRPC exporter, the processor and the provider, installs the adapter's attempt
/// hook and turns traces on. Returns the layer to add to the subscriber. Must run inside a
/// tokio runtime (the gRPC channel and the export task live on it).
pub fn install<S>(
    settings: &TraceSettings,
    node: &str,
) -> Result<
    (
        Tracing,
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("telemetry.traces: {e}"))?;
    let resource = Resource::builder()
        .with_service_name("penghubung")
        .with_attribute(KeyValue::new("service.instance.id", node.to_owned()))
        .build();
    let processor = QueueProcessor::start(exporter, settings.queue_size);
    let (queue, flush, busy) = (
        processor.queue.clone(),
        processor.flush.clone(),
        processor.busy.clone(),
    );
    let provider = SdkTracerProvider::builder()
        .with_sampler(GatewaySampler::new(settings.sampling_ratio))
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("penghubung");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_level(false)
        .with_target(false);
    penghubung_adapter::set_attempt_tracing(penghubung_adapter::AttemptTracing {
        span: attempt_span,
        inject: attempt_inject,
        end: attempt_end,
    });
    ACTIVE.store(true, Ordering::Relaxed);
    Ok((
        Tracing {
            provider,
            queue,
            flush,
            busy,
        },
        layer,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Traces off (no `install` in this test process): no span is created, and the helpers
    /// cost a relaxed load each (the time is printed: `--nocapture`).
    #[test]
    fn with_traces_off_no_span_is_created() {
        assert!(!active());
        let headers = http::HeaderMap::new();
        assert!(exchange(&headers, "id", "GET").is_none());
        assert!(stage("admit").is_none());
        assert!(current().is_none());
        assert!(stage_under(&tracing::Span::none(), "record_outcome").is_none());
        assert_eq!(current_context(), None);
        assert!(penghubung_adapter::attempt_tracing().is_none());
        let rounds = 1_000_000u32;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            let span = exchange(&headers, "id", "GET");
            for name in ["admit", "route", "authenticate", "authorize", "throttle"] {
                std::hint::black_box(stage(name));
            }
            finish(&span, &Finished::default());
        }
        let per = started.elapsed() / rounds;
        // The floor: the same number of `Span::none()` made and dropped, nothing checked.
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            for _ in 0..6 {
                std::hint::black_box(tracing::Span::none());
            }
        }
        let floor = started.elapsed() / rounds;
        println!("traces off: one exchange's span calls take {per:?} (Span::none() x6: {floor:?})");
    }

    #[test]
    fn settings_problems_name_their_field() {
        let bad = TraceSettings {
            endpoint: "grpc://collector".into(),
            sampling_ratio: 1.5,
            queue_size: 0,
        };
        let paths: Vec<String> = bad.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(
            paths,
            [
                "telemetry.traces.endpoint",
                "telemetry.traces.sampling_ratio",
                "telemetry.traces.queue_size"
            ]
        );
        let good = TraceSettings {
            endpoint: "http://127.0.0.1:4317".into(),
            sampling_ratio: 0.25,
            queue_size: 10,
        };
        assert!(good.problems().is_empty());
    }

    #[test]
    fn sampler_follows_the_parent_and_records_unsampled_roots() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};
        let sampler = GatewaySampler::new(0.0);
        let decide = |parent: Option<Context>| {
            sampler
                .should_sample(
                    parent.as_ref(),
                    TraceId::from(7u128),
                    "exchange",
                    &SpanKind::Server,
                    &[],
                    &[],
                )
                .decision
        };
        let parent = |sampled: bool, remote: bool| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let sc = SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                remote,
                TraceState::default(),
            );
            Some(Context::new().with_remote_span_context(sc))
        };
        // Ratio 0: a new trace is recorded (a refusal can still be exported), not sampled.
        assert_eq!(decide(None), SamplingDecision::RecordOnly);
        assert_eq!(
            decide(parent(true, true)),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(decide(parent(false, true)), SamplingDecision::RecordOnly);
        let local = |sampled: bool| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let sc = SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                false,
                TraceState::default(),
            );
            Some(Context::new().with_remote_span_context(sc))
        };
        // with_remote_span_context keeps the is_remote flag given: a local unsampled parent drops.
        assert_eq!(decide(local(false)), SamplingDecision::Drop);
        assert_eq!(decide(local(true)), SamplingDecision::RecordAndSample);
        assert_eq!(
            GatewaySampler::new(1.0)
                .should_sample(
                    None,
                    TraceId::from(7u128),
                    "exchange",
                    &SpanKind::Server,
                    &[],
                    &[]
                )
                .decision,
            SamplingDecision::RecordAndSample
        );
    }
}
