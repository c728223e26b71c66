//! HTTP/2 (h2c prior knowledge): stream limits, floods, malformed requests. Well-formed traffic
//! uses hyper's client; attacks are written as raw frames.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use penghubung_e2e::h2raw::{self, *};
use penghubung_e2e::{h2c, Behaviour, Cfg, Gateway, Upstream, IO_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

type Frame = (u8, u8, u32, Vec<u8>);

const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;

struct Raw {
    rd: OwnedReadHalf,
    wr: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
    /// The server's first SETTINGS payload.
    settings: Vec<u8>,
}

impl Raw {
    /// Connects, exchanges prefaces and acknowledges the server's SETTINGS.
    async fn open(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (rd, mut wr) = stream.into_split();
        wr.write_all(PREFACE).await.unwrap();
        wr.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        let mut raw = Raw {
            rd,
            wr: Some(wr),
            buf: Vec::new(),
            settings: Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let frames = h2raw::parse(&raw.buf);
            if let Some((_, _, _, payload)) =
                frames.iter().find(|f| f.0 == SETTINGS && f.1 & ACK == 0)
            {
                raw.settings = payload.clone();
                break;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, raw.rd.read(&mut chunk))
                .await
                .expect("server SETTINGS")
                .unwrap();
            assert!(n > 0, "closed before SETTINGS");
            raw.buf.extend_from_slice(&chunk[..n]);
        }
        raw.buf.clear();
        raw.send(&frame(SETTINGS, ACK, 0, &[])).await;
        raw
    }

    fn setting(&self, id: u16) -> Option<u32> {
        self.settings.chunks(6).find_map(|c| {
            (u16::from_be_bytes([c[0], c[1]]) == id)
                .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        match &mut self.wr {
            Some(wr) => wr.write_all(bytes).await.is_ok(),
            None => false,
        }
    }

    /// Sends `bytes` from a separate task (the server may stop reading); returns at once.
    fn flood(&mut self, bytes: Vec<u8>) -> tokio::task::JoinHandle<()> {
        let mut wr = self.wr.take().unwrap();
        tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            // Keep the write half open until the test ends.
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
    }

    /// Keeps sending `unit` until the connection fails (from a separate task).
    fn flood_forever(&mut self, unit: Vec<u8>) -> tokio::task::JoinHandle<()> {
        let mut wr = self.wr.take().unwrap();
        let chunk = unit.repeat(1000);
        tokio::spawn(async move { while wr.write_all(&chunk).await.is_ok() {} })
    }

    /// Reads frames for up to `limit` (stops early on close or on GOAWAY).
    async fn frames(&mut self, limit: Duration) -> (Vec<Frame>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = vec![0u8; 256 * 1024];
        let mut frames = Vec::new();
        let closed = loop {
            // Parse complete frames incrementally; keep the partial tail.
            let parsed = h2raw::parse(&self.buf);
            let used: usize = parsed.iter().map(|f| 9 + f.3.len()).sum();
            self.buf.drain(..used);
            let goaway_seen = parsed.iter().any(|f| f.0 == GOAWAY);
            frames.extend(parsed);
            if goaway_seen {
                break false;
            }
            match tokio::time::timeout_at(deadline, self.rd.read(&mut chunk)).await {
                Err(_) => break false,
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        (frames, closed)
    }
}

impl Raw {
    /// Reads until stream `stream` is finished (RST or END_STREAM), GOAWAY, close or `limit`.
    async fn outcome(&mut self, stream: u32, limit: Duration) -> (Vec<Frame>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut frames: Vec<Frame> = Vec::new();
        let closed = loop {
            let parsed = h2raw::parse(&self.buf);
            let used: usize = parsed.iter().map(|f| 9 + f.3.len()).sum();
            self.buf.drain(..used);
            frames.extend(parsed);
            let done = frames.iter().any(|f| {
                f.0 == GOAWAY
                    || (f.2 == stream
                        && (f.0 == RST_STREAM
                            || (f.1 & END_STREAM != 0 && (f.0 == HEADERS || f.0 == DATA))))
            });
            if done {
                break false;
            }
            match tokio::time::timeout_at(deadline, self.rd.read(&mut chunk)).await {
                Err(_) => break false,
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        (frames, closed)
    }
}

fn goaway(frames: &[Frame]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == GOAWAY)
        .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
}

fn rst(frames: &[Frame], stream: u32) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == RST_STREAM && f.2 == stream)
        .map(|f| u32::from_be_bytes([f.3[0], f.3[1], f.3[2], f.3[3]]))
}

/// `:status 200` is HPACK static index 8, so a 200 response block starts with 0x88.
fn answered_200(frames: &[Frame], stream: u32) -> bool {
    frames
        .iter()
        .any(|f| f.0 == HEADERS && f.2 == stream && f.3.first() == Some(&0x88))
}

fn answered_non_200(frames: &[Frame], stream: u32) -> bool {
    frames
        .iter()
        .any(|f| f.0 == HEADERS && f.2 == stream && f.3.first() != Some(&0x88))
}

/// Refused: no 200, and some sign of refusal (RST, GOAWAY, error response or close).
fn assert_refused(name: &str, frames: &[Frame], closed: bool, stream: u32) {
    assert!(!answered_200(frames, stream), "{name}: answered 200");
    assert!(
        rst(frames, stream).is_some()
            || goaway(frames).is_some()
            || answered_non_200(frames, stream)
            || closed,
        "{name}: no refusal seen: {:?}",
        frames.iter().map(|f| (f.0, f.2)).collect::<Vec<_>>()
    );
}

async fn setup(cfg: impl FnOnce(Cfg) -> Cfg, behaviour: Behaviour) -> (Upstream, Gateway) {
    let up = Upstream::start("a", behaviour).await;
    let gw = Gateway::start(&cfg(Cfg::new(&[up.addr])).render()).await;
    (up, gw)
}

fn get_block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    request_block("GET", path, "localhost", extra)
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    let r = h2c(
        gw.addr,
        http::Request::get("http://localhost/demo/x?q=1")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(&r.body()[..], b"a");
    assert!(r.headers().contains_key("x-penghubung-exchange-id"));
    let r = h2c(
        gw.addr,
        http::Request::post("http://localhost/demo/y")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.wait_for(2).await;
    assert!(
        got[0].head.starts_with("GET /demo/x?q=1 HTTP/1.1\r\n"),
        "{}",
        got[0].head
    );
    assert_eq!(got[0].header("x-forwarded-host"), Some("localhost"));
    assert!(got[1].head.starts_with("POST /demo/y HTTP/1.1\r\n"));
    assert_eq!(got[1].body, b"payload");
    assert_eq!(got[1].header("content-length"), Some("7"));
    assert!(got[1].header("transfer-encoding").is_none());
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused() {
    let (up, gw) = setup(
        |c| {
            c.limit("h2_max_concurrent_streams = 4")
                .upstream("retries = 0")
                .upstream("response_head_timeout_ms = 5000")
        },
        Behaviour::Hang,
    )
    .await;
    let mut h2 = Raw::open(gw.addr).await;
    assert_eq!(
        h2.setting(0x3),
        Some(4),
        "MAX_CONCURRENT_STREAMS advertised"
    );
    let mut burst = Vec::new();
    for i in 0..10u32 {
        burst.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1 + 2 * i,
            &get_block("/demo/x", &[]),
        ));
    }
    h2.send(&burst).await;
    up.wait_for(4).await;
    let (frames, _) = h2.frames(Duration::from_secs(1)).await;
    let refused = (0..10u32)
        .filter(|i| rst(&frames, 1 + 2 * i).is_some())
        .count();
    assert!(
        refused >= 6 || goaway(&frames).is_some(),
        "only {refused} streams refused: {:?}",
        frames.iter().map(|f| (f.0, f.2)).collect::<Vec<_>>()
    );
    for i in 0..10u32 {
        if let Some(code) = rst(&frames, 1 + 2 * i) {
            assert!(
                code == REFUSED_STREAM || code == PROTOCOL_ERROR,
                "code {code}"
            );
        }
    }
    assert_eq!(
        up.count(),
        4,
        "more streams than allowed reached the upstream"
    );
}

#[tokio::test]
async fn rapid_reset_gets_goaway() {
    let (_up, gw) = setup(|c| c, Behaviour::Delay(Duration::from_millis(200))).await;
    let mut h2 = Raw::open(gw.addr).await;
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 1 + 2 * i;
        burst.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &get_block("/demo/x", &[]),
        ));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let _writer = h2.flood(burst);
    let (frames, closed) = h2.frames(Duration::from_secs(5)).await;
    assert!(
        goaway(&frames).is_some() || closed,
        "rapid reset tolerated: {} frames",
        frames.len()
    );
    // The gateway is fine for everyone else.
    let r = h2c(
        gw.addr,
        http::Request::get("http://localhost/demo/x")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn continuation_flood_is_refused() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    let mut h2 = Raw::open(gw.addr).await;
    let mut burst = frame(HEADERS, END_STREAM, 1, &get_block("/demo/x", &[]));
    let mut piece = Vec::new();
    literal("x-flood", &"f".repeat(100), &mut piece);
    for _ in 0..20_000 {
        burst.extend(frame(CONTINUATION, 0, 1, &piece));
    }
    let _writer = h2.flood(burst);
    let (frames, closed) = h2.frames(Duration::from_secs(5)).await;
    assert_refused("continuation flood", &frames, closed, 1);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn huge_header_lists_are_refused() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    // One 100 KiB value over HEADERS + CONTINUATION.
    let mut h2 = Raw::open(gw.addr).await;
    let block = get_block("/demo/x", &[("x-big", &"b".repeat(100 * 1024))]);
    let mut pieces = block.chunks(16_000);
    let mut bytes = frame(HEADERS, END_STREAM, 1, pieces.next().unwrap());
    let rest: Vec<&[u8]> = pieces.collect();
    for (i, p) in rest.iter().enumerate() {
        let flags = if i + 1 == rest.len() { END_HEADERS } else { 0 };
        bytes.extend(frame(CONTINUATION, flags, 1, p));
    }
    let _writer = h2.flood(bytes);
    let (frames, closed) = h2.frames(Duration::from_secs(3)).await;
    assert_refused("100 KiB header", &frames, closed, 1);

    // HPACK bomb: one 4 KiB entry in the dynamic table, referenced 1000 times (4 MiB decoded
    // from a 5 KiB block).
    let mut h2 = Raw::open(gw.addr).await;
    let mut block = get_block("/demo/x", &[]);
    block.push(0x40); // literal with incremental indexing, new name
    hpack_int(7, 7, 0, &mut block);
    block.extend_from_slice(b"x-bomb1");
    hpack_int(4000, 7, 0, &mut block);
    block.extend_from_slice(&[b'a'; 4000]);
    block.extend(std::iter::repeat_n(0x80 | 62, 1000)); // indexed: dynamic entry 62
    h2.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await;
    let (frames, closed) = h2.outcome(1, Duration::from_secs(3)).await;
    assert_refused("hpack bomb", &frames, closed, 1);
    assert_eq!(up.count(), 0);
}

/// A client flooding PINGs without reading the answers: the gateway's writes block and the
/// send deadline cuts the connection (memory stays bounded: h2 keeps one pending PONG).
#[tokio::test]
async fn ping_flood_from_a_client_that_does_not_read_is_cut() {
    let (_up, gw) = setup(|c| c.limit("send_timeout_secs = 1"), Behaviour::Ok).await;
    let mut h2 = Raw::open(gw.addr).await;
    let writer = h2.flood_forever(frame(PING, 0, 0, &[7; 8]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (frames, closed) = h2.frames(Duration::from_secs(20)).await;
    writer.abort();
    assert!(
        goaway(&frames).is_some() || closed,
        "ping flood tolerated ({} frames)",
        frames.len()
    );
}

#[tokio::test]
async fn settings_flood_from_a_client_that_does_not_read_is_cut() {
    let (_up, gw) = setup(|c| c.limit("send_timeout_secs = 1"), Behaviour::Ok).await;
    let mut h2 = Raw::open(gw.addr).await;
    let writer = h2.flood_forever(frame(SETTINGS, 0, 0, &[0x00, 0x03, 0x00, 0x00, 0x00, 0x64]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (frames, closed) = h2.frames(Duration::from_secs(20)).await;
    writer.abort();
    assert!(
        goaway(&frames).is_some() || closed,
        "settings flood tolerated ({} frames)",
        frames.len()
    );
}

/// A client that floods PINGs (or SETTINGS) *and* reads every ACK: hyper/h2 would answer
/// forever; the gateway's frame scanner (server/h2flood.rs) closes the connection once the
/// control-frame budget (`limits.h2_max_control_frames_per_sec`) is exceeded.
#[tokio::test]
async fn control_frame_flood_is_cut() {
    let (_up, gw) = setup(|c| c, Behaviour::Ok).await;
    for unit in [
        frame(PING, 0, 0, &[7; 8]),
        frame(SETTINGS, 0, 0, &[0x00, 0x03, 0x00, 0x00, 0x00, 0x64]),
    ] {
        let mut h2 = Raw::open(gw.addr).await;
        h2.send(&unit.repeat(100_000)).await;
        let (frames, closed) = h2.frames(Duration::from_secs(10)).await;
        assert!(
            goaway(&frames).is_some() || closed,
            "flood tolerated ({} frames)",
            frames.len()
        );
    }
    // Both closures count as connection errors.
    let mut errors = 0;
    for _ in 0..40 {
        let (_, metrics) = gw.admin_get("/metrics").await;
        errors = metrics
            .lines()
            .filter(|l| l.starts_with("penghubung_connection_errors_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if errors >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(errors, 2);
}

#[tokio::test]
async fn content_length_disagreeing_with_data_is_refused() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    for (name, declared, data) in [("short", "10", &b"abc"[..]), ("long", "2", &b"abcdef"[..])] {
        let mut h2 = Raw::open(gw.addr).await;
        let block = request_block(
            "POST",
            "/demo/x",
            "localhost",
            &[("content-length", declared)],
        );
        let mut bytes = frame(HEADERS, END_HEADERS, 1, &block);
        bytes.extend(frame(DATA, END_STREAM, 1, data));
        h2.send(&bytes).await;
        let (frames, closed) = h2.outcome(1, Duration::from_secs(2)).await;
        assert_refused(name, &frames, closed, 1);
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

#[tokio::test]
async fn connection_specific_headers_are_refused() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    let cases: &[(&str, &str)] = &[
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("upgrade", "h2c"),
        ("te", "gzip"),
        ("X-Upper", "1"),
        ("host", "other.example"),
        ("x-inject", "a\r\nx-injected: 1"),
        ("x-inject", "a\nb"),
        ("x-nul", "a\u{0}b"),
        ("x bad", "1"),
        ("x:colon", "1"),
        ("", "empty-name"),
    ];
    for (name, value) in cases {
        let mut h2 = Raw::open(gw.addr).await;
        h2.send(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block("/demo/x", &[(name, value)]),
        ))
        .await;
        let (frames, closed) = h2.outcome(1, Duration::from_secs(2)).await;
        assert_refused(name, &frames, closed, 1);
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    // Control: `te: trailers` is the one allowed value.
    let mut h2 = Raw::open(gw.addr).await;
    h2.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block("/demo/x", &[("te", "trailers")]),
    ))
    .await;
    let (frames, _) = h2.outcome(1, Duration::from_secs(2)).await;
    assert!(answered_200(&frames, 1));
}

#[tokio::test]
async fn malformed_pseudo_headers_are_refused() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    let blocks: Vec<(&str, Vec<u8>)> = vec![
        (
            "relative :path",
            request_block("GET", "demo/x", "localhost", &[]),
        ),
        ("empty :path", request_block("GET", "", "localhost", &[])),
        (
            "unknown pseudo",
            request_block("GET", "/demo/x", "localhost", &[(":evil", "1")]),
        ),
        (
            "duplicate :path",
            request_block("GET", "/demo/x", "localhost", &[(":path", "/demo/admin/x")]),
        ),
        (
            "bad method",
            request_block("G T", "/demo/x", "localhost", &[]),
        ),
        ("pseudo after regular", {
            let mut b = Vec::new();
            literal(":method", "GET", &mut b);
            literal(":scheme", "http", &mut b);
            literal("x-a", "1", &mut b);
            literal(":authority", "localhost", &mut b);
            literal(":path", "/demo/x", &mut b);
            b
        }),
    ];
    for (name, block) in blocks {
        let mut h2 = Raw::open(gw.addr).await;
        h2.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
            .await;
        let (frames, closed) = h2.outcome(1, Duration::from_secs(2)).await;
        assert_refused(name, &frames, closed, 1);
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

/// RFC 9113 §8.2.3: HTTP/2 may split `cookie` into several fields; going to HTTP/1.1 they must
/// be joined with "; " into one field.
#[tokio::test]
async fn split_cookies_are_joined_for_an_http1_upstream() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    let r = h2c(
        gw.addr,
        http::Request::get("http://localhost/demo/x")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.only();
    assert_eq!(
        got.headers_named("cookie"),
        vec!["a=1; b=2"],
        "{}",
        got.head
    );
}

#[tokio::test]
async fn http2_upstream_gets_clean_requests_from_h1_and_h2_clients() {
    let up = penghubung_e2e::H2Upstream::start().await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .upstream("protocol = \"http2\"")
            .render(),
    )
    .await;
    // HTTP/1.1 client with hop-by-hop headers and a chunked body.
    let raw = b"POST /demo/one HTTP/1.1\r\nHost: localhost\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let r = penghubung_e2e::exchange(gw.addr, raw)
        .await
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"h2");
    // HTTP/2 client with `te: trailers` (allowed end to end on HTTP/2).
    let r = h2c(
        gw.addr,
        http::Request::get("http://localhost/demo/two")
            .header("te", "trailers")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.requests();
    assert_eq!(got.len(), 2);
    for g in &got {
        assert_eq!(g.version, http::Version::HTTP_2);
        for name in [
            "connection",
            "x-hop",
            "transfer-encoding",
            "keep-alive",
            "upgrade",
        ] {
            assert!(!g.headers.contains_key(name), "{name}: {:?}", g.headers);
        }
        assert!(g.headers.contains_key("x-penghubung-exchange-id"));
    }
    assert!(got[0].uri.ends_with("/demo/one"), "{}", got[0].uri);
    assert_eq!(got[0].method, "POST");
    assert_eq!(&got[0].body[..], b"abc");
    assert!(
        !got[0].headers.contains_key("te"),
        "TE from an HTTP/1.1 client is hop-by-hop"
    );
    assert_eq!(
        got[1].headers.get("te").map(|v| v.as_bytes()),
        Some(&b"trailers"[..])
    );
}

#[tokio::test]
async fn h2_requests_get_the_same_limits() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    let send = |request: http::Request<Full<Bytes>>| async move {
        h2c(gw.addr, request).await.map(|r| r.status().as_u16())
    };
    let big_body = http::Request::post("http://localhost/small/x")
        .body(Full::new(Bytes::from(vec![b'x'; 2000])))
        .unwrap();
    assert_eq!(send(big_body).await.unwrap(), 413);
    let long_uri = format!("http://localhost/demo/{}", "u".repeat(8 * 1024));
    let long = http::Request::get(long_uri.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(long).await.unwrap(), 414);
    let mut many = http::Request::get("http://localhost/demo/x");
    for i in 0..120 {
        many = many.header(format!("x-h{i}"), "1");
    }
    assert_eq!(
        send(many.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap(),
        431
    );
    let denied = http::Request::get("http://localhost/demo/%61dmin/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(denied).await.unwrap(), 403);
    let ambiguous = http::Request::get("http://localhost/demo/a%2fb")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(ambiguous).await.unwrap(), 400);
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

/// RFC 9113 §8.2.1: a field value with leading or trailing whitespace is malformed; the stream
/// is refused and nothing is forwarded.
#[tokio::test]
async fn padded_field_values_are_refused() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    for value in [" x", "x ", "\tx", "x\t", " "] {
        let mut h2 = Raw::open(gw.addr).await;
        h2.send(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block("/demo/x", &[("x-pad", value)]),
        ))
        .await;
        let (frames, closed) = h2.outcome(1, Duration::from_secs(2)).await;
        assert_refused(&format!("{value:?}"), &frames, closed, 1);
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    // Control: whitespace inside a value is fine.
    let mut h2 = Raw::open(gw.addr).await;
    h2.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block("/demo/x", &[("x-pad", "a b")]),
    ))
    .await;
    let (frames, _) = h2.outcome(1, Duration::from_secs(2)).await;
    assert!(answered_200(&frames, 1));
}

/// Trailers may not carry pseudo-header fields, framing, routing, authentication or identity
/// fields, nor padded values: such a request is refused before anything reaches the upstream.
#[tokio::test]
async fn malformed_request_trailers_are_refused() {
    let (up, gw) = setup(|c| c, Behaviour::Ok).await;
    let post = |trailer: (&str, &str)| {
        let mut bytes = frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/demo/x", "localhost", &[]),
        );
        bytes.extend(frame(DATA, 0, 1, b"hi"));
        let mut block = Vec::new();
        literal(trailer.0, trailer.1, &mut block);
        bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
        bytes
    };
    for trailer in [
        ("content-length", "2"),
        ("host", "other.example"),
        ("authorization", "Bearer x"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-penghubung-consumer-opd", "bkd"),
        ("x-sum", " padded"),
        // RFC 9113 §8.1: pseudo-header fields in trailers (h2 itself would drop them silently).
        (":path", "/demo/admin/x"),
        (":method", "DELETE"),
    ] {
        let mut h2 = Raw::open(gw.addr).await;
        h2.send(&post(trailer)).await;
        let (frames, closed) = h2.outcome(1, Duration::from_secs(2)).await;
        assert_refused(trailer.0, &frames, closed, 1);
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    let mut h2 = Raw::open(gw.addr).await;
    h2.send(&post(("x-sum", "abc"))).await;
    let (frames, _) = h2.outcome(1, Duration::from_secs(2)).await;
    assert!(answered_200(&frames, 1));
    assert_eq!(up.only().body, b"hi");
}

/// Response trailers reach the client without fields that may not be trailers or that belong
/// to the gateway.
#[tokio::test]
async fn response_trailers_are_cleaned() {
    let (_up, gw) = setup(
        |c| c,
        Behaviour::Raw {
            bytes: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n2\r\nok\r\n0\r\ngrpc-status: 0\r\nset-cookie: a=1\r\nx-penghubung-exchange-id: spoof\r\n\r\n".to_vec(),
            close: false,
        },
    )
    .await;
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(gw.addr).await.unwrap());
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            http::Request::get("http://localhost/demo/x")
                .header("te", "trailers")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let collected = tokio::time::timeout(
        IO_TIMEOUT,
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .unwrap()
    .unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(collected.to_bytes(), "ok");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert!(trailers.get("set-cookie").is_none(), "{trailers:?}");
    assert!(
        trailers.get("x-penghubung-exchange-id").is_none(),
        "{trailers:?}"
    );
}
