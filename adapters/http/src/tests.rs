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
        response_timeout: Duration::from_secs(1),
        retries: 1,
        health_check: None,
        eject_after: 2,
        eject_for: Duration::from_secs(60),
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
