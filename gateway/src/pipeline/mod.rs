//! The request pipeline, top to bottom (stages in README, "Architecture"). This is the one
//! screen where the flow of an exchange can be read: each stage is a plain function called in order, and each ordering
//! constraint says why at the call site. Evidence records are built in [`record`].

mod plane;
pub mod record;
pub mod refusals;
mod soap;
#[cfg(test)]
mod tests;

pub use plane::Plane;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{Request, Response};
use penghubung_adapter::{Body, RequestBody};

use crate::admit::{self, Admitted};
use crate::auth::endpoints::{self, Endpoint, NotAnswered};
use crate::auth::{GrantRuntime, Principal};
use crate::dispatch::{self, ClientBody, ResponseBody};
use crate::error::{self, FaultStyle, GatewayError};
use crate::identity::{ConnInfo, PeerIdentity};
use crate::routing::Matched;
use crate::snapshot::Snapshot;
use crate::stage::Stage;
use crate::telemetry::{trace, ServiceMetrics};
use crate::throttle::RateInfo;
use penghubung_adapter::Adapter;
use penghubung_evidence::EvidenceLog;
use record::{OutcomeFacts, RefusalFacts, RequestDigests};
use refusals::{Disposition, ParserRefusal, Refusal, RefusalGuard};
use tracing::Instrument;

const APIKEY: HeaderName = HeaderName::from_static("apikey");

/// What the pipeline knows about an exchange so far (for logs, metrics and evidence).
#[derive(Default)]
pub struct Exchange {
    /// UUIDv7 exchange id, returned to the client and sent upstream.
    pub id: String,
    /// Request method.
    pub method: String,
    /// Host named by the request.
    pub host: String,
    /// Canonical path (or the raw path when admission refused it).
    pub path: String,
    /// Trace id (hex).
    pub trace_id: String,
    /// Service id, once routed.
    pub service: Option<String>,
    /// How refusals are written for this route.
    pub fault_style: FaultStyle,
    /// The caller, once authenticated.
    pub principal: Option<Arc<Principal>>,
    /// The grant, once authorised.
    pub grant: Option<Arc<GrantRuntime>>,
    /// Sequence of the request record, once durable: later failures are outcomes, not refusals.
    pub request_sequence: Option<u64>,
    /// Query and header digests of the head as received (when evidence is recorded): the
    /// request record and a refusal record carry the same ones.
    pub digests: Option<RequestDigests>,
    /// The SOAP call, once its envelope was read (services of upstream kind `soap`).
    pub soap: Option<Arc<penghubung_adapter_soap::Prepared>>,
    /// On a personal-data route (or a path matching one's template): the template, masked path,
    /// keyed digests and commitments; `path` then holds the masked path (`privacy`).
    pub personal: Option<Arc<crate::privacy::Seen>>,
}

/// What the connection (`server`) tells the pipeline about one request, beyond the request.
#[derive(Debug)]
pub struct Connection<G> {
    /// The connection's peer, listener, TLS facts.
    pub info: Arc<ConnInfo>,
    /// The byte scanner saw `Content-Length` together with `Transfer-Encoding` in this
    /// request's raw head (hyper drops the former before the head reaches admission).
    pub content_length_with_transfer_encoding: bool,
    /// The connection's in-flight token for this request, held until the response body ends.
    pub in_flight: G,
}

/// Handles one request: runs the stages and turns any error into a response in one place.
/// `runtime` is the snapshot the whole exchange uses (loaded once by the caller, so a reload
/// during the exchange does not change its config). No socket is needed: any request body
/// type and any in-flight token will do.
pub async fn handle<B: ClientBody, G: Send + 'static>(
    runtime: Arc<Snapshot>,
    evidence: &EvidenceLog,
    refusals: &RefusalGuard,
    connection: Connection<G>,
    request: Request<B>,
) -> Response<Body> {
    let started = Instant::now();
    let Connection {
        info: conn,
        content_length_with_transfer_encoding,
        in_flight,
    } = connection;
    let conn = &conn;
    let mut exchange = Exchange {
        id: uuid::Uuid::now_v7().to_string(),
        method: request.method().as_str().to_owned(),
        path: request.uri().path().chars().take(1024).collect(),
        digests: evidence
            .is_enabled()
            .then(|| RequestDigests::of(request.headers(), request.uri().query())),
        ..Exchange::default()
    };
    // The exchange span (none when traces are off): every stage's span is its child.
    let span = trace::exchange(request.headers(), &exchange.id, &exchange.method);
    // hyper drops Content-Length when Transfer-Encoding is present, so admission cannot see
    // both; the connection's byte scanner saw the raw head (server::h1frame).
    let outcome = if content_length_with_transfer_encoding {
        Err(GatewayError::BadRequest {
            reason: "content_length_with_transfer_encoding",
            close: true,
        })
    } else if let Some(retry) = refusals
        .limited(conn.peer.ip(), &runtime.limits)
        .filter(|_| !presents_credential(request.headers(), conn))
    {
        // Cheapest possible answer for a source in a refusal storm (pipeline::refusals).
        Err(GatewayError::SourceRefusalsLimited {
            retry_after_secs: retry.as_secs().max(1),
        })
    } else {
        run(&runtime, evidence, conn, &mut exchange, started, request)
            .instrument(span.clone())
            .await
    };
    match outcome {
        Ok((response, metrics)) => {
            trace::finish(
                &span,
                &finished(&exchange, response.status().as_u16(), None),
            );
            if exchange.principal.is_some() || response.status().as_u16() < 400 {
                refusals.succeeded(conn.peer.ip(), &runtime.limits);
            }
            let opd = exchange.principal.as_ref().map(|p| p.opd.as_str());
            let status = response.status().as_u16();
            metrics.observe(Stage::Dispatch, status, started.elapsed(), opd);
            access_log(
                &runtime,
                conn,
                &exchange,
                &exchange.path,
                response.status().as_u16(),
                started.elapsed(),
            );
            let (mut parts, body) = response.into_parts();
            add_configured_headers(&runtime, conn, &exchange, &mut parts.headers);
            Response::from_parts(parts, Body::new(ResponseBody::new(body, in_flight)))
        }
        Err(error) => {
            let refusal = (error.stage().as_str(), error.reason());
            let facts = finished(&exchange, error.status().as_u16(), Some(refusal));
            trace::finish(&span, &facts);
            let response = refuse(
                &runtime, evidence, refusals, conn, &exchange, &error, started,
            )
            .instrument(span)
            .await;
            let (mut parts, body) = response.into_parts();
            add_configured_headers(&runtime, conn, &exchange, &mut parts.headers);
            Response::from_parts(
                parts,
                Body::new(ResponseBody::new(penghubung_adapter::full(body), in_flight)),
            )
        }
    }
}

/// The exchange's ids for its span (never a path or a value the client sent).
fn finished<'a>(
    exchange: &'a Exchange,
    status: u16,
    refusal: Option<(&'a str, &'a str)>,
) -> trace::Finished<'a> {
    trace::Finished {
        service: exchange.service.as_deref(),
        opd: exchange.principal.as_ref().map(|p| p.opd.as_str()),
        application: exchange.principal.as_ref().map(|p| p.application.as_str()),
        grant: exchange.grant.as_ref().map(|g| g.id.as_str()),
        status,
        refusal,
    }
}

/// The listener's `response_headers`, then the service's (which win for the same name); both
/// replace what the upstream sent.
fn add_configured_headers(
    runtime: &Snapshot,
    conn: &ConnInfo,
    exchange: &Exchange,
    headers: &mut http::HeaderMap,
) {
    if let Some(added) = runtime.listener_headers.get(conn.listener) {
        for (name, value) in added {
            headers.insert(name.clone(), value.clone());
        }
    }
    if let Some(added) = exchange
        .service
        .as_ref()
        .and_then(|id| runtime.service_headers.get(id))
    {
        for (name, value) in added {
            headers.insert(name.clone(), value.clone());
        }
    }
}

type Answered = (Response<Body>, Arc<ServiceMetrics>);

async fn run<B: ClientBody>(
    runtime: &Snapshot,
    evidence: &EvidenceLog,
    conn: &ConnInfo,
    exchange: &mut Exchange,
    started: Instant,
    request: Request<B>,
) -> Result<Answered, GatewayError> {
    let (mut head, body) = request.into_parts();
    let raw_path = head.uri.path().to_owned();

    // 1 admit: limits, framing, host, expect, trace context, canonical path — before anything
    //   reads the request, so later stages only ever see a clean head.
    let admitted = admit::admit(&mut head, conn, &runtime.limits)?;
    exchange.host = admitted.host.clone();
    exchange.trace_id = admitted.trace.trace_id_hex();
    if let Ok(path) = &admitted.canonical {
        exchange.path = path.clone();
        // The gateway's own OAuth2 endpoints answer on every virtual host, before routing.
        if let Some(endpoint) = Endpoint::at(runtime.token_endpoint, path) {
            let request = (&head, &admitted);
            let answer =
                own_endpoint(runtime, evidence, conn, exchange, request, endpoint, body).await?;
            return Ok((answer, runtime.unrouted.clone()));
        }
    }

    // 2 route: deny routes win over forward routes, under every reading of the path.
    let (matched, adapter) = route(runtime, exchange, &head, &raw_path, &admitted)
        .inspect_err(|_| personal(runtime, exchange, &head, None))?;
    let service = matched.route.service.clone();

    // 3 authenticate, 4 authorize, 5 throttle: before the body is read, so `100 Continue` is
    //   only sent to a request that may proceed (hyper sends it when the body is first polled).
    let (principal, grant, rate) = access(runtime, conn, exchange, &head, &matched).await?;

    // The body is read and checked in full before anything goes upstream (unless the route
    // opted into streaming), so its digest is in the request record; then soap::prepare.
    let body = read_request_body(runtime, &matched, &admitted, body).await?;
    let at = (&matched, &admitted, &principal);
    let grant = soap::prepare(runtime, exchange, &mut head, at, grant, &body).await?;

    // 6 record(request): durable before any byte goes upstream ("no evidence, no forward").
    let passed = record::Passed {
        admitted: &admitted,
        matched: &matched,
        principal: &principal,
        grant: &grant,
        config_version_id: &runtime.config_version_id,
    };
    let buffered = record::buffered(&body);
    record::record_request(evidence, exchange, &head, passed, buffered, conn)
        .await
        .map_err(|e| GatewayError::EvidenceUnavailable(e.to_string()))?;

    // 7 dispatch, 8 respond: the clean upstream request, the adapter, the sanitised head.
    let call = dispatch::Call {
        runtime,
        conn,
        admitted: &admitted,
        matched: &matched,
        principal: &principal,
        grant: &grant,
        exchange_id: &exchange.id,
    };
    let mut answered = dispatch::call(call, &*adapter, head, body).await?;
    let head_nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    rate.headers(answered.response.headers_mut());

    // 9 record(outcome): durable before the response completes at the client.
    let response = record::record_outcome(evidence, exchange, started, head_nanos, answered)
        .await
        .map_err(|e| GatewayError::EvidenceUnavailable(e.to_string()))?;
    Ok((response, service.metrics.clone()))
}

/// Stage 2, `route`: the matched route and the adapter of its service.
fn route(
    runtime: &Snapshot,
    exchange: &mut Exchange,
    head: &http::request::Parts,
    raw_path: &str,
    admitted: &Admitted,
) -> Result<(Matched, Arc<dyn Adapter>), GatewayError> {
    let _span = trace::stage("route").entered();
    let matched =
        runtime
            .router
            .route(&admitted.host, &head.method, raw_path, &admitted.canonical)?;
    let service = &matched.route.service;
    exchange.service = Some(service.id.clone());
    exchange.fault_style =
        soap::fault_style(service, &head.headers).unwrap_or(service.auth.fault_style);
    exchange.path = matched.path.clone();
    if let Some(policy) = &service.privacy {
        personal(runtime, exchange, head, Some((policy, matched.route.index)));
    }
    let adapter = service.adapter.clone().ok_or(GatewayError::RouteDenied)?;
    Ok((matched, adapter))
}

/// A personal-data route (or, unrouted, a path matching one's template): what the exchange
/// shows goes into `exchange.personal`, and `exchange.path` becomes the masked path, so that
/// neither logs nor records hold the declared values.
fn personal(
    runtime: &Snapshot,
    exchange: &mut Exchange,
    head: &http::request::Parts,
    routed: Option<(&Arc<crate::privacy::ServicePolicy>, usize)>,
) {
    let seen = record::personal(&runtime.privacy, routed, &exchange.id, head, &exchange.path);
    if let Some(seen) = seen {
        exchange.path = seen.masked_path.clone();
        exchange.personal = Some(seen);
    }
}

/// Stages 3 `authenticate`, 4 `authorize` and 5 `throttle`: the caller, its grant for this
/// service and path, and the limits' state.
async fn access(
    runtime: &Snapshot,
    conn: &ConnInfo,
    exchange: &mut Exchange,
    head: &http::request::Parts,
    matched: &Matched,
) -> Result<(Arc<Principal>, Arc<GrantRuntime>, RateInfo), GatewayError> {
    let service = &matched.route.service;
    // A peer SPL's backend JWT is its credential; any other X-JWT-Assertion is stripped with the identity headers ([headers]).
    let mut principal = match runtime.peers.verify(&head.headers) {
        Some(peer) => peer?,
        None => {
            runtime
                .auth
                .authenticate(
                    &head.headers,
                    &head.uri,
                    conn.client.as_ref(),
                    &service.auth,
                )
                .instrument(trace::stage("authenticate"))
                .await?
        }
    };
    if principal.peer_tier.is_none() {
        principal.peer_tier = runtime.peers.tier_of(&principal.application);
    }
    let principal = Arc::new(principal);
    exchange.principal = Some(principal.clone());
    let authorizing = trace::stage("authorize").entered();
    if let Some(tier) = principal.peer_tier {
        if !service.exposure.includes_tier(tier) {
            return Err(crate::auth::AuthError::NotExposedToPeer.into());
        }
    }
    let grant = runtime.auth.authorize(
        &principal,
        &service.id,
        service.classification,
        &head.method,
        &matched.path,
        SystemTime::now(),
    )?;
    drop(authorizing);
    exchange.grant = Some(grant.clone());
    let rate = (runtime.auth.throttle(&principal, &grant))
        .instrument(trace::stage("throttle"))
        .await?;
    Ok((principal, grant, rate))
}

async fn read_request_body<B: ClientBody>(
    runtime: &Snapshot,
    matched: &Matched,
    admitted: &Admitted,
    body: B,
) -> Result<RequestBody, GatewayError> {
    let limit = matched.route.body_limit;
    let deadline = Duration::from_secs(runtime.limits.body_timeout_secs);
    if matched.route.stream_body {
        return dispatch::stream_body(body, admitted.content_length, limit, deadline)
            .map(RequestBody::Streaming);
    }
    dispatch::read_body(body, admitted.content_length, limit, deadline)
        .await
        .map(RequestBody::Buffered)
}

/// Whether a request presents a credential (a client certificate, `Authorization` or `apikey`):
/// such a request is always authenticated, never answered early for its source's refusals.
fn presents_credential(headers: &http::HeaderMap, conn: &ConnInfo) -> bool {
    conn.client.is_some()
        || headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key(APIKEY)
}

/// The gateway's own OAuth2 endpoints (`auth::endpoints`), answered before routing; a token
/// answer is recorded.
async fn own_endpoint<B: ClientBody>(
    runtime: &Snapshot,
    evidence: &EvidenceLog,
    conn: &ConnInfo,
    exchange: &Exchange,
    (head, admitted): (&http::request::Parts, &Admitted),
    endpoint: Endpoint,
    body: B,
) -> Result<Response<Body>, GatewayError> {
    let timeout = Duration::from_secs(runtime.limits.body_timeout_secs);
    let read = dispatch::read_body(body, admitted.content_length, 64 * 1024, timeout);
    let (method, headers, source) = (&head.method, &head.headers, conn.peer.ip());
    let answer =
        match endpoints::answer(&runtime.auth, endpoint, method, headers, source, read).await {
            Ok(answer) => answer,
            Err(NotAnswered::MethodNotAllowed(allow)) => {
                return Err(GatewayError::MethodNotAllowed {
                    allow: allow.into(),
                })
            }
            Err(NotAnswered::Body(error)) => return Err(error),
        };
    let answer = match endpoint {
        Endpoint::Token => {
            record::record_token_answer(evidence, conn, exchange, head, answer).await
        }
        Endpoint::Jwks => answer,
    };
    let (parts, body) = answer.into_parts();
    Ok(Response::from_parts(parts, penghubung_adapter::full(body)))
}

/// Answers a refusal: records it (a `refused` record, or an `outcome` when the request record
/// was already written), counts it, logs it, and writes the problem response.
async fn refuse(
    runtime: &Snapshot,
    evidence: &EvidenceLog,
    refusals: &RefusalGuard,
    conn: &ConnInfo,
    exchange: &Exchange,
    error: &GatewayError,
    started: Instant,
) -> Response<Bytes> {
    let status = error.status();
    let metrics = match &exchange.service {
        Some(id) => runtime.router_service_metrics(id),
        None => runtime.unrouted.clone(),
    };
    let opd = exchange.principal.as_ref().map(|p| p.opd.as_str());
    metrics.observe(error.stage(), status.as_u16(), started.elapsed(), opd);
    // Refused before routing: a path matching a personal-data route template is masked too.
    let masked_path = match &exchange.personal {
        Some(_) => std::borrow::Cow::Borrowed(exchange.path.as_str()),
        None => runtime.privacy.mask_path(&exchange.path),
    };
    // The masked message is only made when debug logging is on (the macro evaluates its fields
    // after the level check).
    let masked = |text: String| match &exchange.personal {
        Some(seen) => seen.mask(&text),
        None => runtime.privacy.mask_path(&text).into_owned(),
    };
    tracing::debug!(exchange = %exchange.id, peer = %conn.peer, stage = error.stage().as_str(), reason = error.reason(), error = %masked(error.to_string()), "request refused");
    // An unauthenticated refusal beyond its source's limit is counted, not recorded alone.
    let suppressed = exchange.request_sequence.is_none()
        && exchange.principal.is_none()
        && refusals.refused(
            conn.peer.ip(),
            &runtime.limits,
            Refusal {
                stage: error.stage().as_str(),
                reason: error.reason(),
                status: status.as_u16(),
                exchange_id: &exchange.id,
            },
        ) == Disposition::Suppressed;
    if evidence.is_enabled() && !suppressed {
        let record = match exchange.request_sequence {
            Some(sequence) => record::outcome_record(
                &OutcomeFacts {
                    exchange_id: exchange.id.clone(),
                    trace_id: exchange.trace_id.clone(),
                    request_sequence: sequence,
                    upstream: String::new(),
                    status: status.as_u16(),
                    attempts: 0,
                    started,
                    head_nanos: 0,
                    class: "failed",
                    reason: error.reason().to_owned(),
                    peer: None,
                    soap: None,
                    personal: None,
                },
                Bytes::new(),
                0,
            ),
            None => record::refused_record(RefusalFacts {
                exchange_id: &exchange.id,
                trace_id: &exchange.trace_id,
                stage: error.stage().as_str(),
                reason: error.reason(),
                status: status.as_u16(),
                peer: conn.peer.to_string(),
                consumer: record::consumer(exchange.principal.as_deref(), conn),
                method: &exchange.method,
                host: &exchange.host,
                path: &masked_path,
                service_id: exchange.service.as_deref().unwrap_or_default(),
                grant: exchange.grant.as_deref(),
                // A path masked without a head to digest keyed: no plain digests either.
                digests: exchange
                    .digests
                    .as_ref()
                    .filter(|_| exchange.personal.is_some() || masked_path == exchange.path),
                personal: exchange.personal.as_deref(),
            }),
        };
        let mut record = record;
        soap::fill_refused(&mut record, exchange.soap.as_ref());
        let stage = match exchange.request_sequence {
            Some(_) => trace::stage("record_outcome"),
            None => trace::stage("record_refusal"),
        };
        if let Err(e) = evidence.append(record).instrument(stage).await {
            tracing::error!(exchange = %exchange.id, error = %e, "refusal could not be recorded");
        }
    }
    access_log(
        runtime,
        conn,
        exchange,
        &masked_path,
        status.as_u16(),
        started.elapsed(),
    );
    error::rescue(error, &exchange.id, exchange.fault_style)
}

/// Records a refusal that happened below HTTP (TLS handshake failure, or a parse error hyper
/// answered itself). The record is written in the background: the connection is already gone.
/// `answered` is the problem response the client got instead of hyper's bare one (its exchange
/// id, status and reason code go into the record and the access log).
pub fn connection_refused(
    gateway: &Plane,
    peer: SocketAddr,
    reason: &'static str,
    client: Option<&PeerIdentity>,
    answered: Option<ParserRefusal>,
) {
    tracing::debug!(%peer, reason, "connection refused");
    let (exchange_id, status, reason) = match answered {
        Some(a) => (a.exchange_id, a.status, a.reason),
        None => (String::new(), 0, reason),
    };
    let snapshot = gateway.snapshot.load();
    if snapshot.access_log {
        tracing::info!(
            target: "penghubung::access",
            exchange = if exchange_id.is_empty() { "-" } else { exchange_id.as_str() },
            peer = %peer,
            method = "-",
            host = "-",
            path = "-",
            service = "-",
            consumer = "-",
            grant = "-",
            status,
            reason,
            micros = 0u64,
            trace = "-",
        );
    }
    let disposition = gateway.refusals.refused(
        peer.ip(),
        &snapshot.limits,
        Refusal {
            stage: Stage::Accept.as_str(),
            reason,
            status,
            exchange_id: &exchange_id,
        },
    );
    if !gateway.evidence.is_enabled() || disposition == Disposition::Suppressed {
        return;
    }
    let mut consumer = penghubung_evidence::schema::Consumer::default();
    if let Some(c) = client {
        consumer.tls_subject = c.subject.clone();
        consumer.tls_sha256 = hex::decode(&c.sha256).map(Bytes::from).unwrap_or_default();
    }
    let record = record::refused_record(RefusalFacts {
        exchange_id: &exchange_id,
        trace_id: "",
        stage: Stage::Accept.as_str(),
        reason,
        status,
        peer: peer.to_string(),
        consumer,
        method: "",
        host: "",
        path: "",
        service_id: "",
        grant: None,
        digests: None,
        personal: None,
    });
    let evidence = gateway.evidence.clone();
    tokio::spawn(async move {
        if let Err(error) = evidence.append(record).await {
            tracing::error!(%error, "connection refusal could not be recorded");
        }
    });
}

/// One access-log line; `path` is the exchange's path with declared personal values masked.
fn access_log(
    runtime: &Snapshot,
    conn: &ConnInfo,
    exchange: &Exchange,
    path: &str,
    status: u16,
    elapsed: Duration,
) {
    if runtime.access_log {
        tracing::info!(
            target: "penghubung::access",
            exchange = %exchange.id,
            peer = %conn.peer,
            method = %exchange.method,
            host = %exchange.host,
            path = %path,
            service = exchange.service.as_deref().unwrap_or("-"),
            consumer = exchange.principal.as_ref().map_or("-", |p| p.application.as_str()),
            grant = exchange.grant.as_ref().map_or("-", |g| g.id.as_str()),
            status,
            micros = elapsed.as_micros() as u64,
            trace = %exchange.trace_id,
        );
    }
}
