//! Configuration reload through the admin API, including under load.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use penghubung_e2e::{
    empty, exchange, get, Behaviour, Cfg, Gateway, RawConn, Upstream, IO_TIMEOUT,
};

const NEW_ROUTE: &str = "\n[[service.route]]\npath = \"/new/*\"\n";

#[tokio::test]
async fn reload_with_a_new_route_and_target() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let b = Upstream::start("b", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[a.addr]).render()).await;
    assert_eq!(get(gw.addr, "/new/x").await.0, 404);
    assert_eq!(get(gw.addr, "/demo/x").await, (200, "a".into()));
    gw.write_config(&Cfg::new(&[b.addr]).tail(NEW_ROUTE).render());
    let (code, body) = gw.reload().await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("reloaded"), "{body}");
    assert_eq!(get(gw.addr, "/new/x").await, (200, "b".into()));
    assert_eq!(get(gw.addr, "/demo/x").await, (200, "b".into()));
    assert_eq!(a.count(), 1);
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(metrics.contains("reload"), "{metrics}");
}

#[tokio::test]
async fn invalid_config_is_refused_and_the_old_one_keeps_serving() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[a.addr]).render()).await;
    let broken = [
        "this is = not [ toml".to_owned(),
        Cfg::new(&[]).render(),
        Cfg::new(&[a.addr])
            .tail("\n[[service.route]]\npath = \"no-slash\"\n")
            .render(),
        Cfg::new(&[a.addr]).limit("header_bytes = 1").render(),
        Cfg::new(&[a.addr])
            .render()
            .replace("[limits]", "[limits]\nunknown_key = 1"),
    ];
    for text in &broken {
        gw.write_config(text);
        let (code, body) = gw.reload().await;
        assert_eq!(code, 422, "{text}\n{body}");
        assert!(body.contains("refused"), "{body}");
        assert_eq!(get(gw.addr, "/demo/x").await.0, 200);
    }
    assert_eq!(get(gw.addr, "/new/x").await.0, 404);
}

#[tokio::test]
async fn listener_address_change_is_refused_with_a_message() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[a.addr]).render()).await;
    let moved = Cfg::new(&[a.addr]).tail(NEW_ROUTE).render().replacen(
        "address = \"127.0.0.1:0\"",
        "address = \"127.0.0.2:0\"",
        1,
    );
    assert!(moved.contains("127.0.0.2:0"), "template changed: {moved}");
    gw.write_config(&moved);
    let (code, body) = gw.reload().await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("restart"), "{body}");
    assert!(body.contains("listener"), "{body}");
    // Nothing of the refused config took effect.
    assert_eq!(get(gw.addr, "/new/x").await.0, 404);
}

#[tokio::test]
async fn reload_under_load_loses_no_request() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let b = Upstream::start("b", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[a.addr]).render()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..8 {
        let (stop, ok, addr) = (stop.clone(), ok.clone(), gw.addr);
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            // Half the clients keep one connection, half open a new one per request.
            let mut sender = None;
            while !stop.load(Ordering::Relaxed) {
                if sender.is_none() || i % 2 == 1 {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let s = sender.as_mut().unwrap();
                let request = http::Request::get("/demo/load")
                    .header("host", "localhost")
                    .body(empty())
                    .unwrap();
                let result = tokio::time::timeout(IO_TIMEOUT, async {
                    s.ready().await?;
                    let response = s.send_request(request).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                })
                .await;
                match result {
                    Ok(Ok((status, body))) if status == 200 && (body == "a" || body == "b") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failures.push(format!("{other:?}"));
                        sender = None;
                    }
                }
            }
            failures
        }));
    }
    let started = Instant::now();
    let mut reloads = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let target = if reloads % 2 == 0 { b.addr } else { a.addr };
        let mut cfg = Cfg::new(&[target]);
        if reloads % 3 == 0 {
            cfg = cfg.tail(NEW_ROUTE);
        }
        gw.write_config(&cfg.render());
        let (code, body) = gw.reload().await;
        assert_eq!(code, 200, "{body}");
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(reloads >= 5, "{reloads}");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "{}",
        ok.load(Ordering::Relaxed)
    );
    assert!(a.count() > 0 && b.count() > 0);
}

#[tokio::test]
async fn streamed_response_in_flight_completes_across_reload() {
    let slow = Upstream::start(
        "slow",
        Behaviour::SlowBody {
            chunks: 15,
            every: Duration::from_millis(100),
        },
    )
    .await;
    let other = Upstream::start("other", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[slow.addr]).render()).await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /demo/stream HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    slow.wait_for(1).await;
    gw.write_config(&Cfg::new(&[other.addr]).render());
    assert_eq!(gw.reload().await.0, 200);
    // New requests already use the new config…
    let fresh = exchange(
        gw.addr,
        b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(fresh.body, b"other");
    // …while the old exchange streams to its end.
    let r = conn
        .read_response(IO_TIMEOUT)
        .await
        .expect("complete response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![b'x'; 15]);
}

#[tokio::test]
async fn admin_endpoints_are_not_on_the_traffic_listener() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[a.addr]).tail(NEW_ROUTE).render()).await;
    let before = gw.admin_get("/metrics").await.1;
    for raw in [
        &b"POST /reload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ] {
        let r = exchange(gw.addr, raw).await.unwrap();
        assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(raw));
        assert!(!r.body_text().contains("reload"), "{}", r.body_text());
    }
    assert_eq!(a.count(), 0);
    let after = gw.admin_get("/metrics").await.1;
    let reloads = |m: &str| {
        m.lines()
            .filter(|l| l.contains("reload") && !l.starts_with('#'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(reloads(&before), reloads(&after));
}

#[tokio::test]
async fn reload_picks_up_a_rotated_server_certificate() {
    use penghubung_e2e::pki::{self, Pki};
    let up = Upstream::start("a", Behaviour::Ok).await;
    let old = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    cfg.listener_tables = old.listener_tls(dir.path(), "none");
    let path = dir.path().to_owned();
    let gw = Gateway::start_in(dir, &cfg.render()).await;
    let trusts = |p: &Pki| p.client_config(None, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    assert!(pki::connect(gw.addr, "localhost", trusts(&old))
        .await
        .is_ok());
    let new = Pki::new();
    assert!(pki::connect(gw.addr, "localhost", trusts(&new))
        .await
        .is_err());
    // Rotate the files in place and reload.
    new.listener_tls(&path, "none");
    assert_eq!(gw.reload().await.0, 200);
    assert!(pki::connect(gw.addr, "localhost", trusts(&new))
        .await
        .is_ok());
    assert!(pki::connect(gw.addr, "localhost", trusts(&old))
        .await
        .is_err());
    // A broken certificate file is refused and the current one keeps serving.
    std::fs::write(path.join("server.pem"), "not a pem").unwrap();
    assert_eq!(gw.reload().await.0, 422);
    assert!(pki::connect(gw.addr, "localhost", trusts(&new))
        .await
        .is_ok());
}

/// Sum of the samples of `name` (exact sample name) whose labels contain `with`.
fn metric_sum(metrics: &str, name: &str, with: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_of_surviving_upstreams_and_services_carry_over_a_reload() {
    let slow = Upstream::start(
        "slow",
        Behaviour::SlowBody {
            chunks: 10,
            every: Duration::from_millis(100),
        },
    )
    .await;
    let gw = Gateway::start(&Cfg::new(&[slow.addr]).render()).await;
    let first = exchange(
        gw.addr,
        b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(first.status, 200);
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /demo/stream HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    slow.wait_for(2).await;
    let target = slow.addr.to_string();
    let before = gw.admin_get("/metrics").await.1;
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(
        metric_sum(&before, "penghubung_upstream_target_outstanding", &target),
        1,
        "{before}"
    );
    assert_eq!(
        metric_sum(&before, "penghubung_config_reloads_total", "ok"),
        0
    );
    let requests_before = metric_sum(&before, "penghubung_requests_total", "");
    assert!(requests_before >= 1, "{before}");
    // The same upstream group, one more route: the group survives the reload.
    gw.write_config(&Cfg::new(&[slow.addr]).tail(NEW_ROUTE).render());
    assert_eq!(gw.reload().await.0, 200);
    let after = gw.admin_get("/metrics").await.1;
    assert_eq!(
        metric_sum(&after, "penghubung_upstream_target_outstanding", &target),
        1,
        "{after}"
    );
    assert_eq!(
        metric_sum(&after, "penghubung_upstream_target_up", &target),
        1,
        "{after}"
    );
    assert_eq!(
        metric_sum(&after, "penghubung_config_reloads_total", "ok"),
        1,
        "{after}"
    );
    assert!(
        metric_sum(&after, "penghubung_requests_total", "") >= requests_before,
        "{after}"
    );
    let r = conn
        .read_response(IO_TIMEOUT)
        .await
        .expect("complete response");
    assert_eq!(r.status, 200);
    // A new request counts on top of the earlier ones: the service's counters were not reset.
    let fresh = exchange(
        gw.addr,
        b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(fresh.status, 200);
    let mut last = String::new();
    for _ in 0..40 {
        last = gw.admin_get("/metrics").await.1;
        if metric_sum(&last, "penghubung_upstream_target_outstanding", &target) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric_sum(&last, "penghubung_upstream_target_outstanding", &target),
        0,
        "{last}"
    );
    assert!(
        metric_sum(&last, "penghubung_requests_total", "") > requests_before,
        "{last}"
    );
}

/// A reload's `admin` record carries the canonical digest of the config: the same config
/// written with other whitespace and comments keeps it, a changed value changes it.
#[tokio::test]
async fn reload_records_the_canonical_digest_of_the_config() {
    use penghubung_e2e::evidence::records;
    use penghubung_evidence::schema::record::Kind;
    let a = Upstream::start("a", Behaviour::Ok).await;
    let text = Cfg::new(&[a.addr]).render();
    let gw = Gateway::start(&text).await;
    let first = penghubung::config::load(&gw.config_path).unwrap().digest();
    let reformatted = format!(
        "# the same, reformatted\n\n{}",
        text.replace(" = ", "   =   ")
    );
    assert_ne!(reformatted, text);
    gw.write_config(&reformatted);
    let (code, body) = gw.reload().await;
    assert_eq!(code, 200, "{body}");
    gw.write_config(&Cfg::new(&[a.addr]).tail(NEW_ROUTE).render());
    let (code, body) = gw.reload().await;
    assert_eq!(code, 200, "{body}");
    let second = penghubung::config::load(&gw.config_path).unwrap().digest();
    assert_ne!(first, second);
    let reloads: Vec<(Vec<u8>, Vec<u8>)> = records(&gw.dir.path().join("evidence"))
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(Kind::Admin(a)) if a.action == "config.reload" => {
                Some((a.before_sha256.to_vec(), a.after_sha256.to_vec()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        reloads,
        [
            (first.to_vec(), first.to_vec()),
            (first.to_vec(), second.to_vec())
        ]
    );
}
