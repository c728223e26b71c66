//! Stage 5: local GCRA and quotas on a paused clock, and the shared Redis store against a real
//! `redis-server`, including its loss mid-test.
#![allow(clippy::unwrap_used)]

mod auth_common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auth_common::*;
use http::HeaderMap;
use penghubung::auth::{AuthError, AuthRuntime, GrantRuntime, Principal, RedisSettings};

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

async fn setup(redis: Option<&RedisSettings>) -> (AuthRuntime, Principal) {
    let dir = temp_dir("limits");
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &[ec_jwk(&ec_key(), "ec-1")]);
    let (o, a, g) = parties(&"ab".repeat(32), LIMITED);
    let rt = AuthRuntime::build(&auth_settings(&jwks, ""), &o, &a, &g, redis, None)
        .await
        .unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        "apikey",
        http::HeaderValue::from_static("kunci-rahasia-simpeg"),
    );
    let p = rt.authenticate(&h, &uri(), None, &service()).await.unwrap();
    (rt, p)
}

fn grant(rt: &AuthRuntime, p: &Principal, service: &str) -> std::sync::Arc<GrantRuntime> {
    let c = penghubung::catalog::Classification::Terbuka;
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
    let (rt, p) = setup(None).await;
    let g = grant(&rt, &p, "pegawai");
    let first = rt.throttle(&p, &g).await.unwrap();
    assert_eq!(first.remaining, 1);
    rt.throttle(&p, &g).await.unwrap();
    let e = rt.throttle(&p, &g).await.unwrap_err();
    assert!(matches!(e, AuthError::RateLimited(_)));
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
    write_jwks(&dir.join("j.json"), &[ec_jwk(&ec_key(), "ec-1")]);
    let rt2 = AuthRuntime::build(
        &auth_settings(&dir.join("j.json"), ""),
        &o,
        &a,
        &gs,
        None,
        Some(&rt),
    )
    .await
    .unwrap();
    assert!(rt2.throttle(&p, &grant(&rt2, &p, "pegawai")).await.is_err());
}

#[tokio::test]
async fn limits_quota_exhaustion() {
    let (rt, p) = setup(None).await;
    let g = grant(&rt, &p, "kuota");
    for left in [2, 1, 0] {
        let i = rt.throttle(&p, &g).await.unwrap();
        assert_eq!(i.quota.unwrap().1, left);
    }
    let e = rt.throttle(&p, &g).await.unwrap_err();
    assert!(matches!(e, AuthError::QuotaExceeded(_)));
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

/// A `redis-server` on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        // Readiness from the server's own log line, not from a sleep.
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("Ready to accept connections") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_settings(port: u16, prefix: &str, on_unavailable: &str) -> RedisSettings {
    toml::from_str(&format!(
        "url = \"redis://127.0.0.1:{port}/\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 500\non_unavailable = \"{on_unavailable}\""
    ))
    .unwrap()
}

#[tokio::test]
async fn limits_redis_is_shared_across_nodes_and_falls_back_when_lost() {
    let mut redis = Redis::start();
    let prefix = format!("t{}:", std::process::id());
    let local = redis_settings(redis.port, &prefix, "local");
    let deny = redis_settings(redis.port, &prefix, "deny");
    let (a, p) = setup(Some(&local)).await;
    let (b, _) = setup(Some(&local)).await;
    let (c, _) = setup(Some(&deny)).await;
    let (ga, gb) = (grant(&a, &p, "shared"), grant(&b, &p, "shared"));
    a.throttle(&p, &ga).await.unwrap();
    a.throttle(&p, &ga).await.unwrap();
    let last = b.throttle(&p, &gb).await.unwrap();
    assert_eq!(last.remaining, 0);
    assert!(!last.degraded);
    // Node A sees node B's request: the limit of 3 is shared.
    let e = a.throttle(&p, &ga).await.unwrap_err();
    assert!(matches!(e, AuthError::RateLimited(_)), "{e:?}");
    assert!(e.retry_after().unwrap() > Duration::from_secs(15));
    assert_eq!(a.health().redis_reachable, Some(true));

    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    // Fallback: local limits on each node (A's local store is fresh), flagged in health.
    let i = a.throttle(&p, &ga).await.unwrap();
    assert!(i.degraded);
    assert_eq!(a.health().redis_reachable, Some(false));
    assert!(!a.health().ok());
    let mut m = String::new();
    a.write_metrics(&mut m);
    assert!(m.contains("penghubung_ratelimit_redis_up 0"), "{m}");
    // With on_unavailable = "deny" the request is refused instead.
    let e = c.throttle(&p, &grant(&c, &p, "shared")).await.unwrap_err();
    assert_eq!(
        (e.clone(), e.status().as_u16()),
        (AuthError::LimiterUnavailable, 503)
    );
}
