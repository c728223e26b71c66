//! Size limits, deadlines and connection limits.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use penghubung_e2e::{exchange, get, Behaviour, Cfg, Gateway, RawConn, Upstream, IO_TIMEOUT};
use tokio::io::AsyncWriteExt;

async fn setup(cfg: impl FnOnce(Cfg) -> Cfg) -> (Upstream, Gateway) {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&cfg(Cfg::new(&[up.addr])).render()).await;
    (up, gw)
}

#[tokio::test]
async fn oversized_heads_are_refused() {
    let (up, gw) = setup(|c| c).await;
    // 70 KiB in one header value: over the 64 KiB head limit.
    let big = format!(
        "GET /demo/x HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(big.as_bytes()).await;
    let r = conn.read_response(IO_TIMEOUT).await.map(|r| r.status);
    assert_eq!(r, Some(431));
    assert!(conn.closed_within(Duration::from_secs(3)).await);
    // Several headers that together exceed 64 KiB.
    let mut many = String::from("GET /demo/x HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..20 {
        many.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(4000)));
    }
    many.push_str("\r\n");
    assert_eq!(
        exchange(gw.addr, many.as_bytes()).await.map(|r| r.status),
        Some(431)
    );
    // Too many header fields.
    let mut count = String::from("GET /demo/x HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..150 {
        count.push_str(&format!("X-H{i}: 1\r\n"));
    }
    count.push_str("\r\n");
    assert_eq!(
        exchange(gw.addr, count.as_bytes()).await.map(|r| r.status),
        Some(431)
    );
    // Just over the configured count (100), under hyper's own ceiling.
    let mut count = String::from("GET /demo/x HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..100 {
        count.push_str(&format!("X-H{i}: 1\r\n"));
    }
    count.push_str("\r\n");
    assert_eq!(
        exchange(gw.addr, count.as_bytes()).await.map(|r| r.status),
        Some(431)
    );
    // URI over 8 KiB.
    let uri = format!(
        "GET /demo/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "u".repeat(8 * 1024)
    );
    assert_eq!(
        exchange(gw.addr, uri.as_bytes()).await.map(|r| r.status),
        Some(414)
    );
    let query = format!(
        "GET /demo/x?q={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "u".repeat(8 * 1024)
    );
    assert_eq!(
        exchange(gw.addr, query.as_bytes()).await.map(|r| r.status),
        Some(414)
    );
    assert_eq!(up.count(), 0);
    // Just under the limits is fine.
    let ok = format!(
        "GET /demo/{} HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "u".repeat(7 * 1024),
        "a".repeat(50 * 1024)
    );
    assert_eq!(
        exchange(gw.addr, ok.as_bytes()).await.map(|r| r.status),
        Some(200)
    );
}

#[tokio::test]
async fn body_over_limit_by_content_length_is_refused_before_the_body() {
    let (up, gw) = setup(|c| c).await;
    let mut conn = RawConn::connect(gw.addr).await;
    // 20 MiB declared, nothing sent: the answer must not wait for the body.
    conn.send(b"POST /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20971520\r\n\r\n")
        .await;
    let started = Instant::now();
    let r = conn.read_response(IO_TIMEOUT).await.map(|r| r.status);
    assert_eq!(r, Some(413));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(conn.closed_within(Duration::from_secs(3)).await);
    // Per-route limit.
    let r = exchange(
        gw.addr,
        b"POST /small/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1025\r\n\r\n",
    )
    .await
    .map(|r| r.status);
    assert_eq!(r, Some(413));
    assert_eq!(up.count(), 0);
    assert_eq!(up.total_bytes(), 0);
}

#[tokio::test]
async fn chunked_body_over_limit_is_refused() {
    let (up, gw) = setup(|c| c).await;
    let mut raw =
        b"POST /small/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = "c".repeat(512);
    for _ in 0..4 {
        raw.extend_from_slice(format!("200\r\n{chunk}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(&raw).await;
    assert_eq!(
        conn.read_response(IO_TIMEOUT).await.map(|r| r.status),
        Some(413)
    );
    assert!(conn.closed_within(Duration::from_secs(3)).await);
    // Exactly at the limit is fine.
    let mut raw =
        b"POST /small/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..2 {
        raw.extend_from_slice(format!("200\r\n{chunk}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(exchange(gw.addr, &raw).await.map(|r| r.status), Some(200));
    let r = up.only();
    assert_eq!(r.body.len(), 1024);
    assert_eq!(r.header("content-length"), Some("1024"));
}

#[tokio::test]
async fn slowloris_head_is_cut_at_the_header_deadline() {
    let (up, gw) = setup(|c| c.limit("header_read_timeout_secs = 1")).await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\n")
        .await;
    let started = Instant::now();
    // Trickle one header byte every 100 ms; the gateway must close well before we are done.
    let mut cut = false;
    for _ in 0..60 {
        if !conn.try_send(b"X").await {
            cut = true;
            break;
        }
        if conn.closed_within(Duration::from_millis(100)).await {
            cut = true;
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(cut, "connection still open after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn slow_body_gets_408() {
    let (up, gw) = setup(|c| c.limit("body_timeout_secs = 1")).await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        .await;
    let started = Instant::now();
    let r = conn.read_response(IO_TIMEOUT).await.map(|r| r.status);
    assert_eq!(r, Some(408));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(conn.closed_within(Duration::from_secs(3)).await);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (up, gw) = setup(|c| c.limit("idle_timeout_secs = 1")).await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert_eq!(
        conn.read_response(IO_TIMEOUT).await.map(|r| r.status),
        Some(200)
    );
    let started = Instant::now();
    assert!(conn.closed_within(Duration::from_secs(4)).await);
    assert!(started.elapsed() >= Duration::from_millis(800));
    // A connection that never sends anything is closed too.
    let mut silent = RawConn::connect(gw.addr).await;
    assert!(silent.closed_within(Duration::from_secs(4)).await);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn control_request_is_prompt_while_200_slow_clients_hold_connections() {
    let (up, gw) = setup(|c| c.limit("header_read_timeout_secs = 30")).await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await;
        slow.push(conn);
    }
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _) = tokio::time::timeout(Duration::from_secs(2), get(gw.addr, "/demo/ctl"))
            .await
            .expect("control request stalled");
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(up.count(), 5);
    // The slow clients are still connected (not collateral damage) and can finish.
    let conn = &mut slow[0];
    conn.send(b"1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(
        conn.read_response(IO_TIMEOUT).await.map(|r| r.status),
        Some(200)
    );
}

#[tokio::test]
async fn max_connections_per_listener() {
    let (_up, gw) = setup(|c| c.listener("max_connections = 3")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        assert_eq!(
            conn.read_response(IO_TIMEOUT).await.map(|r| r.status),
            Some(200)
        );
        held.push(conn);
    }
    let mut extra = RawConn::connect(gw.addr).await;
    extra
        .send(b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(extra.read_response(Duration::from_secs(2)).await.is_none());
    assert!(extra.closed_within(Duration::from_secs(2)).await);
    // Free one slot: a new connection is served again (the slot frees once the gateway sees
    // the close, so retry a few times within a bound).
    drop(held.pop());
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await;
        if conn
            .read_response(Duration::from_secs(1))
            .await
            .map(|r| r.status)
            == Some(200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
    }
}

#[tokio::test]
async fn client_that_stops_reading_is_cut_off() {
    let size = 64 * 1024 * 1024;
    let up = Upstream::start("a", Behaviour::Large(size)).await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .limit("send_timeout_secs = 1")
            .limit("idle_timeout_secs = 60")
            .render(),
    )
    .await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.stream.set_nodelay(true).unwrap();
    conn.send(b"GET /demo/big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    up.wait_for(1).await;
    // Do not read for a while: the gateway's writes block and the send deadline fires.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started = Instant::now();
    let got = conn.read_to_end(Duration::from_secs(20)).await;
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "connection was not closed"
    );
    assert!(
        got.len() < size,
        "whole response delivered ({} bytes): not cut off",
        got.len()
    );
    let _ = conn.stream.shutdown().await;
}

/// The idle deadline only applies with nothing in flight: a response that streams for longer
/// than it is never cut.
#[tokio::test]
async fn long_streamed_response_outlives_the_idle_deadline() {
    let up = Upstream::start(
        "a",
        Behaviour::SlowBody {
            chunks: 25,
            every: Duration::from_millis(100),
        },
    )
    .await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).limit("idle_timeout_secs = 1").render()).await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /demo/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let r = conn
        .read_response(IO_TIMEOUT)
        .await
        .expect("complete response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![b'x'; 25]);
    // And once idle, the connection is closed.
    assert!(conn.closed_within(Duration::from_secs(4)).await);
}

/// The body deadline also bounds streamed uploads: a client trickling a streamed body cannot
/// hold an upstream connection for longer than `body_timeout_secs`. (The client gets 502: the
/// upstream request fails when its body stream errors.)
#[tokio::test]
async fn slow_streamed_upload_is_cut_at_the_body_deadline() {
    let (up, gw) = setup(|c| {
        c.limit("body_timeout_secs = 1")
            .upstream("response_head_timeout_ms = 20000")
            .upstream("retries = 0")
    })
    .await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /stream/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .await;
    let started = Instant::now();
    let mut outcome = None;
    for _ in 0..40 {
        if !conn.try_send(b"z").await {
            outcome = Some("write failed");
            break;
        }
        let (bytes, closed) = conn.read_for(Duration::from_millis(100)).await;
        if !bytes.is_empty() || closed {
            outcome = Some(if closed { "closed" } else { "answered" });
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(
        outcome.is_some(),
        "upload still trickling after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "{outcome:?} after {elapsed:?}"
    );
    assert_eq!(up.count(), 0);
}

/// The header deadline starts at accept: a connection that never sends a byte, or sends its
/// first byte late, is closed at the header timeout from accept, not kept until the (longer)
/// idle timeout or given a fresh header timeout from its first byte.
#[tokio::test]
async fn byteless_connection_is_closed_at_the_header_deadline() {
    let (up, gw) = setup(|c| {
        c.limit("header_read_timeout_secs = 1")
            .limit("idle_timeout_secs = 30")
    })
    .await;
    let started = Instant::now();
    let mut silent = RawConn::connect(gw.addr).await;
    assert!(
        silent.closed_within(Duration::from_secs(4)).await,
        "a byte-less connection outlived the header deadline"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // A first byte does not restart the clock: one byte, then silence, is cut at the same
    // deadline from accept, not one header timeout after that byte.
    let started = Instant::now();
    let mut trickle = RawConn::connect(gw.addr).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    trickle.send(b"G").await;
    assert!(trickle.closed_within(Duration::from_secs(4)).await);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1500),
        "the first byte restarted the header deadline: {elapsed:?}"
    );
    // A connection that does send its request in time is served as usual.
    let r = exchange(
        gw.addr,
        b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
}
