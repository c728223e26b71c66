//! Pure validation of the settings and the catalogue: no I/O, every problem collected with its
//! path. A [`Compiled`] config exists only when validation found nothing.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::file::{ClientAuth, Settings};
use super::{Compiled, ConfigIssue};
use crate::catalog::services::{RouteAction, UpstreamKind};
use crate::catalog::Catalog;
use crate::routing::{Pattern, RouteRule};

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Checks the settings and the catalogue; with no problem found, returns them compiled (the
/// only way to get a [`Compiled`], so nothing builds a snapshot from an unchecked config),
/// otherwise every problem found.
pub fn validate(settings: &Settings, catalog: &Catalog) -> Result<Compiled, Vec<ConfigIssue>> {
    let mut found = issues(settings, catalog);
    if !found.is_empty() {
        return Err(found);
    }
    // Compiled once here; `Snapshot::build` only binds them to the services it builds.
    let mut routes = Vec::with_capacity(catalog.service.len());
    for (i, service) in catalog.service.iter().enumerate() {
        let mut rules = Vec::with_capacity(service.route.len());
        for (r, route) in service.route.iter().enumerate() {
            match RouteRule::compile(route, settings.limits.body_bytes) {
                Ok(rule) => rules.push(rule),
                Err(message) => found.push(ConfigIssue {
                    path: format!("service[{i}].route[{r}]"),
                    message,
                }),
            }
        }
        routes.push(rules);
    }
    // Credentials, API-key digests, application limits and grants: compiled once here too.
    let parties = crate::auth::Parties::compile(&catalog.application, &catalog.grant)
        .map_err(|(path, message)| ConfigIssue { path, message });
    match parties {
        Ok(parties) if found.is_empty() => Ok(Compiled::new(
            settings.clone(),
            catalog.clone(),
            routes,
            parties,
        )),
        Ok(_) => Err(found),
        Err(issue) => {
            found.push(issue);
            Err(found)
        }
    }
}

/// Every problem in the settings and the catalogue (empty when valid).
pub fn issues(settings: &Settings, catalog: &Catalog) -> Vec<ConfigIssue> {
    let mut issues = Issues(Vec::new());
    if let Some(node) = &settings.node_id {
        if node.is_empty() || node.len() > 128 || node.chars().any(char::is_control) {
            issues.add("node_id", "must be 1 to 128 printable characters");
        }
    }
    validate_listeners(settings, &mut issues);
    if !settings.admin.address.is_empty() && settings.admin.address.parse::<SocketAddr>().is_err() {
        issues.add(
            "admin.address",
            format!("not a socket address: {:?}", settings.admin.address),
        );
    }
    for (path, message) in settings.admin.issues() {
        issues.add(path, message);
    }
    validate_limits(settings, &mut issues);
    for (path, message) in settings.telemetry.problems() {
        issues.add(&path, message);
    }
    if settings.telemetry.opdata.is_some() && !settings.evidence.enabled {
        issues.add(
            "telemetry.opdata",
            "operational data is read from the evidence log, which is disabled",
        );
    }
    validate_headers(settings, &mut issues);
    let upstreams = validate_upstreams(catalog, &mut issues);
    validate_services(catalog, &upstreams, &mut issues);
    validate_peers(catalog, &mut issues);
    for (i, s) in catalog.service.iter().enumerate() {
        let routes: Vec<&str> = s.route.iter().map(|r| r.path.as_str()).collect();
        let key = settings.privacy.key_file.is_some();
        for (path, message) in
            crate::privacy::validate_service(s.personal_data, s.personal.as_ref(), &routes, key)
        {
            issues.add(format!("service[{i}].{path}"), message);
        }
    }
    let sections = [
        ("evidence", settings.evidence.validate()),
        ("auth", settings.auth.validate()),
        (
            "redis",
            settings
                .redis
                .as_ref()
                .map(|r| r.validate())
                .unwrap_or_default(),
        ),
    ];
    for (table, found) in sections {
        for (path, message) in found {
            issues.add(format!("{table}.{path}"), message);
        }
    }
    let service_ids: Vec<&str> = catalog.service.iter().map(|s| s.id.as_str()).collect();
    for (path, message) in crate::catalog::parties::validate_parties(
        &catalog.opd,
        &catalog.application,
        &catalog.grant,
        &service_ids,
    ) {
        issues.add(path, message);
    }
    issues.0
}

fn validate_listeners(config: &Settings, issues: &mut Issues) {
    if config.listener.is_empty() {
        issues.add("listener", "at least one [[listener]] is required");
    }
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, l) in config.listener.iter().enumerate() {
        let at = format!("listener[{i}]");
        if l.name.is_empty() || !names.insert(l.name.as_str()) {
            issues.add(
                format!("{at}.name"),
                format!("must be unique and non-empty: {:?}", l.name),
            );
        }
        match l.address.parse::<SocketAddr>() {
            Ok(addr) => {
                if !addresses.insert(addr) {
                    issues.add(
                        format!("{at}.address"),
                        format!("{addr} is used by another listener"),
                    );
                }
            }
            Err(_) => issues.add(
                format!("{at}.address"),
                format!("not a socket address: {:?}", l.address),
            ),
        }
        if l.max_connections == 0 {
            issues.add(format!("{at}.max_connections"), "must be at least 1");
        }
        for (name, value) in &l.response_headers {
            if let Err(m) = crate::admit::headers::added_header(name, value) {
                issues.add(format!("{at}.response_headers.{name}"), m);
            }
        }
        if let Some(tls) = &l.tls {
            if tls.certificate.as_os_str().is_empty() {
                issues.add(format!("{at}.tls.certificate"), "must name a PEM file");
            }
            if tls.key.as_os_str().is_empty() {
                issues.add(format!("{at}.tls.key"), "must name a PEM file");
            }
            if tls.client_auth != ClientAuth::None && tls.client_ca.is_none() {
                issues.add(
                    format!("{at}.tls.client_ca"),
                    "required when client_auth is optional or required",
                );
            }
            if tls.client_auth == ClientAuth::None
                && (!tls.crls.is_empty() || tls.client_ca.is_some())
            {
                issues.add(
                    format!("{at}.tls.client_auth"),
                    "client_ca/crls are set but client_auth is \"none\"",
                );
            }
        }
    }
}

fn validate_limits(config: &Settings, issues: &mut Issues) {
    let l = &config.limits;
    let checks: [(&str, bool); 11] = [
        (
            "header_bytes",
            l.header_bytes >= 1024 && l.header_bytes <= 1024 * 1024,
        ),
        (
            "header_count",
            l.header_count >= 8 && l.header_count <= 1000,
        ),
        (
            "uri_bytes",
            l.uri_bytes >= 256 && l.uri_bytes <= 1024 * 1024,
        ),
        ("header_read_timeout_secs", l.header_read_timeout_secs > 0),
        ("body_timeout_secs", l.body_timeout_secs > 0),
        ("idle_timeout_secs", l.idle_timeout_secs > 0),
        ("send_timeout_secs", l.send_timeout_secs > 0),
        ("h2_max_concurrent_streams", l.h2_max_concurrent_streams > 0),
        (
            "h2_max_header_list_bytes",
            l.h2_max_header_list_bytes >= 1024,
        ),
        (
            "h2_max_control_frames_per_sec",
            (10..=100_000).contains(&l.h2_max_control_frames_per_sec),
        ),
        (
            "refusal_window_secs",
            (1..=3600).contains(&l.refusal_window_secs),
        ),
    ];
    for (field, ok) in checks {
        if !ok {
            issues.add(format!("limits.{field}"), "out of range");
        }
    }
}

fn validate_headers(config: &Settings, issues: &mut Issues) {
    use crate::admit::headers::{valid_name_pattern, ForeignIdentity};
    let h = &config.headers;
    for (i, entry) in h.strip_identity.iter().enumerate() {
        if !valid_name_pattern(entry) {
            issues.add(
                format!("headers.strip_identity[{i}]"),
                format!("must be a header name, optionally ending in '*', got {entry:?}"),
            );
        }
    }
    for (i, entry) in h.verified_peer_may_send.iter().enumerate() {
        if !valid_name_pattern(entry) {
            issues.add(
                format!("headers.verified_peer_may_send[{i}]"),
                format!("must be a header name, optionally ending in '*', got {entry:?}"),
            );
        } else if !ForeignIdentity::covered(&h.strip_identity, entry) {
            issues.add(
                format!("headers.verified_peer_may_send[{i}]"),
                format!("{entry:?} is not in headers.strip_identity, so this has no effect"),
            );
        }
    }
}

fn valid_target(target: &str) -> bool {
    match target.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
                && target.parse::<http::uri::Authority>().is_ok()
                && !target.contains('@')
        }
        None => false,
    }
}

fn validate_upstreams<'a>(config: &'a Catalog, issues: &mut Issues) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, u) in config.upstream.iter().enumerate() {
        let at = format!("upstream[{i}]");
        if u.name.is_empty() || !names.insert(u.name.as_str()) {
            issues.add(
                format!("{at}.name"),
                format!("must be unique and non-empty: {:?}", u.name),
            );
        }
        if u.targets.is_empty() {
            issues.add(format!("{at}.targets"), "at least one target is required");
        }
        for (t, target) in u.targets.iter().enumerate() {
            if !valid_target(target) {
                issues.add(
                    format!("{at}.targets[{t}]"),
                    format!("must be host:port, got {target:?}"),
                );
            }
        }
        for (field, value) in [
            ("connect_timeout_ms", u.connect_timeout_ms),
            ("response_head_timeout_ms", u.response_head_timeout_ms),
            ("response_timeout_ms", u.response_timeout_ms),
        ] {
            if value == 0 {
                issues.add(format!("{at}.{field}"), "must be greater than 0");
            }
        }
        if u.request_timeout_ms == Some(0) {
            issues.add(format!("{at}.request_timeout_ms"), "must be greater than 0");
        }
        if u.max_ejection_percent > 100 {
            issues.add(format!("{at}.max_ejection_percent"), "at most 100");
        }
        if u.retries > 5 {
            issues.add(format!("{at}.retries"), "at most 5");
        }
        if let Some(hc) = &u.health_check {
            if !hc.path.starts_with('/') {
                issues.add(format!("{at}.health_check.path"), "must start with '/'");
            }
            if hc.interval_ms < 100 || hc.timeout_ms == 0 || hc.timeout_ms > hc.interval_ms {
                issues.add(
                    format!("{at}.health_check"),
                    "needs interval_ms >= 100 and 0 < timeout_ms <= interval_ms",
                );
            }
            if hc.unhealthy_after == 0 || hc.healthy_after == 0 {
                issues.add(
                    format!("{at}.health_check"),
                    "unhealthy_after and healthy_after must be at least 1",
                );
            }
        }
        if let Some(host) = &u.host_header {
            if host.is_empty() || http::HeaderValue::from_str(host).is_err() {
                issues.add(
                    format!("{at}.host_header"),
                    "must be \"target\", \"preserve\" or a valid host",
                );
            }
        }
        if let Some(tls) = &u.tls {
            if tls.ca.as_os_str().is_empty() {
                issues.add(format!("{at}.tls.ca"), "must name a PEM file");
            }
        }
        validate_peer(u, &at, issues);
        match (u.kind, &u.soap) {
            (UpstreamKind::Soap, Some(soap)) => {
                if let Err(problems) = penghubung_adapter_soap::Soap::compile(soap) {
                    for (path, message) in problems {
                        issues.add(format!("{at}.soap.{path}"), message);
                    }
                }
            }
            (UpstreamKind::Soap, None) => {
                issues.add(
                    format!("{at}.soap"),
                    "an upstream of kind \"soap\" needs its soap table",
                );
            }
            (_, Some(_)) => {
                issues.add(format!("{at}.soap"), "only for upstreams of kind \"soap\"");
            }
            (_, None) => {}
        }
    }
    names
}

/// `[[peer]]`: unique names, a known application that no other peer uses, a JWKS path when
/// given, an issuer.
fn validate_peers(catalog: &Catalog, issues: &mut Issues) {
    let mut names = HashSet::new();
    let mut apps = HashSet::new();
    for (i, p) in catalog.peer.iter().enumerate() {
        let at = format!("peer[{i}]");
        if p.name.is_empty() || !names.insert(p.name.as_str()) {
            issues.add(format!("{at}.name"), "must be unique and non-empty");
        }
        if !catalog.application.iter().any(|a| a.id == p.application) {
            issues.add(
                format!("{at}.application"),
                format!("unknown application {:?}", p.application),
            );
        } else if !apps.insert(p.application.as_str()) {
            issues.add(
                format!("{at}.application"),
                "another peer already acts as this application",
            );
        }
        if p.assertion_jwks
            .as_ref()
            .is_some_and(|j| j.as_os_str().is_empty())
        {
            issues.add(format!("{at}.assertion_jwks"), "must name a JWKS file");
        }
        if p.assertion_issuer.is_empty() {
            issues.add(format!("{at}.assertion_issuer"), "must not be empty");
        }
    }
}

/// An upstream of kind `splp` is a peer: it needs its `splp` table and TLS (verification is
/// always on toward a peer); other kinds may not carry one.
fn validate_peer(u: &crate::catalog::services::UpstreamSpec, at: &str, issues: &mut Issues) {
    use crate::catalog::services::UpstreamKind;
    match (&u.kind, &u.splp) {
        (UpstreamKind::Splp, None) => issues.add(
            format!("{at}.splp"),
            "an upstream of kind \"splp\" needs its [upstream.splp] table",
        ),
        (UpstreamKind::Splp, Some(peer)) => {
            if u.tls.is_none() {
                issues.add(
                    format!("{at}.tls"),
                    "a peer is reached over TLS only: set tls.ca to the peer's CA bundle",
                );
            }
            for (path, message) in peer.validate() {
                issues.add(format!("{at}.splp.{path}"), message);
            }
        }
        (_, Some(_)) => issues.add(
            format!("{at}.splp"),
            "only an upstream of kind \"splp\" takes a splp table",
        ),
        (_, None) => {}
    }
}

fn valid_host(host: &str) -> bool {
    host == "*"
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

fn validate_services(config: &Catalog, upstreams: &HashSet<&str>, issues: &mut Issues) {
    let mut ids = HashSet::new();
    for (i, s) in config.service.iter().enumerate() {
        let at = format!("service[{i}]");
        for (name, value) in &s.response_headers {
            if let Err(m) = crate::admit::headers::added_header(name, value) {
                issues.add(format!("{at}.response_headers.{name}"), m);
            }
        }
        if s.id.is_empty()
            || s.id.len() > 128
            || !ids.insert(s.id.as_str())
            || s.id.chars().any(|c| c.is_control() || c == '"')
        {
            issues.add(
                format!("{at}.id"),
                format!("must be unique, non-empty and printable: {:?}", s.id),
            );
        }
        if s.hosts.is_empty() {
            issues.add(
                format!("{at}.hosts"),
                "at least one host (or \"*\") is required",
            );
        }
        for (h, host) in s.hosts.iter().enumerate() {
            if !valid_host(host) {
                issues.add(
                    format!("{at}.hosts[{h}]"),
                    format!("not a host name: {host:?}"),
                );
            }
        }
        let forwards = s.route.iter().any(|r| r.action == RouteAction::Forward);
        match &s.upstream {
            Some(name) if !upstreams.contains(name.as_str()) => {
                issues.add(
                    format!("{at}.upstream"),
                    format!("unknown upstream {name:?}"),
                );
            }
            None if forwards => issues.add(
                format!("{at}.upstream"),
                "required: the service has forward routes",
            ),
            _ => {}
        }
        let soap = config
            .upstream
            .iter()
            .any(|u| Some(&u.name) == s.upstream.as_ref() && u.kind == UpstreamKind::Soap);
        for (r, route) in s.route.iter().enumerate() {
            if soap && route.stream_body {
                issues.add(
                    format!("{at}.route[{r}].stream_body"),
                    "a SOAP service reads every envelope whole before forwarding it",
                );
            }
        }
        for (path, message) in s.auth.validate() {
            issues.add(format!("{at}.auth.{path}"), message);
        }
        if s.route.is_empty() {
            issues.add(
                format!("{at}.route"),
                "at least one [[service.route]] is required",
            );
        }
        for (r, route) in s.route.iter().enumerate() {
            let rat = format!("{at}.route[{r}]");
            if let Err(message) = Pattern::parse(&route.path) {
                issues.add(format!("{rat}.path"), format!("{:?} {message}", route.path));
            }
            for (m, method) in route.methods.iter().enumerate() {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                    issues.add(
                        format!("{rat}.methods[{m}]"),
                        format!("not a method: {method:?}"),
                    );
                }
            }
            if let Some(prefix) = &route.strip_prefix {
                if !prefix.starts_with('/') || prefix.ends_with('/') {
                    issues.add(
                        format!("{rat}.strip_prefix"),
                        "must start with '/' and not end with '/'",
                    );
                }
            }
            if route.body_bytes == Some(0) {
                issues.add(format!("{rat}.body_bytes"), "must be greater than 0");
            }
            if route.action == RouteAction::Deny && (route.allow_raw_path || route.stream_body) {
                issues.add(
                    format!("{rat}.action"),
                    "a deny route cannot allow raw paths or stream bodies",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn peers_are_checked_both_ways() {
        let text = r#"
            [[listener]]
            name = "a"
            address = "127.0.0.1:1"
            [[upstream]]
            name = "no-table"
            kind = "splp"
            targets = ["127.0.0.1:2"]
            [[upstream]]
            name = "no-tls"
            kind = "splp"
            targets = ["127.0.0.1:3"]
            [upstream.splp]
            tier = "pusat"
            api = [{ prefix = "/k", context = "k", version = "1", credential = "apikey", api_key = { env = "K" } }]
            [[upstream]]
            name = "plain"
            targets = ["127.0.0.1:4"]
            [upstream.splp]
            tier = "provinsi"
            token_endpoint = "http://insecure"
            [[application]]
            id = "app"
            opd = "o"
            name = "App"
            [[peer]]
            name = "p"
            tier = "pusat"
            application = "nobody"
            [[peer]]
            name = "p"
            tier = "provinsi"
            application = "app"
            assertion_jwks = ""
        "#;
        let (settings, catalog) = parse(text, "t.toml").expect("parses").split();
        let paths: Vec<String> = validate(&settings, &catalog)
            .expect_err("invalid")
            .into_iter()
            .map(|i| i.path)
            .collect();
        for want in [
            "upstream[0].splp",
            "upstream[1].tls",
            "upstream[2].splp",
            "peer[0].application",
            "peer[1].name",
            "peer[1].assertion_jwks",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "{want} missing in {paths:?}"
            );
        }
        assert!(
            !paths.iter().any(|p| p.starts_with("upstream[1].splp")),
            "{paths:?}"
        );
    }

    #[test]
    fn soap_tables_are_checked() {
        let text = r#"
            [[upstream]]
            name = "soap-without-table"
            kind = "soap"
            targets = ["h:1"]
            [[upstream]]
            name = "http-with-table"
            targets = ["h:1"]
            soap = {}
            [[upstream]]
            name = "soap"
            kind = "soap"
            targets = ["h:1"]
            [upstream.soap]
            public_url = "ftp://x"
            username_token = { username = "u", password_file = "/p", password_env = "P" }
            [[upstream.soap.mediate]]
            path = "/rest/a"
            operation = "GetA"
            version = "1.3"
            endpoint = "/ws"
            request = "<GetB>{{x}}</GetB>"
            response = { a = "GetAResponse//a" }
            [[service]]
            id = "s"
            hosts = ["h"]
            upstream = "soap"
            [[service.route]]
            path = "/ws"
            stream_body = true
            [[grant]]
            id = "g"
            application = "a"
            service = "s"
            tujuan = "t"
            cakupan = [{ methods = ["POST"], paths = ["/ws"], operations = ["Get A"] }]
        "#;
        let (settings, catalog) = parse(text, "t.toml").expect("parses").split();
        let paths: Vec<String> = validate(&settings, &catalog)
            .expect_err("invalid")
            .into_iter()
            .map(|i| i.path)
            .collect();
        for want in [
            "upstream[0].soap",
            "upstream[1].soap",
            "upstream[2].soap.public_url",
            "upstream[2].soap.username_token",
            "upstream[2].soap.mediate[0].version",
            "upstream[2].soap.mediate[0].request",
            "upstream[2].soap.mediate[0].response.a",
            "service[0].route[0].stream_body",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "missing {want} in {paths:?}"
            );
        }
        assert!(
            paths
                .iter()
                .any(|p| p.ends_with("cakupan[0].operations[0]")),
            "{paths:?}"
        );
    }

    #[test]
    fn collects_every_problem_with_its_path() {
        let text = r#"
            [[listener]]
            name = "a"
            address = "nope"
            [[listener]]
            name = "a"
            address = "127.0.0.1:1"
            tls = { certificate = "c.pem", key = "k.pem", client_auth = "required" }
            response_headers = { "content-length" = "1", "x-ok" = "fine" }
            [[upstream]]
            name = "u"
            targets = ["no-port", "h:0"]
            request_timeout_ms = 0
            max_ejection_percent = 101
            [headers]
            strip_identity = ["x-remote-user", "x bad", "*"]
            verified_peer_may_send = ["x-jwt-assertion"]
            [[service]]
            id = "s"
            hosts = ["bad host"]
            upstream = "missing"
            [[service.route]]
            path = "relative"
            methods = ["G3T"]
        "#;
        let (settings, catalog) = parse(text, "t.toml").expect("parses").split();
        let paths: Vec<String> = validate(&settings, &catalog)
            .expect_err("invalid")
            .into_iter()
            .map(|i| i.path)
            .collect();
        for want in [
            "listener[0].address",
            "listener[1].name",
            "listener[1].tls.client_ca",
            "listener[1].response_headers.content-length",
            "upstream[0].targets[0]",
            "upstream[0].targets[1]",
            "upstream[0].request_timeout_ms",
            "headers.strip_identity[1]",
            "headers.strip_identity[2]",
            "headers.verified_peer_may_send[0]",
            "upstream[0].max_ejection_percent",
            "service[0].hosts[0]",
            "service[0].upstream",
            "service[0].route[0].path",
            "service[0].route[0].methods[0]",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "missing {want} in {paths:?}"
            );
        }
    }

    #[test]
    fn control_frame_budget_is_range_checked() {
        for (value, ok) in [
            (0, false),
            (9, false),
            (10, true),
            (100, true),
            (100_001, false),
        ] {
            let text = format!(
                "[[listener]]\nname='a'\naddress='127.0.0.1:1'\n[limits]\nh2_max_control_frames_per_sec = {value}\n"
            );
            let (settings, catalog) = parse(&text, "t.toml").expect("parses").split();
            let bad = issues(&settings, &catalog)
                .iter()
                .any(|i| i.path == "limits.h2_max_control_frames_per_sec");
            assert_eq!(bad, !ok, "{value}");
        }
        assert_eq!(
            crate::config::file::RequestLimits::default().h2_max_control_frames_per_sec,
            100
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse(
            "[[listener]]\nname='a'\naddress='127.0.0.1:1'\nbogus=1\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
