//! Tests of the parent module.

use super::*;

const LIMIT: usize = 64 * 1024;

fn config(h2: bool) -> ScanConfig {
    ScanConfig {
        h2,
        head_limit: LIMIT,
        h2_control_frames_per_sec: 100,
    }
}

/// Feeds `input` whole, then split at every position (two reads), then byte by byte; all
/// must agree. Returns the finding and whether the scanner is still following the input.
fn scan(input: &[u8]) -> (Option<u64>, bool) {
    let mut whole = Scanner::new(config(true));
    let expected = whole.feed(input, 1).cl_te_head;
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        let mut s = Scanner::new(config(true));
        let first = s.feed(a, 1).cl_te_head;
        let second = s.feed(b, 1).cl_te_head;
        assert_eq!(first.or(second), expected, "split at {split}");
        assert!(first.is_none() || second.is_none());
        assert_eq!(s.is_off(), whole.is_off(), "split at {split}");
    }
    let mut bytewise = Scanner::new(config(true));
    let mut found = None;
    for b in input {
        found = found.or(bytewise.feed(std::slice::from_ref(b), 1).cl_te_head);
    }
    assert_eq!(found, expected);
    (expected, !whole.is_off())
}

#[test]
fn content_length_with_transfer_encoding_both_orders() {
    for headers in [
        "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
        "content-LENGTH: 5\r\ntransfer-encoding: gzip, chunked\r\n",
        "TRANSFER-ENCODING:chunked\r\ncontent-length:x\r\n",
    ] {
        let raw = format!(
            "POST /x HTTP/1.1\r\nHost: a\r\n{headers}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        assert_eq!(scan(raw.as_bytes()), (Some(0), false), "{headers}");
    }
}

#[test]
fn bare_lf_heads_are_followed() {
    let raw = b"\r\n\nPOST /x HTTP/1.1\nHost: a\ncontent-length: 3\n\nabcGET / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 1\n\n";
    assert_eq!(scan(raw), (Some(1), false));
}

#[test]
fn pipelined_requests_are_counted() {
    let mut raw = Vec::new();
    raw.extend_from_slice(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    raw.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwxyz");
    raw.extend_from_slice(b"POST /c HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    raw.extend_from_slice(
        b"POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(scan(&raw), (None, true));
    // A later request carries both.
    raw.extend_from_slice(
        b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(scan(&raw), (Some(4), false));
}

#[test]
fn body_bytes_are_not_heads() {
    // The body looks like a CL+TE head; it is data.
    let body = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let raw = format!(
        "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET /y HTTP/1.1\r\n\r\n",
        body.len()
    );
    assert_eq!(scan(raw.as_bytes()), (None, true));
    let raw = format!(
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\nGET /y HTTP/1.1\r\n\r\n",
        body.len()
    );
    assert_eq!(scan(raw.as_bytes()), (None, true));
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let raw = b"POST /x HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
        A;name=value;x=\"q\"\r\n0123456789\r\n\
        1 \t;ext\r\nZ\r\n\
        0;last\r\nX-Trailer: 1\r\nContent-Length: 9\r\n\r\n\
        POST /y HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n";
    assert_eq!(scan(raw), (Some(1), false));
}

#[test]
fn transfer_encoding_on_a_later_request() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
        GET / HTTP/1.1\r\nHost: a\r\n\r\n\
        POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
        POST / HTTP/1.1\r\nContent-Length: 3\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(scan(raw), (Some(3), false));
}

#[test]
fn lookalike_names_are_not_framing_fields() {
    let raw = b"POST / HTTP/1.1\r\nContent-Lengthx: 3\r\nX-Transfer-Encoding: chunked\r\n\
        Transfer-Encodin: chunked\r\nContent-Length: 2\r\n\r\nab\
        GET / HTTP/1.1\r\nX: Transfer-Encoding: chunked\r\n\r\n";
    assert_eq!(scan(raw), (None, true));
}

#[test]
fn unparseable_input_stops_the_scanner() {
    for raw in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nNoColon\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;ext\nab",
        b"\rGET / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(scan(raw), (None, false), "{}", String::from_utf8_lossy(raw));
    }
    // Equal duplicate lengths and whitespace around the value are fine (as in hyper).
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length:\t2 \r\n\r\nab";
    assert_eq!(scan(raw), (None, true));
}

#[test]
fn head_limit_stops_the_scanner() {
    let mut s = H1Scanner::new(64);
    let head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100));
    assert_eq!(s.feed(head.as_bytes()), None);
    assert!(s.is_off());
    let mut s = H1Scanner::new(64);
    s.feed(b"GET / HTTP/1.1\r\nX: 1\r\n\r\n");
    assert!(!s.is_off(), "a head within the limit");
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn preface_switches_to_h2_and_floods_are_spotted() {
    let ping = frame(FRAME_PING, 0, 0, &[7; 8]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    // The preface split at every position, then 100 PINGs within one second: tolerated.
    for split in 0..input.len() {
        let mut s = Scanner::new(config(true));
        let (a, b) = input.split_at(split);
        assert_eq!(s.feed(a, 5_000), Findings::default());
        assert_eq!(s.feed(b, 5_000), Findings::default());
        assert!(matches!(s.mode, Mode::H2(_)));
    }
    let mut s = Scanner::new(config(true));
    s.feed(&input, 5_000);
    for _ in 0..99 {
        assert!(!s.feed(&ping, 5_100).h2_flood);
    }
    // ACKs, DATA and HEADERS are not counted; payloads are skipped (even ones that look
    // like PING headers).
    let mut other = frame(FRAME_PING, FLAG_ACK, 0, &[0; 8]);
    other.extend(frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]));
    other.extend(frame(0x0, 0, 1, &ping.repeat(50)));
    other.extend(frame(0x1, 0x4, 3, &[0x82; 20]));
    for b in &other {
        assert!(!s.feed(std::slice::from_ref(b), 5_200).h2_flood);
    }
    assert!(s.feed(&ping, 5_300).h2_flood);
}

#[test]
fn control_frames_at_a_normal_rate_are_fine() {
    let mut s = Scanner::new(config(true));
    s.feed(PREFACE, 0);
    let ping = frame(FRAME_PING, 0, 0, &[1; 8]);
    let settings = frame(FRAME_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    // About 83 control frames per second, for a minute, spread evenly.
    for ms in (0..60_000u64).step_by(12) {
        let unit = if ms % 24 == 0 { &ping } else { &settings };
        assert!(!s.feed(unit, ms).h2_flood, "at {ms} ms");
    }
    // A burst above the budget within one second is not.
    let burst = ping.repeat(200);
    assert!(s.feed(&burst, 70_000).h2_flood);
}

#[test]
fn preface_lookalike_is_http1() {
    let raw = b"PRI * HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(scan(raw), (Some(0), false));
    // Without HTTP/2 the preface is just (bad) HTTP/1 input.
    let mut s = Scanner::new(config(false));
    assert_eq!(s.feed(PREFACE, 0), Findings::default());
}
