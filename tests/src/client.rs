//! hyper clients: one request on a fresh HTTP/1.1 or HTTP/2 connection, over TCP or any
//! transport (TLS).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::IO_TIMEOUT;

/// A buffered response.
pub type Buffered = http::Response<Bytes>;

async fn collect(response: http::Response<hyper::body::Incoming>) -> anyhow::Result<Buffered> {
    let (parts, body) = response.into_parts();
    let bytes = tokio::time::timeout(IO_TIMEOUT, body.collect())
        .await??
        .to_bytes();
    Ok(http::Response::from_parts(parts, bytes))
}

/// Sends one HTTP/1.1 request on a fresh connection over any transport.
pub async fn h1_over<T>(io: T, request: http::Request<Full<Bytes>>) -> anyhow::Result<Buffered>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(IO_TIMEOUT, sender.send_request(request)).await??;
    collect(response).await
}

/// Sends one HTTP/2 request on a fresh connection over any transport.
pub async fn h2_over<T>(io: T, request: http::Request<Full<Bytes>>) -> anyhow::Result<Buffered>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(IO_TIMEOUT, sender.send_request(request)).await??;
    collect(response).await
}

/// HTTP/1.1 on a fresh TCP connection.
pub async fn h1(addr: SocketAddr, request: http::Request<Full<Bytes>>) -> anyhow::Result<Buffered> {
    h1_over(TcpStream::connect(addr).await?, request).await
}

/// HTTP/2 prior knowledge (h2c) on a fresh TCP connection. Use an absolute URI.
pub async fn h2c(
    addr: SocketAddr,
    request: http::Request<Full<Bytes>>,
) -> anyhow::Result<Buffered> {
    h2_over(TcpStream::connect(addr).await?, request).await
}

/// `method path` with `Host: localhost` and no body over HTTP/1.1: status and body text.
pub async fn call(addr: SocketAddr, method: http::Method, path: &str) -> (u16, String) {
    call_with(addr, method, path, &[]).await
}

/// [`call`] with extra request headers.
pub async fn call_with(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = h1(addr, request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    (
        response.status().as_u16(),
        String::from_utf8_lossy(response.body()).into_owned(),
    )
}

/// `GET path` with `Host: localhost` over HTTP/1.1: status and body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    call(addr, http::Method::GET, path).await
}

/// An empty request body.
pub fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}
