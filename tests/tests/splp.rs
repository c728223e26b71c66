//! Peering with the national SPLP (upstream kind `splp`) against a WSO2 API Manager double
//! (`penghubung_e2e::splp`) on loopback with real TLS: header and tenant-path mapping, backend
//! credentials from secrets, fault mapping, token expiry under load, one token shared by two
//! nodes through a real redis-server, the circuit breaker, evidence of each exchange, and no
//! secret in logs or evidence.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use penghubung_e2e::splp::{Api, SplpDouble, Wants};
use penghubung_e2e::{evidence, h1, pki::Pki, write_file, Cfg, Gateway};
use penghubung_evidence::schema::record::Kind;

const CLIENT_ID: &str = "pemda-consumer-key-7f3a";
const CLIENT_SECRET: &str = "pemda-consumer-SECRET-91c2e5";
const BACKEND_AUTH: &str = "Basic c2Ftc2F0OnNhbXNhdC1iYWNrZW5kLXJhaGFzaWE=";

fn apis() -> Vec<Api> {
    vec![
        Api {
            base: "/t/jatimprov.go.id/dukcapil/1.0".into(),
            wants: Wants::Bearer,
        },
        Api {
            base: "/t/jabarprov.go.id/samsat/v1".into(),
            wants: Wants::AuthorizationSplp,
        },
        Api {
            base: "/sapa/1.0".into(),
            wants: Wants::Apikey,
        },
    ]
}

/// Writes the secrets and the CA into `dir`; returns the gateway config.
fn config(dir: &Path, pki: &Pki, double: &SplpDouble, api_key: &str, extra: &str) -> String {
    let ca = write_file(dir, "splp-ca.pem", &pki.ca_pem);
    let id = write_file(dir, "splp-client-id", CLIENT_ID);
    let secret = write_file(dir, "splp-client-secret", &format!("{CLIENT_SECRET}\n"));
    let key = write_file(dir, "splp-api-key", api_key);
    let backend = write_file(dir, "samsat-auth", BACKEND_AUTH);
    let port = double.addr.port();
    // The `demo` service's own upstream is never called here.
    let up = "127.0.0.1:9";
    Cfg::new(&[up.parse().unwrap()])
        .tail(&format!(
            r#"
[[upstream]]
name = "splp-pusat"
kind = "splp"
targets = ["127.0.0.1:{port}"]
tls = {{ ca = {ca:?}, server_name = "localhost" }}
connect_timeout_ms = 500
response_head_timeout_ms = 2000

[upstream.splp]
tier = "pusat"
token_endpoint = "https://localhost:{port}/oauth2/token"
client_id = {{ file = {id:?} }}
client_secret = {{ file = {secret:?} }}
breaker_failures = 3
breaker_open_secs = 1
{extra}

[[upstream.splp.api]]
prefix = "/dukcapil"
tenant = "jatimprov.go.id"
context = "dukcapil"
version = "1.0"

[[upstream.splp.api]]
prefix = "/samsat"
tenant = "jabarprov.go.id"
context = "samsat"
version = "v1"
credential = "authorization_splp"
backend_headers = {{ auth = {{ file = {backend:?} }} }}

[[upstream.splp.api]]
prefix = "/sapa"
context = "sapa"
version = "1.0"
credential = "apikey"
api_key = {{ file = {key:?} }}

[[upstream.splp.api]]
prefix = "/mentah"
tenant = "jatimprov.go.id"
context = "tidak-ada"
version = "1.0"
faults = "pass"

[[service]]
id = "splp-pusat"
hosts = ["localhost"]
upstream = "splp-pusat"

[service.auth]
anonymous = true

[[service.route]]
path = "/pusat/*"
strip_prefix = "/pusat"
"#,
            ca = ca.display().to_string(),
            id = id.display().to_string(),
            secret = secret.display().to_string(),
            key = key.display().to_string(),
            backend = backend.display().to_string(),
        ))
        .render()
}

async fn send(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = http::Request::builder()
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = h1(addr, request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    (
        response.status().as_u16(),
        String::from_utf8_lossy(response.body()).into_owned(),
    )
}

/// Every log line the gateway writes in this test process (nextest runs each test alone).
fn capture_logs() -> Arc<parking_lot::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Sink(Arc<parking_lot::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter("trace,hyper=info,h2=info,rustls=info")
        .with_writer(move || sink.clone())
        .try_init();
    buffer
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opd_call_reaches_the_peer_with_its_header_and_tenant_path_and_leaves_evidence() {
    let logs = capture_logs();
    let pki = Pki::new();
    let double = SplpDouble::start(&pki, CLIENT_ID, CLIENT_SECRET, 3600, apis()).await;
    let key_expiry = penghubung_testkit::jwt::now() + 5 * 86_400;
    let api_key = double.api_key(key_expiry);
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &pki, &double, &api_key, "");
    let gw = Gateway::start_in(dir, &text).await;

    // The API key expires in 5 days, inside the 14-day warning window: /health says so (and
    // is degraded), /metrics has its expiry.
    let (_, health) = gw.admin_get("/health").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let peer = health["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "splp-pusat")
        .unwrap();
    assert_eq!(peer["credentials"][0]["name"], "/sapa");
    assert_eq!(peer["credentials"][0]["expires_at"], key_expiry);
    assert_eq!(peer["credentials"][0]["warn"], true);
    let (_, metrics) = gw.admin_get("/metrics").await;
    let line = format!(
        "penghubung_peer_api_key_expires_timestamp_seconds{{upstream=\"splp-pusat\",credential=\"/sapa\"}} {key_expiry}"
    );
    assert!(metrics.contains(&line), "{metrics}");

    // Bearer, tenant path; what the OPD app sent as credentials never reaches the peer.
    let (status, body) = send(
        gw.addr,
        "/pusat/dukcapil/nik/3578?fields=nama",
        &[
            ("x-jwt-assertion", "forged.by.opd"),
            ("authorizationsplp", "Bearer opd-app-token"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // AuthorizationSPLP, with the backend credential from the secret file, not the OPD's.
    let (status, body) = send(
        gw.addr,
        "/pusat/samsat/pajak/AB1234",
        &[("auth", "Basic b3BkOm9wZA==")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // apikey with the JWT API key, super-tenant path.
    let (status, body) = send(gw.addr, "/pusat/sapa/api/daftar_data", &[]).await;
    assert_eq!(status, 200, "{body}");

    let seen = double.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[0].path,
        "/t/jatimprov.go.id/dukcapil/1.0/nik/3578?fields=nama"
    );
    let bearer = seen[0].headers.get("authorization").unwrap();
    assert!(bearer.starts_with("Bearer splp-access-"), "{bearer}");
    assert!(!seen[0].headers.contains_key("authorizationsplp"));
    assert!(!seen[0].headers.contains_key("x-jwt-assertion"));
    assert_eq!(seen[1].path, "/t/jabarprov.go.id/samsat/v1/pajak/AB1234");
    assert!(seen[1]
        .headers
        .get("authorizationsplp")
        .unwrap()
        .starts_with("Bearer splp-access-"));
    assert!(!seen[1].headers.contains_key("authorization"));
    assert_eq!(seen[1].headers.get("auth").unwrap(), BACKEND_AUTH);
    assert_eq!(seen[2].path, "/sapa/1.0/api/daftar_data");
    assert_eq!(seen[2].headers.get("apikey").unwrap(), &api_key);
    assert_eq!(
        double.token_requests(),
        1,
        "one token serves both OAuth2 APIs"
    );

    // A WSO2 fault becomes problem+json; a route that asks gets it as the peer sent it.
    let (status, body) = send(gw.addr, "/pusat/dukcapil-lain/x", &[]).await;
    assert_eq!(status, 500, "no API of the peer serves this path: {body}");
    let (status, body) = send(gw.addr, "/pusat/mentah/x", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"code\":900906"), "passed through: {body}");
    // With the double refusing every token, 900901 after one refresh is the gateway's problem.
    double.set_skew_ms(10_000_000);
    let (status, body) = send(gw.addr, "/pusat/dukcapil/nik/1", &[]).await;
    assert_eq!(status, 502, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["reason"], "peer_credentials_invalid");
    assert_eq!(problem["peer_code"], "900901");
    assert_eq!(double.invalid_credentials(), 2, "one refresh, one retry");
    assert_eq!(double.token_requests(), 2);
    double.set_skew_ms(0);

    // Evidence: the request says where it went before it left; the outcome holds the peer's
    // certificate, correlation id, the path sent and the credential header.
    let records = evidence::records(&gw.dir.path().join("evidence"));
    let requests: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Request(q)) => Some(q),
            _ => None,
        })
        .collect();
    assert!(requests
        .iter()
        .all(|q| q.peer_direction == "outbound-to-pusat"));
    let outcomes: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Outcome(o)) => Some(o),
            _ => None,
        })
        .collect();
    let first = outcomes[0];
    assert_eq!(first.peer_direction, "outbound-to-pusat");
    assert_eq!(first.upstream_tls_sha256.as_ref(), &double.cert_sha256[..]);
    assert_eq!(
        first.peer_path,
        "/t/jatimprov.go.id/dukcapil/1.0/nik/3578?fields=nama"
    );
    assert_eq!(first.peer_credential, "authorization");
    // The first exchange's id (the harness's operator sign-in record has none).
    let first_exchange = records
        .iter()
        .find(|r| matches!(r.kind, Some(Kind::Request(_))))
        .map(|r| r.exchange_id.clone())
        .unwrap_or_default();
    assert_eq!(
        first.peer_correlation_id, first_exchange,
        "the exchange id sent as activityid comes back"
    );
    assert_eq!(outcomes[2].peer_credential, "apikey");
    let refused = outcomes.iter().find(|o| o.status == 502).unwrap();
    assert_eq!(refused.peer_fault_code, 900901);

    // No secret in the evidence log or the logs: not the client secret, the backend
    // credential, the API key or any token the peer issued.
    let evidence_bytes = all_bytes(&gw.dir.path().join("evidence"));
    gw.shutdown().await;
    let log_bytes = logs.lock().clone();
    assert!(!log_bytes.is_empty(), "logs were captured");
    for secret in [
        CLIENT_SECRET,
        BACKEND_AUTH,
        api_key.as_str(),
        "splp-access-",
    ] {
        assert!(!contains(&evidence_bytes, secret), "{secret} in evidence");
        assert!(!contains(&log_bytes, secret), "{secret} in the logs");
    }
}

/// `n` concurrent callers, each calling `path` until `until`; returns every status seen.
async fn load(
    addr: std::net::SocketAddr,
    path: &'static str,
    n: usize,
    until: std::time::Instant,
) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while std::time::Instant::now() < until {
                out.push(send(addr, path, &[]).await);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_expires_mid_load_and_no_call_fails() {
    let pki = Pki::new();
    // Tokens live 2 s, and the peer's clock runs 600 ms ahead of the gateway's: the gateway
    // renews early (a quarter of the lifetime before expiry), and a token the peer already
    // considers expired is answered 900901, refreshed once and retried.
    let double = SplpDouble::start(&pki, CLIENT_ID, CLIENT_SECRET, 2, apis()).await;
    double.set_skew_ms(600);
    let api_key = double.api_key(penghubung_testkit::jwt::now() + 86_400);
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &pki, &double, &api_key, "");
    let gw = Gateway::start_in(dir, &text).await;
    let until = std::time::Instant::now() + Duration::from_millis(5_000);
    let statuses = load(gw.addr, "/pusat/dukcapil/nik/1", 8, until).await;
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        statuses.len(),
        failed.first()
    );
    assert!(statuses.len() > 50, "{} calls", statuses.len());
    // Several tokens were needed, each fetched once however many callers waited.
    let tokens = double.token_requests();
    eprintln!(
        "mid-load expiry: {} calls by 8 callers in 5 s, {tokens} token requests, {} answered 900901 and retried",
        statuses.len(),
        double.invalid_credentials()
    );
    assert!(
        (3..=8).contains(&tokens),
        "{tokens} token requests in 5 s of 2 s tokens"
    );
    assert!(
        double.invalid_credentials() >= 1,
        "the 900901 refresh-and-retry path ran"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_redis_fetch_one_token_between_them() {
    let redis = penghubung_testkit::redis::RedisServer::start();
    let pki = Pki::new();
    let double = SplpDouble::start(&pki, CLIENT_ID, CLIENT_SECRET, 3600, apis()).await;
    let api_key = double.api_key(penghubung_testkit::jwt::now() + 86_400);
    let redis_table = format!("\n[redis]\nurl = {:?}\n", redis.url());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path(), &pki, &double, &api_key, "");
        // [redis] is a top-level table: put it before the catalogue.
        let text = text.replacen("[[listener]]", &format!("{redis_table}\n[[listener]]"), 1);
        nodes.push(Gateway::start_in(dir, &text).await);
    }
    let until = std::time::Instant::now() + Duration::from_millis(1_500);
    let (a, b) = tokio::join!(
        load(nodes[0].addr, "/pusat/dukcapil/nik/1", 6, until),
        load(nodes[1].addr, "/pusat/samsat/pajak/1", 6, until)
    );
    assert!(
        a.iter().chain(&b).all(|(s, _)| *s == 200),
        "{:?}",
        a.iter().chain(&b).find(|(s, _)| *s != 200)
    );
    assert!(!a.is_empty() && !b.is_empty());
    eprintln!(
        "two nodes: {} + {} calls, {} token request(s)",
        a.len(),
        b.len(),
        double.token_requests()
    );
    assert_eq!(double.token_requests(), 1, "one token for both nodes");
    // The token sits in Redis under a digest of the endpoint and client id, never the id.
    let keys = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "--scan"])
        .output()
        .expect("redis-cli runs");
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(keys.contains("penghubung:splp:token:"), "{keys}");
    assert!(!keys.contains(CLIENT_ID), "{keys}");
    for gw in nodes {
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_down_opens_the_circuit_with_a_clean_503_and_recovers() {
    let pki = Pki::new();
    let double = SplpDouble::start(&pki, CLIENT_ID, CLIENT_SECRET, 3600, apis()).await;
    let api_key = double.api_key(penghubung_testkit::jwt::now() + 86_400);
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &pki, &double, &api_key, "");
    let gw = Gateway::start_in(dir, &text).await;
    assert_eq!(send(gw.addr, "/pusat/dukcapil/nik/1", &[]).await.0, 200);

    double.set_down(true);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(gw.addr, "/pusat/dukcapil/nik/1", &[]).await.0);
    }
    assert!(
        statuses.iter().all(|s| *s == 502 || *s == 503),
        "{statuses:?}"
    );
    // Open: refused at once, a clean problem body, nothing sent to the peer.
    let seen_before = double.seen().len();
    let started = std::time::Instant::now();
    let (status, body) = send(gw.addr, "/pusat/dukcapil/nik/1", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["reason"], "no_healthy_target");
    assert_eq!(double.seen().len(), seen_before);
    let (_, health) = gw.admin_get("/health").await;
    assert!(health.contains("splp-pusat"), "{health}");

    // The peer comes back: after the open time one probe goes through, and the circuit closes.
    double.set_down(false);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(send(gw.addr, "/pusat/dukcapil/nik/1", &[]).await.0, 200);
    assert_eq!(send(gw.addr, "/pusat/dukcapil/nik/2", &[]).await.0, 200);
    gw.shutdown().await;
}

/// The national SPLP calling in: three Layanan exposed `pusat`, `provinsi` and (by default)
/// `internal`, the peer acting as application `splp-pusat` with a grant on each.
fn inbound_config(dir: &Path, upstream: std::net::SocketAddr) -> String {
    let jwks = write_file(
        dir,
        "splp-pusat-jwks.json",
        &serde_json::json!({ "keys": [SplpDouble::jwk()] }).to_string(),
    );
    let consent = r#"consent = { by = "Kepala Dinas", at = "2026-01-05T09:00:00+07:00" }"#;
    let mut services = String::new();
    for (id, exposure) in [
        ("pusat", "pusat"),
        ("prov", "provinsi"),
        ("dalam", "internal"),
    ] {
        services.push_str(&format!(
            r#"
[[service]]
id = "layanan-{id}"
owner_opd = "disdukcapil"
hosts = ["localhost"]
upstream = "app"
exposure = "{exposure}"

[[service.route]]
path = "/{id}/*"

[[grant]]
id = "splp-{id}"
application = "splp-pusat"
service = "layanan-{id}"
tujuan = "Integrasi SPLP nasional"
cakupan = [{{ methods = ["GET"], paths = ["/{id}/*"] }}]
{consent}
"#
        ));
    }
    Cfg::new(&[upstream])
        .tail(&format!(
            r#"
{services}

[[opd]]
id = "disdukcapil"
name = "Dinas Kependudukan dan Pencatatan Sipil"

[[opd]]
id = "kominfo-pusat"
name = "SPLP Nasional (Kementerian Kominfo)"

[[application]]
id = "splp-pusat"
opd = "kominfo-pusat"
name = "SPLP Nasional"

[[peer]]
name = "splp-nasional"
tier = "pusat"
application = "splp-pusat"
assertion_jwks = {jwks:?}
"#,
            jwks = jwks.display().to_string()
        ))
        .render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_peer_calls_are_verified_and_reach_only_what_is_exposed_to_their_tier() {
    let upstream = penghubung_e2e::Upstream::start("layanan", penghubung_e2e::Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let text = inbound_config(dir.path(), upstream.addr);
    let gw = Gateway::start_in(dir, &text).await;
    let now = penghubung_testkit::jwt::now();
    let good = SplpDouble::backend_jwt(now + 300, "admin@kominfo.go.id");
    let assertion = |token: &str| vec![("x-jwt-assertion", token.to_owned())];
    let call = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let addr = gw.addr;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(addr, path, &h).await
        }
    };

    // The peer's backend JWT: served where the exposure includes pusat.
    let (status, body) = call("/pusat/penduduk/1", assertion(&good)).await;
    assert_eq!(status, 200, "{body}");
    let received = upstream.requests();
    assert_eq!(received.len(), 1);
    assert!(
        received[0]
            .headers
            .iter()
            .all(|(k, _)| k != "x-jwt-assertion"),
        "the backend JWT is not forwarded"
    );
    assert!(received[0]
        .headers
        .iter()
        .any(|(k, v)| k == "x-penghubung-consumer-application" && v == "splp-pusat"));

    // Not exposed to pusat: refused, nothing forwarded.
    for path in ["/prov/penduduk/1", "/dalam/penduduk/1"] {
        let (status, body) = call(path, assertion(&good)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("not_exposed_to_peer"), "{body}");
    }
    assert_eq!(upstream.requests().len(), 1);

    // Expired, or forged (same claims, signed by another key): refused.
    let expired = SplpDouble::backend_jwt(now - 3_600, "admin@kominfo.go.id");
    let (status, body) = call("/pusat/penduduk/1", assertion(&expired)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("peer_assertion_expired"), "{body}");
    let header = r#"{"typ":"JWT","alg":"RS256","kid":"splp-backend"}"#;
    let payload = serde_json::json!({"iss": "wso2.org/products/am", "sub": "admin@kominfo.go.id", "exp": now + 300}).to_string();
    let forged = penghubung_testkit::jwt::sign_rs256(
        &penghubung_testkit::jwt::rsa_keys().0,
        header,
        &payload,
    );
    let (status, body) = call("/pusat/penduduk/1", assertion(&forged)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("peer_assertion_invalid"), "{body}");
    // Tampered claims under the peer's genuine signature: refused too.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = penghubung_testkit::jwt::b64(
        serde_json::json!({"iss": "wso2.org/products/am", "sub": "root", "exp": now + 9_999})
            .to_string()
            .as_bytes(),
    );
    let (status, _) = call("/pusat/penduduk/1", assertion(&parts.join("."))).await;
    assert_eq!(status, 401);

    // An X-JWT-Assertion from anyone else is not a credential and is stripped: on the
    // anonymous `demo` service the call goes through without it.
    let other = penghubung_testkit::jwt::sign_rs256(
        &penghubung_testkit::jwt::rsa_keys().0,
        header,
        &serde_json::json!({"iss": "https://idp.opd.example", "sub": "x", "exp": now + 300})
            .to_string(),
    );
    let (status, body) = call("/demo/x", assertion(&other)).await;
    assert_eq!(status, 200, "{body}");
    let last = upstream.requests().pop().unwrap();
    assert!(last.headers.iter().all(|(k, _)| k != "x-jwt-assertion"));
    // ... and on a service that needs a credential it is none.
    let (status, body) = call("/pusat/penduduk/1", assertion(&other)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("credential_missing"), "{body}");

    // Evidence: the accepted peer call says where it came from.
    let records = evidence::records(&gw.dir.path().join("evidence"));
    let directions: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Request(q)) => Some(q.peer_direction.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        directions,
        vec!["inbound-from-pusat".to_owned(), String::new()]
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_is_not_from_its_pinned_ca_gets_nothing() {
    // TLS verification is always on: the gateway trusts only the peer's configured CA, and a
    // server certificate from another CA (same names) is refused before any byte is sent, the
    // token request included.
    let trusted = Pki::new();
    let other = Pki::new();
    let double = SplpDouble::start(&other, CLIENT_ID, CLIENT_SECRET, 3600, apis()).await;
    let api_key = double.api_key(penghubung_testkit::jwt::now() + 86_400);
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &trusted, &double, &api_key, "");
    let gw = Gateway::start_in(dir, &text).await;
    let (status, body) = send(gw.addr, "/pusat/dukcapil/nik/1", &[]).await;
    assert_eq!(status, 502, "{body}");
    let (status, body) = send(gw.addr, "/pusat/sapa/api/x", &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(double.token_requests(), 0);
    assert!(double.seen().is_empty());
    gw.shutdown().await;
}
