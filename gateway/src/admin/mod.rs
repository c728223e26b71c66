//! The admin listener (loopback by default, separate from traffic): `/live`, `/ready`,
//! `/health`, `/metrics`, `POST /reload` and the admin API: JSON (`/api/v1/…`) and gRPC
//! (`penghubung.admin.v1.Admin`, any request whose content-type is `application/grpc` or
//! `application/grpc+…`). The listener speaks HTTP/1.1 and HTTP/2 in clear text (h2c, which
//! gRPC needs) on the same port. The listener only:
//! who may call, what it reports and what it changes is behind [`Operations`], which the
//! control side (`control::Gateway`) implements.
//!
//! `/live` and `/ready` are open; `/health` needs an operator's bearer token; `/metrics` is
//! open only while the listener is on loopback (else the scrape token); `POST /reload` and the
//! admin API need an operator's token and the role for the call.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::pipeline::Plane;
use crate::telemetry::{self, ProcessStats, Scrape};

/// What the admin API reads and triggers.
pub trait Operations: Send + Sync + 'static {
    /// The data plane's shared state (snapshot, evidence log, refusals, shutdown signal).
    fn plane(&self) -> &Plane;
    /// Whether listeners are up and shutdown has not started.
    fn is_ready(&self) -> bool;
    /// The process counters (requests, connections, reloads) for one scrape.
    fn process_stats(&self) -> ProcessStats;
    /// Whether the caller of `head` may use `access` (`loopback`: the listener is bound to a
    /// loopback address); `Err` is the refusal to send.
    fn admit(
        &self,
        head: &http::request::Parts,
        access: Access,
        loopback: bool,
    ) -> impl std::future::Future<Output = Result<(), Response<Full<Bytes>>>> + Send;
    /// Answers `POST /reload` and the admin API (`/api/v1/…`), authentication included.
    fn api(
        &self,
        request: ApiRequest,
    ) -> impl std::future::Future<Output = Response<Full<Bytes>>> + Send;
    /// Answers a gRPC call of the admin API, authentication included (`peer`: the caller).
    fn grpc(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: std::net::SocketAddr,
    ) -> impl std::future::Future<Output = Response<tonic::body::Body>> + Send;
}

/// What a gated endpoint gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `/health`'s document.
    HealthDetail,
    /// `/metrics`.
    Metrics,
    /// `/opdata`: the per-call operational data.
    Opdata,
}

/// An admin API call, its body read (at most [`API_BODY_LIMIT`] bytes).
#[derive(Debug)]
pub struct ApiRequest {
    /// The head.
    pub head: http::request::Parts,
    /// The body.
    pub body: Bytes,
    /// The caller's address.
    pub peer: std::net::SocketAddr,
}

/// The largest admin API body read (a whole catalogue for `catalog apply`).
pub const API_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Serves the admin API until shutdown.
pub async fn serve<O: Operations>(gateway: Arc<O>, listener: TcpListener) {
    let mut shutdown = gateway.plane().shutdown_signal();
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gateway = gateway.clone();
                async move {
                    if is_grpc(&request) {
                        return Ok::<_, Infallible>(gateway.grpc(request, peer).await);
                    }
                    Ok(route(&gateway, request, peer, loopback)
                        .await
                        .map(tonic::body::Body::new))
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(std::time::Duration::from_secs(30));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A gRPC call: `application/grpc` or `application/grpc+<codec>` (not gRPC-Web, which this
/// listener does not serve).
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+"))
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

async fn route<O: Operations>(
    gateway: &Arc<O>,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
    loopback: bool,
) -> Response<Full<Bytes>> {
    let gated = match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => Some(Access::HealthDetail),
        (&Method::GET, "/metrics") => Some(Access::Metrics),
        (&Method::GET, "/opdata") => Some(Access::Opdata),
        _ => None,
    };
    if let Some(access) = gated {
        let (head, _) = request.into_parts();
        if let Err(refusal) = gateway.admit(&head, access, loopback).await {
            return refusal;
        }
        return match access {
            Access::HealthDetail => {
                let (status, body) = health(&**gateway);
                text(status, "application/json", body.to_string())
            }
            Access::Metrics => metrics(&**gateway),
            Access::Opdata => {
                let dir = gateway.plane().snapshot.load().opdata_dir.clone();
                let (status, body) = crate::telemetry::opdata::answer(dir, head.uri.query()).await;
                text(status, "application/json", body)
            }
        };
    }
    if request.uri().path() == "/reload" && request.method() == Method::POST
        || request.uri().path().starts_with("/api/")
    {
        let (head, body) = request.into_parts();
        let limited = http_body_util::Limited::new(body, API_BODY_LIMIT);
        let body = match http_body_util::BodyExt::collect(limited).await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain",
                    "body too large or broken\n",
                )
            }
        };
        return gateway.api(ApiRequest { head, body, peer }).await;
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/live") => text(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/ready") => {
            // Under fail-closed evidence, an unwritable log means every request gets 503.
            let evidence = gateway.plane().evidence.health();
            let evidence_ok = !evidence.enabled || evidence.writable || evidence.fail_open;
            if gateway.is_ready() && evidence_ok {
                text(StatusCode::OK, "text/plain", "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }
        (_, "/live" | "/ready" | "/health" | "/metrics" | "/reload" | "/opdata") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn metrics<O: Operations>(gateway: &O) -> Response<Full<Bytes>> {
    let plane = gateway.plane();
    let runtime = plane.snapshot.load();
    let scrape = Scrape {
        process: gateway.process_stats(),
        upstreams: runtime.upstream_stats(),
        credential_expiries: runtime.credential_expiries(),
        auth: runtime.auth.stats(),
        throttle: runtime.auth.throttle_stats(),
        evidence: plane.evidence.stats(),
        refusals: plane.refusals.stats(),
    };
    text(
        StatusCode::OK,
        telemetry::CONTENT_TYPE,
        telemetry::render(scrape),
    )
}

/// The health document (its layout: `crate::health`).
pub fn health<O: Operations>(gateway: &O) -> (StatusCode, serde_json::Value) {
    let plane = gateway.plane();
    crate::health::document(&plane.snapshot.load(), &plane.evidence, gateway.is_ready())
}
