//! The request pipeline, top to bottom (DESIGN.md §3). This is the one screen where the flow of
//! an exchange can be read: each stage is a plain function called in order, and each ordering
//! constraint says why at the call site.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use penghubung_adapter::{Body, RequestBody};

use crate::admit::{self, Admitted};
use crate::error::{self, FaultStyle, GatewayError, Stage};
use crate::identity::ConnInfo;
use crate::proxy::{self, Forwarding, ResponseBody};
use crate::routing::Matched;
use crate::runtime::Runtime;
use crate::server::io::{Activity, InFlight};
use crate::server::Gateway;

/// What the pipeline knows about an exchange so far (for logs, metrics and evidence).
#[derive(Debug, Default)]
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
}

/// Handles one request: runs the stages and turns any error into a response in one place.
pub async fn handle(
    gateway: &Arc<Gateway>,
    conn: &Arc<ConnInfo>,
    activity: &Arc<Activity>,
    request: Request<Incoming>,
) -> Response<Body> {
    let in_flight = InFlight::new(activity);
    let started = Instant::now();
    // The runtime is loaded once: the whole exchange sees one config, even across a reload.
    let runtime = gateway.runtime.load_full();
    let mut exchange = Exchange {
        id: uuid::Uuid::now_v7().to_string(),
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        ..Exchange::default()
    };
    match run(&runtime, conn, &mut exchange, request).await {
        Ok((response, service_metrics)) => {
            service_metrics.observe(
                Stage::Dispatch,
                response.status().as_u16(),
                started.elapsed(),
            );
            access_log(
                &runtime,
                conn,
                &exchange,
                response.status().as_u16(),
                started.elapsed(),
            );
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, Body::new(ResponseBody::new(body, in_flight)))
        }
        Err(error) => {
            let response = refuse(&runtime, conn, &exchange, &error, started.elapsed());
            let (parts, body) = response.into_parts();
            Response::from_parts(
                parts,
                Body::new(ResponseBody::new(penghubung_adapter::full(body), in_flight)),
            )
        }
    }
}

type Answered = (Response<Body>, Arc<crate::telemetry::ServiceMetrics>);

async fn run(
    runtime: &Runtime,
    conn: &ConnInfo,
    exchange: &mut Exchange,
    request: Request<Incoming>,
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
    }

    // 2 route: deny routes win over forward routes, under every reading of the path.
    let matched =
        runtime
            .router
            .route(&admitted.host, &head.method, &raw_path, &admitted.canonical)?;
    let service = matched.route.service.clone();
    exchange.service = Some(service.id.clone());
    exchange.path = matched.path.clone();
    let adapter = service.adapter.clone().ok_or(GatewayError::RouteDenied)?;

    // 3–5 authenticate, authorize, throttle: before the body is read, so `100 Continue` is only
    //   sent to a request that may proceed (hyper sends it when the body is first polled).

    // The body is read (and checked) in full before anything goes upstream, unless the route
    // opted into streaming.
    let body = read_request_body(runtime, &matched, &admitted, body).await?;

    // 6 record(request) happens here, once the body digest is known.

    // 7 dispatch.
    let forwarding = Forwarding {
        exchange_id: &exchange.id,
        conn,
        admitted: &admitted,
        identity: Vec::new(),
    };
    let upstream_request = proxy::upstream_request(head, &matched, forwarding, body)?;
    let answered = adapter.call(upstream_request).await?;

    // 8 respond: sanitise the upstream head; the body streams through.
    let mut response = answered.response;
    proxy::clean_response(&mut response, &exchange.id);
    Ok((response, service.metrics.clone()))
}

async fn read_request_body(
    runtime: &Runtime,
    matched: &Matched,
    admitted: &Admitted,
    body: Incoming,
) -> Result<RequestBody, GatewayError> {
    let limit = matched.route.body_limit;
    let deadline = Duration::from_secs(runtime.limits.body_timeout_secs);
    if matched.route.stream_body {
        return proxy::stream_body(body, admitted.content_length, limit, deadline)
            .map(RequestBody::Streaming);
    }
    proxy::read_body(body, admitted.content_length, limit, deadline)
        .await
        .map(RequestBody::Buffered)
}

/// Answers a refusal: counts it, logs it, and writes the problem response.
fn refuse(
    runtime: &Runtime,
    conn: &ConnInfo,
    exchange: &Exchange,
    error: &GatewayError,
    elapsed: Duration,
) -> Response<bytes::Bytes> {
    let status = error.status();
    let metrics = match &exchange.service {
        Some(id) => runtime.router_service_metrics(id),
        None => runtime.unrouted.clone(),
    };
    metrics.observe(error.stage(), status.as_u16(), elapsed);
    tracing::debug!(
        exchange = %exchange.id,
        peer = %conn.peer,
        stage = error.stage().as_str(),
        reason = error.reason(),
        %error,
        "request refused"
    );
    access_log(runtime, conn, exchange, status.as_u16(), elapsed);
    let mut response = error::rescue(status, &exchange.id, None, exchange.fault_style);
    if let GatewayError::MethodNotAllowed { allow } = error {
        if let Ok(v) = http::HeaderValue::from_str(allow) {
            response.headers_mut().insert(http::header::ALLOW, v);
        }
    }
    if error.close_connection() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Records a refusal that happened below HTTP (TLS handshake failure, or a parse error hyper
/// answered itself).
pub fn connection_refused(
    gateway: &Gateway,
    peer: SocketAddr,
    reason: &'static str,
    client: Option<&crate::identity::PeerIdentity>,
) {
    let _ = gateway;
    tracing::info!(%peer, reason, client = client.map(|c| c.subject.as_str()), "connection refused");
}

fn access_log(
    runtime: &Runtime,
    conn: &ConnInfo,
    exchange: &Exchange,
    status: u16,
    elapsed: Duration,
) {
    if runtime.config.log.access_log {
        tracing::info!(
            target: "penghubung::access",
            exchange = %exchange.id,
            peer = %conn.peer,
            method = %exchange.method,
            host = %exchange.host,
            path = %exchange.path,
            service = exchange.service.as_deref().unwrap_or("-"),
            status,
            micros = elapsed.as_micros() as u64,
            trace = %exchange.trace_id,
        );
    }
}
