//! The `Adapter` seam (pipeline stage 7, `dispatch`).
//!
//! The gateway pipeline hands a fully admitted, routed, authenticated and recorded request to an
//! [`Adapter`], which delivers it to an upstream (plain HTTP, the national SPLP, a SOAP service…)
//! and returns the upstream's response head with a streaming body. Adapters never depend on the
//! gateway crate; everything they need travels in [`GatewayRequest`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// A boxed error travelling inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type that crosses the seam in both directions.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A request body as the pipeline hands it over.
///
/// Bodies are buffered by default (so they were digested and recorded before any byte goes
/// upstream, and can be re-sent on a retry); a route may opt into streaming, in which case the
/// request can never be retried.
pub enum RequestBody {
    /// The whole body, already read, validated and recorded.
    Buffered(Bytes),
    /// A body still arriving from the client (route opted into streaming).
    Streaming(Body),
}

impl RequestBody {
    /// Turns the request body into a body for one attempt. Buffered bodies are cheap to clone.
    pub fn for_attempt(&mut self) -> Option<Body> {
        match self {
            RequestBody::Buffered(b) => Some(full(b.clone())),
            RequestBody::Streaming(_) => {
                let taken = std::mem::replace(self, RequestBody::Buffered(Bytes::new()));
                match taken {
                    RequestBody::Streaming(body) => Some(body),
                    RequestBody::Buffered(_) => None,
                }
            }
        }
    }

    /// Whether this body can be sent more than once.
    pub fn is_replayable(&self) -> bool {
        matches!(self, RequestBody::Buffered(_))
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Buffered(b) => write!(f, "Buffered({} bytes)", b.len()),
            RequestBody::Streaming(_) => f.write_str("Streaming"),
        }
    }
}

/// What the pipeline gives an adapter: the cleaned request head (canonical path, gateway headers
/// set, hop-by-hop headers removed) and its body.
#[derive(Debug)]
pub struct GatewayRequest {
    /// Method, path-and-query (origin form, canonical path) and headers to send upstream.
    pub head: http::request::Parts,
    /// The body.
    pub body: RequestBody,
    /// Whether the method is idempotent and the body replayable, so a retry is allowed.
    pub retryable: bool,
}

/// What an adapter gives back: the upstream's response head and a streaming body, plus which
/// upstream target answered (for evidence).
pub struct GatewayResponse {
    /// The response (hop-by-hop headers are removed by the pipeline, not by adapters).
    pub response: http::Response<Body>,
    /// The upstream target that answered, e.g. `10.1.2.3:8080`.
    pub target: String,
    /// Number of attempts made (1 when no retry happened).
    pub attempts: u32,
}

impl std::fmt::Debug for GatewayResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayResponse")
            .field("status", &self.response.status())
            .field("target", &self.target)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// Why an upstream call failed. Every variant knows its status and whether it may be retried.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// No target of the upstream group is healthy.
    #[error("no healthy upstream target")]
    NoHealthyTarget,
    /// The TCP or TLS connection could not be made.
    #[error("connecting to upstream failed: {0}")]
    Connect(String),
    /// The connection was reset or closed before a response head arrived.
    #[error("upstream connection failed: {0}")]
    Reset(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out ({phase})")]
    Timeout {
        /// `connect`, `response head` (one attempt), `request budget` (all attempts together)
        /// or `response` (the whole response).
        phase: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The upstream answered something that must not reach a client.
    #[error("invalid upstream response: {0}")]
    BadResponse(String),
    /// The adapter could not build the upstream request.
    #[error("could not build upstream request: {0}")]
    Request(String),
}

impl AdapterError {
    /// The HTTP status the client gets for this failure.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            AdapterError::NoHealthyTarget => S::SERVICE_UNAVAILABLE,
            AdapterError::Connect(_) => S::BAD_GATEWAY,
            AdapterError::Reset(_) => S::BAD_GATEWAY,
            AdapterError::Timeout { .. } => S::GATEWAY_TIMEOUT,
            AdapterError::BadResponse(_) => S::BAD_GATEWAY,
            AdapterError::Request(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether a retry on another attempt may help (the request did not reach the upstream
    /// application, or the method is idempotent and the caller allows it).
    pub fn may_retry(&self) -> bool {
        match self {
            AdapterError::Connect(_) | AdapterError::Reset(_) => true,
            AdapterError::Timeout { phase, .. } => {
                *phase != "response" && *phase != "request budget"
            }
            AdapterError::NoHealthyTarget
            | AdapterError::BadResponse(_)
            | AdapterError::Request(_) => false,
        }
    }

    /// A short stable class name, used in metrics and evidence records.
    pub fn class(&self) -> &'static str {
        match self {
            AdapterError::NoHealthyTarget => "no_healthy_target",
            AdapterError::Connect(_) => "upstream_connect",
            AdapterError::Reset(_) => "upstream_reset",
            AdapterError::Timeout { .. } => "upstream_timeout",
            AdapterError::BadResponse(_) => "upstream_bad_response",
            AdapterError::Request(_) => "upstream_request",
        }
    }
}

/// The future an adapter returns.
pub type AdapterFuture<'a> =
    Pin<Box<dyn Future<Output = Result<GatewayResponse, AdapterError>> + Send + 'a>>;

/// Delivers requests to one upstream (group). Implementations are shared across tasks.
pub trait Adapter: Send + Sync + 'static {
    /// Sends the request (with the adapter's own timeouts and retry policy).
    fn call(&self, request: GatewayRequest) -> AdapterFuture<'_>;

    /// A short description for logs and `/health` (e.g. `http upstream "kependudukan"`).
    fn describe(&self) -> String;

    /// Whether at least one target is currently healthy.
    fn is_healthy(&self) -> bool {
        true
    }

    /// The credentials this adapter holds that expire (a peer's JWT API keys), for `/health`
    /// and metrics. Most adapters hold none.
    fn credential_expiries(&self) -> Vec<CredentialExpiry> {
        Vec::new()
    }
}

/// A credential held by an adapter that stops working at a known time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialExpiry {
    /// What it is for (e.g. the peer API's prefix).
    pub name: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// Whether it is inside its warning window (or already expired).
    pub warn: bool,
}

/// What an adapter that talks to another SPL learned about one exchange, for the evidence
/// record. It travels in the response's extensions (`response.extensions().get::<PeerExchange>()`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerExchange {
    /// `outbound-to-pusat`, `outbound-to-provinsi`, …
    pub direction: String,
    /// SHA-256 of the TLS certificate the peer presented.
    pub tls_sha256: Option<[u8; 32]>,
    /// The peer's correlation / activity id of the exchange.
    pub correlation_id: String,
    /// The WSO2 fault code the peer answered with, if any.
    pub fault_code: Option<u32>,
    /// The path and query sent to the peer.
    pub path: String,
    /// Which header carried the gateway's credential (`authorization`, `authorizationsplp`,
    /// `apikey`); never the credential.
    pub credential: String,
}

/// A body holding one buffer.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A mock adapter for pipeline tests: answers every request with a fixed status and body and
/// remembers what it received.
pub mod mock {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// One request the mock received.
    #[derive(Debug, Clone)]
    pub struct Seen {
        /// Method.
        pub method: http::Method,
        /// Path and query.
        pub uri: String,
        /// Headers as received.
        pub headers: http::HeaderMap,
        /// The body, when it was buffered.
        pub body: Option<Bytes>,
    }

    /// Answers with `status` and `body`, or with `error` when set.
    #[derive(Debug, Clone, Default)]
    pub struct MockAdapter {
        /// Status to answer with (200 when unset).
        pub status: Option<http::StatusCode>,
        /// Body to answer with.
        pub body: Bytes,
        /// What was received, in order.
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl MockAdapter {
        /// Requests seen so far.
        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().map(|s| s.clone()).unwrap_or_default()
        }
    }

    impl Adapter for MockAdapter {
        fn call(&self, request: GatewayRequest) -> AdapterFuture<'_> {
            Box::pin(async move {
                let body = match &request.body {
                    RequestBody::Buffered(b) => Some(b.clone()),
                    RequestBody::Streaming(_) => None,
                };
                if let Ok(mut seen) = self.seen.lock() {
                    seen.push(Seen {
                        method: request.head.method.clone(),
                        uri: request.head.uri.to_string(),
                        headers: request.head.headers.clone(),
                        body,
                    });
                }
                let mut response = http::Response::new(full(self.body.clone()));
                *response.status_mut() = self.status.unwrap_or(http::StatusCode::OK);
                Ok(GatewayResponse {
                    response,
                    target: "mock".into(),
                    attempts: 1,
                })
            })
        }

        fn describe(&self) -> String {
            "mock adapter".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        use http::StatusCode as S;
        let table: Vec<(AdapterError, S, bool)> = vec![
            (AdapterError::NoHealthyTarget, S::SERVICE_UNAVAILABLE, false),
            (AdapterError::Connect("x".into()), S::BAD_GATEWAY, true),
            (AdapterError::Reset("x".into()), S::BAD_GATEWAY, true),
            (
                AdapterError::Timeout {
                    phase: "response head",
                    after: Duration::from_secs(1),
                },
                S::GATEWAY_TIMEOUT,
                true,
            ),
            (
                AdapterError::Timeout {
                    phase: "response",
                    after: Duration::from_secs(1),
                },
                S::GATEWAY_TIMEOUT,
                false,
            ),
            (
                AdapterError::Timeout {
                    phase: "request budget",
                    after: Duration::from_secs(1),
                },
                S::GATEWAY_TIMEOUT,
                false,
            ),
            (AdapterError::BadResponse("x".into()), S::BAD_GATEWAY, false),
            (
                AdapterError::Request("x".into()),
                S::INTERNAL_SERVER_ERROR,
                false,
            ),
        ];
        for (error, status, retry) in table {
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.may_retry(), retry, "{error}");
        }
    }

    #[test]
    fn streaming_body_is_taken_once() {
        let mut body = RequestBody::Streaming(empty());
        assert!(!body.is_replayable());
        assert!(body.for_attempt().is_some());
        let mut buffered = RequestBody::Buffered(Bytes::from_static(b"abc"));
        assert!(buffered.for_attempt().is_some());
        assert!(buffered.for_attempt().is_some());
    }
}

/// The gateway's trace hooks for upstream attempts, installed once when traces are on
/// (`telemetry::trace` in the gateway). Without them an adapter creates no span and leaves the
/// `traceparent` the gateway set.
#[derive(Debug, Clone, Copy)]
pub struct AttemptTracing {
    /// The span of one attempt: (target, attempt number from 1).
    pub span: fn(&str, u32) -> tracing::Span,
    /// Writes the attempt span's W3C trace context into the upstream request's headers.
    pub inject: fn(&tracing::Span, &mut http::HeaderMap),
    /// Records how the attempt ended: the status, or the error class.
    pub end: fn(&tracing::Span, Result<u16, &'static str>),
}

static ATTEMPT_TRACING: std::sync::OnceLock<AttemptTracing> = std::sync::OnceLock::new();

/// Installs the attempt hooks (the first call wins; later ones change nothing).
pub fn set_attempt_tracing(hooks: AttemptTracing) {
    let _ = ATTEMPT_TRACING.set(hooks);
}

/// The attempt hooks, when traces are on.
pub fn attempt_tracing() -> Option<&'static AttemptTracing> {
    ATTEMPT_TRACING.get()
}
