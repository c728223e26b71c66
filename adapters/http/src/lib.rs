//! Plain HTTP/1.1 and HTTP/2 upstreams (pipeline stage 7, `dispatch`).
//!
//! One [`HttpUpstream`] per upstream group: a pooled hyper client (keep-alive, HTTP/1.1 or
//! HTTP/2, optional TLS with a configured CA), several targets chosen by round robin or least
//! outstanding requests, active health checks, passive ejection after consecutive failures,
//! connect / response-head / whole-response timeouts, a total budget for the response head that
//! retries respect, and retries for idempotent requests with a replayable body only.
//!
//! Passive ejection counts only transport failures of a target (connect errors and timeouts,
//! connections reset or closed before or during the response, unparseable response framing): an
//! answer, even a 5xx, is the application's reply to one client's request and says the target
//! is reachable, so it resets the count. A target is ejected only while the group keeps another
//! available target and the ejected share stays within `max_ejection_percent` (Envoy's outlier
//! detection limit): a client hammering a failing path can never eject the last targets of a
//! group, and a group of one target is never ejected at all.
//!
//! The request budget (`request_timeout`) bounds the time from the first attempt to the
//! response head across every attempt: each attempt waits at most the smaller of the per-try
//! `head_timeout` and what is left of the budget, and no retry starts once the budget is spent,
//! so a hung upstream answers the client with 504 within the budget, retried or not.

mod health;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use penghubung_adapter::{
    Adapter, AdapterError, AdapterFuture, Body, BoxError, GatewayRequest, GatewayResponse,
};
use std::future::Future as _;

/// How a target is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each healthy target in turn.
    RoundRobin,
    /// The healthy target with the fewest requests in flight.
    LeastOutstanding,
}

/// Active health-check settings.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Path requested with GET.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time before a check counts as failed.
    pub timeout: Duration,
    /// Failed checks in a row that mark a target down.
    pub unhealthy_after: u32,
    /// Good checks in a row that mark it up again.
    pub healthy_after: u32,
}

/// `Host` sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    /// The target's authority.
    Target,
    /// Whatever the pipeline put in the request (the client's host).
    Preserve,
    /// A fixed value.
    Fixed(HeaderValue),
}

/// Settings of one upstream group, compiled from the config.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Group name (for logs and metrics).
    pub name: String,
    /// Targets as `host:port`.
    pub targets: Vec<String>,
    /// Speak HTTP/2 to the targets.
    pub http2: bool,
    /// TLS client config (CA of the upstream) and optional server name override.
    pub tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    /// Balancing policy.
    pub balance: Balance,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time to the response head, per attempt.
    pub head_timeout: Duration,
    /// Total time to the response head across all attempts (the request budget).
    pub request_timeout: Duration,
    /// Time for the whole response.
    pub response_timeout: Duration,
    /// Extra attempts for retryable requests.
    pub retries: u32,
    /// Active health checks.
    pub health_check: Option<HealthCheck>,
    /// Consecutive failures that eject a target.
    pub eject_after: u32,
    /// Ejection duration.
    pub eject_for: Duration,
    /// Largest share of the group's targets (percent) that passive ejection may hold out at
    /// once; the last available target is never ejected whatever this says.
    pub max_ejection_percent: u8,
    /// Idle pooled connections per target.
    pub pool_max_idle: usize,
    /// Idle timeout of pooled connections.
    pub pool_idle_timeout: Duration,
    /// `Host` header policy.
    pub host_header: HostHeader,
}

/// One target of a group and its health state.
#[derive(Debug)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
    /// The same, parsed once (used for every request URI).
    parsed_authority: Option<http::uri::Authority>,
    /// The same as a `Host` header value.
    host_value: Option<HeaderValue>,
    healthy: AtomicBool,
    outstanding: AtomicUsize,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    checks_ok: AtomicU32,
    checks_failed: AtomicU32,
}

impl Target {
    fn new(authority: String) -> Target {
        Target {
            parsed_authority: authority.parse().ok(),
            host_value: HeaderValue::from_str(&authority).ok(),
            authority,
            healthy: AtomicBool::new(true),
            outstanding: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            checks_ok: AtomicU32::new(0),
            checks_failed: AtomicU32::new(0),
        }
    }

    /// Whether the target is up (health checks) and not ejected (passive health).
    pub fn available(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Requests in flight to this target.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

struct Inner {
    settings: UpstreamSettings,
    scheme: http::uri::Scheme,
    targets: Vec<Target>,
    next: AtomicUsize,
    client: HttpClient,
    epoch: Instant,
    /// Serialises ejection decisions so that concurrent failures cannot overshoot the cap.
    eject_lock: std::sync::Mutex<()>,
}

/// An upstream group behind the [`Adapter`] trait.
#[derive(Clone)]
pub struct HttpUpstream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("name", &self.inner.settings.name)
            .finish()
    }
}

fn plain_tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        // The ring provider always supports the default versions; fall back to the builder's
        // default provider path only if that ever changes.
        Err(_) => Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

impl HttpUpstream {
    /// Builds the group and, when configured, starts its health-check task (which ends when the
    /// group is dropped, e.g. after a reload replaced it). Must run inside a tokio runtime.
    pub fn new(settings: UpstreamSettings) -> HttpUpstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        // hyper-rustls sets ALPN itself from the enabled protocols; a preset list is refused.
        let (tls_config, scheme) = match &settings.tls {
            Some((config, _)) => {
                let mut config = (**config).clone();
                config.alpn_protocols.clear();
                (config, http::uri::Scheme::HTTPS)
            }
            None => ((*plain_tls_config()).clone(), http::uri::Scheme::HTTP),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        let server_name = settings
            .tls
            .as_ref()
            .and_then(|(_, name)| name.clone())
            .and_then(|name| rustls_pki_types::ServerName::try_from(name).ok());
        let builder = match server_name {
            Some(name) => {
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = if settings.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .http2_only(settings.http2)
            .retry_canceled_requests(false)
            .set_host(false)
            .build(connector);
        let targets = settings.targets.iter().cloned().map(Target::new).collect();
        let inner = Arc::new(Inner {
            settings,
            scheme,
            targets,
            next: AtomicUsize::new(0),
            client,
            epoch: Instant::now(),
            eject_lock: std::sync::Mutex::new(()),
        });
        if inner.settings.health_check.is_some() {
            tokio::spawn(health::health_loop(Arc::downgrade(&inner)));
        }
        HttpUpstream { inner }
    }

    /// The targets and their state (for `/health` and metrics).
    pub fn targets(&self) -> &[Target] {
        &self.inner.targets
    }

    /// Whether target `index` is currently up and not ejected.
    pub fn is_target_available(&self, index: usize) -> bool {
        let now = self.inner.now_ms();
        self.inner
            .targets
            .get(index)
            .is_some_and(|t| t.available(now))
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.settings.name
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let now = self.now_ms();
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| Some(i) != avoid || n == 1);
        match self.settings.balance {
            Balance::RoundRobin => candidates
                .into_iter()
                .find(|&i| self.targets[i].available(now)),
            Balance::LeastOutstanding => candidates
                .filter(|&i| self.targets[i].available(now))
                .min_by_key(|&i| self.targets[i].outstanding()),
        }
    }

    /// Records the outcome of a request's transport on target `index`: `ok` when a response
    /// head arrived (whatever its status) and its body ended cleanly, `!ok` for transport
    /// failures only. Enough failures in a row eject the target, within the cap.
    fn record_result(&self, index: usize, ok: bool) {
        let target = &self.targets[index];
        if ok {
            target.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = target.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.settings.eject_after == 0 || failures < self.settings.eject_after {
            return;
        }
        let Ok(_decision) = self.eject_lock.lock() else {
            return;
        };
        let now = self.now_ms();
        if !target.available(now) {
            // Already out (ejected or failing health checks).
            return;
        }
        if !self.may_eject(now) {
            tracing::warn!(upstream = %self.settings.name, target = %target.authority, "target keeps failing but is not ejected: the group would lose too many of its targets");
            return;
        }
        let until =
            now + u64::try_from(self.settings.eject_for.as_millis()).unwrap_or(u64::MAX / 2);
        target.ejected_until_ms.store(until, Ordering::Relaxed);
        target.consecutive_failures.store(0, Ordering::Relaxed);
        tracing::warn!(upstream = %self.settings.name, target = %target.authority, "target ejected after consecutive failures");
    }

    /// Whether one more (currently available) target may be ejected: another target must stay
    /// available, and the ejected share must stay within `max_ejection_percent`.
    fn may_eject(&self, now: u64) -> bool {
        let n = self.targets.len();
        let available = self.targets.iter().filter(|t| t.available(now)).count();
        let ejected = self
            .targets
            .iter()
            .filter(|t| t.ejected_until_ms.load(Ordering::Relaxed) > now)
            .count();
        let cap = n * usize::from(self.settings.max_ejection_percent.min(100)) / 100;
        available >= 2 && ejected < cap
    }

    fn uri_for(
        &self,
        index: usize,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Result<Uri, AdapterError> {
        let target = &self.targets[index];
        let authority = target.parsed_authority.clone().ok_or_else(|| {
            AdapterError::Request(format!("invalid target {:?}", target.authority))
        })?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority);
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).map_err(|e| AdapterError::Request(e.to_string()))
    }

    /// One attempt, waiting at most `head_wait` for the response head (`budget_bound` when the
    /// request budget, not the per-try timeout, set that wait). The headers are moved on the
    /// last attempt and cloned before it.
    async fn attempt(
        self: &Arc<Self>,
        index: usize,
        head: &mut http::request::Parts,
        last: bool,
        body: Body,
        head_wait: Duration,
        budget_bound: bool,
    ) -> Result<Response<Body>, AdapterError> {
        let mut request = Request::new(body);
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = self.uri_for(index, head.uri.path_and_query())?;
        *request.headers_mut() = if last {
            std::mem::take(&mut head.headers)
        } else {
            head.headers.clone()
        };
        if self.settings.http2 {
            *request.version_mut() = http::Version::HTTP_2;
            request.headers_mut().remove(header::HOST);
        } else {
            match &self.settings.host_header {
                HostHeader::Target => {
                    let value = self.targets[index].host_value.clone().ok_or_else(|| {
                        AdapterError::Request("target is not a valid host".into())
                    })?;
                    request.headers_mut().insert(header::HOST, value);
                }
                HostHeader::Fixed(value) => {
                    request.headers_mut().insert(header::HOST, value.clone());
                }
                HostHeader::Preserve => {}
            }
        }
        let captured = hyper_util::client::legacy::connect::capture_connection(&mut request);
        let target = &self.targets[index];
        target.outstanding.fetch_add(1, Ordering::Relaxed);
        let guard = Outstanding {
            inner: self.clone(),
            index,
        };
        let response = match tokio::time::timeout(head_wait, self.client.request(request)).await {
            Err(_) => {
                return Err(if budget_bound {
                    AdapterError::Timeout {
                        phase: "request budget",
                        after: self.settings.request_timeout,
                    }
                } else {
                    AdapterError::Timeout {
                        phase: "response head",
                        after: head_wait,
                    }
                })
            }
            Ok(Err(error)) => {
                let text = error_chain(&error);
                return Err(if error.is_connect() {
                    if text.contains("timed out") {
                        AdapterError::Timeout {
                            phase: "connect",
                            after: self.settings.connect_timeout,
                        }
                    } else {
                        AdapterError::Connect(text)
                    }
                } else {
                    AdapterError::Reset(text)
                });
            }
            Ok(Ok(response)) => response,
        };
        if let Err(error) = check_response_head(&response) {
            // The connection's framing is suspect (hyper may already have pooled it): never
            // reuse it for another request.
            if let Some(connected) = captured.connection_metadata().as_ref() {
                connected.poison();
            }
            return Err(error);
        }
        let deadline = tokio::time::Instant::now() + self.settings.response_timeout;
        let (parts, incoming) = response.into_parts();
        let body = DeadlineBody {
            inner: incoming,
            sleep: tokio::time::sleep_until(deadline),
            limit: self.settings.response_timeout,
            guard: Some(guard),
            done: false,
        };
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// Response heads that must never reach a client as if they were sound.
fn check_response_head<B>(response: &Response<B>) -> Result<(), AdapterError> {
    let headers = response.headers();
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(AdapterError::BadResponse(
            "content-length with transfer-encoding".into(),
        ));
    }
    if headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(AdapterError::BadResponse(
            "several content-length fields".into(),
        ));
    }
    if response.status().is_informational() {
        return Err(AdapterError::BadResponse(
            "unexpected informational response".into(),
        ));
    }
    Ok(())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Counts a request as outstanding until its response body is finished or dropped.
struct Outstanding {
    inner: Arc<Inner>,
    index: usize,
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.inner.targets[self.index]
            .outstanding
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The upstream response body with the whole-response deadline applied. A body error or the
    /// deadline ends the stream with an error, so the client never sees a truncated body as a
    /// complete one, and hyper never returns that connection to the pool.
    struct DeadlineBody {
        #[pin]
        inner: hyper::body::Incoming,
        #[pin]
        sleep: tokio::time::Sleep,
        limit: Duration,
        guard: Option<Outstanding>,
        done: bool,
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if this.sleep.poll(cx).is_ready() {
            *this.done = true;
            // A slow answer is not a transport failure of the target: it is not counted
            // toward ejection (and the guard is dropped, ending the request's count).
            this.guard.take();
            let error = AdapterError::Timeout {
                phase: "response",
                after: *this.limit,
            };
            return Poll::Ready(Some(Err(Box::new(error))));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                *this.done = true;
                if let Some(guard) = this.guard.take() {
                    guard.inner.record_result(guard.index, true);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                *this.done = true;
                if let Some(guard) = this.guard.take() {
                    guard.inner.record_result(guard.index, false);
                }
                Poll::Ready(Some(Err(Box::new(AdapterError::Reset(error_chain(
                    &error,
                ))))))
            }
            other => other.map(|o| o.map(|r| r.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Adapter for HttpUpstream {
    fn call(&self, mut request: GatewayRequest) -> AdapterFuture<'_> {
        Box::pin(async move {
            let inner = &self.inner;
            let max_attempts = if request.retryable && request.body.is_replayable() {
                1 + inner.settings.retries
            } else {
                1
            };
            let budget_end = tokio::time::Instant::now() + inner.settings.request_timeout;
            let mut last_error = AdapterError::NoHealthyTarget;
            let mut previous = None;
            for attempt in 1..=max_attempts {
                let remaining = budget_end.saturating_duration_since(tokio::time::Instant::now());
                if remaining.is_zero() {
                    last_error = AdapterError::Timeout {
                        phase: "request budget",
                        after: inner.settings.request_timeout,
                    };
                    break;
                }
                let Some(index) = inner.pick(previous) else {
                    return Err(last_error_or_none(last_error, attempt));
                };
                let Some(body) = request.body.for_attempt() else {
                    break;
                };
                let last = attempt == max_attempts;
                let head_wait = inner.settings.head_timeout.min(remaining);
                let budget_bound = remaining < inner.settings.head_timeout;
                // With traces on, each attempt is a span and the upstream's parent.
                let traced = penghubung_adapter::attempt_tracing()
                    .map(|t| (t, (t.span)(&inner.targets[index].authority, attempt)));
                if let Some((t, span)) = &traced {
                    (t.inject)(span, &mut request.head.headers);
                }
                let answer = inner.attempt(
                    index,
                    &mut request.head,
                    last,
                    body,
                    head_wait,
                    budget_bound,
                );
                let answer = match &traced {
                    Some((_, span)) => answer.instrument(span.clone()).await,
                    None => answer.await,
                };
                if let Some((t, span)) = &traced {
                    let ended = answer.as_ref().map(|r| r.status().as_u16());
                    (t.end)(span, ended.map_err(AdapterError::class));
                }
                match answer {
                    Ok(response) => {
                        // An answer, whatever its status, shows the target's transport works.
                        inner.record_result(index, true);
                        return Ok(GatewayResponse {
                            response,
                            target: inner.targets[index].authority.clone(),
                            attempts: attempt,
                        });
                    }
                    Err(error) => {
                        if is_transport_failure(&error) {
                            inner.record_result(index, false);
                        }
                        tracing::debug!(upstream = %inner.settings.name, target = %inner.targets[index].authority, %error, attempt, "upstream attempt failed");
                        let retry = error.may_retry();
                        last_error = error;
                        previous = Some(index);
                        if !retry {
                            break;
                        }
                    }
                }
            }
            Err(last_error)
        })
    }

    fn describe(&self) -> String {
        format!("http upstream {:?}", self.inner.settings.name)
    }

    fn is_healthy(&self) -> bool {
        let now = self.inner.now_ms();
        self.inner.targets.iter().any(|t| t.available(now))
    }
}

/// Failures that say the target itself is unreachable or broken, as opposed to slow to answer
/// one request: only these count toward passive ejection.
fn is_transport_failure(error: &AdapterError) -> bool {
    match error {
        AdapterError::Connect(_) | AdapterError::Reset(_) | AdapterError::BadResponse(_) => true,
        AdapterError::Timeout { phase, .. } => *phase == "connect",
        AdapterError::NoHealthyTarget | AdapterError::Request(_) => false,
    }
}

fn last_error_or_none(last: AdapterError, attempt: u32) -> AdapterError {
    if attempt == 1 {
        AdapterError::NoHealthyTarget
    } else {
        last
    }
}

#[cfg(test)]
mod tests;
