//! Stages 7 and 8, `dispatch` and `respond`: reading and checking the request body, building the
//! clean upstream request (with the gateway's identity headers, `identity.rs`), the adapter
//! call, and sanitising the upstream response on its way back.

mod identity;

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::Instrument;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use penghubung_adapter::{Body, BoxError, GatewayRequest, RequestBody};

use crate::admit::{headers, Admitted, EXCHANGE_ID};
use crate::auth::{GrantRuntime, Principal};
use crate::error::GatewayError;
use crate::identity::ConnInfo;
use crate::routing::Matched;
use crate::snapshot::Snapshot;
pub use identity::{drop_credential, identity_headers};
use penghubung_adapter::{Adapter, GatewayResponse};

/// A client's request body as the pipeline reads it: hyper's `Incoming` on a connection, any
/// `http_body::Body` of bytes in a test.
pub trait ClientBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ClientBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

/// Reads the whole request body (the default): the declared length is checked before reading,
/// the body is limited and must arrive within the deadline. A malformed body (bad chunked
/// encoding, client gone, a trailer section breaking the trailer rules of
/// [`headers::check_request_trailers`]) refuses the request, so nothing of it reaches the
/// upstream. Valid trailers of a buffered body are not forwarded.
pub async fn read_body<B: ClientBody>(
    body: B,
    declared: Option<u64>,
    limit: u64,
    deadline: Duration,
) -> Result<Bytes, GatewayError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge);
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Ok(collected)) => {
            if let Some(trailers) = collected.trailers() {
                headers::check_request_trailers(trailers).map_err(|reason| {
                    GatewayError::BadRequest {
                        reason,
                        close: false,
                    }
                })?;
            }
            Ok(collected.to_bytes())
        }
        Ok(Err(error)) => {
            if error.is::<http_body_util::LengthLimitError>() {
                Err(GatewayError::BodyTooLarge)
            } else {
                Err(GatewayError::BodyInvalid(error.to_string()))
            }
        }
    }
}

/// Wraps a streamed request body (routes that opted into streaming) with the size limit, the
/// body deadline (a client trickling its upload cannot hold the upstream connection) and the
/// trailer rules: a malformed trailer section aborts the upstream request instead of being
/// forwarded.
pub fn stream_body<B: ClientBody>(
    body: B,
    declared: Option<u64>,
    limit: u64,
    deadline: Duration,
) -> Result<Body, GatewayError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge);
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Body::new(BodyDeadline {
        inner: limited.map_err(|e| e as BoxError),
        sleep: tokio::time::sleep(deadline),
    }))
}

pin_project_lite::pin_project! {
    /// A streamed request body that fails once the body deadline has passed.
    struct BodyDeadline<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl<B> http_body::Body for BodyDeadline<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if std::future::Future::poll(this.sleep, cx).is_ready() {
            return Poll::Ready(Some(Err("request body deadline passed".into())));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(Err(reason)) = frame.trailers_ref().map(headers::check_request_trailers)
                {
                    return Poll::Ready(Some(Err(reason.into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Who calls what, for [`call`].
pub struct Call<'a> {
    /// The snapshot of the exchange.
    pub runtime: &'a Snapshot,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// Admission results (host, trace).
    pub admitted: &'a Admitted,
    /// The route and the path it matched.
    pub matched: &'a Matched,
    /// The caller.
    pub principal: &'a Principal,
    /// The grant the call is under.
    pub grant: &'a GrantRuntime,
    /// Exchange id.
    pub exchange_id: &'a str,
}

/// Stages 7 and 8 up to the response head: the clean upstream request with the gateway's
/// identity headers (the upstream learns who calls only from those), the adapter call, and the
/// upstream head sanitised. The body streams afterwards.
pub async fn call(
    call: Call<'_>,
    adapter: &dyn Adapter,
    mut head: request::Parts,
    body: RequestBody,
) -> Result<GatewayResponse, GatewayError> {
    let service = &call.matched.route.service;
    let identity = identity_headers(
        &call.runtime.auth,
        &service.auth,
        call.principal,
        call.grant,
        &service.id,
        call.exchange_id,
    )?;
    drop_credential(&service.auth, &mut head.headers);
    let forwarding = Forwarding {
        exchange_id: call.exchange_id,
        conn: call.conn,
        admitted: call.admitted,
        identity,
        foreign: &call.runtime.foreign_identity,
    };
    let request = upstream_request(head, call.matched, forwarding, body)?;
    let mut answered = (adapter.call(request))
        .instrument(crate::telemetry::trace::stage("dispatch"))
        .await?;
    clean_response(&mut answered.response, call.exchange_id);
    Ok(answered)
}

/// Gateway-owned headers sent upstream.
pub struct Forwarding<'a> {
    /// Exchange id.
    pub exchange_id: &'a str,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// Admission results (host, trace).
    pub admitted: &'a Admitted,
    /// Extra identity headers (consumer OPD, application, grant, assertion), already validated.
    pub identity: Vec<(http::HeaderName, HeaderValue)>,
    /// Other gateways' identity headers to strip (the `[headers]` table).
    pub foreign: &'a headers::ForeignIdentity,
}

fn ip_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// Builds the upstream request head: canonical path (after `strip_prefix`), query as received,
/// cleaned headers, then the gateway's own forwarding and identity headers. The body is
/// re-framed by the client side of hyper (Content-Length for buffered bodies).
pub fn upstream_request(
    mut head: request::Parts,
    matched: &Matched,
    forwarding: Forwarding<'_>,
    body: RequestBody,
) -> Result<GatewayRequest, GatewayError> {
    let keep_te = matched.route.service.upstream_http2 && head.version == http::Version::HTTP_2;
    let original_host = head.headers.get(header::HOST).cloned().or_else(|| {
        head.uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::clean_request(
        &mut head.headers,
        keep_te,
        forwarding.foreign,
        forwarding.conn.client.is_some(),
    );
    if head.version == http::Version::HTTP_2 {
        join_cookies(&mut head.headers);
    }
    head.headers.remove(header::CONTENT_LENGTH);
    let path = matched.route.upstream_path(&matched.path);
    let target = match &forwarding.admitted.query {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    head.uri = target
        .parse()
        .map_err(|_| GatewayError::Path(crate::admit::canonical::PathError::BadEscape))?;
    let h = &mut head.headers;
    if let Some(host) = original_host {
        h.insert(header::HOST, host);
    }
    let peer = ip_text(forwarding.conn.peer);
    let proto = if forwarding.conn.tls { "https" } else { "http" };
    let mut insert = |name: HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    // X-Forwarded-For carries the bare address; only `Forwarded` brackets IPv6 (RFC 7239).
    insert(X_FORWARDED_FOR, forwarding.conn.peer.ip().to_string());
    insert(X_FORWARDED_PROTO, proto.to_owned());
    insert(X_FORWARDED_HOST, forwarding.admitted.host.clone());
    insert(
        header::FORWARDED,
        format!(
            "for=\"{peer}\";proto={proto};host=\"{}\"",
            forwarding.admitted.host
        ),
    );
    insert(TRACEPARENT, forwarding.admitted.trace.header_value());
    if let Ok(v) = HeaderValue::from_str(forwarding.exchange_id) {
        h.insert(EXCHANGE_ID, v);
    }
    for (name, value) in forwarding.identity {
        h.insert(name, value);
    }
    if let RequestBody::Buffered(bytes) = &body {
        if !bytes.is_empty()
            || !matches!(
                head.method,
                http::Method::GET
                    | http::Method::HEAD
                    | http::Method::OPTIONS
                    | http::Method::DELETE
            )
        {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
    }
    let retryable = head.method.is_idempotent() && body.is_replayable();
    Ok(GatewayRequest {
        head,
        body,
        retryable,
    })
}

/// RFC 9113 §8.2.3: HTTP/2 may split `cookie` into several fields; before the request leaves
/// HTTP/2 they are joined with "; " into one field.
fn join_cookies(headers: &mut http::HeaderMap) {
    let values: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if values.len() < 2 {
        return;
    }
    if let Ok(joined) = HeaderValue::from_bytes(&values.join(&b"; "[..])) {
        headers.insert(header::COOKIE, joined);
    }
}

pin_project_lite::pin_project! {
    /// The response body on its way to the client: keeps the request counted as in flight until
    /// the body is finished or the client went away, and drops trailer fields that may not be
    /// trailers (or are the gateway's own).
    pub struct ResponseBody<G> {
        #[pin]
        inner: Body,
        in_flight: Option<G>,
    }
}

impl<G> ResponseBody<G> {
    /// Wraps a body; `in_flight` (the connection's token for this request) is dropped when the
    /// body ends.
    pub fn new(inner: Body, in_flight: G) -> ResponseBody<G> {
        ResponseBody {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<G> http_body::Body for ResponseBody<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let mut result = this.inner.poll_frame(cx);
        match &mut result {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                this.in_flight.take();
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    headers::clean_response_trailers(trailers);
                }
            }
            Poll::Pending => {}
        }
        result
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Sanitises an upstream response head: hop-by-hop and gateway-namespace headers removed, the
/// exchange id added, and the upstream's protocol version dropped: the client side speaks the
/// client's own protocol (an HTTP/1.0 back end must not turn an HTTP/1.1 client's response into
/// an `HTTP/1.0` status line and a closed connection; hyper answers an HTTP/1.0 client in
/// HTTP/1.0 by itself).
pub fn clean_response<B>(response: &mut Response<B>, exchange_id: &str) {
    *response.version_mut() = http::Version::HTTP_11;
    headers::clean_response(response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(exchange_id) {
        response.headers_mut().insert(EXCHANGE_ID, v);
    }
}
