//! Stage 5: local GCRA and quotas on a paused clock. (The shared Redis store is tested end to
//! end, against a real `redis-server`, in `tests/tests/access.rs`.)

use std::time::Duration;

use super::support::*;
use crate::auth::{AuthRuntime, GrantRuntime, Principal, RedisSettings};
use crate::throttle::ThrottleError;
use http::HeaderMap;

const LIMITED: &str = r#"
    [[grant]]
    id = "simpeg-pegawai"
    application = "simpeg"
    service = "pegawai"
    tujuan = "Sinkronisasi"
    cakupan = [{ methods = ["GET"], paths = ["/*"] }]
    consent = { by = "Kepala BKD", at = "2020-01-01T00:00:00Z" }
    limits = { per_second = 2.0, burst = 2 }
    [[grant]]
    id = "simpeg-kuota"
    application = "simpeg"
    service = "kuota"
    tujuan = "Kuota"
    cakupan = [{ methods = ["GET"], paths = ["/*"] }]
    consent = { by = "Kepala BKD", at = "2020-01-01T00:00:00Z" }
    limits = { quota = { count = 3, period = "day" } }
    [[grant]]
    id = "simpeg-shared"
    application = "simpeg"
    service = "shared"
    tujuan = "Bersama"
    cakupan = [{ methods = ["GET"], paths = ["/*"] }]
    consent = { by = "Kepala BKD", at = "2020-01-01T00:00:00Z" }
    limits = { rate = "3/min" }
"#;

/// A runtime with the `LIMITED` grants, `simpeg` authenticated, and the JWKS directory.
async fn setup(redis: Option<&RedisSettings>) -> (AuthRuntime, Principal, TempDir) {
    let dir = temp_dir("limits");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[ec_jwk(&ec_key(), "ec-1")]);
    let (o, a, g) = parties(&"ab".repeat(32), LIMITED);
    let rt = AuthRuntime::build(&auth_settings(&jwks, ""), &compile(&o, &a, &g), redis, None)
        .await
        .unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        "apikey",
        http::HeaderValue::from_static("kunci-rahasia-simpeg"),
    );
    let p = rt.authenticate(&h, &uri(), None, &service()).await.unwrap();
    (rt, p, dir)
}

fn grant(rt: &AuthRuntime, p: &Principal, service: &str) -> std::sync::Arc<GrantRuntime> {
    let c = crate::catalog::Classification::Terbuka;
    rt.authorize(
        p,
        service,
        c,
        &http::Method::GET,
        "/x",
        std::time::SystemTime::now(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn limits_local_gcra_on_a_paused_clock() {
    let (rt, p, _dir) = setup(None).await;
    let g = grant(&rt, &p, "pegawai");
    let first = rt.throttle(&p, &g).await.unwrap();
    assert_eq!(first.remaining, 1);
    rt.throttle(&p, &g).await.unwrap();
    let e = rt.throttle(&p, &g).await.unwrap_err();
    assert!(matches!(e, ThrottleError::RateLimited(_)));
    assert_eq!(e.retry_after(), Some(Duration::from_millis(500)));
    let mut h = HeaderMap::new();
    e.rate_info().unwrap().headers(&mut h);
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["ratelimit-policy"], "\"burst\";q=2;w=1");
    assert_eq!(h["ratelimit"], "\"burst\";r=0;t=1");
    tokio::time::advance(Duration::from_millis(499)).await;
    assert!(rt.throttle(&p, &g).await.is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    rt.throttle(&p, &g).await.unwrap();
    // State survives a config reload.
    let (o, a, gs) = parties(&"ab".repeat(32), LIMITED);
    let dir = temp_dir("limits-reload");
    write_jwks(&dir.path().join("j.json"), &[ec_jwk(&ec_key(), "ec-1")]);
    let rt2 = AuthRuntime::build(
        &auth_settings(&dir.path().join("j.json"), ""),
        &compile(&o, &a, &gs),
        None,
        Some(&rt),
    )
    .await
    .unwrap();
    assert!(rt2.throttle(&p, &grant(&rt2, &p, "pegawai")).await.is_err());
}

#[tokio::test]
async fn limits_quota_exhaustion() {
    let (rt, p, _dir) = setup(None).await;
    let g = grant(&rt, &p, "kuota");
    for left in [2, 1, 0] {
        let i = rt.throttle(&p, &g).await.unwrap();
        assert_eq!(i.quota.unwrap().1, left);
    }
    let e = rt.throttle(&p, &g).await.unwrap_err();
    assert!(matches!(e, ThrottleError::QuotaExceeded(_)));
    let wait = e.retry_after().unwrap();
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(86_400));
    let mut h = HeaderMap::new();
    e.rate_info().unwrap().headers(&mut h);
    assert!(h["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"quota\";r=0;t="));
    assert_eq!(e.wso2_code().unwrap().0, "900804");
}
