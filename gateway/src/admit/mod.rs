//! Stage 1, `admit`: request hygiene before anything else looks at a request.
//!
//! Limits (target length, header count and bytes), strict HTTP/1.1 framing beyond what hyper
//! checks (CL with TE, codings other than `chunked`, `_` look-alikes of framing headers), the
//! Host / `:authority` / SNI agreement, `Expect`, the W3C trace context, and the canonical path
//! computed once. Header cleaning (hop-by-hop and client-supplied identity headers) lives in
//! `headers`.

pub mod canonical;
pub(crate) mod headers;
pub mod settings;

use http::header;
use http::{request, Version};

use crate::error::GatewayError;
use crate::identity::ConnInfo;
use canonical::PathError;
pub use settings::{HeaderSettings, RequestLimits};

pub use crate::identity::EXCHANGE_ID;
/// Prefix of every header the gateway owns; clients may never send one.
pub const NAMESPACE: &str = "x-penghubung-";

/// What admission learned about a request.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Virtual host named by the request (lower-case, without port or trailing dot).
    pub host: String,
    /// The canonical path, or why there is none (a route may still allow raw forwarding).
    pub canonical: Result<String, PathError>,
    /// The query string as received (validated by the HTTP parser).
    pub query: Option<String>,
    /// W3C trace context for this exchange.
    pub trace: Trace,
    /// Declared body length.
    pub content_length: Option<u64>,
}

/// W3C trace context: the trace id is continued when the client sent a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// 128-bit trace id.
    pub trace_id: u128,
    /// This hop's span id.
    pub span_id: u64,
    /// Trace flags (sampled bit).
    pub flags: u8,
}

impl Trace {
    /// Continues `traceparent` when valid, otherwise starts a new trace. With traces on, the
    /// exchange's span (which continued the same `traceparent`) gives the context, so the
    /// evidence records and the exported trace name the same trace.
    pub fn from_headers(headers: &http::HeaderMap) -> Trace {
        if let Some((trace_id, span_id, flags)) = crate::telemetry::trace::current_context() {
            return Trace {
                trace_id,
                span_id,
                flags,
            };
        }
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let span_id = loop {
            let id: u64 = rand::random();
            if id != 0 {
                break id;
            }
        };
        match parent {
            Some((trace_id, flags)) => Trace {
                trace_id,
                span_id,
                flags,
            },
            None => Trace {
                trace_id: new_trace_id(),
                span_id,
                flags: 1,
            },
        }
    }

    /// The `traceparent` value for the upstream request.
    pub fn header_value(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// The trace id in hex.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

fn new_trace_id() -> u128 {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

fn parse_traceparent(value: &str) -> Option<(u128, u8)> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00"
        || parts.next().is_some()
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let span_id = u64::from_str_radix(span, 16).ok()?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some((trace_id, u8::from_str_radix(flags, 16).ok()?))
}

/// Header names that must never be smuggled in a `_` spelling (some backends fold `_` to `-`).
const UNDERSCORE_SENSITIVE: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "expect",
    "te",
    "upgrade",
    "forwarded",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-client-cert",
    "x-forwarded-client-cert",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "apikey",
];

/// Runs admission on a request head. On success the head is unchanged except that `Expect` is
/// removed; header cleaning happens when the upstream request is built.
pub fn admit(
    parts: &mut request::Parts,
    conn: &ConnInfo,
    limits: &RequestLimits,
) -> Result<Admitted, GatewayError> {
    let _span = crate::telemetry::trace::stage("admit").entered();
    if parts.method == http::Method::CONNECT {
        // The gateway tunnels nothing, and an authority-form target names no path a route
        // could list: 405 with an empty `Allow` (RFC 9110 §10.2.1), never a 400 or a tunnel.
        return Err(GatewayError::MethodNotAllowed {
            allow: String::new(),
        });
    }
    let target_len = parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if target_len > limits.uri_bytes {
        return Err(GatewayError::UriTooLong);
    }
    let is_h1 = parts.version <= Version::HTTP_11;
    check_header_limits(&parts.headers, limits, is_h1)?;
    let content_length = if is_h1 {
        check_h1_framing(&parts.headers)?
    } else {
        declared_length(&parts.headers)?
    };
    let host = request_host(parts, is_h1)?;
    if conn.tls {
        if let Some(sni) = &conn.sni {
            if *sni != host {
                return Err(GatewayError::Misdirected("sni_host_mismatch"));
            }
        }
    }
    // A `100-continue` expectation is answered by hyper when the body is first read, which
    // happens only after admission, routing and authorisation passed.
    check_expect(&mut parts.headers)?;
    let canonical = canonical::canonicalize(parts.uri.path(), false);
    Ok(Admitted {
        host,
        canonical,
        query: parts.uri.query().map(str::to_owned),
        trace: Trace::from_headers(&parts.headers),
        content_length,
    })
}

fn check_header_limits(
    headers: &http::HeaderMap,
    limits: &RequestLimits,
    is_h1: bool,
) -> Result<(), GatewayError> {
    if headers.len() > limits.header_count {
        return Err(GatewayError::HeadersTooLarge);
    }
    let mut bytes = 0usize;
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len() + 4;
        if !is_h1 && headers::padded_value(value) {
            // HTTP/1 parsing trims optional whitespace; HTTP/2 carries values verbatim, and a
            // padded one is malformed (RFC 9113 §8.2.1): refused, nothing is forwarded.
            return Err(GatewayError::BadRequest {
                reason: "header_value_whitespace",
                close: false,
            });
        }
        let name = name.as_str();
        if name.contains('_') {
            let folded = name.replace('_', "-");
            if UNDERSCORE_SENSITIVE.contains(&folded.as_str()) || folded.starts_with(NAMESPACE) {
                return Err(GatewayError::BadRequest {
                    reason: "underscore_header",
                    close: true,
                });
            }
        }
    }
    if bytes > limits.header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    Ok(())
}

/// HTTP/1.x framing: exactly one way to delimit the body.
fn check_h1_framing(headers: &http::HeaderMap) -> Result<Option<u64>, GatewayError> {
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if te.next().is_some() {
            return Err(GatewayError::BadRequest {
                reason: "duplicate_transfer_encoding",
                close: true,
            });
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(GatewayError::BadRequest {
                reason: "content_length_with_transfer_encoding",
                close: true,
            });
        }
        let value = first.to_str().map(str::trim).unwrap_or("");
        if !value.eq_ignore_ascii_case("chunked") {
            return Err(GatewayError::TransferCodingNotImplemented);
        }
        return Ok(None);
    }
    declared_length(headers)
}

fn declared_length(headers: &http::HeaderMap) -> Result<Option<u64>, GatewayError> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(GatewayError::BadRequest {
            reason: "duplicate_content_length",
            close: true,
        });
    }
    let text = first.to_str().unwrap_or("");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::BadRequest {
            reason: "invalid_content_length",
            close: true,
        });
    }
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| GatewayError::BadRequest {
            reason: "invalid_content_length",
            close: true,
        })
}

/// The virtual host: from `Host` (HTTP/1.1), `:authority` (HTTP/2) or an absolute-form target;
/// when two of them are present they must agree.
fn request_host(parts: &request::Parts, is_h1: bool) -> Result<String, GatewayError> {
    let mut host_headers = parts.headers.get_all(header::HOST).iter();
    let host_header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(GatewayError::BadRequest {
            reason: "duplicate_host",
            close: true,
        });
    }
    let from_header = match host_header {
        Some(value) => Some(parse_authority(value.as_bytes())?),
        None => None,
    };
    let from_target = match parts.uri.authority() {
        Some(authority) => {
            if is_h1 && !matches!(parts.uri.scheme_str(), Some("http") | Some("https")) {
                return Err(GatewayError::BadRequest {
                    reason: "invalid_target",
                    close: false,
                });
            }
            Some(parse_authority(authority.as_str().as_bytes())?)
        }
        None => None,
    };
    match (from_header, from_target) {
        (Some(h), Some(t)) if h != t => Err(GatewayError::BadRequest {
            reason: "host_authority_mismatch",
            close: false,
        }),
        (Some(h), _) => Ok(h),
        (None, Some(t)) => Ok(t),
        (None, None) if is_h1 || parts.version == Version::HTTP_2 => {
            Err(GatewayError::BadRequest {
                reason: "missing_host",
                close: false,
            })
        }
        (None, None) => Err(GatewayError::BadRequest {
            reason: "missing_host",
            close: false,
        }),
    }
}

/// Parses `host[:port]`, refusing userinfo and anything that is not a valid authority; returns
/// the lower-cased host without port or trailing dot.
fn parse_authority(raw: &[u8]) -> Result<String, GatewayError> {
    let bad = || GatewayError::BadRequest {
        reason: "invalid_host",
        close: false,
    };
    let text = std::str::from_utf8(raw).map_err(|_| bad())?;
    if text.is_empty() || text.contains('@') || text.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(bad());
    }
    let authority: http::uri::Authority = text.parse().map_err(|_| bad())?;
    let host = authority.host();
    if host.is_empty() {
        return Err(bad());
    }
    // `http` accepts any port text (`host:abc`); only digits are a port.
    let port = authority.as_str()[host.len()..].strip_prefix(':');
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err()) {
        return Err(bad());
    }
    let valid = if host.starts_with('[') {
        host.ends_with(']')
            && host[1..host.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok()
    } else {
        host.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !valid {
        return Err(bad());
    }
    Ok(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Only `100-continue` is honoured; any other expectation is refused with 417. The header is
/// removed so it is never forwarded as sent.
/// Accepts no `Expect` or exactly `100-continue` (then removed: the upstream gets the body
/// without waiting); anything else is 417.
fn check_expect(headers: &mut http::HeaderMap) -> Result<(), GatewayError> {
    let mut values = headers.get_all(header::EXPECT).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    if values.next().is_some() {
        return Err(GatewayError::ExpectationFailed);
    }
    let ok = first
        .to_str()
        .map(|v| v.trim().eq_ignore_ascii_case("100-continue"))
        .unwrap_or(false);
    headers.remove(header::EXPECT);
    if ok {
        Ok(())
    } else {
        Err(GatewayError::ExpectationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(sni: Option<&str>) -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:1".parse().expect("addr"),
            local: "127.0.0.1:2".parse().expect("addr"),
            listener: 0,
            tls: sni.is_some(),
            sni: sni.map(str::to_owned),
            client: None,
        }
    }

    fn parts(build: http::request::Builder) -> request::Parts {
        build.body(()).expect("request").into_parts().0
    }

    fn run(build: http::request::Builder) -> Result<Admitted, GatewayError> {
        admit(&mut parts(build), &conn(None), &RequestLimits::default())
    }

    #[test]
    fn host_rules() {
        let ok =
            run(http::Request::get("/a").header("host", "API.Example.go.id.:8080")).expect("ok");
        assert_eq!(ok.host, "api.example.go.id");
        assert_eq!(
            run(http::Request::get("/a")).unwrap_err().reason(),
            "missing_host"
        );
        let dup = run(http::Request::get("/a")
            .header("host", "a")
            .header("host", "b"));
        assert_eq!(dup.unwrap_err().reason(), "duplicate_host");
        for bad in [
            "a@b", "a b", "a/b", "[::1", "", "a:abc", "a:", "a:99999", "a:+1",
        ] {
            assert!(
                run(http::Request::get("/a").header("host", bad)).is_err(),
                "{bad}"
            );
        }
        let absolute =
            run(http::Request::get("http://other.example/a").header("host", "api.example"));
        assert_eq!(absolute.unwrap_err().reason(), "host_authority_mismatch");
        let absolute =
            run(http::Request::get("http://api.example/a").header("host", "api.example"));
        assert_eq!(absolute.expect("ok").host, "api.example");
    }

    #[test]
    fn sni_must_match_host() {
        let mut p = parts(http::Request::get("/").header("host", "b.example"));
        let err = admit(&mut p, &conn(Some("a.example")), &RequestLimits::default()).unwrap_err();
        assert_eq!(err.status(), 421);
    }

    #[test]
    fn framing_rules() {
        let both = run(http::Request::post("/")
            .header("host", "a")
            .header("content-length", "3")
            .header("transfer-encoding", "chunked"));
        assert_eq!(
            both.unwrap_err().reason(),
            "content_length_with_transfer_encoding"
        );
        let gzip = run(http::Request::post("/")
            .header("host", "a")
            .header("transfer-encoding", "gzip, chunked"));
        assert_eq!(gzip.unwrap_err().status(), 501);
        let spaced = run(http::Request::post("/")
            .header("host", "a")
            .header("transfer-encoding", " Chunked "));
        assert!(spaced.is_ok());
        let underscore = run(http::Request::post("/")
            .header("host", "a")
            .header("content_length", "3"));
        assert_eq!(underscore.unwrap_err().reason(), "underscore_header");
        let ok_underscore = run(http::Request::get("/")
            .header("host", "a")
            .header("x_custom", "1"));
        assert!(ok_underscore.is_ok());
    }

    #[test]
    fn expect_rules() {
        let ok = run(http::Request::post("/")
            .header("host", "a")
            .header("expect", "100-Continue"));
        assert!(ok.is_ok(), "{ok:?}");
        for bad in ["100-continue, foo", "foo", "200-ok"] {
            let err = run(http::Request::post("/")
                .header("host", "a")
                .header("expect", bad));
            assert_eq!(err.unwrap_err().status(), 417, "{bad}");
        }
    }

    #[test]
    fn limits() {
        let long = format!("/{}", "a".repeat(9000));
        assert_eq!(
            run(http::Request::get(long.as_str()).header("host", "a"))
                .unwrap_err()
                .status(),
            414
        );
        let mut b = http::Request::get("/").header("host", "a");
        for i in 0..101 {
            b = b.header(format!("x-h{i}"), "1");
        }
        assert_eq!(run(b).unwrap_err().status(), 431);
    }

    #[test]
    fn traceparent_is_continued_only_when_valid() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("v"),
        );
        let t = Trace::from_headers(&headers);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id, 0x00f067aa0ba902b7);
        headers.insert(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                .parse()
                .expect("v"),
        );
        assert_ne!(Trace::from_headers(&headers).trace_id, 0);
    }
}
