//! Stage 2, `route`: (host, method, canonical path) → a service route.
//!
//! Deny routes are checked first and against two readings of the path, the canonical one and
//! the loosest one any backend might make ([`crate::admit::canonical::loosest`]), so no spelling
//! of a denied path reaches a backend. Forward routes then match the canonical path only, most
//! specific first: exact, then templates (more literal segments first), then the longest prefix.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use crate::admit::canonical::{self, PathError};
use crate::catalog::services::ServiceAuthSettings;
use crate::catalog::services::{RouteAction, RouteSpec};
use crate::catalog::{Classification, Exposure};
use crate::error::GatewayError;
use crate::telemetry::ServiceMetrics;
use penghubung_adapter::Adapter;

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// The path exactly.
    Exact(String),
    /// The prefix itself and everything below it (`/a/*` matches `/a`, `/a/`, `/a/b`).
    Prefix(String),
    /// Whole segments, `None` standing for a `{param}`.
    Template(Vec<Option<String>>),
}

impl Pattern {
    /// Parses a route path pattern; the error says what is wrong.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
        if !pattern.starts_with('/') {
            return Err("must start with '/'".into());
        }
        if pattern.contains(['?', '#', '%', '\\', ';'])
            || pattern.bytes().any(|b| b <= b' ' || b >= 0x7f)
        {
            return Err(
                "must be a plain path without '?', '#', '%', '\\', ';', spaces or non-ASCII".into(),
            );
        }
        if let Some(prefix) = pattern.strip_suffix("/*") {
            if prefix.contains('*') || prefix.contains('{') {
                return Err("'*' is only allowed as the final segment".into());
            }
            return Ok(Pattern::Prefix(prefix.to_owned()));
        }
        if pattern.contains('*') {
            return Err("'*' is only allowed as the final segment '/*'".into());
        }
        if pattern.contains('{') || pattern.contains('}') {
            let mut segments = Vec::new();
            for segment in pattern.split('/').skip(1) {
                if segment.starts_with('{') && segment.ends_with('}') && segment.len() > 2 {
                    let name = &segment[1..segment.len() - 1];
                    if name.contains(['{', '}']) {
                        return Err(format!("bad parameter segment {segment:?}"));
                    }
                    segments.push(None);
                } else if segment.contains(['{', '}']) {
                    return Err(format!(
                        "a parameter must be a whole segment, not {segment:?}"
                    ));
                } else {
                    segments.push(Some(segment.to_owned()));
                }
            }
            return Ok(Pattern::Template(segments));
        }
        Ok(Pattern::Exact(pattern.to_owned()))
    }

    /// Whether `path` (canonical form) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == path,
            Pattern::Prefix(p) => {
                p.is_empty()
                    || (path.starts_with(p.as_str())
                        && matches!(path.as_bytes().get(p.len()), None | Some(b'/')))
            }
            Pattern::Template(segments) => {
                let mut parts = path.split('/').skip(1);
                for expected in segments {
                    match (parts.next(), expected) {
                        (Some(actual), Some(literal)) if actual == literal => {}
                        (Some(actual), None) if !actual.is_empty() => {}
                        _ => return false,
                    }
                }
                parts.next().is_none()
            }
        }
    }

    /// Lower-cased copy, for matching the loosest reading.
    fn lowercase(&self) -> Pattern {
        match self {
            Pattern::Exact(p) => Pattern::Exact(p.to_ascii_lowercase()),
            Pattern::Prefix(p) => {
                Pattern::Prefix(p.to_ascii_lowercase().trim_end_matches('/').to_owned())
            }
            Pattern::Template(s) => Pattern::Template(
                s.iter()
                    .map(|x| x.as_ref().map(|l| l.to_ascii_lowercase()))
                    .collect(),
            ),
        }
    }

    fn rank(&self) -> (u8, usize) {
        match self {
            Pattern::Exact(p) => (0, usize::MAX - p.len()),
            Pattern::Template(s) => (1, usize::MAX - s.iter().filter(|x| x.is_some()).count()),
            Pattern::Prefix(p) => (2, usize::MAX - p.len()),
        }
    }
}

/// Methods a route allows when it names none. Anything else (`TRACE`, `CONNECT`, WebDAV or
/// custom methods) is answered 405 unless a route lists it.
pub const DEFAULT_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// The service this route belongs to.
    pub service: Arc<Service>,
    /// Index of the route within its service (for logs).
    pub index: usize,
    /// The pattern.
    pub pattern: Pattern,
    loose: Pattern,
    methods: Vec<Method>,
    /// Forward or deny.
    pub action: RouteAction,
    /// Leading part of the path replaced by `/` before forwarding.
    pub strip_prefix: Option<String>,
    /// Forward ambiguous encodings as they are.
    pub allow_raw_path: bool,
    /// Stream the request body instead of buffering it.
    pub stream_body: bool,
    /// Body limit in bytes.
    pub body_limit: u64,
}

/// A route compiled from its spec without its service: what `config::validate` compiles once,
/// and `Snapshot::build` binds to the service it builds ([`Route::bind`]).
#[derive(Debug, Clone)]
pub struct RouteRule {
    pattern: Pattern,
    loose: Pattern,
    methods: Vec<Method>,
    action: RouteAction,
    strip_prefix: Option<String>,
    allow_raw_path: bool,
    stream_body: bool,
    body_limit: u64,
}

impl RouteRule {
    /// Compiles a route spec; `default_body` is `limits.body_bytes`. The error says what is wrong.
    pub fn compile(spec: &RouteSpec, default_body: u64) -> Result<RouteRule, String> {
        let pattern = Pattern::parse(&spec.path)?;
        let methods = if spec.methods.is_empty() {
            DEFAULT_METHODS.to_vec()
        } else {
            spec.methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("bad method {m:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(RouteRule {
            loose: pattern.lowercase(),
            pattern,
            methods,
            action: spec.action,
            strip_prefix: spec.strip_prefix.clone(),
            allow_raw_path: spec.allow_raw_path,
            stream_body: spec.stream_body,
            body_limit: spec.body_bytes.unwrap_or(default_body),
        })
    }
}

impl Route {
    /// The route `rule` (the `index`th of its service) serving `service`.
    pub fn bind(service: Arc<Service>, index: usize, rule: &RouteRule) -> Route {
        let rule = rule.clone();
        Route {
            service,
            index,
            pattern: rule.pattern,
            loose: rule.loose,
            methods: rule.methods,
            action: rule.action,
            strip_prefix: rule.strip_prefix,
            allow_raw_path: rule.allow_raw_path,
            stream_body: rule.stream_body,
            body_limit: rule.body_limit,
        }
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// The path to send upstream for a canonical `path`.
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.strip_prefix {
            Some(prefix) if path.starts_with(prefix.as_str()) => {
                let rest = &path[prefix.len()..];
                if rest.starts_with('/') {
                    rest.into()
                } else {
                    format!("/{rest}").into()
                }
            }
            _ => path.into(),
        }
    }
}

#[derive(Debug, Default)]
struct VHost {
    deny: Vec<Arc<Route>>,
    forward: Vec<Arc<Route>>,
    any_raw: bool,
}

/// The compiled routing table.
#[derive(Debug, Default)]
pub struct Router {
    hosts: HashMap<String, VHost>,
    any: Option<VHost>,
}

/// A successful routing decision.
#[derive(Debug)]
pub struct Matched {
    /// The route.
    pub route: Arc<Route>,
    /// The canonical path the route matched (raw-preserving when the route allows it).
    pub path: String,
}

impl Router {
    /// Builds the table from compiled routes and the hosts of their services.
    pub fn new(routes: Vec<(Vec<String>, Route)>) -> Router {
        let mut router = Router::default();
        for (hosts, route) in routes {
            let route = Arc::new(route);
            for host in hosts {
                let vhost = if host == "*" {
                    router.any.get_or_insert_with(VHost::default)
                } else {
                    router
                        .hosts
                        .entry(host.trim_end_matches('.').to_ascii_lowercase())
                        .or_default()
                };
                vhost.any_raw |= route.allow_raw_path;
                match route.action {
                    RouteAction::Deny => vhost.deny.push(route.clone()),
                    RouteAction::Forward => vhost.forward.push(route.clone()),
                }
            }
        }
        for vhost in router.hosts.values_mut().chain(router.any.as_mut()) {
            vhost.forward.sort_by_key(|r| r.pattern.rank());
        }
        router
    }

    /// Whether any virtual host answers `host`.
    pub fn knows_host(&self, host: &str) -> bool {
        self.any.is_some() || self.hosts.contains_key(host)
    }

    /// Routes a request. `raw_path` is the path as received; `canonical` what admission made of it.
    pub fn route(
        &self,
        host: &str,
        method: &Method,
        raw_path: &str,
        canonical: &Result<String, PathError>,
    ) -> Result<Matched, GatewayError> {
        let vhost = self
            .hosts
            .get(host)
            .or(self.any.as_ref())
            .ok_or(GatewayError::Misdirected("unknown_host"))?;
        if !vhost.deny.is_empty() {
            let loose = canonical::loosest(raw_path);
            for route in &vhost.deny {
                let hit = route.loose.matches(&loose)
                    || canonical.as_ref().is_ok_and(|c| {
                        // The backend re-reads the path it is sent: its loosest reading must
                        // not land on a denied route either.
                        route.pattern.matches(c) || route.loose.matches(&canonical::loosest(c))
                    });
                if hit && route.allows(method) {
                    return Err(GatewayError::RouteDenied);
                }
            }
        }
        let (path, raw) = match canonical {
            Ok(path) => (path.clone(), false),
            Err(PathError::Ambiguous(_)) if vhost.any_raw => (
                canonical::canonicalize(raw_path, true).map_err(GatewayError::Path)?,
                true,
            ),
            Err(e) => return Err(GatewayError::Path(*e)),
        };
        let mut allow: Vec<&Method> = Vec::new();
        let mut path_matched = false;
        for route in &vhost.forward {
            if raw && !route.allow_raw_path {
                continue;
            }
            if route.pattern.matches(&path) {
                if route.allows(method) {
                    return Ok(Matched {
                        route: route.clone(),
                        path,
                    });
                }
                path_matched = true;
                allow.extend(route.methods.iter());
            }
        }
        if raw {
            return Err(match canonical {
                Err(e) => GatewayError::Path(*e),
                Ok(_) => GatewayError::NoRoute,
            });
        }
        if path_matched {
            let mut names: Vec<&str> = allow.iter().map(|m| m.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            return Err(GatewayError::MethodNotAllowed {
                allow: names.join(", "),
            });
        }
        Err(GatewayError::NoRoute)
    }
}

/// A service as requests see it.
pub struct Service {
    /// Identifier.
    pub id: String,
    /// Version.
    pub version: String,
    /// Owning OPD.
    pub owner_opd: String,
    /// Classification.
    pub classification: Classification,
    /// Exposure.
    pub exposure: Exposure,
    /// Carries personal data.
    pub personal_data: bool,
    /// Its declared personal fields, compiled (set exactly when `personal_data` is).
    pub privacy: Option<Arc<crate::privacy::ServicePolicy>>,
    /// Its kelaikan approval's id (empty without one), for the request record.
    pub approval_id: String,
    /// Where requests go (absent for deny-only services).
    pub adapter: Option<Arc<dyn Adapter>>,
    /// The upstream speaks HTTP/2 (`TE: trailers` may pass).
    pub upstream_http2: bool,
    /// The SOAP settings when the upstream is of kind `soap` (the pipeline prepares, authorises
    /// and records each call by operation).
    pub soap: Option<Arc<penghubung_adapter_soap::Soap>>,
    /// Who may call it.
    pub auth: ServiceAuthSettings,
    /// Counters.
    pub metrics: Arc<ServiceMetrics>,
    /// Where calls go when the upstream is a peer SPL (`outbound-to-pusat`, …); empty
    /// otherwise. Written into the request record before forwarding.
    pub peer_direction: String,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn patterns() {
        let p = Pattern::parse("/a/*").expect("prefix");
        assert!(p.matches("/a") && p.matches("/a/") && p.matches("/a/b/c"));
        assert!(!p.matches("/ab") && !p.matches("/"));
        let all = Pattern::parse("/*").expect("all");
        assert!(all.matches("/") && all.matches("/x"));
        let t = Pattern::parse("/penduduk/{nik}/keluarga").expect("template");
        assert!(t.matches("/penduduk/123/keluarga"));
        assert!(
            !t.matches("/penduduk//keluarga")
                && !t.matches("/penduduk/1/keluarga/x")
                && !t.matches("/penduduk/1")
        );
        assert!(Pattern::parse("a").is_err());
        assert!(Pattern::parse("/a*").is_err());
        assert!(Pattern::parse("/a/{x}y").is_err());
        assert!(Pattern::parse("/a%2f").is_err());
    }

    proptest! {
        #[test]
        fn prefix_matches_exactly_its_subtree(prefix in "(/[a-z]{1,3}){1,3}", rest in "(/[a-z]{0,3}){0,3}", other in "[a-z]{1,3}") {
            let p = Pattern::Prefix(prefix.clone());
            let inside = format!("{prefix}{rest}");
            prop_assert!(p.matches(&inside));
            let sibling = format!("{prefix}{other}");
            prop_assert!(!p.matches(&sibling));
        }

        #[test]
        fn exact_matches_only_itself(a in "(/[a-z]{1,3}){1,3}", b in "(/[a-z]{1,3}){1,3}") {
            let p = Pattern::Exact(a.clone());
            prop_assert_eq!(p.matches(&b), a == b);
        }
    }
}

#[cfg(test)]
mod router_tests {
    use super::*;
    use crate::catalog::services::RouteSpec;

    fn service() -> Arc<Service> {
        Arc::new(Service {
            id: "s".into(),
            version: String::new(),
            owner_opd: String::new(),
            classification: Default::default(),
            exposure: Default::default(),
            personal_data: false,
            privacy: None,
            approval_id: String::new(),
            adapter: None,
            upstream_http2: false,
            soap: None,
            auth: Default::default(),
            metrics: Default::default(),
            peer_direction: String::new(),
        })
    }

    fn route(path: &str, action: RouteAction, methods: &[&str]) -> (Vec<String>, Route) {
        let spec = RouteSpec {
            path: path.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            action,
            strip_prefix: None,
            allow_raw_path: false,
            stream_body: false,
            body_bytes: None,
        };
        (
            vec!["api.example".into()],
            Route::bind(
                service(),
                0,
                &RouteRule::compile(&spec, 1024).expect("route"),
            ),
        )
    }

    fn router() -> Router {
        Router::new(vec![
            route("/admin/*", RouteAction::Deny, &[]),
            route("/*", RouteAction::Forward, &["GET"]),
            route("/data/{id}", RouteAction::Forward, &["GET", "PUT"]),
        ])
    }

    fn outcome(path: &str, method: Method) -> Result<String, &'static str> {
        let canonical = canonical::canonicalize(path, false);
        router()
            .route("api.example", &method, path, &canonical)
            .map(|m| m.path)
            .map_err(|e| e.reason())
    }

    #[test]
    fn denied_under_every_reading() {
        for path in [
            "/admin",
            "/admin/x",
            "/ADMIN/x",
            "/x/../admin/y",
            "//admin",
            "/./admin",
            "/admin./y",
            "/%61dmin/y",
        ] {
            assert_eq!(outcome(path, Method::GET), Err("route_denied"), "{path}");
        }
        // Refused before routing can be fooled.
        for path in ["/admin;x/y", "/x/..%2fadmin", "/admin/x/.../.../../y"] {
            assert!(outcome(path, Method::GET).is_err(), "{path}");
        }
    }

    #[test]
    fn specific_routes_win_and_methods_are_checked() {
        assert_eq!(outcome("/data/7", Method::PUT), Ok("/data/7".into()));
        assert_eq!(outcome("/other", Method::GET), Ok("/other".into()));
        assert_eq!(outcome("/other", Method::POST), Err("method_not_allowed"));
        let canonical = canonical::canonicalize("/x", false);
        let unknown = router().route("other.example", &Method::GET, "/x", &canonical);
        assert_eq!(
            unknown.map(|_| ()).map_err(|e| e.status()),
            Err(http::StatusCode::MISDIRECTED_REQUEST)
        );
    }

    #[test]
    fn routes_without_methods_allow_only_the_usual_ones() {
        let router = Router::new(vec![
            route("/open/*", RouteAction::Forward, &[]),
            route("/trace/*", RouteAction::Forward, &["TRACE", "PROPFIND"]),
        ]);
        let outcome = |path: &str, method: &[u8]| {
            let method = Method::from_bytes(method).expect("method");
            let canonical = canonical::canonicalize(path, false);
            router
                .route("api.example", &method, path, &canonical)
                .map(|m| m.path)
                .map_err(|e| e.reason())
        };
        for method in DEFAULT_METHODS {
            assert!(
                outcome("/open/x", method.as_str().as_bytes()).is_ok(),
                "{method}"
            );
        }
        for method in ["TRACE", "CONNECT", "PROPFIND", "FOO"] {
            assert_eq!(
                outcome("/open/x", method.as_bytes()),
                Err("method_not_allowed"),
                "{method}"
            );
        }
        assert!(outcome("/trace/x", b"TRACE").is_ok());
        assert!(outcome("/trace/x", b"PROPFIND").is_ok());
        assert_eq!(outcome("/trace/x", b"GET"), Err("method_not_allowed"));
    }
}
