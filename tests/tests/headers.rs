//! Header hygiene in both directions: hop-by-hop, identity spoofing, exchange id, trace
//! context, `Expect`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use penghubung_e2e::{exchange, Behaviour, Cfg, Gateway, RawConn, Upstream, IO_TIMEOUT};

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).render()).await;
    (up, gw)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed() {
    let (up, gw) = setup().await;
    let raw = b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Secret, x-other\r\nConnection: x-third\r\nX-Secret: 1\r\nX-Other: 2\r\nX-Third: 3\r\nKeep-Alive: timeout=5\r\nTE: trailers, deflate\r\nTrailer: X-T\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Keep: yes\r\n\r\n";
    let response = exchange(gw.addr, raw).await.expect("response");
    assert_eq!(response.status, 200);
    let r = up.only();
    for name in [
        "connection",
        "x-secret",
        "x-other",
        "x-third",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "http2-settings",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(r.header(name).is_none(), "{name} forwarded:\n{}", r.head);
    }
    assert_eq!(r.header("x-keep"), Some("yes"));
}

#[tokio::test]
async fn connection_header_cannot_remove_gateway_headers() {
    let (up, gw) = setup().await;
    let raw = b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: x-penghubung-exchange-id, x-forwarded-for, forwarded, traceparent, x-forwarded-proto, host, content-length\r\n\r\n";
    let response = exchange(gw.addr, raw).await.expect("response");
    assert_eq!(response.status, 200);
    let r = up.only();
    let id = response.header("x-penghubung-exchange-id").expect("id");
    assert_eq!(r.header("x-penghubung-exchange-id"), Some(id));
    assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(r.header("forwarded").is_some(), "{}", r.head);
    assert!(r.header("traceparent").is_some(), "{}", r.head);
    assert_eq!(r.header("x-forwarded-proto"), Some("http"));
    assert!(r.header("host").is_some(), "{}", r.head);
}

#[tokio::test]
async fn identity_headers_are_replaced_by_the_gateways_own() {
    let (up, gw) = setup().await;
    let spoofed = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("Forwarded", "for=6.6.6.6;proto=https"),
        ("X-Real-IP", "6.6.6.6"),
        ("True-Client-IP", "6.6.6.6"),
        ("Client-IP", "6.6.6.6"),
        ("X-Client-IP", "6.6.6.6"),
        ("X-SSL-Client-DN", "CN=admin"),
        ("X-SSL-Client-Verify", "SUCCESS"),
        ("X-SSL-Client-Cert", "-----BEGIN"),
        ("X-Client-Cert", "abc"),
        ("X-Forwarded-Client-Cert", "Hash=abc"),
        ("X-Original-URL", "/demo/admin/x"),
        ("X-Rewrite-URL", "/demo/admin/x"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Penghubung-Exchange-Id", "spoofed-id"),
        ("X-Penghubung-Consumer-Opd", "bkd"),
        ("X-Penghubung-Anything", "x"),
    ];
    let mut raw = String::from("GET /demo/x HTTP/1.1\r\nHost: localhost\r\n");
    for (n, v) in spoofed {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let response = exchange(gw.addr, raw.as_bytes()).await.expect("response");
    assert_eq!(response.status, 200);
    let r = up.only();
    let head = r.head.to_ascii_lowercase();
    assert!(!head.contains("6.6.6.6"), "{}", r.head);
    assert!(!head.contains("evil.example"), "{}", r.head);
    assert!(!head.contains("admin"), "{}", r.head);
    assert!(!head.contains("delete"), "{}", r.head);
    assert!(!head.contains("spoofed-id"), "{}", r.head);
    for name in [
        "x-real-ip",
        "true-client-ip",
        "client-ip",
        "x-client-ip",
        "x-forwarded-port",
        "x-ssl-client-dn",
        "x-ssl-client-verify",
        "x-ssl-client-cert",
        "x-client-cert",
        "x-forwarded-client-cert",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-penghubung-consumer-opd",
        "x-penghubung-anything",
    ] {
        assert!(r.header(name).is_none(), "{name}:\n{}", r.head);
    }
    assert_eq!(r.headers_named("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(r.headers_named("x-forwarded-proto"), vec!["http"]);
    assert_eq!(r.headers_named("x-forwarded-host"), vec!["localhost"]);
    assert_eq!(r.headers_named("forwarded").len(), 1);
    assert!(r.header("forwarded").unwrap().contains("for=\"127.0.0.1\""));
    let id = response.header("x-penghubung-exchange-id").unwrap();
    assert_ne!(id, "spoofed-id");
    assert_eq!(r.headers_named("x-penghubung-exchange-id"), vec![id]);
    assert_eq!(r.method, "GET");
}

#[tokio::test]
async fn exchange_id_is_returned_forwarded_and_unique() {
    let (up, gw) = setup().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let response = exchange(
            gw.addr,
            b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let id = response
            .header("x-penghubung-exchange-id")
            .unwrap()
            .to_owned();
        assert!(is_uuid(&id), "{id}");
        ids.push(id);
    }
    let got = up.wait_for(3).await;
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.header("x-penghubung-exchange-id"), Some(ids[i].as_str()));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // Refusals carry one too.
    let refused = exchange(
        gw.addr,
        b"GET /demo/admin/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 403);
    assert!(is_uuid(refused.header("x-penghubung-exchange-id").unwrap()));
    assert!(refused
        .header("content-type")
        .unwrap()
        .starts_with("application/problem+json"));
}

fn parse_traceparent(v: &str) -> (String, String, String) {
    let p: Vec<&str> = v.split('-').collect();
    assert_eq!(p.len(), 4, "{v}");
    assert_eq!(p[0], "00");
    assert_eq!(p[1].len(), 32);
    assert_eq!(p[2].len(), 16);
    (p[1].into(), p[2].into(), p[3].into())
}

#[tokio::test]
async fn traceparent_is_continued_or_created() {
    let (up, gw) = setup().await;
    let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (i, tp) in [
        Some(sent),
        None,
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("garbage"),
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
    ]
    .iter()
    .enumerate()
    {
        let mut raw =
            String::from("GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(tp) = tp {
            raw.push_str(&format!("traceparent: {tp}\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(exchange(gw.addr, raw.as_bytes()).await.unwrap().status, 200);
        let r = &up.wait_for(i + 1).await[i];
        assert_eq!(r.headers_named("traceparent").len(), 1);
        let (trace, span, _) = parse_traceparent(r.header("traceparent").unwrap());
        assert_ne!(span, "0000000000000000");
        assert_ne!(trace, "00000000000000000000000000000000");
        if i == 0 {
            assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(span, "00f067aa0ba902b7", "the gateway is a new span");
        } else {
            assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "{tp:?}");
        }
    }
}

#[tokio::test]
async fn expect_100_continue_only_after_routing() {
    let (up, gw) = setup().await;
    // Allowed route: 100 first, then the final response once the body is sent.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let first = conn.read_response(IO_TIMEOUT).await.expect("100");
    assert_eq!(first.status, 100);
    conn.send(b"hello").await;
    let second = conn.read_response(IO_TIMEOUT).await.expect("final");
    assert_eq!(second.status, 200);
    let r = up.only();
    assert_eq!(r.body, b"hello");
    assert!(r.header("expect").is_none(), "{}", r.head);

    // Denied route: 403 straight away, no 100.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /demo/admin/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let first = conn.read_response(IO_TIMEOUT).await.expect("403");
    assert_eq!(first.status, 403);
    // Unknown host: 421, no 100.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /demo/x HTTP/1.1\r\nHost: nowhere.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(
        conn.read_response(IO_TIMEOUT).await.expect("421").status,
        421
    );
    // Body over the route limit: 413, no 100.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /small/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(
        conn.read_response(IO_TIMEOUT).await.expect("413").status,
        413
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn other_expectations_are_refused_with_417() {
    let (up, gw) = setup().await;
    for expect in ["200-ok", "100-continue, foo", "foo"] {
        let raw = format!(
            "POST /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: {expect}\r\nConnection: close\r\n\r\nhello"
        );
        let s = exchange(gw.addr, raw.as_bytes()).await.map(|r| r.status);
        assert_eq!(s, Some(417), "{expect}");
    }
    let dup = b"POST /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello";
    assert_eq!(exchange(gw.addr, dup).await.map(|r| r.status), Some(417));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn response_hop_by_hop_and_gateway_headers_are_removed() {
    let up = Upstream::start(
        "a",
        Behaviour::Raw {
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-secret-hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=99\r\nProxy-Authenticate: Basic\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Penghubung-Exchange-Id: spoof\r\nX-Penghubung-Consumer: evil\r\nX-Fine: 1\r\n\r\nok"
                .to_vec(),
            close: false,
        },
    )
    .await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).render()).await;
    let response = exchange(
        gw.addr,
        b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");
    for name in [
        "x-secret-hop",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "trailer",
        "upgrade",
        "x-penghubung-consumer",
    ] {
        assert!(
            response.header(name).is_none(),
            "{name}: {:?}",
            response.headers
        );
    }
    assert_eq!(response.header("x-fine"), Some("1"));
    let ids: Vec<_> = response
        .headers
        .iter()
        .filter(|(n, _)| n == "x-penghubung-exchange-id")
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(is_uuid(&ids[0].1));
    let _ = Duration::ZERO;
}

/// Over IPv6, `X-Forwarded-For` carries the bare address (what XFF parsers expect) and
/// `Forwarded` the quoted, bracketed form RFC 7239 requires.
#[tokio::test]
async fn ipv6_client_addresses_are_written_per_header_syntax() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let text = Cfg::new(&[up.addr]).render().replacen(
        "address = \"127.0.0.1:0\"",
        "address = \"[::1]:0\"",
        1,
    );
    let gw = Gateway::start(&text).await;
    assert!(gw.addr.is_ipv6());
    let response = exchange(
        gw.addr,
        b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(response.status, 200);
    let r = up.only();
    assert_eq!(r.header("x-forwarded-for"), Some("::1"), "{}", r.head);
    assert!(
        r.header("forwarded").unwrap().contains("for=\"[::1]\""),
        "{}",
        r.head
    );
}

/// HTTP/1.1 chunked trailers follow the same rules as HTTP/2 ones: a trailer section carrying
/// a field that may not be a trailer (or a client identity header) refuses the request with 400
/// and nothing reaches the upstream; an ordinary trailer passes.
#[tokio::test]
async fn malformed_h1_request_trailers_are_refused() {
    let (up, gw) = setup().await;
    let post = |trailer: &str| {
        format!(
            "POST /demo/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n{trailer}\r\n\r\n"
        )
    };
    for trailer in [
        "Content-Length: 2",
        "Transfer-Encoding: chunked",
        "Host: other.example",
        "X-Forwarded-For: 10.0.0.1",
        "X-Penghubung-Consumer-Opd: bkd",
    ] {
        let r = exchange(gw.addr, post(trailer).as_bytes()).await.unwrap();
        assert_eq!(r.status, 400, "{trailer}");
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    let r = exchange(gw.addr, post("X-Sum: abc").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.only().body, b"hi");
}

const FOREIGN_IDENTITY: &[(&str, &str)] = &[
    ("X-Remote-User", "admin"),
    ("Remote-User", "admin"),
    ("X-Authenticated-User", "admin"),
    ("X-Authenticated-Groups", "root"),
    ("X-Forwarded-User", "admin"),
    ("X-Auth-Request-User", "admin"),
    ("X-Auth-Request-Email", "admin@example"),
    ("X-Consumer-Username", "admin"),
    ("X-Consumer-Custom-Id", "admin"),
    ("X-Userinfo", "eyJzdWIiOiJhZG1pbiJ9"),
    (
        "X-JWT-Assertion",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
    ),
];

fn get_with(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut raw = String::from("GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

/// Identity headers that back ends behind other gateways trust never pass by default.
#[tokio::test]
async fn other_gateways_identity_headers_are_stripped_by_default() {
    let (up, gw) = setup().await;
    let r = exchange(gw.addr, &get_with(FOREIGN_IDENTITY))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let received = up.only();
    for (name, _) in FOREIGN_IDENTITY {
        assert!(
            received.header(name).is_none(),
            "{name}:\n{}",
            received.head
        );
    }
}

/// The list is configurable: it replaces the default.
#[tokio::test]
async fn the_identity_strip_list_is_configurable() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .tail("\n[headers]\nstrip_identity = [\"x-legacy-user\", \"x-sso-*\"]\nverified_peer_may_send = []\n")
            .render(),
    )
    .await;
    let sent = [
        ("X-Legacy-User", "admin"),
        ("X-SSO-Subject", "admin"),
        ("X-Remote-User", "kept"),
    ];
    let r = exchange(gw.addr, &get_with(&sent)).await.unwrap();
    assert_eq!(r.status, 200);
    let received = up.only();
    assert!(
        received.header("x-legacy-user").is_none(),
        "{}",
        received.head
    );
    assert!(
        received.header("x-sso-subject").is_none(),
        "{}",
        received.head
    );
    assert_eq!(received.header("x-remote-user"), Some("kept"));
}

/// Listener and service `response_headers` (e.g. HSTS) are added to answers and refusals,
/// replacing what the upstream sent; the service's win over the listener's.
#[tokio::test]
async fn configured_response_headers_are_added() {
    let up = Upstream::start(
        "a",
        Behaviour::Raw {
            bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-frame-options: ALLOWALL\r\n\r\nok"
                .to_vec(),
            close: false,
        },
    )
    .await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .listener("response_headers = { \"strict-transport-security\" = \"max-age=31536000\", \"x-frame-options\" = \"DENY\" }")
            .tail(
                "\n[[service]]\nid = \"other\"\nhosts = [\"svc.example\"]\nupstream = \"app\"\nresponse_headers = { \"x-frame-options\" = \"SAMEORIGIN\", \"cache-control\" = \"no-store\" }\n[service.auth]\nanonymous = true\n[[service.route]]\npath = \"/*\"\n",
            )
            .render(),
    )
    .await;
    let get = |host: &str, path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let r = exchange(gw.addr, &get("localhost", "/demo/x"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert_eq!(
        r.header("x-frame-options"),
        Some("DENY"),
        "the upstream's value is replaced"
    );
    assert_eq!(
        r.headers
            .iter()
            .filter(|(n, _)| n == "x-frame-options")
            .count(),
        1
    );
    let denied = exchange(gw.addr, &get("localhost", "/demo/admin/x"))
        .await
        .unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let other = exchange(gw.addr, &get("svc.example", "/y")).await.unwrap();
    assert_eq!(other.status, 200);
    assert_eq!(
        other.header("x-frame-options"),
        Some("SAMEORIGIN"),
        "the service's wins"
    );
    assert_eq!(other.header("cache-control"), Some("no-store"));
    assert_eq!(
        other.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let plain = exchange(gw.addr, &get("localhost", "/demo/x"))
        .await
        .unwrap();
    assert!(
        plain.header("cache-control").is_none(),
        "service headers stay on the service"
    );
}
