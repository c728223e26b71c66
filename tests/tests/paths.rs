//! Canonical paths, deny routes under every spelling, and virtual-host checks.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::Full;
use penghubung_e2e::pki::{self, Pki};
use penghubung_e2e::{
    exchange, h2c, send_raw, status_of, Behaviour, Cfg, Gateway, Upstream, IO_TIMEOUT,
};

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).render()).await;
    (up, gw)
}

fn get_raw(path: &[u8], host: &str) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(path);
    out.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    out
}

async fn status(gw: &Gateway, path: &[u8]) -> Option<u16> {
    exchange(gw.addr, &get_raw(path, "localhost"))
        .await
        .map(|r| r.status)
}

#[tokio::test]
async fn ambiguous_encodings_are_refused() {
    let (up, gw) = setup().await;
    let cases: &[&[u8]] = &[
        b"/demo/a%2fb",
        b"/demo/a%2Fb",
        b"/demo/a%5cb",
        b"/demo/a%00b",
        b"/demo/%2e%2e/admin/x",
        b"/demo/%2E./admin/x",
        b"/demo/a;jsessionid=123",
        b"/demo/a\\b",
        b"/demo/a%252fb",
        b"/demo/%c0%af",
        b"/demo/%c0%ae%c0%ae/admin",
        b"/demo/caf\xc3\xa9",
        b"/demo/a%zz",
        b"/demo/a%2",
        b"/demo/a%09b",
        b"/../demo/x",
        b"/demo/../../x",
    ];
    for path in cases {
        let s = status(&gw, path).await;
        assert_eq!(s, Some(400), "{}", String::from_utf8_lossy(path));
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

#[tokio::test]
async fn upstream_sees_the_canonical_path() {
    let (up, gw) = setup().await;
    let cases: &[(&str, &str)] = &[
        ("/demo/a/../b", "/demo/b"),
        ("/demo/./b", "/demo/b"),
        ("//demo//b", "/demo/b"),
        ("/demo/%61%62c", "/demo/abc"),
        ("/demo/a%2db%7e", "/demo/a-b~"),
        ("/demo/b/.", "/demo/b/"),
        ("/demo/b?x=%2f&y=..", "/demo/b?x=%2f&y=.."),
        ("/demo/a%3ab", "/demo/a%3Ab"),
    ];
    for (i, (sent, expected)) in cases.iter().enumerate() {
        let response = exchange(gw.addr, &get_raw(sent.as_bytes(), "localhost"))
            .await
            .expect("response");
        assert_eq!(response.status, 200, "{sent}");
        let got = up.wait_for(i + 1).await;
        assert_eq!(got[i].target, *expected, "{sent}");
    }
}

#[tokio::test]
async fn deny_route_is_not_reachable_by_any_spelling() {
    let (up, gw) = setup().await;
    let cases: &[&[u8]] = &[
        b"/demo/admin/x",
        b"/demo/admin",
        b"/demo/admin/",
        b"/demo/ADMIN/x",
        b"/demo/Admin",
        b"/demo//admin/x",
        b"/demo/./admin/x",
        b"/demo/x/../admin/x",
        b"/demo/admin;x/y",
        b"/demo/admin;x",
        b"/demo/%61dmin/x",
        b"/demo/%41DMIN/x",
        b"/demo/admin%2fx",
        b"/demo/admin%252fx",
        b"/demo%2fadmin/x",
        b"/demo/admin%5cx",
        b"/demo\\admin\\x",
        b"/demo/admin./x",
        b"/demo/admin%2e/x",
        b"/DEMO/ADMIN/x",
        b"/demo/admin%00/x",
        b"/demo/./x/./../admin",
    ];
    for path in cases {
        let s = status(&gw, path).await;
        assert!(
            matches!(s, Some(403) | Some(400)),
            "{}: {s:?}",
            String::from_utf8_lossy(path)
        );
    }
    // And with methods other than GET.
    for method in ["POST", "DELETE", "OPTIONS", "PUT"] {
        let raw = format!(
            "{method} /demo/Admin/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let s = exchange(gw.addr, raw.as_bytes()).await.map(|r| r.status);
        assert_eq!(s, Some(403), "{method}");
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    // Sanity: the sibling path is forwarded.
    assert_eq!(status(&gw, b"/demo/administrator").await, Some(200));
    assert_eq!(up.only().target, "/demo/administrator");
}

#[tokio::test]
async fn unknown_host_is_misdirected() {
    let (up, gw) = setup().await;
    assert_eq!(
        exchange(gw.addr, &get_raw(b"/demo/x", "unknown.example"))
            .await
            .map(|r| r.status),
        Some(421)
    );
    let absolute = b"GET http://unknown.example/demo/x HTTP/1.1\r\nHost: unknown.example\r\nConnection: close\r\n\r\n";
    assert_eq!(
        exchange(gw.addr, absolute).await.map(|r| r.status),
        Some(421)
    );
    let absolute_no_host =
        b"GET http://unknown.example/demo/x HTTP/1.1\r\nConnection: close\r\n\r\n";
    let s = exchange(gw.addr, absolute_no_host).await.map(|r| r.status);
    assert!(matches!(s, Some(421) | Some(400)), "{s:?}");
    let h2 = h2c(
        gw.addr,
        http::Request::get("http://unknown.example/demo/x")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(h2.status(), 421);
    assert_eq!(up.count(), 0);
    // The same over h2 with a known authority works.
    let h2 = h2c(
        gw.addr,
        http::Request::get("http://localhost/demo/x")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(h2.status(), 200);
}

#[tokio::test]
async fn missing_duplicate_and_invalid_host_are_refused() {
    let (up, gw) = setup().await;
    let cases: &[(&str, &[u8])] = &[
        ("missing", b"GET /demo/x HTTP/1.1\r\nConnection: close\r\n\r\n"),
        (
            "duplicate",
            b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nHost: other.example\r\nConnection: close\r\n\r\n",
        ),
        (
            "duplicate same",
            b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
        ("userinfo", b"GET /demo/x HTTP/1.1\r\nHost: a@localhost\r\nConnection: close\r\n\r\n"),
        ("slash", b"GET /demo/x HTTP/1.1\r\nHost: localhost/x\r\nConnection: close\r\n\r\n"),
        ("space", b"GET /demo/x HTTP/1.1\r\nHost: local host\r\nConnection: close\r\n\r\n"),
        ("empty", b"GET /demo/x HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n"),
        ("bad port", b"GET /demo/x HTTP/1.1\r\nHost: localhost:abc\r\nConnection: close\r\n\r\n"),
        (
            "absolute-form disagrees",
            b"GET http://other.example/demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
        (
            "non-http scheme",
            b"GET ftp://localhost/demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (name, raw) in cases {
        let s = exchange(gw.addr, raw).await.map(|r| r.status);
        assert_eq!(s, Some(400), "{name}");
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

#[tokio::test]
async fn host_with_port_and_trailing_dot_is_accepted() {
    let (up, gw) = setup().await;
    let s = exchange(gw.addr, &get_raw(b"/demo/x", "LOCALHOST.:8080"))
        .await
        .map(|r| r.status);
    assert_eq!(s, Some(200));
    assert_eq!(up.only().header("x-forwarded-host"), Some("localhost"));
}

#[tokio::test]
async fn sni_different_from_host_is_misdirected() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    cfg.listener_tables = pki.listener_tls(dir.path(), "none");
    let gw = Gateway::start_in(dir, &cfg.render()).await;
    let config = pki.client_config(None, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let send = |host: &'static str| {
        let config = config.clone();
        let addr = gw.addr;
        async move {
            let tls = pki::connect(addr, "localhost", config).await.unwrap();
            penghubung_e2e::h1_over(
                tls,
                http::Request::get("/demo/x")
                    .header("host", host)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
            .as_u16()
        }
    };
    assert_eq!(send("other.example").await, 421);
    assert_eq!(up.count(), 0);
    assert_eq!(send("localhost").await, 200);
    assert_eq!(up.only().header("x-forwarded-proto"), Some("https"));
    let _ = IO_TIMEOUT;
}

#[tokio::test]
async fn absolute_form_is_forwarded_in_origin_form() {
    let (up, gw) = setup().await;
    let raw = b"GET http://localhost/demo/abs?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(gw.addr, raw).await.map(|r| r.status), Some(200));
    let r = up.only();
    assert_eq!(r.target, "/demo/abs?x=1");
    assert_eq!(r.headers_named("host").len(), 1);
}

#[tokio::test]
async fn connect_and_asterisk_form_are_never_forwarded() {
    let (up, gw) = setup().await;
    let cases: &[&[u8]] = &[
        b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: close\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ];
    for raw in cases {
        let mut conn = penghubung_e2e::RawConn::connect(gw.addr).await;
        conn.send(raw).await;
        let r = conn.read_response(IO_TIMEOUT).await.map(|r| r.status);
        assert!(
            matches!(r, Some(400) | Some(403) | Some(404) | Some(405) | Some(501)),
            "{}: {r:?}",
            String::from_utf8_lossy(raw)
        );
        // Never a tunnel: nothing after the refusal is relayed anywhere.
        conn.send(b"SSH-2.0-x\r\n").await;
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    assert_eq!(up.total_bytes(), 0);
}

/// A route that names no methods allows GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS;
/// TRACE, CONNECT and custom methods get 405 and never reach the upstream unless a route lists
/// them.
#[tokio::test]
async fn unusual_methods_need_a_route_that_lists_them() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(
        &Cfg::new(&[up.addr])
            .tail("\n[[service.route]]\npath = \"/webdav/*\"\nmethods = [\"PROPFIND\", \"GET\"]\n")
            .render(),
    )
    .await;
    for request in [
        "TRACE /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "PROPFIND /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "FOO /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n",
        "TRACE /webdav/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ] {
        let r = exchange(gw.addr, request.as_bytes()).await.expect(request);
        assert_eq!(r.status, 405, "{request}");
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    for (method, path) in [
        ("GET", "/demo/x"),
        ("OPTIONS", "/demo/x"),
        ("DELETE", "/demo/x"),
        ("PROPFIND", "/webdav/x"),
    ] {
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = exchange(gw.addr, request.as_bytes()).await.expect(method);
        assert_eq!(r.status, 200, "{method}");
    }
    for method in ["POST", "PUT", "PATCH"] {
        let request = format!(
            "{method} /demo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = exchange(gw.addr, request.as_bytes()).await.expect(method);
        assert_eq!(r.status, 200, "{method}");
    }
    let head = send_raw(
        gw.addr,
        b"HEAD /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&head), Some(200));
    assert_eq!(up.count(), 8);
}
