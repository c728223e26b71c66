//! Stages 6 and 9, `record(request)` and `record(outcome)`: the evidence records of an exchange,
//! and the response body that makes the outcome durable before the client sees the response end.
//!
//! The outcome is recorded *before* the last byte reaches the client: the body holds back its
//! latest data frame, and only when the upstream body has ended and the outcome record is durable
//! does it release that frame and the end of the stream. If the record cannot be written the body
//! ends with an error, so the client never receives a complete-looking response for an exchange
//! without evidence.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response};
use http_body::{Frame, SizeHint};
use penghubung_adapter::{Body, BoxError};
use sha2::{Digest, Sha256};

use crate::auth::{GrantRuntime, Principal};
use crate::identity::ConnInfo;
use crate::snapshot::Service;
use penghubung_evidence::schema::{self, record::Kind};
use penghubung_evidence::{EvidenceError, EvidenceLog};

/// Request headers whose values are digested into `Request.headers_sha256`.
const DIGESTED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "accept",
    "soapaction",
    "user-agent",
];

/// SHA-256 as bytes for a record field.
pub fn sha256(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&Sha256::digest(data))
}

/// The request digests both `Request` and `Refused` records carry, so that a refusal can be tied
/// to the request that caused it. Computed once per exchange, from the head as received.
#[derive(Debug, Clone, Default)]
pub struct RequestDigests {
    /// SHA-256 of the query string; empty when there is none.
    pub query_sha256: Bytes,
    /// SHA-256 over the [`DIGESTED_HEADERS`] values, in that order (`name: value\n` each).
    pub headers_sha256: Bytes,
}

impl RequestDigests {
    /// Digests of a request head: its query string and its digested headers.
    pub fn of(headers: &HeaderMap, query: Option<&str>) -> RequestDigests {
        RequestDigests {
            query_sha256: query.map(|q| sha256(q.as_bytes())).unwrap_or_default(),
            headers_sha256: headers_digest(headers),
        }
    }
}

fn headers_digest(headers: &HeaderMap) -> Bytes {
    let mut hasher = Sha256::new();
    for name in DIGESTED_HEADERS {
        for value in headers.get_all(*name) {
            hasher.update(name.as_bytes());
            hasher.update(b": ");
            hasher.update(value.as_bytes());
            hasher.update(b"\n");
        }
    }
    Bytes::copy_from_slice(&hasher.finalize())
}

/// The consumer as recorded.
pub fn consumer(principal: Option<&Principal>, conn: &ConnInfo) -> schema::Consumer {
    let mut c = schema::Consumer::default();
    if let Some(p) = principal {
        c.opd = p.opd.clone();
        c.application = p.application.clone();
        c.credential_kind = p.credential_kind.as_str().to_owned();
        c.credential_fingerprint = p.credential_fingerprint.clone();
    }
    if let Some(client) = &conn.client {
        c.tls_subject = client.subject.clone();
        c.tls_sha256 = hex::decode(&client.sha256)
            .map(Bytes::from)
            .unwrap_or_default();
    }
    c
}

// Every field is set today; the update keeps fields added later at their default.
#[allow(clippy::needless_update)]
fn provider(service: &Service) -> schema::Provider {
    schema::Provider {
        opd: service.owner_opd.clone(),
        service_id: service.id.clone(),
        service_version: service.version.clone(),
        personal_data: service.personal_data,
        classification: format!("{:?}", service.classification).to_lowercase(),
        approval_id: service.approval_id.clone(),
        ..Default::default()
    }
}

/// What the request record says.
pub struct RequestFacts<'a> {
    /// Exchange id.
    pub exchange_id: &'a str,
    /// Trace id.
    pub trace_id: &'a str,
    /// The head as received (after admission).
    pub head: &'a http::request::Parts,
    /// Host.
    pub host: &'a str,
    /// Canonical path.
    pub path: &'a str,
    /// Query and header digests.
    pub digests: &'a RequestDigests,
    /// Buffered body, or `None` when streamed.
    pub body: Option<&'a Bytes>,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// The caller.
    pub principal: &'a Principal,
    /// The grant.
    pub grant: &'a GrantRuntime,
    /// The service.
    pub service: &'a Service,
    /// The configuration in force (`config_version_id`).
    pub config_version_id: &'a str,
}

/// Builds the `request` record.
pub fn request_record(evidence: &EvidenceLog, facts: &RequestFacts<'_>) -> schema::Record {
    let (body_sha256, body_length, commitment) = match facts.body {
        Some(body) => {
            let commitment = if facts.service.personal_data {
                evidence
                    .commitment_root(body, facts.exchange_id)
                    .map(|r| Bytes::copy_from_slice(&r))
                    .unwrap_or_default()
            } else {
                Bytes::new()
            };
            (sha256(body), body.len() as u64, commitment)
        }
        None => (Bytes::new(), 0, Bytes::new()),
    };
    let request = schema::Request {
        consumer: Some(consumer(Some(facts.principal), facts.conn)),
        provider: Some(provider(facts.service)),
        grant_id: facts.grant.id.clone(),
        tujuan: facts.grant.tujuan.clone(),
        method: facts.head.method.as_str().to_owned(),
        host: facts.host.to_owned(),
        canonical_path: facts.path.to_owned(),
        query_sha256: facts.digests.query_sha256.clone(),
        headers_sha256: facts.digests.headers_sha256.clone(),
        body_sha256,
        body_length,
        body_streamed: facts.body.is_none(),
        body_commitment_root: commitment,
        peer_address: facts.conn.peer.to_string(),
        listener: facts.conn.listener.to_string(),
        content_type: facts
            .head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect(),
        direction: "inbound".into(),
        consent_id: facts.grant.consent_id.clone(),
        ..Default::default()
    };
    schema::Record {
        exchange_id: facts.exchange_id.to_owned(),
        trace_id: facts.trace_id.to_owned(),
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        config_version_id: facts.config_version_id.to_owned(),
        kind: Some(Kind::Request(request)),
        ..Default::default()
    }
}

/// The `request` record of a token issued by the gateway's own token endpoint: who asked
/// (the application behind the client id), from where, for which path. No digest of the head,
/// query or body: they carry the client secret, and a digest of a low-entropy secret could be
/// guessed offline from the evidence log.
pub fn token_request_record(
    exchange_id: &str,
    trace_id: &str,
    head: &http::request::Parts,
    host: &str,
    path: &str,
    conn: &ConnInfo,
    consumer: schema::Consumer,
) -> schema::Record {
    let request = schema::Request {
        consumer: Some(consumer),
        method: head.method.as_str().to_owned(),
        host: host.to_owned(),
        canonical_path: path.to_owned(),
        peer_address: conn.peer.to_string(),
        listener: conn.listener.to_string(),
        direction: "token".into(),
        ..Default::default()
    };
    schema::Record {
        exchange_id: exchange_id.to_owned(),
        trace_id: trace_id.to_owned(),
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        kind: Some(Kind::Request(request)),
        ..Default::default()
    }
}

/// What a refusal record says.
pub struct RefusalFacts<'a> {
    /// Exchange id (empty for connection-level refusals).
    pub exchange_id: &'a str,
    /// Trace id.
    pub trace_id: &'a str,
    /// Stage that refused.
    pub stage: &'a str,
    /// Reason class.
    pub reason: &'a str,
    /// Status answered (0 when none was).
    pub status: u16,
    /// Peer address.
    pub peer: String,
    /// TLS client identity and caller, when known.
    pub consumer: schema::Consumer,
    /// Method, host and path as far as known.
    pub method: &'a str,
    /// Host.
    pub host: &'a str,
    /// Path (canonical when admission got that far, else the raw path, truncated).
    pub path: &'a str,
    /// Service, when routed.
    pub service_id: &'a str,
    /// Grant and tujuan, when authorised.
    pub grant: Option<&'a GrantRuntime>,
    /// Query and header digests, when a request head was received.
    pub digests: Option<&'a RequestDigests>,
}

/// Builds a `refused` record.
pub fn refused_record(facts: RefusalFacts<'_>) -> schema::Record {
    let refused = schema::Refused {
        stage: facts.stage.to_owned(),
        reason_class: facts.reason.to_owned(),
        status: u32::from(facts.status),
        peer_address: facts.peer,
        tls_subject: facts.consumer.tls_subject.clone(),
        tls_sha256: facts.consumer.tls_sha256.clone(),
        method: facts.method.chars().take(32).collect(),
        host: facts.host.chars().take(256).collect(),
        path: facts.path.chars().take(1024).collect(),
        consumer: Some(facts.consumer),
        grant_id: facts.grant.map(|g| g.id.clone()).unwrap_or_default(),
        tujuan: facts.grant.map(|g| g.tujuan.clone()).unwrap_or_default(),
        service_id: facts.service_id.to_owned(),
        query_sha256: facts
            .digests
            .map(|d| d.query_sha256.clone())
            .unwrap_or_default(),
        headers_sha256: facts
            .digests
            .map(|d| d.headers_sha256.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    schema::Record {
        exchange_id: facts.exchange_id.to_owned(),
        trace_id: facts.trace_id.to_owned(),
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        kind: Some(Kind::Refused(refused)),
        ..Default::default()
    }
}

/// The outcome facts known when the response head arrives.
#[derive(Clone)]
pub struct OutcomeFacts {
    /// Exchange id.
    pub exchange_id: String,
    /// Trace id.
    pub trace_id: String,
    /// Sequence of the request record.
    pub request_sequence: u64,
    /// Upstream target.
    pub upstream: String,
    /// Status sent to the client.
    pub status: u16,
    /// Attempts made.
    pub attempts: u32,
    /// When the exchange started.
    pub started: Instant,
    /// Time to the upstream response head, in nanoseconds.
    pub head_nanos: u64,
    /// Outcome class (`ok`, `upstream_error`, …) and reason.
    pub class: &'static str,
    /// Reason for a failed outcome.
    pub reason: String,
}

/// Builds an `outcome` record.
pub fn outcome_record(
    facts: &OutcomeFacts,
    response_sha256: Bytes,
    response_length: u64,
) -> schema::Record {
    let outcome = schema::Outcome {
        request_sequence: facts.request_sequence,
        upstream_address: facts.upstream.clone(),
        status: u32::from(facts.status),
        response_sha256,
        response_length,
        attempts: facts.attempts,
        upstream_head_nanos: facts.head_nanos,
        total_nanos: u64::try_from(facts.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        outcome_class: facts.class.to_owned(),
        reason: facts.reason.clone(),
        ..Default::default()
    };
    schema::Record {
        exchange_id: facts.exchange_id.clone(),
        trace_id: facts.trace_id.clone(),
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        kind: Some(Kind::Outcome(outcome)),
        ..Default::default()
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<u64, EvidenceError>> + Send>>;

enum State {
    /// Passing frames through, holding back the latest data frame.
    Streaming,
    /// Upstream ended (with optional trailers); the outcome record is being written.
    Recording(Pending, Option<Frame<Bytes>>),
    /// Record durable: release the held frame, then trailers, then the end.
    Releasing(Option<Frame<Bytes>>),
    /// Done.
    Done,
}

pin_project_lite::pin_project! {
    /// The response body of a recorded exchange (see the module docs).
    pub struct RecordingBody {
        #[pin]
        inner: Body,
        held: Option<Bytes>,
        hasher: Sha256,
        length: u64,
        state: State,
        evidence: EvidenceLog,
        facts: Arc<OutcomeFacts>,
    }
}

impl RecordingBody {
    /// Wraps the upstream body.
    pub fn new(inner: Body, evidence: EvidenceLog, facts: OutcomeFacts) -> RecordingBody {
        RecordingBody {
            inner,
            held: None,
            hasher: Sha256::new(),
            length: 0,
            state: State::Streaming,
            evidence,
            facts: Arc::new(facts),
        }
    }
}

/// The body ended with an error because the outcome could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("outcome not recorded: {0}")]
pub struct OutcomeNotRecorded(String);

impl http_body::Body for RecordingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Streaming => match this.inner.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Err(error))) => {
                        *this.state = State::Done;
                        let facts = OutcomeFacts {
                            class: "upstream_body_error",
                            reason: error.to_string(),
                            ..(**this.facts).clone()
                        };
                        let record = outcome_record(&facts, Bytes::new(), *this.length);
                        let evidence = this.evidence.clone();
                        // The client gets an error either way; the failure is still recorded.
                        tokio::spawn(async move { evidence.append(record).await });
                        return Poll::Ready(Some(Err(error)));
                    }
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            if data.is_empty() {
                                continue;
                            }
                            this.hasher.update(&data);
                            *this.length += data.len() as u64;
                            if let Some(previous) = this.held.replace(data) {
                                return Poll::Ready(Some(Ok(Frame::data(previous))));
                            }
                        }
                        Err(trailers) => {
                            let pending =
                                start_record(this.evidence, this.facts, this.hasher, *this.length);
                            *this.state = State::Recording(pending, Some(trailers));
                        }
                    },
                    Poll::Ready(None) => {
                        let pending =
                            start_record(this.evidence, this.facts, this.hasher, *this.length);
                        *this.state = State::Recording(pending, None);
                    }
                },
                State::Recording(pending, trailers) => match pending.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(_)) => {
                        let trailers = trailers.take();
                        *this.state = State::Releasing(trailers);
                    }
                    Poll::Ready(Err(error)) => {
                        *this.state = State::Done;
                        tracing::error!(exchange = %this.facts.exchange_id, %error, "outcome could not be recorded; response aborted");
                        return Poll::Ready(Some(Err(Box::new(OutcomeNotRecorded(
                            error.to_string(),
                        )))));
                    }
                },
                State::Releasing(trailers) => {
                    if let Some(data) = this.held.take() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let trailers = trailers.take();
                    *this.state = State::Done;
                    if let Some(t) = trailers {
                        return Poll::Ready(Some(Ok(t)));
                    }
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let held = self.held.as_ref().map_or(0, |b| b.len() as u64);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + held);
        }
        hint.set_lower(hint.lower() + held);
        hint
    }
}

fn start_record(
    evidence: &EvidenceLog,
    facts: &Arc<OutcomeFacts>,
    hasher: &mut Sha256,
    length: u64,
) -> Pending {
    let digest = Bytes::copy_from_slice(&std::mem::take(hasher).finalize());
    let record = outcome_record(facts, digest, length);
    let evidence = evidence.clone();
    Box::pin(async move { evidence.append(record).await })
}

/// The body when it was buffered (`None`: streamed, not digested).
pub fn buffered(body: &penghubung_adapter::RequestBody) -> Option<&Bytes> {
    match body {
        penghubung_adapter::RequestBody::Buffered(b) => Some(b),
        penghubung_adapter::RequestBody::Streaming(_) => None,
    }
}

/// What the stages before `record(request)` established, for its record.
pub struct Passed<'a> {
    /// Admission results (host, query).
    pub admitted: &'a crate::admit::Admitted,
    /// The route and the path it matched.
    pub matched: &'a crate::routing::Matched,
    /// The caller.
    pub principal: &'a Principal,
    /// The grant.
    pub grant: &'a GrantRuntime,
    /// The configuration in force (`config_version_id`).
    pub config_version_id: &'a str,
}

/// Stage 6, `record(request)`: the request record, durable before any byte goes upstream ("no
/// evidence, no forward"); its sequence goes into the exchange.
pub async fn record_request(
    evidence: &EvidenceLog,
    exchange: &mut super::Exchange,
    head: &http::request::Parts,
    passed: Passed<'_>,
    body: Option<&Bytes>,
    conn: &ConnInfo,
) -> Result<(), EvidenceError> {
    if !evidence.is_enabled() {
        return Ok(());
    }
    let facts = RequestFacts {
        exchange_id: &exchange.id,
        trace_id: &exchange.trace_id,
        head,
        host: &passed.admitted.host,
        path: &passed.matched.path,
        digests: exchange.digests.get_or_insert_with(|| {
            RequestDigests::of(&head.headers, passed.admitted.query.as_deref())
        }),
        body,
        conn,
        principal: passed.principal,
        grant: passed.grant,
        service: &passed.matched.route.service,
        config_version_id: passed.config_version_id,
    };
    let sequence = evidence.append(request_record(evidence, &facts)).await?;
    exchange.request_sequence = Some(sequence);
    Ok(())
}

/// Stage 9, `record(outcome)`: durable before the response completes at the client. An empty
/// body completes with the head, so its outcome is written here; otherwise the body records
/// it when it ends ([`RecordingBody`]).
pub async fn record_outcome(
    evidence: &EvidenceLog,
    exchange: &super::Exchange,
    started: Instant,
    head_nanos: u64,
    answered: penghubung_adapter::GatewayResponse,
) -> Result<http::Response<Body>, EvidenceError> {
    let response = answered.response;
    if !evidence.is_enabled() {
        return Ok(response);
    }
    let facts = OutcomeFacts {
        exchange_id: exchange.id.clone(),
        trace_id: exchange.trace_id.clone(),
        request_sequence: exchange.request_sequence.unwrap_or(0),
        upstream: answered.target,
        status: response.status().as_u16(),
        attempts: answered.attempts,
        started,
        head_nanos,
        class: "ok",
        reason: String::new(),
    };
    let (parts, body) = response.into_parts();
    if http_body::Body::is_end_stream(&body) {
        evidence
            .append(outcome_record(&facts, sha256(b""), 0))
            .await?;
        return Ok(http::Response::from_parts(parts, body));
    }
    let body = Body::new(RecordingBody::new(body, evidence.clone(), facts));
    Ok(http::Response::from_parts(parts, body))
}

/// Records a token endpoint answer: an issued token as a `request` record (the caller, no
/// digests of the head or body, which carry the client secret) followed by an `outcome`
/// (status 200, class `token_issued`, reason the token's `jti`, the response body's digest);
/// a refused token request as a `refused` record. The token leaves only once its records are
/// durable: if they cannot be written, the client gets 503 and no token.
pub async fn record_token_answer(
    evidence: &EvidenceLog,
    conn: &ConnInfo,
    exchange: &super::Exchange,
    head: &http::request::Parts,
    mut answer: Response<Bytes>,
) -> Response<Bytes> {
    if let Ok(id) = HeaderValue::from_str(&exchange.id) {
        answer
            .headers_mut()
            .insert(crate::identity::EXCHANGE_ID, id);
    }
    let Some(facts) = answer.extensions_mut().remove::<crate::auth::TokenFacts>() else {
        return answer;
    };
    if !evidence.is_enabled() {
        return answer;
    }
    let mut consumer = consumer(None, conn);
    if let Some((application, opd)) = &facts.application {
        consumer.application = application.clone();
        consumer.opd = opd.clone();
        consumer.credential_kind = "client_secret".into();
    }
    let status = answer.status().as_u16();
    match facts.result {
        Err((stage, reason)) => {
            let record = refused_record(RefusalFacts {
                exchange_id: &exchange.id,
                trace_id: &exchange.trace_id,
                stage,
                reason,
                status,
                peer: conn.peer.to_string(),
                consumer,
                method: &exchange.method,
                host: &exchange.host,
                path: &exchange.path,
                service_id: "",
                grant: None,
                // Like the token request record: no digest of a head that may carry the
                // client secret (proto/README.md §13).
                digests: None,
            });
            if let Err(e) = evidence.append(record).await {
                tracing::error!(exchange = %exchange.id, error = %e, "token refusal could not be recorded");
            }
            answer
        }
        Ok(jti) => {
            let started = Instant::now();
            let request = token_request_record(
                &exchange.id,
                &exchange.trace_id,
                head,
                &exchange.host,
                &exchange.path,
                conn,
                consumer,
            );
            let written = match evidence.append(request).await {
                Ok(sequence) => {
                    let outcome = outcome_record(
                        &OutcomeFacts {
                            exchange_id: exchange.id.clone(),
                            trace_id: exchange.trace_id.clone(),
                            request_sequence: sequence,
                            upstream: String::new(),
                            status,
                            attempts: 0,
                            started,
                            head_nanos: 0,
                            class: "token_issued",
                            reason: jti,
                        },
                        sha256(answer.body()),
                        answer.body().len() as u64,
                    );
                    evidence.append(outcome).await
                }
                Err(e) => Err(e),
            };
            match written {
                Ok(_) => answer,
                Err(e) => {
                    tracing::error!(exchange = %exchange.id, error = %e, "token issuance could not be recorded; no token sent");
                    let mut r = Response::new(Bytes::from_static(
                        br#"{"error":"temporarily_unavailable"}"#,
                    ));
                    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    if let Ok(id) = HeaderValue::from_str(&exchange.id) {
                        r.headers_mut().insert(crate::identity::EXCHANGE_ID, id);
                    }
                    r
                }
            }
        }
    }
}
