//! OpenTelemetry traces end to end: a real OTLP/gRPC receiver (a tonic server on the collector
//! protos) gets the exchange span with its stage children and attempts, parented on the
//! client's `traceparent`, with ids (never paths) as attributes; refusals are exported when the
//! ratio samples nothing; with the receiver down, requests are unaffected and the drop counter
//! rises. One test per process: tracing is set up once, as `penghubung run` does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use penghubung_e2e::config::{access_config, AccessOpts, KEY};
use penghubung_e2e::gateway::Gateway;
use penghubung_e2e::otlp::{attr, tree, OtlpReceiver};
use penghubung_e2e::raw::{admin, get};
use penghubung_e2e::upstream::Upstream;
use penghubung_e2e::IO_TIMEOUT;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_trace_reaches_the_collector_and_exporting_never_holds_a_request() {
    let receiver = OtlpReceiver::start().await;
    let upstream = Upstream::echo().await;
    let evidence = tempfile::tempdir().unwrap();
    // Ratio 0: only the client's sampled flag, or a refusal, gets a trace exported.
    let tail = format!(
        "\n[telemetry.traces]\nendpoint = \"{}\"\nsampling_ratio = 0.0\nqueue_size = 64\n",
        receiver.endpoint()
    );
    let text = access_config(
        upstream.addr,
        &AccessOpts {
            evidence: Some(evidence.path()),
            tail: &tail,
            ..AccessOpts::default()
        },
    );
    let (gateway, tracing) = Gateway::start_traced(&text).await;

    // 1. A sampled client trace through every stage.
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let ok = get(
        gateway.addr,
        "data.test",
        "/data/warga/3201011234560001",
        &[("apikey", KEY), ("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let exchange_id = ok.header("x-penghubung-exchange-id").unwrap().to_owned();
    // 2. Not sampled (no traceparent, ratio 0) and answered: nothing is exported.
    let quiet = get(gateway.addr, "open.test", "/open/x", &[]).await;
    assert_eq!(quiet.status, 200);
    // 3. Not sampled but refused: its exchange span is exported anyway.
    let refused = get(gateway.addr, "data.test", "/data/x", &[]).await;
    assert_eq!(refused.status, 401);
    let refused_id = refused
        .header("x-penghubung-exchange-id")
        .unwrap()
        .to_owned();

    let trace_id = hex::decode(TRACE).unwrap();
    let spans = receiver
        .wait_until(|spans| {
            spans.iter().filter(|s| s.trace_id == trace_id).count() >= 10
                && spans
                    .iter()
                    .any(|s| attr(s, "penghubung.exchange_id").as_deref() == Some(&refused_id))
        })
        .await;
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect();
    println!(
        "span tree of one exchange (trace {TRACE}):\n{}",
        tree(&ours)
    );

    let exchange = ours
        .iter()
        .find(|s| s.name == "exchange")
        .expect("exchange span");
    assert_eq!(
        hex::encode(&exchange.parent_span_id),
        CLIENT_SPAN,
        "parent from traceparent"
    );
    let expect = [
        ("penghubung.exchange_id", exchange_id.as_str()),
        ("penghubung.service", "data"),
        ("penghubung.consumer.opd", "bkd"),
        ("penghubung.consumer.application", "simpeg"),
        ("penghubung.grant", "simpeg-data"),
        ("http.response.status_code", "200"),
        ("http.request.method", "GET"),
    ];
    for (key, value) in expect {
        assert_eq!(attr(exchange, key).as_deref(), Some(value), "{key}");
    }
    let children: Vec<&str> = ours
        .iter()
        .filter(|s| s.parent_span_id == exchange.span_id)
        .map(|s| s.name.as_str())
        .collect();
    for stage in [
        "admit",
        "route",
        "authenticate",
        "authorize",
        "throttle",
        "record_request",
        "dispatch",
        "record_outcome",
    ] {
        assert!(
            children.contains(&stage),
            "{stage} under the exchange: {children:?}"
        );
    }
    let dispatch = ours.iter().find(|s| s.name == "dispatch").unwrap();
    let attempt = ours
        .iter()
        .find(|s| s.name == "attempt" && s.parent_span_id == dispatch.span_id)
        .expect("an attempt under dispatch");
    assert_eq!(
        attr(attempt, "penghubung.upstream").as_deref(),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(
        attr(attempt, "http.response.status_code").as_deref(),
        Some("200")
    );
    // The upstream continues the trace under the attempt span.
    let sent = upstream.requests()[0].clone();
    let upstream_parent = sent
        .headers
        .iter()
        .find(|(n, _)| n == "traceparent")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        upstream_parent,
        format!("00-{TRACE}-{}-01", hex::encode(&attempt.span_id))
    );
    // Ids only: no attribute carries the path (or any part of it).
    for span in &spans {
        for kv in &span.attributes {
            let value = attr(span, &kv.key).unwrap_or_default();
            assert!(!value.contains("3201011234560001"), "{} = {value}", kv.key);
            assert!(!value.contains("/data/"), "{} = {value}", kv.key);
        }
    }
    // The unsampled refusal: its exchange span alone, with the refusal.
    let refusal = spans
        .iter()
        .find(|s| attr(s, "penghubung.exchange_id").as_deref() == Some(&refused_id))
        .unwrap();
    assert_eq!(
        attr(refusal, "penghubung.refusal.stage").as_deref(),
        Some("authenticate")
    );
    assert_eq!(
        attr(refusal, "penghubung.refusal.reason").as_deref(),
        Some("credential_missing")
    );
    assert_eq!(
        attr(refusal, "http.response.status_code").as_deref(),
        Some("401")
    );
    assert!(!spans
        .iter()
        .any(|s| s.trace_id == refusal.trace_id && s.name != "exchange"));
    // The unsampled answered exchange was not exported.
    let quiet_id = quiet.header("x-penghubung-exchange-id").unwrap();
    assert!(!spans
        .iter()
        .any(|s| attr(s, "penghubung.exchange_id").as_deref() == Some(quiet_id)));

    // Receiver down: requests are answered as before, the spans are counted as dropped.
    receiver.stop().await;
    let before = metric(
        &admin(gateway.admin, "/metrics").await.text(),
        "penghubung_trace_spans_dropped_total",
    );
    for _ in 0..3 {
        let started = Instant::now();
        let r = get(
            gateway.addr,
            "data.test",
            "/data/y",
            &[("apikey", KEY), ("traceparent", &traceparent)],
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let text = admin(gateway.admin, "/metrics").await.text();
        if metric(&text, "penghubung_trace_spans_dropped_total") > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span counted as dropped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(gateway);
    tracing.shutdown().await;
}
