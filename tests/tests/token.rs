//! The gateway's token endpoint (`POST /oauth2/token`) under load and abuse: bounded argon2
//! work, limits per source address and per client id, and evidence of every issuance and
//! refusal.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use penghubung::cli::{secret_form, SecretCommand};
use penghubung_e2e::{exchange, Behaviour, Cfg, Gateway, RawResponse, Upstream};
use penghubung_evidence::schema::record::Kind;

const SECRET: &str = "rahasia-klien-simpeg";

fn config(up: &Upstream, token_table: &str) -> String {
    let hash = secret_form(&SecretCommand::ClientSecret, SECRET).unwrap();
    Cfg::new(&[up.addr])
        .tail(&format!(
            r#"
[auth.token_endpoint]
enabled = true
{token_table}

[[opd]]
id = "bkd"
name = "Badan Kepegawaian Daerah"

[[application]]
id = "simpeg"
opd = "bkd"
name = "SIMPEG"

[application.credentials]
client_id = "simpeg-client"
client_secret_hash = "{hash}"
"#
        ))
        .render()
}

fn token_request(client_id: &str, secret: &str) -> Vec<u8> {
    let body =
        format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}");
    format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn ask(gw: &Gateway, client_id: &str, secret: &str) -> RawResponse {
    exchange(gw.addr, &token_request(client_id, secret))
        .await
        .unwrap()
}

fn records(gw: &Gateway) -> Vec<penghubung_evidence::schema::Record> {
    let mut out = Vec::new();
    penghubung_evidence::verify::scan(&gw.dir.path().join("evidence"), &mut |s| {
        out.push(s.record);
        true
    })
    .unwrap();
    out
}

/// Issuances are a `request` + `outcome` pair naming the application; failures are `refused`
/// records with their stage and reason. No digest of the secret-bearing body is kept.
#[tokio::test]
async fn issuances_and_failures_are_evidence() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&config(&up, "")).await;
    let ok = ask(&gw, "simpeg-client", SECRET).await;
    assert_eq!(ok.status, 200, "{}", ok.body_text());
    let token: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    let wrong = ask(&gw, "simpeg-client", "salah").await;
    assert_eq!(wrong.status, 401);
    let unknown = ask(&gw, "nobody", "x").await;
    assert_eq!(unknown.status, 401);
    let exchange_of = |r: &RawResponse| r.header("x-penghubung-exchange-id").unwrap().to_owned();
    let all = records(&gw);
    let of = |id: &str| {
        all.iter()
            .filter(|r| r.exchange_id == id)
            .collect::<Vec<_>>()
    };

    let issued = of(&exchange_of(&ok));
    assert_eq!(issued.len(), 2, "{issued:#?}");
    let Some(Kind::Request(request)) = &issued[0].kind else {
        panic!("{issued:#?}")
    };
    let consumer = request.consumer.as_ref().unwrap();
    assert_eq!(
        (consumer.application.as_str(), consumer.opd.as_str()),
        ("simpeg", "bkd")
    );
    assert_eq!(request.canonical_path, "/oauth2/token");
    assert!(request.body_sha256.is_empty() && request.headers_sha256.is_empty());
    let Some(Kind::Outcome(outcome)) = &issued[1].kind else {
        panic!("{issued:#?}")
    };
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.outcome_class, "token_issued");
    assert_eq!(outcome.request_sequence, issued[0].sequence);
    let claims = token["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(!claims.is_empty());
    assert_eq!(outcome.reason.len(), 36, "the jti: {}", outcome.reason);

    for (response, application) in [(&wrong, "simpeg"), (&unknown, "")] {
        let refused = of(&exchange_of(response));
        assert_eq!(refused.len(), 1, "{refused:#?}");
        let Some(Kind::Refused(r)) = &refused[0].kind else {
            panic!("{refused:#?}")
        };
        assert_eq!(
            (r.stage.as_str(), r.reason_class.as_str(), r.status),
            ("authenticate", "invalid_client", 401)
        );
        assert_eq!(r.consumer.as_ref().unwrap().application, application);
        assert_eq!(r.path, "/oauth2/token");
    }
}

/// Per source address: beyond the rate, 429 with Retry-After before any secret is checked.
#[tokio::test]
async fn token_requests_are_limited_per_source_address() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&config(
        &up,
        "per_source_rate = \"3/min\"\nper_client_rate = \"100/min\"",
    ))
    .await;
    for i in 0..3 {
        assert_eq!(ask(&gw, "nobody", "x").await.status, 401, "request {i}");
    }
    let limited = ask(&gw, "simpeg-client", SECRET).await;
    assert_eq!(limited.status, 429, "{}", limited.body_text());
    assert!(limited.header("retry-after").is_some());
    let id = limited
        .header("x-penghubung-exchange-id")
        .unwrap()
        .to_owned();
    let refused: Vec<_> = records(&gw)
        .into_iter()
        .filter(|r| r.exchange_id == id)
        .collect();
    let Some(Kind::Refused(r)) = &refused[0].kind else {
        panic!("{refused:#?}")
    };
    assert_eq!(
        (r.stage.as_str(), r.reason_class.as_str()),
        ("throttle", "token_source_rate")
    );
}

/// Per client id: a real client's bucket is its own; unknown client ids share one bucket and
/// cannot exhaust it.
#[tokio::test]
async fn token_requests_are_limited_per_client_id() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&config(
        &up,
        "per_source_rate = \"100/min\"\nper_client_rate = \"2/min\"",
    ))
    .await;
    assert_eq!(ask(&gw, "nobody", "x").await.status, 401);
    assert_eq!(ask(&gw, "nobody-else", "x").await.status, 401);
    assert_eq!(
        ask(&gw, "third", "x").await.status,
        429,
        "unknown ids share a bucket"
    );
    assert_eq!(ask(&gw, "simpeg-client", SECRET).await.status, 200);
    assert_eq!(ask(&gw, "simpeg-client", "wrong").await.status, 401);
    let limited = ask(&gw, "simpeg-client", SECRET).await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
}

/// Argon2 runs in a bounded number of slots: a burst of unauthenticated requests is refused
/// with 503 at once instead of queueing without bound, and the endpoint recovers.
#[tokio::test]
async fn argon2_verifications_are_bounded() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&config(
        &up,
        "per_source_rate = \"1000/s\"\nper_client_rate = \"1000/s\"\nmax_concurrent_verifications = 1",
    ))
    .await;
    let started = Instant::now();
    let burst: Vec<_> = (0..12)
        .map(|i| {
            let addr = gw.addr;
            tokio::spawn(async move {
                exchange(addr, &token_request(&format!("nobody-{i}"), "x"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in burst {
        let r = task.await.unwrap();
        if r.status == 503 {
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        statuses.push(r.status);
    }
    let busy = statuses.iter().filter(|s| **s == 503).count();
    let ran = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(busy + ran, 12, "{statuses:?}");
    assert!(
        busy >= 1,
        "no request was refused for lack of a slot: {statuses:?}"
    );
    assert!(ran >= 1, "{statuses:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The slot is released: a real client gets its token afterwards.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ask(&gw, "simpeg-client", SECRET).await.status, 200);
}
