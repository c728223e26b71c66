//! The admin listener (loopback by default, separate from traffic): `/live`, `/ready`,
//! `/health`, `/metrics` and `POST /reload`. The listener only: what it reports and reloads
//! is behind [`Operations`], which the control side (`control::Gateway`) implements.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
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
    /// Reloads the config file; `Err` is the reason the running config stays.
    fn reload(&self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// Serves the admin API until shutdown.
pub async fn serve<O: Operations>(gateway: Arc<O>, listener: TcpListener) {
    let mut shutdown = gateway.plane().shutdown_signal();
    loop {
        let (stream, _) = tokio::select! {
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
                async move { Ok::<_, Infallible>(route(&gateway, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
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
) -> Response<Full<Bytes>> {
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
        (&Method::GET, "/health") => {
            let (status, body) = health(&**gateway);
            text(status, "application/json", body.to_string())
        }
        (&Method::GET, "/metrics") => {
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
        (&Method::GET, "/opdata") => {
            let dir = gateway.plane().snapshot.load().opdata_dir.clone();
            let (status, body) = crate::telemetry::opdata::answer(dir, request.uri().query()).await;
            text(status, "application/json", body)
        }
        (&Method::POST, "/reload") => match gateway.reload().await {
            Ok(()) => text(
                StatusCode::OK,
                "application/json",
                r#"{"result":"reloaded"}"#,
            ),
            Err(error) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                "application/json",
                serde_json::json!({"result": "refused", "reason": error.to_string()}).to_string(),
            ),
        },
        (_, "/live" | "/ready" | "/health" | "/metrics" | "/reload" | "/opdata") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// The health document (its layout: `crate::health`).
pub fn health<O: Operations>(gateway: &O) -> (StatusCode, serde_json::Value) {
    let plane = gateway.plane();
    crate::health::document(&plane.snapshot.load(), &plane.evidence, gateway.is_ready())
}
