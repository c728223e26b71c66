//! Errors of the request pipeline, and the one place they become responses ([`rescue`]).
//!
//! Every error knows its pipeline stage, its HTTP status, who is to blame, a stable reason class
//! (used in metrics and evidence) and whether the client connection must be closed. The status
//! mapping is an exhaustive `match`, pinned by a table test.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use penghubung_adapter::AdapterError;

use crate::admit::canonical::PathError;
pub use crate::auth::settings::FaultStyle;
use crate::auth::AuthError;
use crate::pipeline::Stage;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client sent something it must not.
    Client,
    /// The upstream failed.
    Upstream,
    /// The gateway itself could not do its job.
    Internal,
}

/// Everything that can stop a request in the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Malformed request (framing, headers); the connection is closed when `close` is set.
    #[error("bad request: {reason}")]
    BadRequest {
        /// Stable reason class.
        reason: &'static str,
        /// Close the client connection after answering.
        close: bool,
    },
    /// The request path cannot be canonicalised.
    #[error("bad path: {0}")]
    Path(PathError),
    /// Host (or `:authority`, or absolute-form target, or SNI) names no virtual host here.
    #[error("misdirected request: {0}")]
    Misdirected(&'static str),
    /// Request target longer than the limit.
    #[error("request target too long")]
    UriTooLong,
    /// Header section larger than the limit, or too many fields.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// Body larger than the limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// Body did not arrive within the deadline.
    #[error("request body timed out")]
    BodyTimeout,
    /// The request body was malformed (e.g. bad chunked encoding) or the client went away.
    #[error("request body invalid: {0}")]
    BodyInvalid(String),
    /// `Expect` other than `100-continue`.
    #[error("expectation failed")]
    ExpectationFailed,
    /// `Transfer-Encoding` other than `chunked`.
    #[error("transfer coding not implemented")]
    TransferCodingNotImplemented,
    /// No route for the path on this host.
    #[error("no route")]
    NoRoute,
    /// A route matches the path but not the method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value for the `Allow` header.
        allow: String,
    },
    /// A deny route matched.
    #[error("route denied")]
    RouteDenied,
    /// Stages 3–5 refused: credentials, grant, or limits.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The evidence log could not make the record durable: nothing is forwarded.
    #[error("evidence log unavailable: {0}")]
    EvidenceUnavailable(String),
    /// The upstream call failed.
    #[error(transparent)]
    Upstream(#[from] AdapterError),
    /// The gateway is shutting down or not ready.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
}

impl GatewayError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::Path(_) => StatusCode::BAD_REQUEST,
            GatewayError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            GatewayError::UriTooLong => StatusCode::URI_TOO_LONG,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::BodyInvalid(_) => StatusCode::BAD_REQUEST,
            GatewayError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            GatewayError::TransferCodingNotImplemented => StatusCode::NOT_IMPLEMENTED,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::RouteDenied => StatusCode::FORBIDDEN,
            GatewayError::Auth(e) => e.status(),
            GatewayError::EvidenceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Upstream(e) => e.status(),
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Who is to blame.
    pub fn blame(&self) -> Blame {
        match self {
            GatewayError::BadRequest { .. }
            | GatewayError::Path(_)
            | GatewayError::Misdirected(_)
            | GatewayError::UriTooLong
            | GatewayError::HeadersTooLarge
            | GatewayError::BodyTooLarge
            | GatewayError::BodyTimeout
            | GatewayError::BodyInvalid(_)
            | GatewayError::ExpectationFailed
            | GatewayError::TransferCodingNotImplemented
            | GatewayError::NoRoute
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::RouteDenied => Blame::Client,
            GatewayError::Auth(e) => match e {
                AuthError::LimiterUnavailable | AuthError::Internal(_) => Blame::Internal,
                _ => Blame::Client,
            },
            GatewayError::Upstream(_) => Blame::Upstream,
            GatewayError::EvidenceUnavailable(_) | GatewayError::Unavailable(_) => Blame::Internal,
        }
    }

    /// The stage that refused.
    pub fn stage(&self) -> Stage {
        match self {
            GatewayError::BadRequest { .. }
            | GatewayError::Path(_)
            | GatewayError::Misdirected(_)
            | GatewayError::UriTooLong
            | GatewayError::HeadersTooLarge
            | GatewayError::BodyTooLarge
            | GatewayError::BodyTimeout
            | GatewayError::BodyInvalid(_)
            | GatewayError::ExpectationFailed
            | GatewayError::TransferCodingNotImplemented
            | GatewayError::Unavailable(_) => Stage::Admit,
            GatewayError::NoRoute
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::RouteDenied => Stage::Route,
            GatewayError::Auth(e) => match e.status() {
                StatusCode::FORBIDDEN => Stage::Authorize,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Stage::Throttle,
                _ => Stage::Authenticate,
            },
            GatewayError::EvidenceUnavailable(_) => Stage::RecordRequest,
            GatewayError::Upstream(_) => Stage::Dispatch,
        }
    }

    /// A stable reason class for metrics and evidence.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::BadRequest { reason, .. } => reason,
            GatewayError::Path(PathError::Ambiguous(_)) => "path_ambiguous",
            GatewayError::Path(_) => "path_invalid",
            GatewayError::Misdirected(reason) => reason,
            GatewayError::UriTooLong => "uri_too_long",
            GatewayError::HeadersTooLarge => "headers_too_large",
            GatewayError::BodyTooLarge => "body_too_large",
            GatewayError::BodyTimeout => "body_timeout",
            GatewayError::BodyInvalid(_) => "body_invalid",
            GatewayError::ExpectationFailed => "expectation_failed",
            GatewayError::TransferCodingNotImplemented => "transfer_coding",
            GatewayError::NoRoute => "no_route",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::RouteDenied => "route_denied",
            GatewayError::Auth(e) => e.reason(),
            GatewayError::EvidenceUnavailable(_) => "evidence_unavailable",
            GatewayError::Upstream(e) => e.class(),
            GatewayError::Unavailable(reason) => reason,
        }
    }

    /// Whether the client connection must be closed after the answer (framing errors: the rest
    /// of the byte stream cannot be trusted).
    pub fn close_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::BadRequest { close: true, .. }
                | GatewayError::BodyInvalid(_)
                | GatewayError::BodyTimeout
                | GatewayError::BodyTooLarge
                | GatewayError::TransferCodingNotImplemented
        )
    }
}

/// Turns an error into the response the client sees: a generic title, the status, the exchange
/// id, never internal detail (that goes to the log and the evidence record).
pub fn rescue(
    status: StatusCode,
    exchange_id: &str,
    wso2: Option<(&str, &str)>,
    style: FaultStyle,
) -> Response<Bytes> {
    let title = status.canonical_reason().unwrap_or("Error");
    let (body, content_type) = match (style, wso2) {
        (FaultStyle::Wso2, Some((code, message))) => (
            serde_json::json!({
                "code": code,
                "message": message,
                "description": title,
                "exchange_id": exchange_id,
            }),
            "application/json",
        ),
        _ => (
            serde_json::json!({
                "type": "about:blank",
                "title": title,
                "status": status.as_u16(),
                "exchange_id": exchange_id,
            }),
            "application/problem+json",
        ),
    };
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(exchange_id) {
        headers.insert(crate::admit::EXCHANGE_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let table: Vec<(GatewayError, u16, Blame, Stage, bool)> = vec![
            (
                GatewayError::BadRequest {
                    reason: "x",
                    close: true,
                },
                400,
                Blame::Client,
                Stage::Admit,
                true,
            ),
            (
                GatewayError::Path(PathError::BadEscape),
                400,
                Blame::Client,
                Stage::Admit,
                false,
            ),
            (
                GatewayError::Misdirected("unknown_host"),
                421,
                Blame::Client,
                Stage::Admit,
                false,
            ),
            (
                GatewayError::UriTooLong,
                414,
                Blame::Client,
                Stage::Admit,
                false,
            ),
            (
                GatewayError::HeadersTooLarge,
                431,
                Blame::Client,
                Stage::Admit,
                false,
            ),
            (
                GatewayError::BodyTooLarge,
                413,
                Blame::Client,
                Stage::Admit,
                true,
            ),
            (
                GatewayError::BodyTimeout,
                408,
                Blame::Client,
                Stage::Admit,
                true,
            ),
            (
                GatewayError::BodyInvalid("x".into()),
                400,
                Blame::Client,
                Stage::Admit,
                true,
            ),
            (
                GatewayError::ExpectationFailed,
                417,
                Blame::Client,
                Stage::Admit,
                false,
            ),
            (
                GatewayError::TransferCodingNotImplemented,
                501,
                Blame::Client,
                Stage::Admit,
                true,
            ),
            (
                GatewayError::NoRoute,
                404,
                Blame::Client,
                Stage::Route,
                false,
            ),
            (
                GatewayError::MethodNotAllowed {
                    allow: "GET".into(),
                },
                405,
                Blame::Client,
                Stage::Route,
                false,
            ),
            (
                GatewayError::RouteDenied,
                403,
                Blame::Client,
                Stage::Route,
                false,
            ),
            (
                GatewayError::EvidenceUnavailable("x".into()),
                503,
                Blame::Internal,
                Stage::RecordRequest,
                false,
            ),
            (
                GatewayError::Upstream(AdapterError::Connect("x".into())),
                502,
                Blame::Upstream,
                Stage::Dispatch,
                false,
            ),
            (
                GatewayError::Unavailable("draining"),
                503,
                Blame::Internal,
                Stage::Admit,
                false,
            ),
        ];
        for (error, status, blame, stage, close) in table {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.blame(), blame, "{error}");
            assert_eq!(error.stage(), stage, "{error}");
            assert_eq!(error.close_connection(), close, "{error}");
        }
    }

    #[test]
    fn rescue_hides_detail() {
        let response = rescue(StatusCode::BAD_GATEWAY, "abc", None, FaultStyle::Problem);
        let body = String::from_utf8_lossy(response.body()).to_string();
        assert!(body.contains("\"status\":502"));
        assert!(body.contains("abc"));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let wso2 = rescue(
            StatusCode::UNAUTHORIZED,
            "e",
            Some(("900901", "Invalid Credentials")),
            FaultStyle::Wso2,
        );
        assert!(String::from_utf8_lossy(wso2.body()).contains("900901"));
    }
}
