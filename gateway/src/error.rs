//! Errors of the request pipeline and of connections, and the one place they become responses
//! ([`rescue`]). Each error carries its stage and its blame ([`Blame`]) by variant, never guessed
//! from its status.
//!
//! Every error knows its pipeline stage, its HTTP status, a stable reason class
//! (used in metrics and evidence) and whether the client connection must be closed. The status
//! mapping is an exhaustive `match`, pinned by a table test.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use penghubung_adapter::AdapterError;

pub use crate::auth::settings::FaultStyle;
use crate::auth::AuthError;
use crate::stage::Stage;
use crate::throttle::ThrottleError;
use std::fmt;

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
    /// Stages 3–4 refused: credentials or grant.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Stage 5 refused: rate limit, quota, or the shared limiter store.
    #[error(transparent)]
    Throttle(#[from] ThrottleError),
    /// The evidence log could not make the record durable: nothing is forwarded.
    #[error("evidence log unavailable: {0}")]
    EvidenceUnavailable(String),
    /// The upstream call failed.
    #[error(transparent)]
    Upstream(#[from] AdapterError),
    /// A request to a SOAP service that is no acceptable SOAP call (hostile or malformed XML,
    /// no envelope, an action naming another operation, bad mediation input…); nothing is
    /// forwarded.
    #[error(transparent)]
    Soap(#[from] penghubung_adapter_soap::SoapError),
    /// The gateway is shutting down or not ready.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// The source address is over its refusal limit and the request presents no credential
    /// (`limits.refusals_per_source`, see `pipeline::refusals`).
    #[error("too many refused requests from this source")]
    SourceRefusalsLimited {
        /// Seconds until the source's refusal window ends (`Retry-After`).
        retry_after_secs: u64,
    },
    /// A gateway-side failure in a stage (e.g. signing the backend assertion while
    /// dispatching); no detail reaches the client.
    #[error("internal error in {}: {reason}", stage.as_str())]
    Internal {
        /// The stage that failed.
        stage: Stage,
        /// Stable reason class.
        reason: &'static str,
    },
    /// Below HTTP: hyper's HTTP/1 parser refused the head (stage 0, `accept`); the answer
    /// replaces hyper's bare one and the connection closes.
    #[error("connection refused: {reason}")]
    Connection {
        /// The status hyper chose.
        status: StatusCode,
        /// Stable reason class ([`parser_reason`]).
        reason: &'static str,
    },
}

/// Whose fault an error is (pingora's `ErrorSource`): the client's request, the gateway itself,
/// or the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request, the caller or its limits.
    Client,
    /// The gateway (evidence log, signing, shutdown).
    Gateway,
    /// The upstream or the way to it.
    Upstream,
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
            GatewayError::Throttle(e) => e.status(),
            GatewayError::EvidenceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Upstream(e) => e.status(),
            GatewayError::Soap(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::SourceRefusalsLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Connection { status, .. } => *status,
        }
    }

    /// Whose fault the error is.
    pub fn blame(&self) -> Blame {
        match self {
            GatewayError::EvidenceUnavailable(_)
            | GatewayError::Unavailable(_)
            | GatewayError::Internal { .. } => Blame::Gateway,
            GatewayError::Throttle(ThrottleError::LimiterUnavailable) => Blame::Gateway,
            GatewayError::Upstream(_) => Blame::Upstream,
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
            | GatewayError::RouteDenied
            | GatewayError::Auth(_)
            | GatewayError::Throttle(_)
            | GatewayError::SourceRefusalsLimited { .. }
            | GatewayError::Soap(_)
            | GatewayError::Connection { .. } => Blame::Client,
        }
    }

    /// WSO2 API Manager fault code and message, for `fault_style = "wso2"` services.
    pub fn wso2_code(&self) -> Option<(&'static str, &'static str)> {
        match self {
            GatewayError::Auth(e) => e.wso2_code(),
            GatewayError::Throttle(e) => e.wso2_code(),
            _ => None,
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
            | GatewayError::Unavailable(_)
            | GatewayError::Soap(_)
            | GatewayError::SourceRefusalsLimited { .. } => Stage::Admit,
            GatewayError::NoRoute
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::RouteDenied => Stage::Route,
            GatewayError::Auth(e) => e.stage(),
            GatewayError::Internal { stage, .. } => *stage,
            GatewayError::Connection { .. } => Stage::Accept,
            GatewayError::Throttle(_) => Stage::Throttle,
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
            GatewayError::Throttle(e) => e.reason(),
            GatewayError::EvidenceUnavailable(_) => "evidence_unavailable",
            GatewayError::Upstream(e) => e.class(),
            GatewayError::Soap(e) => e.reason(),
            GatewayError::Unavailable(reason) => reason,
            GatewayError::SourceRefusalsLimited { .. } => "source_refusals_limited",
            GatewayError::Internal { reason, .. } => reason,
            GatewayError::Connection { reason, .. } => reason,
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
                | GatewayError::Connection { .. }
        )
    }
}

/// The one place any error becomes the response the client sees: status, the problem (or WSO2
/// fault) body, and every header the refusal implies (`Allow`, `Retry-After`,
/// `WWW-Authenticate`, the RateLimit fields, `Connection: close`), for pipeline refusals and
/// connection-level ones alike.
pub fn rescue(error: &GatewayError, exchange_id: &str, style: FaultStyle) -> Response<Bytes> {
    let mut response = problem(
        error.status(),
        exchange_id,
        error.reason(),
        error.wso2_code(),
        style,
    );
    let headers = response.headers_mut();
    match error {
        GatewayError::MethodNotAllowed { allow } => {
            if let Ok(v) = HeaderValue::from_str(allow) {
                headers.insert(header::ALLOW, v);
            }
        }
        GatewayError::SourceRefusalsLimited { retry_after_secs } => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        GatewayError::Auth(e) => {
            if let Some(challenge) = e.www_authenticate() {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
        }
        GatewayError::Throttle(e) => {
            if let Some(info) = e.rate_info() {
                info.headers(headers);
            }
        }
        _ => {}
    }
    if error.close_connection() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The body of an error response: a generic title, the status, the exchange id, never internal
/// detail (that goes to the log and the evidence record).
///
/// `reason` is the stable, machine-readable reason code (`route_denied`,
/// `grant_outside_cakupan`, ...; [`GatewayError::reason`]), listed in README's "Problem
/// responses": it names the class of refusal and never carries internal detail.
fn problem(
    status: StatusCode,
    exchange_id: &str,
    reason: &str,
    wso2: Option<(&str, &str)>,
    style: FaultStyle,
) -> Response<Bytes> {
    let title = status.canonical_reason().unwrap_or("Error");
    if let FaultStyle::Soap11 | FaultStyle::Soap12 = style {
        return soap_fault(status, exchange_id, reason, style);
    }
    let (body, content_type) = match (style, wso2) {
        (FaultStyle::Wso2, Some((code, message))) => (
            serde_json::json!({
                "code": code,
                "message": message,
                "description": title,
                "reason": reason,
                "exchange_id": exchange_id,
            }),
            "application/json",
        ),
        _ => (
            serde_json::json!({
                "type": "about:blank",
                "title": title,
                "status": status.as_u16(),
                "reason": reason,
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
        headers.insert(crate::identity::EXCHANGE_ID, value);
    }
    response
}

/// A refusal on a SOAP route, as a SOAP fault of the request's version: `Client`/`Sender` for
/// a refused request, `Server`/`Receiver` for the gateway's or the back end's failures; the
/// reason code and exchange id in the detail. The HTTP status stays the gateway's (401, 403,
/// 429… with their headers), so HTTP-level handling of a refusal still works.
fn soap_fault(
    status: StatusCode,
    exchange_id: &str,
    reason: &str,
    style: FaultStyle,
) -> Response<Bytes> {
    use penghubung_adapter_soap::envelope::{fault, FaultCode};
    use penghubung_adapter_soap::Version;
    let version = match style {
        FaultStyle::Soap12 => Version::V12,
        _ => Version::V11,
    };
    let code = if status.is_client_error() {
        FaultCode::Sender
    } else {
        FaultCode::Receiver
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let (content_type, body) = fault(version, code, title, reason, exchange_id);
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(exchange_id) {
        headers.insert(crate::identity::EXCHANGE_ID, value);
    }
    response
}

/// Why a path cannot be put in canonical form (`admit::canonical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path (does not start with `/`).
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// An encoding that backends read differently: `%2F`, `%5C`, `%00`, `%2E`, `%25XX`, `;`,
    /// `\`, encoded non-ASCII or control bytes.
    Ambiguous(&'static str),
    /// `..` would climb above the root.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotOriginForm => f.write_str("path is not in origin form"),
            PathError::BadEscape => f.write_str("invalid percent-encoding"),
            PathError::Ambiguous(what) => write!(f, "ambiguous path encoding: {what}"),
            PathError::AboveRoot => f.write_str("path climbs above the root"),
        }
    }
}

/// The reason code of an error status hyper's HTTP/1 parser answers itself.
pub fn parser_reason(status: u16) -> &'static str {
    match status {
        431 => "headers_too_large",
        414 => "uri_too_long",
        408 => "header_timeout",
        505 => "http_version",
        501 => "not_implemented",
        _ => "http_parse",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let table: Vec<(GatewayError, u16, Stage, bool)> = vec![
            (
                GatewayError::BadRequest {
                    reason: "x",
                    close: true,
                },
                400,
                Stage::Admit,
                true,
            ),
            (
                GatewayError::Path(PathError::BadEscape),
                400,
                Stage::Admit,
                false,
            ),
            (
                GatewayError::Misdirected("unknown_host"),
                421,
                Stage::Admit,
                false,
            ),
            (GatewayError::UriTooLong, 414, Stage::Admit, false),
            (GatewayError::HeadersTooLarge, 431, Stage::Admit, false),
            (GatewayError::BodyTooLarge, 413, Stage::Admit, true),
            (GatewayError::BodyTimeout, 408, Stage::Admit, true),
            (
                GatewayError::BodyInvalid("x".into()),
                400,
                Stage::Admit,
                true,
            ),
            (GatewayError::ExpectationFailed, 417, Stage::Admit, false),
            (
                GatewayError::TransferCodingNotImplemented,
                501,
                Stage::Admit,
                true,
            ),
            (GatewayError::NoRoute, 404, Stage::Route, false),
            (
                GatewayError::MethodNotAllowed {
                    allow: "GET".into(),
                },
                405,
                Stage::Route,
                false,
            ),
            (GatewayError::RouteDenied, 403, Stage::Route, false),
            (
                GatewayError::SourceRefusalsLimited {
                    retry_after_secs: 3,
                },
                429,
                Stage::Admit,
                false,
            ),
            (
                GatewayError::EvidenceUnavailable("x".into()),
                503,
                Stage::RecordRequest,
                false,
            ),
            (
                GatewayError::Upstream(AdapterError::Connect("x".into())),
                502,
                Stage::Dispatch,
                false,
            ),
            (
                GatewayError::Unavailable("draining"),
                503,
                Stage::Admit,
                false,
            ),
        ];
        for (error, status, stage, close) in table {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.stage(), stage, "{error}");
            assert_eq!(error.close_connection(), close, "{error}");
        }
    }

    /// README's "Problem responses" lists every reason code a client can see.
    #[test]
    fn every_reason_code_is_documented() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Problem responses")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a Problem responses section");
        let errors = [
            GatewayError::Path(PathError::BadEscape),
            GatewayError::Misdirected("unknown_host"),
            GatewayError::Misdirected("sni_host_mismatch"),
            GatewayError::UriTooLong,
            GatewayError::HeadersTooLarge,
            GatewayError::BodyTooLarge,
            GatewayError::BodyTimeout,
            GatewayError::BodyInvalid("x".into()),
            GatewayError::ExpectationFailed,
            GatewayError::TransferCodingNotImplemented,
            GatewayError::NoRoute,
            GatewayError::MethodNotAllowed {
                allow: "GET".into(),
            },
            GatewayError::RouteDenied,
            GatewayError::EvidenceUnavailable("x".into()),
            GatewayError::Unavailable("draining"),
            GatewayError::SourceRefusalsLimited {
                retry_after_secs: 1,
            },
            GatewayError::Upstream(AdapterError::NoHealthyTarget),
            GatewayError::Upstream(AdapterError::Connect("x".into())),
            GatewayError::Upstream(AdapterError::Reset("x".into())),
            GatewayError::Upstream(AdapterError::BadResponse("x".into())),
            GatewayError::Upstream(AdapterError::Request("x".into())),
            GatewayError::Auth(AuthError::MissingCredentials),
            GatewayError::Auth(AuthError::AmbiguousCredentials),
            GatewayError::Auth(AuthError::CredentialInQuery),
            GatewayError::Auth(AuthError::CredentialInCookie),
            GatewayError::Auth(AuthError::MalformedCredential),
            GatewayError::Auth(AuthError::CredentialTooLarge),
            GatewayError::Auth(AuthError::CredentialNotAccepted),
            GatewayError::Auth(AuthError::UnknownApiKey),
            GatewayError::Auth(AuthError::UnknownCertificate),
            GatewayError::Auth(AuthError::UnknownSubject),
            GatewayError::Auth(AuthError::NoGrant),
            GatewayError::Auth(AuthError::GrantNotYetValid),
            GatewayError::Auth(AuthError::GrantExpired),
            GatewayError::Auth(AuthError::NoConsent),
            GatewayError::Auth(AuthError::OutsideCakupan),
            GatewayError::Auth(AuthError::MtlsRequired),
            GatewayError::Auth(AuthError::NotExposedToPeer),
            GatewayError::Auth(AuthError::InvalidToken("peer_assertion_invalid")),
            GatewayError::Auth(AuthError::InvalidToken("peer_assertion_expired")),
            GatewayError::Throttle(ThrottleError::LimiterUnavailable),
        ];
        let mut reasons: Vec<&str> = errors.iter().map(GatewayError::reason).collect();
        reasons.extend(["rate_limited", "quota_exceeded", "upstream_timeout"]);
        // What the SPLP adapter maps a peer's WSO2 faults to.
        reasons.extend(penghubung_adapter_splp::FAULT_REASONS);
        reasons.extend([400, 414, 431, 505].map(parser_reason));
        for reason in reasons {
            assert!(
                section.contains(&format!("`{reason}`")),
                "reason code {reason} is not documented in README"
            );
        }
    }

    #[test]
    fn rescue_writes_every_header_a_refusal_implies() {
        let h = |error: GatewayError| rescue(&error, "ex", FaultStyle::Problem);
        let allowed = h(GatewayError::MethodNotAllowed {
            allow: "GET, POST".into(),
        });
        assert_eq!(allowed.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allowed.headers()[header::ALLOW], "GET, POST");
        let storm = h(GatewayError::SourceRefusalsLimited {
            retry_after_secs: 7,
        });
        assert_eq!(storm.headers()[header::RETRY_AFTER], "7");
        let unauthenticated = h(GatewayError::Auth(AuthError::MissingCredentials));
        assert!(unauthenticated
            .headers()
            .contains_key(header::WWW_AUTHENTICATE));
        let limited = h(GatewayError::Throttle(ThrottleError::RateLimited(
            Box::new(crate::throttle::RateInfo {
                policy: "grant:g".into(),
                retry_after: std::time::Duration::from_secs(2),
                ..Default::default()
            }),
        )));
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers().contains_key(header::RETRY_AFTER));
        let too_large = h(GatewayError::BodyTooLarge);
        assert_eq!(too_large.headers()[header::CONNECTION], "close");
        let parser = h(GatewayError::Connection {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "headers_too_large",
        });
        assert_eq!(parser.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(parser.headers()[header::CONNECTION], "close");
        assert_eq!(parser.headers()[crate::identity::EXCHANGE_ID], "ex");
        let wso2 = rescue(
            &GatewayError::Auth(AuthError::UnknownApiKey),
            "ex",
            FaultStyle::Wso2,
        );
        assert!(String::from_utf8_lossy(wso2.body()).contains("900901"));
        assert!(wso2.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn stage_and_blame_are_carried_not_guessed_from_the_status() {
        let signing = GatewayError::Internal {
            stage: Stage::Dispatch,
            reason: "sign_failed",
        };
        assert_eq!(signing.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(signing.stage(), Stage::Dispatch);
        assert_eq!(signing.blame(), Blame::Gateway);
        let limiter = GatewayError::Throttle(ThrottleError::LimiterUnavailable);
        assert_eq!(
            (limiter.stage(), limiter.blame()),
            (Stage::Throttle, Blame::Gateway)
        );
        let grant = GatewayError::Auth(AuthError::NoGrant);
        assert_eq!(
            (grant.stage(), grant.blame()),
            (Stage::Authorize, Blame::Client)
        );
        let parser = GatewayError::Connection {
            status: StatusCode::BAD_REQUEST,
            reason: "http_parse",
        };
        assert_eq!(
            (parser.stage(), parser.blame()),
            (Stage::Accept, Blame::Client)
        );
    }

    #[test]
    fn rescue_hides_detail() {
        let response = problem(
            StatusCode::BAD_GATEWAY,
            "abc",
            "upstream_connect",
            None,
            FaultStyle::Problem,
        );
        let body = String::from_utf8_lossy(response.body()).to_string();
        assert!(body.contains("\"status\":502"));
        assert!(body.contains("\"reason\":\"upstream_connect\""));
        assert!(body.contains("abc"));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let wso2 = problem(
            StatusCode::UNAUTHORIZED,
            "e",
            "apikey_unknown",
            Some(("900901", "Invalid Credentials")),
            FaultStyle::Wso2,
        );
        assert!(String::from_utf8_lossy(wso2.body()).contains("900901"));
    }
}
