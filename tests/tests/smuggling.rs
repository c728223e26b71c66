//! Request smuggling: every ambiguous framing is refused before anything reaches the upstream,
//! the connection is closed after the refusal, and accepted chunked bodies are re-framed with
//! `Content-Length`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use penghubung_e2e::{Behaviour, Cfg, Gateway, RawConn, Upstream, IO_TIMEOUT};

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).render()).await;
    (up, gw)
}

/// Sends `raw`, expects one of `statuses`, the connection closed after it, and nothing upstream.
async fn assert_refused(gw: &Gateway, up: &Upstream, name: &str, raw: &[u8], statuses: &[u16]) {
    let before = up.total_bytes();
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(raw).await;
    let response = conn.read_response(IO_TIMEOUT).await;
    let status = response.as_ref().map(|r| r.status);
    assert!(
        status.is_some_and(|s| statuses.contains(&s)),
        "{name}: expected one of {statuses:?}, got {response:?}"
    );
    assert!(
        conn.closed_within(Duration::from_secs(3)).await,
        "{name}: connection not closed after a framing refusal (left: {:?})",
        String::from_utf8_lossy(conn.pending())
    );
    assert_eq!(up.count(), 0, "{name}: forwarded: {:#?}", up.requests());
    assert_eq!(up.total_bytes(), before, "{name}: upstream got bytes");
}

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /demo/x HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}").into_bytes()
}

const SMUGGLED: &str = "0\r\n\r\nGET /demo/admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// hyper 1.12 drops Content-Length when Transfer-Encoding is present (either order); the
/// gateway's HTTP/1 byte scanner (server/h1frame.rs) sees the raw head and refuses it.
#[tokio::test]
async fn content_length_with_transfer_encoding_both_orders() {
    let (up, gw) = setup().await;
    assert_refused(
        &gw,
        &up,
        "CL then TE",
        &post(
            "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n",
            SMUGGLED,
        ),
        &[400],
    )
    .await;
    assert_refused(
        &gw,
        &up,
        "TE then CL",
        &post(
            "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
            SMUGGLED,
        ),
        &[400],
    )
    .await;
}

/// CL+TE is refused (400, connection closed). Whatever follows the chunked body (a smuggled
/// request) is never processed; should a request ever be forwarded, it is a clean
/// Content-Length request.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_never_desynchronised() {
    let (up, gw) = setup().await;
    for (i, headers) in [
        "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
    ]
    .iter()
    .enumerate()
    {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(&post(headers, SMUGGLED)).await;
        let all = conn.read_to_end(IO_TIMEOUT).await;
        let text = String::from_utf8_lossy(&all);
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{headers:?}: {text}");
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        let got = up.requests();
        assert!(got.len() <= i + 1, "smuggled request forwarded: {got:#?}");
        for r in &got {
            assert_eq!(r.target, "/demo/x");
            assert!(r.body.is_empty());
            assert!(r.header("transfer-encoding").is_none());
            assert_eq!(r.header("content-length"), Some("0"));
        }
    }
}

#[tokio::test]
async fn transfer_encoding_variants_are_refused() {
    let (up, gw) = setup().await;
    let cases: &[(&str, &str, &[u16])] = &[
        (
            "chunked, identity",
            "Transfer-Encoding: chunked, identity\r\n",
            &[400, 501],
        ),
        (
            "identity, chunked",
            "Transfer-Encoding: identity, chunked\r\n",
            &[400, 501],
        ),
        (
            "gzip, chunked",
            "Transfer-Encoding: gzip, chunked\r\n",
            &[400, 501],
        ),
        ("xchunked", "Transfer-Encoding: xchunked\r\n", &[400, 501]),
        ("chunkedx", "Transfer-Encoding: chunkedx\r\n", &[400, 501]),
        (
            "space before colon",
            "Transfer-Encoding : chunked\r\n",
            &[400],
        ),
        ("obs-fold", "Transfer-Encoding:\r\n chunked\r\n", &[400]),
        (
            "obs-fold other header",
            "X-A: 1\r\n chunked\r\nTransfer-Encoding: chunked\r\n",
            &[400],
        ),
        (
            "duplicate TE",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            &[400],
        ),
        ("underscore TE", "Transfer_Encoding: chunked\r\n", &[400]),
        ("underscore CL", "Content_Length: 60\r\n", &[400]),
        (
            "vertical tab",
            "Transfer-Encoding: \x0bchunked\r\n",
            &[400, 501],
        ),
    ];
    for (name, headers, statuses) in cases {
        assert_refused(&gw, &up, name, &post(headers, SMUGGLED), statuses).await;
    }
}

#[tokio::test]
async fn chunked_with_whitespace_around_is_accepted_and_reframed() {
    let (up, gw) = setup().await;
    for (i, te) in ["chunked", "\tchunked\t", " Chunked ", "CHUNKED"]
        .iter()
        .enumerate()
    {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(
            format!(
                "POST /demo/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:{te}\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let response = conn.read_response(IO_TIMEOUT).await.expect("response");
        assert_eq!(response.status, 200, "{te:?}");
        let received = up.wait_for(i + 1).await;
        let r = &received[i];
        assert_eq!(r.body, b"hello world", "{te:?}");
        assert_eq!(r.header("content-length"), Some("11"), "{te:?}");
        assert!(
            r.header("transfer-encoding").is_none(),
            "{te:?}: {}",
            r.head
        );
        assert!(
            !String::from_utf8_lossy(&r.raw)
                .to_ascii_lowercase()
                .contains("chunked"),
            "{te:?}: {:?}",
            String::from_utf8_lossy(&r.raw)
        );
    }
}

#[tokio::test]
async fn content_length_oddities_are_refused() {
    let (up, gw) = setup().await;
    let cases: &[(&str, &str)] = &[
        ("differing CL", "Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("CL list", "Content-Length: 5, 6\r\n"),
        ("negative", "Content-Length: -5\r\n"),
        ("plus", "Content-Length: +5\r\n"),
        ("hex", "Content-Length: 0x5\r\n"),
        ("spaces inside", "Content-Length: 5 5\r\n"),
        ("overflow", "Content-Length: 99999999999999999999999\r\n"),
        ("empty", "Content-Length: \r\n"),
    ];
    for (name, headers) in cases {
        assert_refused(&gw, &up, name, &post(headers, "hello"), &[400]).await;
    }
}

/// Two equal `Content-Length` fields are folded to one by hyper before the gateway sees them;
/// that is unambiguous, so the request may be forwarded — but only with a single length.
#[tokio::test]
async fn identical_duplicate_content_length_is_refused_or_forwarded_once() {
    let (up, gw) = setup().await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(&post(
        "Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n",
        "hello",
    ))
    .await;
    let response = conn.read_response(IO_TIMEOUT).await.expect("response");
    match response.status {
        400 => assert_eq!(up.count(), 0),
        200 => {
            let r = up.only();
            assert_eq!(r.headers_named("content-length"), vec!["5"]);
            assert_eq!(r.body, b"hello");
        }
        other => panic!("unexpected status {other}"),
    }
}

#[tokio::test]
async fn chunk_size_oddities_are_refused() {
    let (up, gw) = setup().await;
    let cases: &[(&str, &str)] = &[
        ("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("overflow", "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ("missing CRLF after data", "5\r\nhelloXX0\r\n\r\n"),
        ("bare LF in chunk line", "5\nhello\r\n0\r\n\r\n"),
        ("negative", "-5\r\nhello\r\n0\r\n\r\n"),
        ("not hex", "g\r\nhello\r\n0\r\n\r\n"),
        ("bare CR", "5\rhello\r\n0\r\n\r\n"),
    ];
    for (name, body) in cases {
        assert_refused(
            &gw,
            &up,
            name,
            &post("Transfer-Encoding: chunked\r\n", body),
            &[400],
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_heads_are_refused() {
    let (up, gw) = setup().await;
    let cases: &[(&str, &[u8])] = &[
        ("bare CR in header", b"GET /demo/x HTTP/1.1\r\nHost: localhost\rX-A: 1\r\n\r\n"),
        ("NUL in header value", b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n"),
        ("control char in value", b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nX-A: a\x01b\r\n\r\n"),
        ("invalid method", b"G@T /demo/x HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("space in header name", b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nX A: 1\r\n\r\n"),
        ("HTTP/1.0 with TE", b"POST /demo/x HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("bad version", b"GET /demo/x HTTP/1.2\r\nHost: localhost\r\n\r\n"),
        ("header without colon", b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nX-A\r\n\r\n"),
    ];
    for (name, raw) in cases {
        // Some of these hyper refuses with 400 (parse error), some it may refuse with 505.
        assert_refused(&gw, &up, name, raw, &[400, 505, 501]).await;
    }
}

/// Bare LF line endings in the head: hyper (httparse) accepts them, as RFC 9112 §2.2 allows.
/// What matters is that the upstream gets a clean CRLF head, not the client's bytes.
#[tokio::test]
async fn bare_lf_head_is_reframed_with_crlf() {
    let (up, gw) = setup().await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /demo/lf HTTP/1.1\nHost: localhost\nConnection: close\n\n")
        .await;
    let response = conn.read_response(IO_TIMEOUT).await.expect("response");
    match response.status {
        400 => assert_eq!(up.count(), 0),
        200 => {
            let r = up.only();
            assert_eq!(r.target, "/demo/lf");
            let raw = String::from_utf8_lossy(&r.raw).into_owned();
            assert!(
                !raw.replace("\r\n", "").contains('\n'),
                "bare LF forwarded: {raw:?}"
            );
        }
        other => panic!("unexpected status {other}"),
    }
}

/// A pipelined second request behind a refused one is never processed.
#[tokio::test]
async fn pipelined_request_after_refusal_is_dropped() {
    let (up, gw) = setup().await;
    let raw = b"POST /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /demo/y HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(raw).await;
    let rest = conn.read_to_end(IO_TIMEOUT).await;
    let text = String::from_utf8_lossy(&rest);
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response expected: {text}"
    );
    // The gateway's head scanner refuses CL+TE (hyper alone would fold it to chunked).
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

/// CL+TE on a later pipelined request, its head split across writes: the earlier requests are
/// answered, that one is refused, the connection closes, and nothing after it goes upstream.
#[tokio::test]
async fn content_length_with_transfer_encoding_on_a_later_pipelined_request() {
    let (up, gw) = setup().await;
    let mut conn = RawConn::connect(gw.addr).await;
    let first = "GET /demo/a HTTP/1.1\r\nHost: localhost\r\n\r\n\
        POST /demo/b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
        POST /demo/c HTTP/1.1\r\nHost: localhost\r\nconTENT-length: 60\r\nTransfer-";
    let rest = format!("encoding: chunked\r\n\r\n{SMUGGLED}");
    conn.send(first.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.send(rest.as_bytes()).await;
    for expected in [200, 200, 400] {
        let response = conn.read_response(IO_TIMEOUT).await;
        assert_eq!(
            response.as_ref().map(|r| r.status),
            Some(expected),
            "{response:?}"
        );
    }
    assert!(conn.closed_within(Duration::from_secs(3)).await);
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/demo/a", "/demo/b"]);
}

/// A request with a body that the client never finishes is not forwarded at all.
#[tokio::test]
async fn truncated_body_is_not_forwarded() {
    let (up, gw) = setup().await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(&post("Content-Length: 100\r\n", "only-part"))
        .await;
    conn.stream.shutdown_write().await;
    let _ = conn.read_to_end(Duration::from_secs(3)).await;
    assert_eq!(up.count(), 0);
    assert_eq!(up.total_bytes(), 0);
}

trait ShutdownWrite {
    async fn shutdown_write(&mut self);
}

impl ShutdownWrite for tokio::net::TcpStream {
    async fn shutdown_write(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.shutdown().await;
    }
}

/// Streamed routes re-chunk the body: extensions and trailers never reach the upstream.
#[tokio::test]
async fn streamed_chunked_body_is_rechunked_cleanly() {
    let (up, gw) = setup().await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /stream/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=evil\r\nhello\r\n0\r\nX-Trailer: evil\r\n\r\n")
        .await;
    let r = conn.read_response(IO_TIMEOUT).await.expect("response");
    assert_eq!(r.status, 200);
    let got = up.only();
    assert_eq!(got.body, b"hello");
    let raw = String::from_utf8_lossy(&got.raw).to_ascii_lowercase();
    assert!(!raw.contains("evil"), "{raw:?}");
    assert_eq!(
        got.headers_named("transfer-encoding").len() + got.headers_named("content-length").len(),
        1,
        "{raw:?}"
    );
}

/// A broken chunked body on a streamed route never becomes a complete upstream request.
#[tokio::test]
async fn broken_streamed_body_is_never_complete_upstream() {
    let (up, gw) = setup().await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /stream/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\nGET /demo/admin/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let all = conn.read_to_end(IO_TIMEOUT).await;
    let text = String::from_utf8_lossy(&all);
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.matches("HTTP/1.1 ").count() <= 1, "{text}");
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

#[tokio::test]
async fn http09_and_garbage_are_never_forwarded() {
    let (up, gw) = setup().await;
    for raw in [
        &b"GET /demo/x\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05hello",
        b"PRI * HTTP/1.1\r\n\r\n",
        b"GET /demo/x HTTP/1.1 extra\r\nHost: localhost\r\n\r\n",
        b"GET  /demo/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(raw).await;
        let all = conn.read_to_end(Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&all);
        assert!(!text.starts_with("HTTP/1.1 200"), "{raw:?}: {text}");
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}
