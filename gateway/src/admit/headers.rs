//! Header cleaning for both directions: hop-by-hop headers (RFC 9110 §7.6.1), every header named
//! in `Connection`, and headers through which a client could claim an identity or rewrite the
//! request at the backend. Gateway headers are added *after* cleaning, so a client can never use
//! `Connection` to remove one.

use http::header::{self, HeaderMap, HeaderName};

use super::NAMESPACE;

/// Hop-by-hop headers, always removed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Client-supplied identity and rewrite headers, removed from requests.
const IDENTITY: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-cert",
    "x-forwarded-client-cert",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
    "client-ip",
    "true-client-ip",
];

/// Prefixes of client-supplied identity headers, removed from requests.
const IDENTITY_PREFIXES: &[&str] = &[
    "x-forwarded-",
    "x-ssl-client",
    "x-client-",
    "proxy-",
    NAMESPACE,
];

fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

/// Removes, in one pass over the names, every header `doomed` picks and every header named in
/// `Connection`. (Looking each listed name up instead would hash some thirty names per request.)
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    let named = if headers.contains_key(header::CONNECTION) {
        connection_named(headers)
    } else {
        Vec::new()
    };
    let mut remove: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if doomed(name.as_str()) || named.contains(name) {
            remove.push(name.clone());
        }
    }
    for name in remove {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Configured response headers (`response_headers` of a listener or service), compiled.
pub type AddedHeaders = Vec<(HeaderName, http::HeaderValue)>;

/// Checks one configured response header: a valid name that is not framing, hop-by-hop or the
/// gateway's own, and a valid value without surrounding whitespace.
pub fn added_header(name: &str, value: &str) -> Result<(HeaderName, http::HeaderValue), String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let lower = parsed.as_str();
    if is_hop_by_hop(lower)
        || lower == "content-length"
        || lower == "content-encoding"
        || lower.starts_with(NAMESPACE)
    {
        return Err(format!("{name:?} cannot be set by configuration"));
    }
    let value = http::HeaderValue::from_str(value)
        .ok()
        .filter(|v| !padded_value(v) && !v.is_empty())
        .ok_or_else(|| format!("{name:?}: not a valid header value"))?;
    Ok((parsed, value))
}

/// Compiles a `response_headers` table (already validated; invalid entries are skipped).
pub fn added_headers(table: &std::collections::BTreeMap<String, String>) -> AddedHeaders {
    table
        .iter()
        .filter_map(|(n, v)| added_header(n, v).ok())
        .collect()
}

/// One entry of a configured header-name list: an exact name or a prefix (`name*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePattern {
    Exact(String),
    Prefix(String),
}

impl NamePattern {
    fn parse(entry: &str) -> NamePattern {
        let lower = entry.trim().to_ascii_lowercase();
        match lower.strip_suffix('*') {
            Some(prefix) => NamePattern::Prefix(prefix.to_owned()),
            None => NamePattern::Exact(lower),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(n) => n == name,
            NamePattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }

    /// Whether every name this pattern matches is also matched by `other`.
    fn within(&self, other: &NamePattern) -> bool {
        match (self, other) {
            (NamePattern::Exact(n), o) => o.matches(n),
            (NamePattern::Prefix(p), NamePattern::Prefix(q)) => p.starts_with(q.as_str()),
            (NamePattern::Prefix(_), NamePattern::Exact(_)) => false,
        }
    }
}

/// Checks one `[headers]` list entry: a header name, optionally ending in `*`.
pub fn valid_name_pattern(entry: &str) -> bool {
    let name = entry.strip_suffix('*').unwrap_or(entry);
    !name.is_empty() && !name.contains('*') && HeaderName::from_bytes(name.as_bytes()).is_ok()
}

/// Identity headers of other gateways (the `[headers]` table), compiled once per config.
#[derive(Debug, Clone, Default)]
pub struct ForeignIdentity {
    strip: Vec<NamePattern>,
    verified_may_send: Vec<NamePattern>,
}

impl ForeignIdentity {
    /// Compiles the configured lists (already validated).
    pub fn new(strip: &[String], verified_may_send: &[String]) -> ForeignIdentity {
        ForeignIdentity {
            strip: strip.iter().map(|e| NamePattern::parse(e)).collect(),
            verified_may_send: verified_may_send
                .iter()
                .map(|e| NamePattern::parse(e))
                .collect(),
        }
    }

    /// Whether an entry of `verified_may_send` is covered by the strip list (else it is
    /// meaningless and the config is refused).
    pub fn covered(strip: &[String], entry: &str) -> bool {
        let entry = NamePattern::parse(entry);
        strip
            .iter()
            .filter(|s| valid_name_pattern(s))
            .any(|s| entry.within(&NamePattern::parse(s)))
    }

    fn strips(&self, name: &str, verified_peer: bool) -> bool {
        self.strip.iter().any(|p| p.matches(name))
            && !(verified_peer && self.verified_may_send.iter().any(|p| p.matches(name)))
    }
}

/// Cleans a request head before it goes upstream. `keep_te_trailers` keeps `TE: trailers`
/// (meaningful on HTTP/2 upstreams); `foreign` names other gateways' identity headers, some of
/// which a `verified_peer` (a client with a verified TLS certificate) may send.
pub fn clean_request(
    headers: &mut HeaderMap,
    keep_te_trailers: bool,
    foreign: &ForeignIdentity,
    verified_peer: bool,
) {
    let te_trailers = keep_te_trailers
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
    remove_where(headers, |name| {
        is_hop_by_hop(name)
            || IDENTITY.contains(&name)
            || IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p))
            || foreign.strips(name, verified_peer)
    });
    if te_trailers {
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// Cleans a response head before it goes to the client: hop-by-hop headers and anything in the
/// gateway's namespace that an upstream tried to set.
pub fn clean_response(headers: &mut HeaderMap) {
    remove_where(headers, |name| {
        is_hop_by_hop(name) || name.starts_with(NAMESPACE)
    });
}

/// Fields that may never be sent in a trailer section (RFC 9110 §6.5.1): framing, routing,
/// request modifiers, authentication, response control data and content metadata, plus the
/// hop-by-hop fields. A back end that merges trailers into headers must not be handed any.
const NOT_IN_TRAILERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "te",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "http2-settings",
    "expect",
    "max-forwards",
    "cache-control",
    "pragma",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
    "content-type",
    "content-encoding",
    "content-range",
    "age",
    "date",
    "expires",
    "location",
    "retry-after",
    "vary",
    "apikey",
];

/// RFC 9113 §8.2.1 (and RFC 9110 §5.5): a field value never starts or ends with whitespace.
/// HTTP/1 parsers trim it; HTTP/2 carries values verbatim, so such a field is malformed.
pub fn padded_value(value: &http::HeaderValue) -> bool {
    let bytes = value.as_bytes();
    matches!(bytes.first(), Some(b' ' | b'\t')) || matches!(bytes.last(), Some(b' ' | b'\t'))
}

fn banned_in_trailers(name: &str) -> bool {
    NOT_IN_TRAILERS.contains(&name)
        || name.starts_with(':')
        || IDENTITY.contains(&name)
        || IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Checks a request's trailer section (either protocol): a field that may not appear in
/// trailers, a client identity or gateway header, or a whitespace-padded value makes the
/// request malformed. Returns the stable reason.
pub fn check_request_trailers(trailers: &HeaderMap) -> Result<(), &'static str> {
    for (name, value) in trailers {
        if banned_in_trailers(name.as_str()) {
            return Err("trailer_field_not_allowed");
        }
        if padded_value(value) {
            return Err("trailer_value_whitespace");
        }
    }
    Ok(())
}

/// Cleans a response trailer section before it goes to the client: fields that may not be
/// trailers and the gateway's namespace are dropped.
pub fn clean_response_trailers(trailers: &mut HeaderMap) {
    remove_where(trailers, |name| {
        NOT_IN_TRAILERS.contains(&name) || name.starts_with(NAMESPACE)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_identity_headers() {
        let defaults = crate::admit::settings::HeaderSettings::default();
        let foreign =
            ForeignIdentity::new(&defaults.strip_identity, &defaults.verified_peer_may_send);
        let sent = [
            ("x-remote-user", "admin"),
            ("remote-user", "admin"),
            ("x-authenticated-user", "admin"),
            ("x-authenticated-groups", "root"),
            ("x-forwarded-user", "admin"),
            ("x-auth-request-email", "a@b"),
            ("x-consumer-username", "admin"),
            ("x-userinfo", "e30"),
            ("x-jwt-assertion", "eyJ"),
            ("x-remote-addr", "keep"),
            ("accept", "*/*"),
        ];
        let run = |verified: bool| {
            let mut h = HeaderMap::new();
            for (k, v) in sent {
                h.append(k, v.parse().expect("value"));
            }
            clean_request(&mut h, false, &foreign, verified);
            let mut left: Vec<String> = h.keys().map(|k| k.to_string()).collect();
            left.sort();
            left
        };
        assert_eq!(run(false), ["accept", "x-remote-addr"]);
        assert_eq!(run(true), ["accept", "x-jwt-assertion", "x-remote-addr"]);
        let none = ForeignIdentity::new(&[], &[]);
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", "a".parse().expect("v"));
        clean_request(&mut h, false, &none, false);
        assert!(h.contains_key("x-remote-user"), "an empty list strips none");
        assert!(ForeignIdentity::covered(
            &defaults.strip_identity,
            "x-jwt-assertion"
        ));
        assert!(ForeignIdentity::covered(
            &defaults.strip_identity,
            "x-consumer-id"
        ));
        assert!(ForeignIdentity::covered(
            &defaults.strip_identity,
            "x-consumer-*"
        ));
        assert!(!ForeignIdentity::covered(
            &defaults.strip_identity,
            "x-other"
        ));
        assert!(valid_name_pattern("x-a-*") && valid_name_pattern("x-a"));
        assert!(
            !valid_name_pattern("*") && !valid_name_pattern("x a") && !valid_name_pattern("x*y*")
        );
    }

    #[test]
    fn trailer_rules() {
        let map = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                );
            }
            h
        };
        assert!(check_request_trailers(&map(&[("x-checksum", "abc")])).is_ok());
        for bad in [
            "content-length",
            "transfer-encoding",
            "host",
            "authorization",
            "x-forwarded-for",
            "x-penghubung-consumer-opd",
            "content-type",
        ] {
            assert_eq!(
                check_request_trailers(&map(&[(bad, "1")])),
                Err("trailer_field_not_allowed"),
                "{bad}"
            );
        }
        assert_eq!(
            check_request_trailers(&map(&[("x-checksum", " abc")])),
            Err("trailer_value_whitespace")
        );
        let mut response = map(&[
            ("grpc-status", "0"),
            ("set-cookie", "a=1"),
            ("x-penghubung-exchange-id", "spoof"),
            ("content-length", "5"),
        ]);
        clean_response_trailers(&mut response);
        assert_eq!(
            response.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["grpc-status"]
        );
    }

    #[test]
    fn request_cleaning() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret, x-penghubung-consumer"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAA"),
            ("te", "trailers, deflate"),
            ("proxy-authorization", "x"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-ssl-client-dn", "CN=admin"),
            ("x-client-cert", "x"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-penghubung-consumer-opd", "bkd"),
            ("accept", "*/*"),
        ] {
            h.append(k, v.parse().expect("value"));
        }
        clean_request(&mut h, false, &ForeignIdentity::default(), false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn te_trailers_kept_for_h2() {
        let mut h = HeaderMap::new();
        h.insert("te", "trailers".parse().expect("value"));
        clean_request(&mut h, true, &ForeignIdentity::default(), false);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn response_cleaning() {
        let mut h = HeaderMap::new();
        h.insert("connection", "x-a".parse().expect("v"));
        h.insert("x-a", "1".parse().expect("v"));
        h.insert("transfer-encoding", "chunked".parse().expect("v"));
        h.insert("x-penghubung-exchange-id", "spoof".parse().expect("v"));
        h.insert("content-type", "text/plain".parse().expect("v"));
        clean_response(&mut h);
        assert_eq!(h.len(), 1);
    }
}
