//! `/health` with the trust state: a stale CRL, an unreachable TSA, an expiring signing
//! certificate and a JWKS that fails to refresh each turn the summary `degraded` and are named
//! in `failing`, while `/ready` stays 200; a node with none of these is `ok`, and a TSA that is
//! not configured reads `disabled`, never `ok`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use penghubung_e2e::config::{access_config, AccessOpts};
use penghubung_e2e::gateway::Gateway;
use penghubung_e2e::pki::Pki;
use penghubung_e2e::raw::admin;
use penghubung_e2e::testkit::jwt;
use penghubung_e2e::testkit::pki::{document_signing, signer_files};
use penghubung_e2e::testkit::tsa::{start_tsa, tsa_pki};
use penghubung_e2e::upstream::{Behaviour, Upstream};
use penghubung_e2e::{get, write_file, Cfg};
use serde_json::Value;

async fn health(gw: &Gateway) -> Value {
    let r = gw.admin_raw("/health").await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

async fn ready(gw: &Gateway) -> u16 {
    admin(gw.admin, "/ready").await.status
}

fn failing(h: &Value) -> Vec<String> {
    h["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Polls `/health` until `done` holds (bounded by 15 s: checkpoints come every second).
async fn health_when(gw: &Gateway, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let h = health(gw).await;
        if done(&h) {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never got there: {h:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CRL of the test CA with `next_update` relative to now.
fn crl_pem(pki: &Pki, next_update: time::Duration) -> String {
    use rcgen::{
        CertificateParams, CertificateRevocationListParams, KeyIdMethod, KeyPair, SerialNumber,
    };
    let key = KeyPair::from_pem(&pki.ca_key_pem()).unwrap();
    let ca = CertificateParams::from_ca_cert_pem(&pki.ca_pem)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - time::Duration::days(30),
        next_update: now + next_update,
        crl_number: SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &key)
    .unwrap()
    .pem()
    .unwrap()
}

async fn gateway_with_crl(up: &Upstream, pki: &Pki, crl: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    let mut table = pki.listener_tls_with(dir.path(), "required", false);
    let path = write_file(dir.path(), "current.crl.pem", crl);
    // "warn": the listener keeps serving with a stale CRL; health still says so.
    table.push_str(&format!(
        "crls = [{:?}]\ncrl_expired = \"warn\"\n",
        path.display().to_string()
    ));
    cfg.listener_tables = table;
    Gateway::start_in(dir, &cfg.render()).await
}

#[tokio::test]
async fn a_stale_crl_is_degraded_and_ready() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();

    let current = gateway_with_crl(&up, &pki, &crl_pem(&pki, time::Duration::days(1))).await;
    let h = health(&current).await;
    assert_eq!(h["status"], "ok", "{h:#}");
    assert!(failing(&h).is_empty(), "{h:#}");
    assert_eq!(h["trust"]["crl"][0]["listener"], "main");
    assert_eq!(h["trust"]["crl"][0]["stale"], false);
    // No TSA configured: `disabled`, never `ok`; no signer either.
    assert_eq!(h["trust"]["tsa"]["state"], "disabled", "{h:#}");
    assert_eq!(h["trust"]["signer"]["state"], "disabled", "{h:#}");
    assert_eq!(h["trust"]["evidence_storage"]["state"], "writable", "{h:#}");
    assert!(
        h["trust"]["evidence_storage"]["free_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(h["trust"]["redis"]["state"], "not_configured");

    let stale = gateway_with_crl(&up, &pki, &crl_pem(&pki, -time::Duration::days(1))).await;
    let h = health(&stale).await;
    assert_eq!(h["status"], "degraded", "{h:#}");
    assert_eq!(failing(&h), ["crl:main"], "{h:#}");
    assert_eq!(h["trust"]["crl"][0]["stale"], true, "{h:#}");
    assert!(h["trust"]["crl"][0]["next_update"].is_string(), "{h:#}");
    assert_eq!(ready(&stale).await, 200);
}

/// A signer certificate (P-256, documentSigning) valid for `days` more days, with its CA.
fn signer_expiring_in(dir: &Path, days: i64) -> (std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Health Test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Penghubung checkpoint signer");
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![document_signing()];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(300);
    params.not_after = now + time::Duration::days(days);
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let key_path = write_file(dir, "expiring.key", &key.serialize_pem());
    let chain = write_file(
        dir,
        "expiring-chain.pem",
        &format!("{}{}", leaf.pem(), ca.pem()),
    );
    (key_path, chain)
}

/// The data-plane config with evidence checkpoints every second, signed by `key`/`chain` and
/// time-stamped by the TSA at `tsa_url` (trusting `tsa_ca`).
fn signed_config(up: &Upstream, key: &Path, chain: &Path, tsa_url: &str, tsa_ca: &Path) -> String {
    let tail = format!(
        "\n[evidence.signer]\nmode = \"key_file\"\nkey = {:?}\ncertificate_chain = {:?}\n\n\
         [evidence.tsa]\nurl = {tsa_url:?}\nca_certificate = {:?}\nunreachable_window_secs = 3600\n\
         policy = \"continue\"\ntimeout_ms = 500\n",
        key.display().to_string(),
        chain.display().to_string(),
        tsa_ca.display().to_string()
    );
    Cfg::new(&[up.addr]).tail(&tail).render().replace(
        "dir = \"@EVIDENCE_DIR@\"",
        "dir = \"@EVIDENCE_DIR@\"\ncheckpoint_interval_secs = 1",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tsa_and_an_expiring_signing_certificate_are_degraded_and_ready() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let tmp = tempfile::tempdir().unwrap();
    let tsa_ca = tsa_pki(&tmp.path().join("tsa"));

    // Control: a signer valid for years and a TSA that answers.
    let tsa = start_tsa(tmp.path().join("tsa")).await;
    let good = signer_files(tmp.path(), false);
    let gw = Gateway::start(&signed_config(
        &up,
        &good.key,
        &good.chain,
        &tsa.url,
        &tsa_ca,
    ))
    .await;
    assert_eq!(get(gw.addr, "/demo/x").await.0, 200);
    let h = health_when(&gw, |h| h["trust"]["tsa"]["state"] == "granted").await;
    assert!(h["trust"]["tsa"]["last_token_at"].is_string(), "{h:#}");
    assert_eq!(h["trust"]["signer"]["state"], "ok", "{h:#}");
    assert_eq!(
        h["trust"]["signer"]["certificate"]["expiring"], false,
        "{h:#}"
    );
    assert_eq!(h["status"], "ok", "{h:#}");
    drop(gw);

    // A TSA nobody answers at, and a signer certificate that expires in 10 days.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/tsa", closed.local_addr().unwrap());
    drop(closed);
    let (key, chain) = signer_expiring_in(tmp.path(), 10);
    let gw = Gateway::start(&signed_config(&up, &key, &chain, &dead_url, &tsa_ca)).await;
    assert_eq!(get(gw.addr, "/demo/x").await.0, 200);
    let h = health_when(&gw, |h| {
        h["trust"]["tsa"]["state"] == "unavailable"
            && h["trust"]["signer"]["certificate"].is_object()
    })
    .await;
    assert_eq!(h["status"], "degraded", "{h:#}");
    let names = failing(&h);
    assert!(names.contains(&"tsa".to_owned()), "{h:#}");
    assert!(names.contains(&"signer_certificate".to_owned()), "{h:#}");
    let days = h["trust"]["signer"]["certificate"]["days_left"]
        .as_i64()
        .unwrap();
    assert!((9..=10).contains(&days), "{h:#}");
    assert_eq!(h["trust"]["signer"]["certificate"]["expiring"], true);
    assert!(h["trust"]["tsa"]["last_token_at"].is_null(), "{h:#}");
    assert_eq!(ready(&gw).await, 200);
}

#[tokio::test]
async fn a_jwks_that_fails_to_refresh_is_degraded_and_ready() {
    let up = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let key = jwt::ec_key();
    let jwks = serde_json::json!({"keys": [jwt::ec_jwk(&key, "k1")]}).to_string();
    let jwks_path = write_file(dir.path(), "jwks.json", &jwks);
    let issuer = format!(
        "[[auth.issuers]]\nissuer = {:?}\naudiences = [{:?}]\njwks_file = {:?}\nalgorithms = [\"ES256\"]\n",
        jwt::ISS,
        jwt::AUD,
        jwks_path.display().to_string()
    );
    let text = access_config(
        up.addr,
        &AccessOpts {
            jwt_issuer: &issuer,
            ..AccessOpts::default()
        },
    );
    let gw = Gateway::start_in(dir, &text).await;
    let h = health(&gw).await;
    assert_eq!(h["trust"]["jwks"][0]["issuer"], jwt::ISS, "{h:#}");
    assert_eq!(h["trust"]["jwks"][0]["fresh"], true, "{h:#}");
    assert!(
        h["trust"]["jwks"][0]["last_refresh_at"].is_string(),
        "{h:#}"
    );
    assert_eq!(h["status"], "ok", "{h:#}");

    // The key set turns unreadable; the reload refreshes it, fails, keeps the old keys.
    std::fs::write(&jwks_path, "not a key set").unwrap();
    let (code, body) = gw.reload().await;
    assert_eq!(code, 200, "{body}");
    let h = health(&gw).await;
    assert_eq!(h["trust"]["jwks"][0]["fresh"], false, "{h:#}");
    assert_eq!(h["status"], "degraded", "{h:#}");
    assert_eq!(failing(&h), [format!("jwks:{}", jwt::ISS)], "{h:#}");
    assert_eq!(ready(&gw).await, 200);
}
