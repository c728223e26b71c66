//! `penghubung demo`: the embedded default. A built-in demo upstream and a config that routes to
//! it, so a new user can `curl` through the gateway at once without any external service.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The embedded config; `@LISTEN@`, `@ADMIN@`, `@UPSTREAM@` and `@EVIDENCE@` are filled in.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

/// Renders the demo config for the given addresses.
pub fn config_text(
    listen: &str,
    admin: &str,
    upstream: SocketAddr,
    evidence: &std::path::Path,
) -> String {
    DEMO_CONFIG
        .replace("@LISTEN@", listen)
        .replace("@ADMIN@", admin)
        .replace("@UPSTREAM@", &upstream.to_string())
        .replace(
            "@EVIDENCE@",
            &evidence.display().to_string().replace('\\', "/"),
        )
}

/// Starts the demo upstream on a free loopback port: `/hello` greets, `/echo` returns what it
/// received (method, path, headers, body) as JSON, `/bytes/N` returns N bytes.
pub async fn start_upstream() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path();
    let reply = |status: StatusCode, content_type: &'static str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        r
    };
    let stripped = path
        .trim_start_matches("/demo")
        .trim_start_matches("/penduduk");
    let response = if stripped == "/hello" {
        reply(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"Halo dari layanan demo!\n"),
        )
    } else if let Some(n) = stripped.strip_prefix("/bytes/") {
        match n.parse::<usize>() {
            Ok(n) if n <= 10 * 1024 * 1024 => reply(
                StatusCode::OK,
                "application/octet-stream",
                Bytes::from(vec![b'x'; n]),
            ),
            _ => reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                Bytes::from_static(b"bad size\n"),
            ),
        }
    } else {
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    serde_json::Value::from(String::from_utf8_lossy(v.as_bytes()).to_string()),
                )
            })
            .collect();
        let echo = serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        reply(
            StatusCode::OK,
            "application/json",
            Bytes::from(echo.to_string()),
        )
    };
    Ok(response)
}

/// The curl lines printed when the demo starts.
pub fn curl_lines(listen: &str, admin: &str, evidence: &std::path::Path) -> String {
    let evidence = evidence.display();
    format!(
        "Penghubung demo is running (evidence log in {evidence}).\n\
         Try:\n  \
         curl -i http://{listen}/demo/hello\n  \
         curl -i -X POST -d '{{\"nik\":\"3201xxxxxxxxxxxx\"}}' http://{listen}/demo/echo\n  \
         curl -i http://{listen}/demo/admin/secret        # denied route: 403\n  \
         curl -i http://{listen}/demo/%2e%2e/admin        # ambiguous path: 400\n  \
         curl -i -H 'Host: unknown.example' http://{listen}/demo/hello   # unknown host: 421\n  \
         curl -i http://{listen}/penduduk/3201010101010001   # no credential: 401\n  \
         curl -i -H 'apikey: kunci-demo-opd-bkd' http://{listen}/penduduk/3201010101010001   # granted: 200\n  \
         curl -i -X POST -H 'apikey: kunci-demo-opd-bkd' http://{listen}/penduduk/x   # outside cakupan: 403\n  \
         curl -s http://{admin}/metrics | head\n  \
         curl -s http://{admin}/health\n\
         After Ctrl-C (final checkpoint): penghubung evidence verify {evidence}\n"
    )
}
