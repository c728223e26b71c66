//! Upstream failures, bad upstream responses, retries, balancing and health.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use penghubung_e2e::{exchange, Behaviour, Cfg, Gateway, RawConn, Upstream, IO_TIMEOUT};

const GET: &[u8] = b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
const POST: &[u8] =
    b"POST /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";

async fn status(gw: &Gateway, raw: &[u8]) -> Option<u16> {
    exchange(gw.addr, raw).await.map(|r| r.status)
}

/// Polls `cond` every 20 ms until it holds (bounded by `IO_TIMEOUT`).
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + IO_TIMEOUT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn upstream_down_is_502_fast() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let gw = Gateway::start(&Cfg::new(&[addr]).render()).await;
    let started = Instant::now();
    let s = status(&gw, GET).await;
    assert!(matches!(s, Some(502) | Some(503)), "{s:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hanging_upstream_is_504_within_the_head_timeout() {
    let up = Upstream::start("a", Behaviour::Hang).await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .upstream("response_head_timeout_ms = 500")
            .upstream("retries = 0")
            .render(),
    )
    .await;
    let started = Instant::now();
    assert_eq!(status(&gw, GET).await, Some(504));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn slow_response_body_is_cut_at_the_response_timeout() {
    let up = Upstream::start(
        "a",
        Behaviour::SlowBody {
            chunks: 100,
            every: Duration::from_millis(100),
        },
    )
    .await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .upstream("response_timeout_ms = 1000")
            .render(),
    )
    .await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(GET).await;
    let started = Instant::now();
    // The head arrives, then the body is cut: no complete response.
    let r = conn.read_response(IO_TIMEOUT).await;
    assert!(
        r.is_none(),
        "a truncated body was presented as complete: {r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn reset_is_502_and_get_retried_once_post_never() {
    let up = Upstream::start("a", Behaviour::Reset).await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .upstream("eject_after_failures = 100")
            .render(),
    )
    .await;
    assert_eq!(status(&gw, GET).await, Some(502));
    assert_eq!(up.count(), 2, "GET is tried twice (retries = 1)");
    assert_eq!(status(&gw, POST).await, Some(502));
    assert_eq!(up.count(), 3, "POST is never retried");
}

async fn bad_response_case(name: &str, response: &[u8]) {
    let up = Upstream::start(
        "a",
        Behaviour::Raw {
            bytes: response.to_vec(),
            close: false,
        },
    )
    .await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .upstream("retries = 0")
            .upstream("eject_after_failures = 100")
            .render(),
    )
    .await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(GET).await;
    match conn.read_response(IO_TIMEOUT).await {
        None => {}
        Some(r) if r.status == 502 => {}
        Some(r) => panic!("{name}: a bad upstream response was passed on: {r:?}"),
    }
    // The upstream connection is not reused for the next request.
    up.set(Behaviour::Ok);
    let next = exchange(gw.addr, GET).await.expect("next response");
    assert_eq!(next.status, 200, "{name}");
    assert_eq!(next.body, b"a", "{name}");
    let got = up.requests();
    assert_eq!(got.len(), 2, "{name}");
    assert_ne!(
        got[0].conn, got[1].conn,
        "{name}: poisoned connection reused"
    );
}

#[tokio::test]
async fn bad_upstream_responses_are_never_passed_on() {
    let cases: &[(&str, &[u8])] = &[
        (
            "CL+TE",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        ),
        (
            "TE+CL",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE+CL with a smuggled response behind",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        ),
        (
            "differing CL",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nevil",
        ),
        ("malformed header", b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"),
        ("NUL in header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"),
        ("bad status line", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
        ("not http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        ("bad chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("negative CL", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    ];
    for (name, response) in cases {
        bad_response_case(name, response).await;
    }
}

#[tokio::test]
async fn truncated_upstream_body_is_not_a_complete_response() {
    let up = Upstream::start(
        "a",
        Behaviour::Raw {
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part".to_vec(),
            close: true,
        },
    )
    .await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).upstream("retries = 0").render()).await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(GET).await;
    match conn.read_response(IO_TIMEOUT).await {
        None => {}
        Some(r) if r.status == 502 => {}
        Some(r) => panic!("truncated body passed on as complete: {r:?}"),
    }
    // Chunked without the last chunk.
    up.set(Behaviour::Raw {
        bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        close: true,
    });
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(GET).await;
    match conn.read_response(IO_TIMEOUT).await {
        None => {}
        Some(r) if r.status == 502 => {}
        Some(r) => panic!("truncated chunked body passed on as complete: {r:?}"),
    }
}

#[tokio::test]
async fn bytes_after_the_response_never_reach_another_request() {
    let up = Upstream::start(
        "a",
        Behaviour::Raw {
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil".to_vec(),
            close: false,
        },
    )
    .await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).upstream("retries = 0").render()).await;
    let first = exchange(gw.addr, GET).await.expect("first");
    // Either refused (the extra bytes are a protocol error) or the legitimate part only.
    assert!(first.status == 502 || first.body == b"ok", "{first:?}");
    up.set(Behaviour::Ok);
    for _ in 0..3 {
        let next = exchange(gw.addr, GET).await.expect("next");
        assert_ne!(next.body, b"evil");
        assert_eq!(next.status, 200);
    }
    let got = up.requests();
    assert!(
        got[1..].iter().all(|r| r.conn != got[0].conn),
        "poisoned connection reused"
    );
}

#[tokio::test]
async fn get_is_retried_on_another_target_post_is_not() {
    let bad = Upstream::start("bad", Behaviour::Reset).await;
    let good = Upstream::start("good", Behaviour::Ok).await;
    let gw = Gateway::start(
        &Cfg::new(&[bad.addr, good.addr])
            .upstream("eject_after_failures = 100")
            .render(),
    )
    .await;
    for _ in 0..4 {
        let r = exchange(gw.addr, GET).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"good");
    }
    let bad_gets = bad.count();
    assert!(bad_gets >= 1, "round robin never tried the bad target");
    assert_eq!(good.count(), 4);
    let mut failed = 0;
    for _ in 0..4 {
        match status(&gw, POST).await {
            Some(200) => {}
            Some(502) => failed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(failed >= 1);
    assert_eq!(
        bad.count() - bad_gets,
        failed,
        "each failed POST reached bad once"
    );
    assert_eq!(good.count(), 4 + 4 - failed, "a failed POST was retried");
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let ups = [
        Upstream::start("a", Behaviour::Ok).await,
        Upstream::start("b", Behaviour::Ok).await,
        Upstream::start("c", Behaviour::Ok).await,
    ];
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let gw = Gateway::start(&Cfg::new(&addrs).render()).await;
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for _ in 0..30 {
        let r = exchange(gw.addr, GET).await.unwrap();
        *seen.entry(r.body).or_default() += 1;
    }
    for u in &ups {
        assert_eq!(u.count(), 10, "{}: {seen:?}", u.name);
    }
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_target() {
    let busy = Upstream::start("busy", Behaviour::Hang).await;
    let idle = Upstream::start("idle", Behaviour::Ok).await;
    let gw = Gateway::start(
        &Cfg::new(&[busy.addr, idle.addr])
            .upstream("balance = \"least_outstanding\"")
            .upstream("response_head_timeout_ms = 8000")
            .render(),
    )
    .await;
    // Park requests until one is stuck on the busy target.
    let mut parked = Vec::new();
    for _ in 0..4 {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(GET).await;
        parked.push(conn);
        let before = busy.count();
        if before >= 1 {
            break;
        }
        eventually("request to land", || async {
            busy.count() + idle.count() > 0
        })
        .await;
        if busy.count() >= 1 {
            break;
        }
    }
    assert!(busy.count() >= 1);
    let idle_before = idle.count();
    for _ in 0..10 {
        let r = exchange(gw.addr, GET).await.unwrap();
        assert_eq!(r.body, b"idle");
    }
    assert_eq!(idle.count(), idle_before + 10);
}

#[tokio::test]
async fn passive_ejection_takes_a_failing_target_out() {
    let bad = Upstream::start("bad", Behaviour::Reset).await;
    let good = Upstream::start("good", Behaviour::Ok).await;
    let gw = Gateway::start(
        &Cfg::new(&[bad.addr, good.addr])
            .upstream("retries = 0")
            .upstream("eject_after_failures = 2")
            .upstream("eject_secs = 60")
            .render(),
    )
    .await;
    let mut failures = 0;
    for _ in 0..12 {
        match status(&gw, GET).await {
            Some(200) => {}
            Some(502) => failures += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        failures, 2,
        "only the failures before ejection reach a client"
    );
    assert_eq!(bad.count(), 2);
    let (code, health) = gw.admin_get("/health").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&health).unwrap();
    let targets = &doc["upstreams"][0]["targets"];
    let bad_state = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == bad.addr.to_string())
        .unwrap();
    assert_eq!(bad_state["available"], false, "{health}");
}

#[tokio::test]
async fn active_health_checks_mark_targets_down_and_up() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let b = Upstream::start("b", Behaviour::Ok).await;
    a.set_healthy(false);
    let gw = Gateway::start(
        &Cfg::new(&[a.addr, b.addr])
            .upstream(
                "health_check = { path = \"/healthz\", interval_ms = 100, timeout_ms = 100, unhealthy_after = 1, healthy_after = 1 }",
            )
            .render(),
    )
    .await;
    eventually("a probed twice", || async { a.health_probes() >= 2 }).await;
    for _ in 0..6 {
        let r = exchange(gw.addr, GET).await.unwrap();
        assert_eq!(r.body, b"b");
    }
    assert_eq!(a.count(), 0);
    a.set_healthy(true);
    let probes = a.health_probes();
    eventually("a probed again", || async {
        a.health_probes() >= probes + 2
    })
    .await;
    for _ in 0..6 {
        assert_eq!(status(&gw, GET).await, Some(200));
    }
    assert!(a.count() >= 2, "a never came back: {}", a.count());
    // All targets down → 503.
    a.set_healthy(false);
    b.set_healthy(false);
    let (pa, pb) = (a.health_probes(), b.health_probes());
    eventually("both probed", || async {
        a.health_probes() >= pa + 2 && b.health_probes() >= pb + 2
    })
    .await;
    assert_eq!(status(&gw, GET).await, Some(503));
}

#[tokio::test]
async fn upstream_switching_protocols_is_not_passed_on() {
    let up = Upstream::start(
        "a",
        Behaviour::Raw {
            bytes: b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec(),
            close: false,
        },
    )
    .await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).upstream("retries = 0").render()).await;
    let raw = b"GET /demo/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(raw).await;
    let r = conn.read_response(IO_TIMEOUT).await;
    assert!(
        r.as_ref().is_none_or(|r| r.status == 502),
        "upgrade passed on: {r:?}"
    );
    let got = up.only();
    assert!(got.header("upgrade").is_none(), "{}", got.head);
    assert!(got.header("connection").is_none(), "{}", got.head);
}

/// 5xx answers are the application's reply to one client's request: however many a client
/// provokes, the only target of the group stays in and other callers keep being served.
#[tokio::test]
async fn upstream_errors_never_eject_the_only_target() {
    let up = Upstream::start(
        "a",
        Behaviour::Raw {
            bytes: b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nfail".to_vec(),
            close: false,
        },
    )
    .await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .upstream("eject_after_failures = 2")
            .upstream("eject_secs = 60")
            .render(),
    )
    .await;
    for i in 0..8 {
        assert_eq!(status(&gw, GET).await, Some(500), "request {i}");
    }
    assert_eq!(up.count(), 8, "every request reached the target");
    up.set(Behaviour::Ok);
    assert_eq!(status(&gw, GET).await, Some(200));
}

/// Transport failures of the only target (resets) still never eject it: the group keeps
/// trying its last target instead of answering 503 to everyone.
#[tokio::test]
async fn transport_failures_never_eject_the_last_target() {
    let up = Upstream::start("a", Behaviour::Reset).await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .upstream("retries = 0")
            .upstream("eject_after_failures = 2")
            .upstream("eject_secs = 60")
            .render(),
    )
    .await;
    for i in 0..6 {
        assert_eq!(status(&gw, POST).await, Some(502), "request {i}");
    }
    assert_eq!(up.count(), 6);
    up.set(Behaviour::Ok);
    assert_eq!(status(&gw, GET).await, Some(200));
    let (_, health) = gw.admin_get("/health").await;
    let doc: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        doc["upstreams"][0]["targets"][0]["available"], true,
        "{health}"
    );
}

/// A hung upstream with the default budget: the client waits one head timeout, not one per
/// attempt, even though GET may be retried.
#[tokio::test]
async fn hung_upstream_is_504_within_the_default_budget_despite_retries() {
    let a = Upstream::start("a", Behaviour::Hang).await;
    let b = Upstream::start("b", Behaviour::Hang).await;
    let gw = Gateway::start(
        &Cfg::new(&[a.addr, b.addr])
            .upstream("response_head_timeout_ms = 600")
            .upstream("retries = 2")
            .render(),
    )
    .await;
    let started = Instant::now();
    assert_eq!(status(&gw, GET).await, Some(504));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(550) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(
        a.count() + b.count(),
        1,
        "no retry once the budget is spent"
    );
}

/// With a budget larger than the per-try timeout, an idempotent request is retried after a
/// per-try timeout, and the client still gets 504 when the budget runs out, not after
/// `retries + 1` head timeouts.
#[tokio::test]
async fn retries_respect_the_request_budget() {
    let a = Upstream::start("a", Behaviour::Hang).await;
    let b = Upstream::start("b", Behaviour::Hang).await;
    let gw = Gateway::start(
        &Cfg::new(&[a.addr, b.addr])
            .upstream("response_head_timeout_ms = 500")
            .upstream("request_timeout_ms = 800")
            .upstream("retries = 3")
            .render(),
    )
    .await;
    let started = Instant::now();
    assert_eq!(status(&gw, GET).await, Some(504));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(750) && elapsed < Duration::from_millis(1700),
        "{elapsed:?}"
    );
    assert_eq!(a.count() + b.count(), 2, "one retry fits in the budget");
    // POST is never retried: one per-try timeout.
    let started = Instant::now();
    assert_eq!(status(&gw, POST).await, Some(504));
    assert!(started.elapsed() < Duration::from_millis(950));
}

/// An HTTP/1.0 back end does not downgrade the client: an HTTP/1.1 client gets an HTTP/1.1
/// status line and keeps its connection, whether the upstream framed its body with
/// Content-Length or by closing.
#[tokio::test]
async fn http10_upstream_does_not_downgrade_the_client() {
    for (case, upstream_bytes) in [
        (
            "content-length",
            &b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
        ),
        (
            "close-delimited",
            &b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok"[..],
        ),
    ] {
        let up = Upstream::start(
            "a",
            Behaviour::Raw {
                bytes: upstream_bytes.to_vec(),
                close: true,
            },
        )
        .await;
        let gw = Gateway::start(&Cfg::new(&[up.addr]).render()).await;
        let mut conn = RawConn::connect(gw.addr).await;
        let keep = b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\n\r\n";
        for round in 0..2 {
            conn.send(keep).await;
            let (raw, closed) = conn.read_for(Duration::from_millis(400)).await;
            let text = String::from_utf8_lossy(&raw);
            assert!(
                text.starts_with("HTTP/1.1 200 "),
                "{case} round {round}: {text:?}"
            );
            assert!(
                text.ends_with("ok") || text.ends_with("ok\r\n0\r\n\r\n"),
                "{case}: {text:?}"
            );
            assert!(
                !closed,
                "{case} round {round}: the client connection was closed"
            );
        }
        assert_eq!(up.count(), 2, "{case}");
        // An HTTP/1.0 client is still answered in HTTP/1.0.
        let mut old = RawConn::connect(gw.addr).await;
        old.send(b"GET /demo/x HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await;
        let (raw, _) = old.read_for(Duration::from_millis(400)).await;
        assert!(
            raw.starts_with(b"HTTP/1.0 200 "),
            "{case}: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}
