//! Tests of the parent module.

use super::*;

fn settings(targets: &[&str], balance: Balance) -> UpstreamSettings {
    UpstreamSettings {
        name: "t".into(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
        http2: false,
        tls: None,
        balance,
        connect_timeout: Duration::from_millis(200),
        head_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        retries: 1,
        health_check: None,
        eject_after: 2,
        eject_for: Duration::from_secs(60),
        max_ejection_percent: 50,
        pool_max_idle: 4,
        pool_idle_timeout: Duration::from_secs(10),
        host_header: HostHeader::Target,
    }
}

#[tokio::test]
async fn round_robin_skips_ejected_targets() {
    let up = HttpUpstream::new(settings(
        &["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
        Balance::RoundRobin,
    ));
    let picks: Vec<usize> = (0..3).filter_map(|_| up.inner.pick(None)).collect();
    assert_eq!(
        picks.iter().collect::<std::collections::HashSet<_>>().len(),
        3
    );
    up.inner.record_result(1, false);
    up.inner.record_result(1, false);
    for _ in 0..6 {
        assert_ne!(up.inner.pick(None), Some(1));
    }
    assert!(up.is_healthy());
}

#[tokio::test]
async fn least_outstanding_prefers_idle_target() {
    let up = HttpUpstream::new(settings(
        &["127.0.0.1:1", "127.0.0.1:2"],
        Balance::LeastOutstanding,
    ));
    up.inner.targets[0].outstanding.store(5, Ordering::Relaxed);
    for _ in 0..4 {
        assert_eq!(up.inner.pick(None), Some(1));
    }
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    // Bind then drop to get a port that refuses connections.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let up = HttpUpstream::new(settings(&[&addr], Balance::RoundRobin));
    let head = Request::get("/").body(()).expect("request").into_parts().0;
    let error = up
        .call(GatewayRequest {
            head,
            body: penghubung_adapter::RequestBody::Buffered(Bytes::new()),
            retryable: true,
        })
        .await
        .expect_err("refused");
    assert_eq!(error.status(), http::StatusCode::BAD_GATEWAY, "{error}");
}

#[test]
fn bad_response_heads() {
    let mut r = Response::new(());
    r.headers_mut().insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
    assert!(check_response_head(&r).is_err());
    let ok = Response::new(());
    assert!(check_response_head(&ok).is_ok());
}

#[tokio::test]
async fn the_only_target_is_never_ejected() {
    let up = HttpUpstream::new(settings(&["127.0.0.1:1"], Balance::RoundRobin));
    for _ in 0..20 {
        up.inner.record_result(0, false);
    }
    assert!(up.is_target_available(0));
    assert_eq!(up.inner.pick(None), Some(0));
}

#[tokio::test]
async fn ejection_keeps_within_the_cap_and_never_takes_the_last_available() {
    let targets = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"];
    let up = HttpUpstream::new(settings(&targets, Balance::RoundRobin));
    for index in 0..4 {
        up.inner.record_result(index, false);
        up.inner.record_result(index, false);
    }
    let available = (0..4).filter(|&i| up.is_target_available(i)).count();
    assert_eq!(available, 2, "50 % of four targets may be out, no more");

    // Health checks take one of the two remaining down: the last one stays in.
    let mut s = settings(&targets[..2], Balance::RoundRobin);
    s.max_ejection_percent = 100;
    let up = HttpUpstream::new(s);
    up.inner.targets[0].healthy.store(false, Ordering::Relaxed);
    up.inner.record_result(1, false);
    up.inner.record_result(1, false);
    assert!(
        up.is_target_available(1),
        "the last available target was ejected"
    );
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let up = HttpUpstream::new(settings(
        &["127.0.0.1:1", "127.0.0.1:2"],
        Balance::RoundRobin,
    ));
    for _ in 0..5 {
        up.inner.record_result(0, false);
        up.inner.record_result(0, true);
    }
    assert!(up.is_target_available(0));
}

#[test]
fn only_transport_failures_count_toward_ejection() {
    let timeout = |phase| AdapterError::Timeout {
        phase,
        after: Duration::from_secs(1),
    };
    assert!(is_transport_failure(&AdapterError::Connect("x".into())));
    assert!(is_transport_failure(&AdapterError::Reset("x".into())));
    assert!(is_transport_failure(&AdapterError::BadResponse("x".into())));
    assert!(is_transport_failure(&timeout("connect")));
    assert!(!is_transport_failure(&timeout("response head")));
    assert!(!is_transport_failure(&timeout("request budget")));
    assert!(!is_transport_failure(&AdapterError::Request("x".into())));
}
