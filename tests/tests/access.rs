//! End-to-end tests of stages 3–5 through the real gateway: an unchanged SPLP-style OAuth2
//! client, API keys, WSO2 fault bodies, the gateway JWKS and backend assertions, identity header
//! hygiene, grants, `Expect: 100-continue`, and rate limits (local, and shared through Redis by
//! two gateway instances, surviving Redis' loss), and JWKS fetched over HTTPS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use penghubung_e2e::config::{access_config, AccessOpts, CLIENT_ID, CLIENT_SECRET, KEY};
use penghubung_e2e::gateway::Gateway;
use penghubung_e2e::pki;
use penghubung_e2e::raw::{admin, get, read_response, send, RawResponse};
use penghubung_e2e::testkit::dir::temp_dir;
use penghubung_e2e::testkit::jwt;
use penghubung_e2e::testkit::redis::RedisServer;
use penghubung_e2e::upstream::Upstream;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn json(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// Verifies a compact JWS against a JWK set with ring (independently of the gateway's code) and
/// returns its claims.
fn verify_jws(token: &str, jwks: &Value) -> Value {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is in the JWKS");
    let d = |f: &str| URL_SAFE_NO_PAD.decode(key[f].as_str().unwrap()).unwrap();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    match header["alg"].as_str().unwrap() {
        "ES256" => {
            assert_eq!(key["kty"], "EC");
            let mut point = vec![4u8];
            point.extend(d("x"));
            point.extend(d("y"));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &sig)
                .expect("ES256 signature verifies against the JWKS");
        }
        "EdDSA" => {
            assert_eq!(key["kty"], "OKP");
            UnparsedPublicKey::new(&ED25519, d("x"))
                .verify(signed.as_bytes(), &sig)
                .expect("EdDSA signature verifies against the JWKS");
        }
        other => panic!("unexpected alg {other}"),
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

async fn token(addr: std::net::SocketAddr, id: &str, secret: &str) -> RawResponse {
    let basic = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    send(
        addr,
        "POST",
        "data.test",
        "/oauth2/token",
        &[
            ("authorization", &basic),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        b"grant_type=client_credentials",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splp_client_token_bearer_apikey_wso2_jwks_and_assertion() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&access_config(up.addr, &AccessOpts::default())).await;
    let addr = gw.addr;

    // An SPLP/WSO2 client, unchanged: client credentials with HTTP Basic.
    let r = token(addr, CLIENT_ID, CLIENT_SECRET).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = json(&r);
    let access = t["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_in"].as_u64().unwrap() > 0);
    let bad = token(addr, CLIENT_ID, "salah").await;
    assert_eq!(bad.status, 401, "{}", bad.text());
    assert_eq!(json(&bad)["error"], "invalid_client");
    assert_eq!(up.count(), 0);

    let r = get(
        addr,
        "data.test",
        "/data/pegawai/1",
        &[("authorization", &format!("Bearer {access}"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.header("x-penghubung-consumer-application"),
        Some("simpeg")
    );
    assert_eq!(seen.header("x-penghubung-consumer-opd"), Some("bkd"));
    assert_eq!(seen.header("x-penghubung-grant-id"), Some("simpeg-data"));
    assert_eq!(
        seen.header("x-penghubung-credential-kind"),
        Some("gateway_token")
    );
    assert_eq!(
        seen.header("authorization"),
        None,
        "the client's token is not forwarded"
    );

    // The backend assertion verifies against the gateway's published JWKS.
    let jwks_resp = get(addr, "data.test", "/.well-known/jwks.json", &[]).await;
    assert_eq!(jwks_resp.status, 200);
    let jwks = json(&jwks_resp);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private part published"
    );
    let claims = verify_jws(
        seen.header("x-penghubung-assertion")
            .expect("assertion sent"),
        &jwks,
    );
    assert_eq!(claims["sub"], "simpeg");
    assert_eq!(claims["aud"], "data");
    assert_eq!(claims["grant"], "simpeg-data");
    assert_eq!(claims["jti"], r.exchange_id());
    // The access token itself is signed by the same key.
    let tc = verify_jws(&access, &jwks);
    assert!(tc["sub"].as_str().is_some(), "{tc}");

    let r = get(addr, "data.test", "/data/pegawai/2", &[("apikey", KEY)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.header("x-penghubung-consumer-application"),
        Some("simpeg")
    );
    assert_eq!(seen.header("x-penghubung-grant-id"), Some("simpeg-data"));
    assert_eq!(seen.header("x-penghubung-credential-kind"), Some("apikey"));
    assert_eq!(seen.header("apikey"), None, "the API key is not forwarded");
    assert_eq!(seen.header("authorization"), None);

    // WSO2 fault bodies for existing clients.
    let n = up.count();
    let r = get(addr, "wso2.test", "/wso2/x", &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("900902"), "{}", r.text());
    let r = get(addr, "wso2.test", "/wso2/x", &[("apikey", "kunci-palsu")]).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("900901"), "{}", r.text());
    let r = get(addr, "wso2.test", "/wso2/x", &[("apikey", KEY)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), n + 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_never_reach_the_upstream() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&access_config(up.addr, &AccessOpts::default())).await;
    let addr = gw.addr;
    let forged = [
        ("x-penghubung-consumer-application", "admin"),
        ("x-penghubung-consumer-opd", "setda"),
        ("x-penghubung-grant-id", "semua"),
        ("x-penghubung-credential-kind", "mtls"),
        ("x-penghubung-assertion", "eyJhbGciOiJub25lIn0.e30."),
        ("X-Forwarded-For", "10.9.8.7"),
        ("Forwarded", "for=10.9.8.7"),
    ];
    let mut with_key = forged.to_vec();
    with_key.push(("apikey", KEY));
    let r = get(addr, "data.test", "/data/x", &with_key).await;
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(
        s.headers_named("x-penghubung-consumer-application"),
        ["simpeg"]
    );
    assert_eq!(s.headers_named("x-penghubung-consumer-opd"), ["bkd"]);
    assert_eq!(s.headers_named("x-penghubung-grant-id"), ["simpeg-data"]);
    assert_eq!(s.headers_named("x-penghubung-credential-kind"), ["apikey"]);
    assert_ne!(
        s.headers_named("x-penghubung-assertion"),
        ["eyJhbGciOiJub25lIn0.e30."]
    );
    for (n, v) in &forged[5..] {
        assert!(
            s.headers_named(n).iter().all(|got| !got.contains(v)),
            "{n}: {:?}",
            s.headers_named(n)
        );
    }

    // Anonymous callers cannot name themselves either.
    let r = get(addr, "open.test", "/open/x", &forged).await;
    assert_eq!(r.status, 200);
    let s = up.last();
    for (n, v) in forged {
        assert!(
            s.headers_named(n).iter().all(|got| !got.contains(v)),
            "{n} reached the upstream as sent: {:?}",
            s.headers_named(n)
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_scope_validity_classification_and_expect_continue() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&access_config(up.addr, &AccessOpts::default())).await;
    let addr = gw.addr;
    let k = [("apikey", KEY)];

    assert_eq!(get(addr, "data.test", "/data/x", &k).await.status, 200);
    let n = up.count();
    // Route allows DELETE and /extra/*; the grant's cakupan does not.
    let r = send(addr, "DELETE", "data.test", "/data/x", &k, b"").await;
    assert_eq!(r.status, 403, "method outside cakupan: {}", r.text());
    let r = get(addr, "data.test", "/extra/x", &k).await;
    assert_eq!(r.status, 403, "path outside cakupan: {}", r.text());
    assert_eq!(
        get(addr, "expired.test", "/expired/x", &k).await.status,
        403
    );
    assert_eq!(
        get(addr, "rahasia.test", "/rahasia/x", &k).await.status,
        403
    );
    let r = get(addr, "terbatas.test", "/terbatas/x", &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        get(addr, "terbatas.test", "/terbatas/x", &k).await.status,
        200
    );
    assert_eq!(up.count(), n + 1, "only the granted call was forwarded");

    // `Expect: 100-continue` without a credential: 401, and never `100 Continue`.
    let n = up.count();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /data/upload HTTP/1.1\r\nhost: data.test\r\ncontent-length: 11\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_response(&mut s, Duration::from_secs(10)).await;
    assert_eq!(r.status, 401, "first interim or final response");
    // The same with a credential gets the interim response (the check above is meaningful).
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST /data/upload HTTP/1.1\r\nhost: data.test\r\napikey: {KEY}\r\ncontent-length: 11\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s, Duration::from_secs(10)).await;
    assert_eq!(r.status, 100);
    assert_eq!(up.count(), n, "nothing forwarded before the body");
    s.write_all(b"hello world").await.unwrap();
    let r = read_response(&mut s, Duration::from_secs(10)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, b"hello world");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_headers() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&access_config(up.addr, &AccessOpts::default())).await;
    let addr = gw.addr;
    let k = [("apikey", KEY)];
    let statuses: Vec<RawResponse> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(get(addr, "limited.test", "/limited/x", &k).await);
        }
        v
    };
    assert_eq!(
        statuses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 429]
    );
    let r = &statuses[2];
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(r.header("ratelimit").is_some(), "{:?}", r.headers);
    assert!(r.header("ratelimit-policy").is_some(), "{:?}", r.headers);
    assert!(statuses[0].header("ratelimit").is_some());
    assert_eq!(up.count(), 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_the_limit_through_redis_and_survive_its_loss() {
    let mut redis = RedisServer::start();
    let up = Upstream::echo().await;
    let prefix = format!("pipe-{}-{}:", std::process::id(), rand::random::<u32>());
    let table = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{}/\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 500\non_unavailable = \"local\"\n",
        redis.port
    );
    let opts = AccessOpts {
        redis: &table,
        ..AccessOpts::default()
    };
    let a = Gateway::start(&access_config(up.addr, &opts)).await;
    let b = Gateway::start(&access_config(up.addr, &opts)).await;
    let (aa, ba) = (a.addr, b.addr);
    let k = [("apikey", KEY)];
    // One request on A, two on B: with per-node limits B would allow both of its own.
    let r1 = get(aa, "limited.test", "/limited/1", &k).await;
    let r2 = get(ba, "limited.test", "/limited/2", &k).await;
    let r3 = get(ba, "limited.test", "/limited/3", &k).await;
    assert_eq!(
        (r1.status, r2.status, r3.status),
        (200, 200, 429),
        "the budget of 2/s is shared by both nodes"
    );
    assert!(r3.header("retry-after").is_some());
    let health = json(&a.admin_raw("/health").await);
    assert_eq!(health["auth"]["redis_reachable"], true, "{health}");

    redis.kill();
    // Requests go on under the local limits (each node's own budget).
    let mut ok = 0;
    for i in 0..2 {
        let r = get(aa, "limited.test", &format!("/limited/after-{i}"), &k).await;
        assert_ne!(r.status, 503, "on_unavailable = local must not refuse");
        ok += usize::from(r.status == 200);
    }
    assert!(ok >= 1, "the local limiter lets calls through");
    let unreachable = {
        let mut seen = None;
        for _ in 0..100 {
            let h = json(&a.admin_raw("/health").await);
            if h["auth"]["redis_reachable"] == false {
                seen = Some(h);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    };
    let h = unreachable.expect("/health shows redis unreachable");
    assert_eq!(h["status"], "degraded", "{h}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Like the test above, for a per-minute rate: the budget is shared by two nodes, and when
/// Redis is lost a node with `on_unavailable = "local"` goes on (flagged in `/health` and
/// `/metrics`) while one with `on_unavailable = "deny"` answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_are_shared_then_fall_back_or_deny_when_redis_is_lost() {
    let mut redis = RedisServer::start();
    let up = Upstream::echo().await;
    let prefix = format!("shared-{}-{}:", std::process::id(), rand::random::<u32>());
    let table = |on_unavailable: &str| {
        format!(
            "[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 500\non_unavailable = \"{on_unavailable}\"\n",
            redis.url()
        )
    };
    let (local, deny) = (table("local"), table("deny"));
    let config = |redis: &str| {
        access_config(
            up.addr,
            &AccessOpts {
                redis,
                ..AccessOpts::default()
            },
        )
    };
    let a = Gateway::start(&config(&local)).await;
    let b = Gateway::start(&config(&local)).await;
    let c = Gateway::start(&config(&deny)).await;
    let k = [("apikey", KEY)];
    for (node, path) in [(a.addr, "/shared/1"), (a.addr, "/shared/2")] {
        assert_eq!(get(node, "shared.test", path, &k).await.status, 200);
    }
    let last = get(b.addr, "shared.test", "/shared/3", &k).await;
    assert_eq!(last.status, 200);
    let state = last.header("ratelimit").unwrap_or_default();
    assert!(state.starts_with("\"burst\";r=0;"), "{:?}", last.headers);
    // Node A sees node B's request: the limit of 3 a minute is shared.
    let refused = get(a.addr, "shared.test", "/shared/4", &k).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 15, "{retry}");
    let health = json(&a.admin_raw("/health").await);
    assert_eq!(health["auth"]["redis_reachable"], true, "{health}");

    redis.kill();
    // Fallback: local limits on each node (A's local store is fresh), flagged in health.
    let r = get(a.addr, "shared.test", "/shared/5", &k).await;
    assert_eq!(r.status, 200, "on_unavailable = local: {}", r.text());
    let health = json(&a.admin_raw("/health").await);
    assert_eq!(health["auth"]["redis_reachable"], false, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let metrics = admin(a.admin, "/metrics").await.text();
    assert!(
        metrics.contains("penghubung_ratelimit_redis_up 0"),
        "{metrics}"
    );
    // With on_unavailable = "deny" the request is refused instead.
    let r = get(c.addr, "shared.test", "/shared/6", &k).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(up.count(), 4);
    for gw in [a, b, c] {
        gw.shutdown().await;
    }
}

/// A JWKS served over HTTPS by a server whose certificate comes from the test CA; counts hits.
struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn serve_jwks(identity: &pki::Identity, body: String) -> JwksServer {
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body, h) = (acceptor.clone(), body.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    JwksServer { url, hits }
}

/// JWKS fetched over HTTPS from a server with a private CA, trusted through `jwks_ca_file`;
/// without it the server is not trusted and the gateway does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_with_a_private_ca() {
    let ca = pki::Pki::new();
    let server_id = ca.server_for(&["127.0.0.1"]);
    let ec = jwt::ec_key();
    let server = serve_jwks(
        &server_id,
        serde_json::json!({ "keys": [jwt::ec_jwk(&ec, "ec-1")] }).to_string(),
    )
    .await;
    let dir = temp_dir("jwks-https");
    let ca_file = penghubung_e2e::write_file(dir.path(), "ca.pem", &ca.ca_pem);
    let issuer = |ca: &str| {
        format!(
            "[[auth.issuers]]\nissuer = {:?}\naudiences = [{:?}]\njwks_url = {:?}\n{ca}algorithms = [\"ES256\"]\n",
            jwt::ISS,
            jwt::AUD,
            server.url
        )
    };
    let up = Upstream::echo().await;
    let trusted = issuer(&format!(
        "jwks_ca_file = {:?}\n",
        ca_file.display().to_string()
    ));
    let gw = Gateway::start(&access_config(
        up.addr,
        &AccessOpts {
            jwt_issuer: &trusted,
            ..AccessOpts::default()
        },
    ))
    .await;
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    let token = jwt::sign_es256(&ec, r#"{"alg":"ES256","kid":"ec-1"}"#, &jwt::claims(&[]));
    let bearer = format!("Bearer {token}");
    let r = get(
        gw.addr,
        "data.test",
        "/data/1",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.last().header("x-penghubung-consumer-application"),
        Some("simpeg")
    );
    gw.shutdown().await;

    // Without the private CA the server is not trusted and the config load fails.
    let untrusted = issuer("");
    let err = Gateway::try_start_in(
        temp_dir("jwks-https-untrusted"),
        &access_config(
            up.addr,
            &AccessOpts {
                jwt_issuer: &untrusted,
                ..AccessOpts::default()
            },
        ),
    )
    .await
    .expect_err("an untrusted JWKS server fails the start");
    assert!(err.to_string().contains("jwks"), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}
