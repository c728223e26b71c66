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
use crate::privacy;
use crate::snapshot::Service;
use crate::telemetry::trace;
use penghubung_evidence::schema::{self, record::Kind};
use penghubung_evidence::{EvidenceError, EvidenceLog};
use tracing::Instrument;

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

fn each_digested(headers: &HeaderMap, mut update: impl FnMut(&[u8])) {
    for name in DIGESTED_HEADERS {
        for value in headers.get_all(*name) {
            update(name.as_bytes());
            update(b": ");
            update(value.as_bytes());
            update(b"\n");
        }
    }
}

fn headers_digest(headers: &HeaderMap) -> Bytes {
    let mut hasher = Sha256::new();
    each_digested(headers, |b| hasher.update(b));
    Bytes::copy_from_slice(&hasher.finalize())
}

/// What a request to a personal-data route shows ([`privacy::Seen`]): for the route `routed`
/// matched (a service's policy and route index), or, unrouted, for any personal-data route
/// template its canonical `path` matches. `None` for everything else.
pub fn personal(
    privacy: &privacy::Privacy,
    routed: Option<(&Arc<privacy::ServicePolicy>, usize)>,
    exchange_id: &str,
    head: &http::request::Parts,
    path: &str,
) -> Option<Arc<privacy::Seen>> {
    let mut digested = Vec::new();
    each_digested(&head.headers, |b| digested.extend_from_slice(b));
    let observed = privacy::Observed {
        exchange_id,
        path,
        query: head.uri.query(),
        headers: &head.headers,
        digested_headers: &digested,
    };
    match routed {
        Some((policy, route)) => privacy.observe(policy, route, &observed),
        None => privacy.observe_unrouted(&observed),
    }
    .map(Arc::new)
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
    /// What the request shows of personal data (personal-data routes only).
    pub personal: Option<&'a privacy::Seen>,
    /// The configuration in force (`config_version_id`).
    pub config_version_id: &'a str,
}

/// Builds the `request` record.
pub fn request_record(facts: &RequestFacts<'_>) -> schema::Record {
    let (body_sha256, body_length) = match facts.body {
        Some(body) => (sha256(body), body.len() as u64),
        None => (Bytes::new(), 0),
    };
    let mut request = schema::Request {
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
        peer_direction: match facts.principal.peer_tier {
            Some(tier) => format!("inbound-from-{tier}"),
            None => facts.service.peer_direction.clone(),
        },
        consent_id: facts.grant.consent_id.clone(),
        ..Default::default()
    };
    if let Some(seen) = facts.personal {
        personal_request(&mut request, seen, facts.exchange_id, facts.body);
    }
    schema::Record {
        exchange_id: facts.exchange_id.to_owned(),
        trace_id: facts.trace_id.to_owned(),
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        config_version_id: facts.config_version_id.to_owned(),
        kind: Some(Kind::Request(request)),
        ..Default::default()
    }
}

/// A personal-data request record (proto/README.md §16): the route template instead of the
/// path, keyed digests instead of SHA-256, the commitments of the declared values (path, query,
/// headers, JSON or XML body fields) and the body's field commitment tree (§9).
fn personal_request(
    request: &mut schema::Request,
    seen: &privacy::Seen,
    exchange_id: &str,
    body: Option<&Bytes>,
) {
    let keys = seen.keys.current();
    request.canonical_path = String::new();
    request.route_template = seen.template.clone();
    request.personal_key_id = keys.id().to_owned();
    request.path_hmac = seen.path_hmac.clone();
    request.query_hmac = seen.query_hmac.clone();
    request.query_sha256 = Bytes::new();
    request.headers_hmac = seen.headers_hmac.clone();
    request.headers_sha256 = Bytes::new();
    request.personal_values = seen.values.clone();
    if let Some(body) = body {
        request.body_sha256 = Bytes::new();
        request.body_hmac = Bytes::copy_from_slice(&keys.digest("body", body));
        request.body_commitment_root =
            penghubung_evidence::commitment::commitment_root(body, exchange_id, keys.tree_secret())
                .map(|r| Bytes::copy_from_slice(&r))
                .unwrap_or_default();
        if let Some(policy) = &seen.policy {
            request
                .personal_values
                .extend(policy.commit_body(keys, exchange_id, "request", body));
        }
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
    /// What the request showed of personal data, when its path is a personal-data route's.
    pub personal: Option<&'a privacy::Seen>,
}

/// Builds a `refused` record.
pub fn refused_record(facts: RefusalFacts<'_>) -> schema::Record {
    let personal = facts.personal;
    let mut refused = schema::Refused {
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
    if let Some(seen) = personal {
        // The template, never the path; keyed digests, never plain ones (§16).
        refused.path = seen.template.clone();
        refused.personal_key_id = seen.key_id().to_owned();
        refused.path_hmac = seen.path_hmac.clone();
        refused.query_hmac = seen.query_hmac.clone();
        refused.query_sha256 = Bytes::new();
        refused.headers_hmac = seen.headers_hmac.clone();
        refused.headers_sha256 = Bytes::new();
    }
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
    /// What a SOAP adapter read of the back end's answer (proto/README.md §15).
    pub soap: Option<penghubung_adapter_soap::SoapOutcome>,
    /// Outcome class (`ok`, `upstream_error`, …) and reason.
    pub class: &'static str,
    /// Reason for a failed outcome.
    pub reason: String,
    /// What a peer adapter learned about the exchange (kind `splp`).
    pub peer: Option<penghubung_adapter::PeerExchange>,
    /// Personal-data routes: the key and the response's committed values.
    pub personal: Option<OutcomePersonal>,
}

/// The personal-data part of an outcome (proto/README.md §16).
#[derive(Clone)]
pub struct OutcomePersonal {
    /// What the request showed (key, policy).
    pub seen: Arc<privacy::Seen>,
    /// Commitments of the response's declared values found so far (headers; JSON fields are
    /// added when the body has ended).
    pub values: Vec<schema::PersonalValue>,
}

/// Response bodies of personal-data routes are kept up to this size to commit their declared
/// JSON fields; a larger body keeps its keyed digest only.
const KEEP_FOR_COMMITMENTS: usize = 4 * 1024 * 1024;

/// Builds an `outcome` record. `response_digest` is SHA-256 of the response body, or, on a
/// personal-data route, its keyed digest (`response_hmac`).
pub fn outcome_record(
    facts: &OutcomeFacts,
    response_digest: Bytes,
    response_length: u64,
) -> schema::Record {
    let (response_sha256, response_hmac) = match &facts.personal {
        Some(_) => (Bytes::new(), response_digest),
        None => (response_digest, Bytes::new()),
    };
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
        response_hmac,
        ..Default::default()
    };
    let mut outcome = match &facts.peer {
        Some(peer) => schema::Outcome {
            upstream_tls_sha256: peer
                .tls_sha256
                .map(|d| Bytes::copy_from_slice(&d))
                .unwrap_or_default(),
            peer_direction: peer.direction.clone(),
            peer_correlation_id: peer.correlation_id.clone(),
            peer_fault_code: peer.fault_code.unwrap_or(0),
            peer_path: peer.path.clone(),
            peer_credential: peer.credential.clone(),
            ..outcome
        },
        None => outcome,
    };
    super::soap::fill_outcome(&mut outcome, facts.soap.as_ref());
    if let Some(p) = &facts.personal {
        outcome.personal_key_id = p.seen.key_id().to_owned();
        outcome.personal_values = p.values.clone();
    }
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

/// How a response body is digested: SHA-256, or on a personal-data route the keyed digest
/// (with the body kept, up to a limit, when declared JSON fields are to be committed).
enum Digester {
    Plain(Sha256),
    Keyed {
        ctx: Box<ring::hmac::Context>,
        kept: Option<Vec<u8>>,
    },
}

impl Digester {
    fn for_facts(facts: &OutcomeFacts) -> Digester {
        match &facts.personal {
            Some(p) => Digester::Keyed {
                ctx: Box::new(p.seen.keys.current().digest_context("response")),
                kept: p
                    .seen
                    .policy
                    .as_ref()
                    .is_some_and(|policy| policy.commits_bodies())
                    .then(Vec::new),
            },
            None => Digester::Plain(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Digester::Plain(h) => h.update(data),
            Digester::Keyed { ctx, kept } => {
                ctx.update(data);
                if kept
                    .as_ref()
                    .is_some_and(|k| k.len() + data.len() > KEEP_FOR_COMMITMENTS)
                {
                    *kept = None;
                }
                if let Some(k) = kept {
                    k.extend_from_slice(data);
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body of a recorded exchange (see the module docs).
    pub struct RecordingBody {
        #[pin]
        inner: Body,
        held: Option<Bytes>,
        hasher: Digester,
        length: u64,
        state: State,
        evidence: EvidenceLog,
        facts: Arc<OutcomeFacts>,
        // The exchange's span (none when traces are off): the outcome is recorded under it.
        exchange_span: tracing::Span,
    }
}

impl RecordingBody {
    /// Wraps the upstream body.
    pub fn new(inner: Body, evidence: EvidenceLog, facts: OutcomeFacts) -> RecordingBody {
        RecordingBody {
            inner,
            held: None,
            hasher: Digester::for_facts(&facts),
            length: 0,
            state: State::Streaming,
            evidence,
            facts: Arc::new(facts),
            exchange_span: trace::current(),
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
                            let pending = start_record(
                                this.evidence,
                                this.facts,
                                this.hasher,
                                *this.length,
                                this.exchange_span,
                            );
                            *this.state = State::Recording(pending, Some(trailers));
                        }
                    },
                    Poll::Ready(None) => {
                        let pending = start_record(
                            this.evidence,
                            this.facts,
                            this.hasher,
                            *this.length,
                            this.exchange_span,
                        );
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
    hasher: &mut Digester,
    length: u64,
    exchange_span: &tracing::Span,
) -> Pending {
    let span = trace::stage_under(exchange_span, "record_outcome");
    let record = match std::mem::replace(hasher, Digester::Plain(Sha256::new())) {
        Digester::Plain(h) => outcome_record(facts, Bytes::copy_from_slice(&h.finalize()), length),
        Digester::Keyed { ctx, kept } => {
            let digest = Bytes::copy_from_slice(ctx.sign().as_ref());
            let mut facts = (**facts).clone();
            if let (Some(p), Some(body)) = (&mut facts.personal, kept) {
                if let Some(policy) = &p.seen.policy {
                    let keys = p.seen.keys.current();
                    p.values.extend(policy.commit_json(
                        keys,
                        &facts.exchange_id,
                        "response",
                        &body,
                    ));
                }
            }
            outcome_record(&facts, digest, length)
        }
    };
    let evidence = evidence.clone();
    Box::pin(async move { evidence.append(record).instrument(span).await })
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
        personal: exchange.personal.as_deref(),
        config_version_id: passed.config_version_id,
    };
    let mut record = request_record(&facts);
    super::soap::fill_request(&mut record, exchange.soap.as_ref());
    let sequence = evidence
        .append(record)
        .instrument(trace::stage("record_request"))
        .await?;
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
        peer: response
            .extensions()
            .get::<penghubung_adapter::PeerExchange>()
            .cloned(),
        soap: response
            .extensions()
            .get::<penghubung_adapter_soap::SoapOutcome>()
            .cloned(),
        personal: exchange.personal.as_ref().map(|seen| OutcomePersonal {
            seen: seen.clone(),
            values: seen
                .policy
                .as_ref()
                .map(|p| {
                    let keys = seen.keys.current();
                    p.commit_headers(keys, &exchange.id, "response", response.headers())
                })
                .unwrap_or_default(),
        }),
    };
    let (parts, body) = response.into_parts();
    if http_body::Body::is_end_stream(&body) {
        let digest = match &facts.personal {
            Some(p) => Bytes::copy_from_slice(&p.seen.keys.current().digest("response", b"")),
            None => sha256(b""),
        };
        evidence
            .append(outcome_record(&facts, digest, 0))
            .instrument(trace::stage("record_outcome"))
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
                personal: None,
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
                            peer: None,
                            soap: None,
                            personal: None,
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
