#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use prometheus_client::metrics::MetricType;

use super::*;

/// One parsed sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict parser for the OpenMetrics text the exposition writes: every sample belongs to a
/// family declared by `# TYPE` just before it, counters' samples end in `_total`, histograms'
/// in `_bucket`/`_sum`/`_count`, label values are quoted with escapes, the text ends in `# EOF`.
fn parse(text: &str) -> Result<(BTreeMap<String, String>, Vec<Sample>), String> {
    let mut families = BTreeMap::new();
    let mut samples = Vec::new();
    let mut current: Option<(String, String)> = None;

    let mut eof = false;
    for line in text.lines() {
        if eof {
            return Err(format!("text after # EOF: {line}"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if rest.split_once(' ').is_none() {
                return Err(format!("bad HELP: {line}"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
            if families.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(format!("family declared twice: {name}"));
            }
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        let (family, kind) = current
            .clone()
            .ok_or(format!("sample before TYPE: {line}"))?;
        let (head, value) = line.rsplit_once(' ').ok_or(format!("no value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().map_err(|_| format!("bad value: {line}"))?,
        };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or(format!("unclosed labels: {line}"))?;
                (
                    name.to_owned(),
                    parse_labels(body).ok_or(format!("bad labels: {line}"))?,
                )
            }
        };
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "gauge" => &[""],
            other => return Err(format!("unexpected type {other}")),
        };
        if !suffixes.iter().any(|s| name == format!("{family}{s}")) {
            return Err(format!("sample {name} outside its family {family}"));
        }
        samples.push((name, labels, value));
    }
    if !eof {
        return Err("no # EOF".into());
    }
    Ok((families, samples))
}

fn parse_labels(mut body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        body = &rest[end + 1..];
        body = body.strip_prefix(',').unwrap_or(body);
    }
    Some(labels)
}

/// A scrape where every family has samples.
fn full_scrape(metrics: &Metrics) -> Scrape {
    let mut evidence = penghubung_evidence::EvidenceStats::default();
    evidence.health.enabled = true;
    evidence.health.records = 12;
    evidence.health.last_checkpoint_age_secs = Some(3);
    evidence.group_commits = 4;
    evidence.group_commit_seconds = 0.25;
    Scrape {
        process: metrics.stats(),
        upstreams: vec![UpstreamTargetStats {
            upstream: "ktp".into(),
            target: "10.0.0.1:8080".into(),
            up: true,
            outstanding: 2,
        }],
        credential_expiries: vec![super::exposition::CredentialExpiryStats {
            upstream: "splp-nasional".into(),
            credential: "/sapa".into(),
            expires_at: 1_900_000_000,
        }],
        auth: AuthStats {
            issuers: vec![IssuerStats {
                issuer: "https://sso.example/\"x\"".into(),
                loads_ok: 3,
                loads_failed: 1,
                stale: false,
                last_ok_unix: None,
            }],
            token_cache_hits: 5,
            ..AuthStats::default()
        },
        throttle: ThrottleStats {
            redis_up: Some(false),
            redis_errors: 9,
        },
        evidence,
        refusals: RefusalStats {
            suppressed: 7,
            sources: 1,
        },
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[test]
fn exposition_parses_and_has_every_family() {
    let metrics = Metrics::default();
    metrics.set_opds(&["bkd".to_owned()]);
    let s = metrics.service("kependudukan");
    s.observe(Stage::Dispatch, 200, Duration::from_millis(3), Some("bkd"));
    metrics
        .listener("public")
        .total
        .fetch_add(1, Ordering::Relaxed);
    let text = render(full_scrape(&metrics));
    let (families, samples) = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind, _) in names::ALL {
        let expected = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            _ => "unknown",
        };
        assert_eq!(
            families.get(*name).map(String::as_str),
            Some(expected),
            "{name}\n{text}"
        );
        let exposed = names::exposed(name, kind);
        let sample = match kind {
            MetricType::Histogram => format!("{exposed}_count"),
            _ => exposed,
        };
        assert!(
            samples.iter().any(|(n, _, _)| *n == sample),
            "{sample}\n{text}"
        );
    }
    assert_eq!(families.len(), names::ALL.len(), "{text}");
    for (name, _, help) in names::ALL {
        assert!(!help.is_empty(), "{name} has no help text");
        assert!(
            text.contains(&format!("# HELP {name} {help}\n")),
            "{name}\n{text}"
        );
    }
    // Label values with quotes survive escaping.
    assert_eq!(
        value(
            &samples,
            "penghubung_auth_jwks_loads_total",
            &[("issuer", "https://sso.example/\"x\""), ("result", "ok")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &samples,
            "penghubung_evidence_group_commit_seconds_total",
            &[]
        ),
        Some(0.25)
    );
}

#[test]
fn every_metric_named_in_the_readme_is_exposed() {
    let readme = include_str!("../../../README.md");
    let named: BTreeSet<&str> = readme
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("penghubung_") && w.len() > "penghubung_".len())
        .filter(|w| !["penghubung_evidence", "penghubung_testkit"].contains(w))
        .collect();
    assert!(
        named.len() >= names::ALL.len(),
        "README names too few metrics: {named:?}"
    );
    let metrics = Metrics::default();
    metrics.set_opds(&["bkd".to_owned()]);
    metrics
        .service("a")
        .observe(Stage::Route, 404, Duration::from_micros(5), Some("bkd"));
    metrics.listener("public");
    let (_, samples) = parse(&render(full_scrape(&metrics))).unwrap();
    let exposed: BTreeSet<String> = samples.into_iter().map(|s| s.0).collect();
    for name in &named {
        let base = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        assert!(
            exposed.contains(*name) || exposed.contains(&format!("{base}_count")),
            "README names {name}, /metrics does not expose it: {exposed:?}"
        );
    }
    for (name, kind, _) in names::ALL {
        assert!(
            named.contains(names::exposed(name, kind).as_str()),
            "README does not document {name}"
        );
    }
}

#[test]
fn counters_move_when_requests_connections_and_reloads_happen() {
    let metrics = Metrics::default();
    let scrape = |m: &Metrics| {
        parse(&render(Scrape {
            process: m.stats(),
            ..Scrape::default()
        }))
        .unwrap()
        .1
    };
    let before = scrape(&metrics);
    let dispatch_2xx = [
        ("service", "kependudukan"),
        ("stage", "dispatch"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        value(&before, "penghubung_requests_total", &dispatch_2xx),
        None
    );
    let s = metrics.service("kependudukan");
    metrics.set_opds(&["bkd".to_owned(), "dinkes".to_owned()]);
    s.observe(Stage::Dispatch, 200, Duration::from_millis(3), Some("bkd"));
    s.observe(Stage::Route, 404, Duration::from_micros(50), None);
    s.observe(Stage::Dispatch, 204, Duration::from_secs(20), Some("bkd"));
    s.observe(
        Stage::Authorize,
        403,
        Duration::from_micros(70),
        Some("dinkes"),
    );
    // An OPD the catalogue does not name is not counted (no label from a request).
    s.observe(
        Stage::Dispatch,
        200,
        Duration::from_micros(70),
        Some("unknown"),
    );
    let l = metrics.listener("public");
    l.total.fetch_add(2, Ordering::Relaxed);
    l.errors.fetch_add(1, Ordering::Relaxed);
    metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
    let after = scrape(&metrics);
    assert_eq!(
        value(&after, "penghubung_requests_total", &dispatch_2xx),
        Some(3.0)
    );
    let consumer = |opd: &str, class: &str| {
        value(
            &after,
            "penghubung_consumer_requests_total",
            &[
                ("service", "kependudukan"),
                ("opd", opd),
                ("status_class", class),
            ],
        )
    };
    assert_eq!(consumer("bkd", "2xx"), Some(2.0));
    assert_eq!(consumer("dinkes", "4xx"), Some(1.0));
    assert_eq!(consumer("unknown", "2xx"), None);
    assert_eq!(
        value(
            &after,
            "penghubung_requests_total",
            &[
                ("service", "kependudukan"),
                ("stage", "route"),
                ("status_class", "4xx")
            ]
        ),
        Some(1.0)
    );
    let svc = [("service", "kependudukan"), ("stage", "dispatch")];
    assert_eq!(
        value(&after, "penghubung_request_duration_seconds_count", &svc),
        Some(3.0)
    );
    let route = [("service", "kependudukan"), ("stage", "route")];
    assert_eq!(
        value(&after, "penghubung_request_duration_seconds_count", &route),
        Some(1.0)
    );
    let le = |b: &str| {
        value(
            &after,
            "penghubung_request_duration_seconds_bucket",
            &[
                ("service", "kependudukan"),
                ("stage", "dispatch"),
                ("le", b),
            ],
        )
    };
    assert_eq!(le("0.0005"), Some(1.0));
    assert_eq!(le("0.005"), Some(2.0));
    assert_eq!(le("10.0"), Some(2.0));
    assert_eq!(le("+Inf"), Some(3.0));
    let sum = value(&after, "penghubung_request_duration_seconds_sum", &svc).unwrap();
    assert!((sum - 20.00307).abs() < 1e-9, "{sum}");
    assert_eq!(
        value(
            &after,
            "penghubung_connections_total",
            &[("listener", "public")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &after,
            "penghubung_connection_errors_total",
            &[("listener", "public")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "penghubung_config_reloads_total",
            &[("result", "ok")]
        ),
        Some(1.0)
    );
    // The handles are the ones the next snapshot resolves: the same service keeps counting.
    assert!(Arc::ptr_eq(&s, &metrics.service("kependudukan")));
}
