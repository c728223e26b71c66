//! Credentials other than external JWTs (mTLS, API keys, the gateway token endpoint), the
//! one-credential rule, grants, and the error table.

use std::time::{Duration, SystemTime};

use super::support::*;
use crate::auth::{AuthError, AuthRuntime, CredentialKind, CredentialSetting, ServiceAuthSettings};
use crate::catalog::Classification;
use crate::identity::PeerIdentity;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use sha2::Digest as _;

fn client_cert(cn: &str) -> PeerIdentity {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![format!("{cn}.pemda.example")]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().to_vec();
    PeerIdentity {
        subject: format!("CN={cn}"),
        sha256: hex::encode(sha2::Sha256::digest(&der)),
        der,
    }
}

const GRANTS: &str = r#"
    [[grant]]
    id = "simpeg-pegawai"
    application = "simpeg"
    service = "pegawai"
    tujuan = "Sinkronisasi data pegawai"
    cakupan = [{ methods = ["GET"], paths = ["/layanan/pegawai/{nip}", "/layanan/pegawai/{nip}/riwayat/*"] }]
    valid_from = "2020-01-01T00:00:00+07:00"
    valid_until = "2100-01-01T00:00:00+07:00"
    consent = { by = "Kepala BKD", at = "2020-01-01T00:00:00+07:00" }
    [[grant]]
    id = "simpeg-lama"
    application = "simpeg"
    service = "arsip"
    tujuan = "Arsip"
    cakupan = [{ methods = ["*"], paths = ["/*"] }]
    valid_until = "2021-01-01T00:00:00Z"
    consent = { by = "Kepala Arsip", at = "2020-01-01T00:00:00Z" }
    [[grant]]
    id = "simpeg-nanti"
    application = "simpeg"
    service = "nanti"
    tujuan = "Nanti"
    cakupan = [{ methods = ["*"], paths = ["/*"] }]
    valid_from = "2099-01-01T00:00:00Z"
    consent = { by = "Kepala", at = "2020-01-01T00:00:00Z" }
    [[grant]]
    id = "simpeg-tanpa-persetujuan"
    application = "simpeg"
    service = "nik"
    tujuan = "Verifikasi NIK"
    cakupan = [{ methods = ["GET"], paths = ["/*"] }]
    [[grant]]
    id = "simpeg-rahasia"
    application = "simpeg"
    service = "rahasia"
    tujuan = "Data rahasia"
    cakupan = [{ methods = ["GET"], paths = ["/*"] }]
    consent = { by = "Kepala", at = "2020-01-01T00:00:00Z" }
"#;

/// A runtime accepting `cert`, and the directory of its JWKS file.
async fn rt_with_cert(cert: &PeerIdentity) -> (AuthRuntime, TempDir) {
    let dir = temp_dir("access");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[rsa_jwk(&rsa_keys().0, "rsa-1")]);
    let (o, a, g) = parties(&cert.sha256, GRANTS);
    let rt = AuthRuntime::build(&auth_settings(&jwks, ""), &compile(&o, &a, &g), None, None)
        .await
        .unwrap();
    (rt, dir)
}

fn apikey(k: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("apikey", HeaderValue::from_str(k).unwrap());
    h
}

#[tokio::test]
async fn auth_mtls_maps_certificates_by_fingerprint_and_subject() {
    let cert = client_cert("simpeg");
    let (rt, _dir) = rt_with_cert(&cert).await;
    let svc = service();
    let p = rt
        .authenticate(&HeaderMap::new(), &uri(), Some(&cert), &svc)
        .await
        .unwrap();
    assert_eq!(
        (p.application.as_str(), p.credential_kind, p.mtls_verified),
        ("simpeg", CredentialKind::Mtls, true)
    );
    assert_eq!(p.credential_fingerprint, cert.sha256);
    let mut by_subject = client_cert("unlisted");
    by_subject.subject = "CN=simpeg-by-subject,O=BKD,C=ID".into();
    let p = rt
        .authenticate(&HeaderMap::new(), &uri(), Some(&by_subject), &svc)
        .await
        .unwrap();
    assert_eq!(p.application, "simpeg");
    let stranger = client_cert("stranger");
    let e = rt
        .authenticate(&HeaderMap::new(), &uri(), Some(&stranger), &svc)
        .await
        .unwrap_err();
    assert_eq!(e, AuthError::UnknownCertificate);
    let no_mtls = ServiceAuthSettings {
        credentials: vec![CredentialSetting::Jwt],
        ..service()
    };
    let e = rt
        .authenticate(&HeaderMap::new(), &uri(), Some(&cert), &no_mtls)
        .await
        .unwrap_err();
    assert_eq!(
        (e.clone(), e.wso2_code()),
        (
            AuthError::MissingCredentials,
            Some(("900902", "Missing Credentials"))
        )
    );
}

#[tokio::test]
async fn auth_api_keys_and_the_one_credential_rule() {
    let cert = client_cert("simpeg");
    let (rt, _dir) = rt_with_cert(&cert).await;
    let svc = service();
    let p = rt
        .authenticate(&apikey("kunci-rahasia-simpeg"), &uri(), None, &svc)
        .await
        .unwrap();
    assert_eq!(
        (p.application.as_str(), p.credential_kind),
        ("simpeg", CredentialKind::ApiKey)
    );
    assert_eq!(p.credential_fingerprint.len(), 16);
    let e = rt
        .authenticate(&apikey("kunci-rahasia-simpeh"), &uri(), None, &svc)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.wso2_code()),
        (
            StatusCode::UNAUTHORIZED,
            Some(("900901", "Invalid Credentials"))
        )
    );
    let only_jwt = ServiceAuthSettings {
        credentials: vec![CredentialSetting::Jwt],
        ..service()
    };
    let e = rt
        .authenticate(&apikey("kunci-rahasia-simpeg"), &uri(), None, &only_jwt)
        .await
        .unwrap_err();
    assert_eq!(e, AuthError::CredentialNotAccepted);

    let mut both = apikey("kunci-rahasia-simpeg");
    both.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer abc"),
    );
    let mut two_auth = HeaderMap::new();
    two_auth.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer a"),
    );
    two_auth.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer b"),
    );
    let mut two_keys = apikey("kunci-rahasia-simpeg");
    two_keys.append("apikey", HeaderValue::from_static("x"));
    for h in [both, two_auth, two_keys] {
        let e = rt.authenticate(&h, &uri(), None, &svc).await.unwrap_err();
        assert_eq!(e, AuthError::AmbiguousCredentials);
    }
    for q in [
        "/x?access_token=abc",
        "/x?a=1&APIKEY=abc",
        "/x?api%5Fkey=abc",
        "/x?token=1",
    ] {
        let e = rt
            .authenticate(
                &apikey("kunci-rahasia-simpeg"),
                &q.parse().unwrap(),
                None,
                &svc,
            )
            .await
            .unwrap_err();
        assert_eq!(e, AuthError::CredentialInQuery, "{q}");
    }
    let mut cookie = HeaderMap::new();
    cookie.insert(
        http::header::COOKIE,
        HeaderValue::from_static("theme=dark; access_token=abc"),
    );
    let e = rt
        .authenticate(&cookie, &uri(), None, &svc)
        .await
        .unwrap_err();
    assert_eq!(
        (e.clone(), e.status()),
        (AuthError::CredentialInCookie, StatusCode::BAD_REQUEST)
    );
    for bad in ["Basic YTpi", "Bearer", "Bearer a b", "Bearer  a"] {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_static(bad));
        let e = rt.authenticate(&h, &uri(), None, &svc).await.unwrap_err();
        assert_eq!(e, AuthError::MalformedCredential, "{bad}");
    }
    let e = rt
        .authenticate(&HeaderMap::new(), &uri(), None, &svc)
        .await
        .unwrap_err();
    assert_eq!(e.www_authenticate(), Some("Bearer realm=\"penghubung\""));
    let anon = ServiceAuthSettings {
        anonymous: true,
        ..service()
    };
    let p = rt
        .authenticate(&HeaderMap::new(), &uri(), None, &anon)
        .await
        .unwrap();
    assert_eq!(p.credential_kind, CredentialKind::Anonymous);
}

fn basic(id: &str, secret: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn auth_token_endpoint_round_trip() {
    let cert = client_cert("simpeg");
    let (rt, _dir) = rt_with_cert(&cert).await;
    let body = b"grant_type=client_credentials";
    let r = rt
        .token_endpoint(&basic("simpeg-client", "rahasia-klien"), body)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(
        (v["token_type"].as_str(), v["expires_in"].as_u64()),
        (Some("Bearer"), Some(600))
    );
    let token = v["access_token"].as_str().unwrap();
    let p = rt
        .authenticate(&bearer(token), &uri(), None, &service())
        .await
        .unwrap();
    assert_eq!(
        (p.application.as_str(), p.credential_kind),
        ("simpeg", CredentialKind::GatewayToken)
    );
    let only_jwt = ServiceAuthSettings {
        credentials: vec![CredentialSetting::Jwt],
        ..service()
    };
    assert_eq!(
        rt.authenticate(&bearer(token), &uri(), None, &only_jwt)
            .await
            .unwrap_err(),
        AuthError::CredentialNotAccepted
    );
    // The published JWKS carries the signing key.
    let jwks: Value = serde_json::from_slice(&rt.jwks_json()).unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"].as_str(), Some(kid));
    assert!(rt.health().ephemeral_signing_key);
    // Form credentials work too; a wrong secret or unknown client is invalid_client.
    let r = rt
        .token_endpoint(
            &HeaderMap::new(),
            b"grant_type=client_credentials&client_id=simpeg-client&client_secret=rahasia-klien",
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    for (h, status) in [
        (basic("simpeg-client", "salah"), StatusCode::UNAUTHORIZED),
        (basic("ghost", "rahasia-klien"), StatusCode::UNAUTHORIZED),
    ] {
        let r = rt.token_endpoint(&h, body).await;
        assert_eq!(r.status(), status);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"penghubung\""
        );
        let v: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"], "invalid_client");
    }
    let r = rt
        .token_endpoint(
            &basic("simpeg-client", "rahasia-klien"),
            b"grant_type=password",
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = rt
        .token_endpoint(
            &basic("simpeg-client", "rahasia-klien"),
            b"grant_type=client_credentials&client_secret=x&client_id=y",
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // An assertion for the backend is signed by the same key and names the grant.
    let g = rt
        .authorize(
            &p,
            "pegawai",
            Classification::Terbuka,
            &Method::GET,
            "/layanan/pegawai/1",
            SystemTime::now(),
        )
        .unwrap();
    let a = rt.assertion(&p, &g, "pegawai", "0190-abc").unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(a.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["grant"].as_str(), claims["aud"].as_str()),
        (Some("simpeg-pegawai"), Some("pegawai"))
    );
}

#[tokio::test]
async fn auth_grants_deny_by_default() {
    let cert = client_cert("simpeg");
    let (rt, _dir) = rt_with_cert(&cert).await;
    let svc = service();
    let key = rt
        .authenticate(&apikey("kunci-rahasia-simpeg"), &uri(), None, &svc)
        .await
        .unwrap();
    let mtls = rt
        .authenticate(&HeaderMap::new(), &uri(), Some(&cert), &svc)
        .await
        .unwrap();
    let both = rt
        .authenticate(&apikey("kunci-rahasia-simpeg"), &uri(), Some(&cert), &svc)
        .await
        .unwrap();
    let now = SystemTime::now();
    let t = Classification::Terbuka;
    let az = |p, s, c, m: Method, path| rt.authorize(p, s, c, &m, path, now);
    assert_eq!(
        az(&key, "pegawai", t, Method::GET, "/layanan/pegawai/197001")
            .unwrap()
            .id,
        "simpeg-pegawai"
    );
    az(
        &key,
        "pegawai",
        t,
        Method::GET,
        "/layanan/pegawai/1/riwayat/2024",
    )
    .unwrap();
    let cases = [
        (
            az(&key, "tidak-ada", t, Method::GET, "/x"),
            AuthError::NoGrant,
        ),
        (
            az(&key, "pegawai", t, Method::POST, "/layanan/pegawai/1"),
            AuthError::OutsideCakupan,
        ),
        (
            az(&key, "pegawai", t, Method::GET, "/layanan/pegawai"),
            AuthError::OutsideCakupan,
        ),
        (
            az(&key, "pegawai", t, Method::GET, "/layanan/pegawai/1/gaji"),
            AuthError::OutsideCakupan,
        ),
        (
            az(&key, "arsip", t, Method::GET, "/x"),
            AuthError::GrantExpired,
        ),
        (
            az(&key, "nanti", t, Method::GET, "/x"),
            AuthError::GrantNotYetValid,
        ),
        (az(&key, "nik", t, Method::GET, "/x"), AuthError::NoConsent),
        (
            az(&key, "rahasia", Classification::Rahasia, Method::GET, "/x"),
            AuthError::MtlsRequired,
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.unwrap_err(), want);
    }
    assert_eq!(AuthError::NoGrant.status(), StatusCode::FORBIDDEN);
    az(&mtls, "rahasia", Classification::Rahasia, Method::GET, "/x").unwrap();
    az(&both, "rahasia", Classification::Rahasia, Method::GET, "/x").unwrap();
    // Validity is checked against the given clock.
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(4_200_000_000);
    assert_eq!(
        rt.authorize(
            &key,
            "pegawai",
            t,
            &Method::GET,
            "/layanan/pegawai/1",
            later
        )
        .unwrap_err(),
        AuthError::GrantExpired
    );
}

#[test]
fn auth_error_status_table() {
    let table = [
        (AuthError::MissingCredentials, 401, "credential_missing"),
        (AuthError::AmbiguousCredentials, 400, "credential_ambiguous"),
        (AuthError::CredentialInQuery, 400, "credential_in_query"),
        (AuthError::CredentialInCookie, 400, "credential_in_cookie"),
        (AuthError::MalformedCredential, 400, "credential_malformed"),
        (AuthError::CredentialTooLarge, 431, "credential_too_large"),
        (
            AuthError::CredentialNotAccepted,
            401,
            "credential_kind_not_accepted",
        ),
        (AuthError::InvalidToken("jwt_expired"), 401, "jwt_expired"),
        (AuthError::UnknownApiKey, 401, "apikey_unknown"),
        (AuthError::UnknownCertificate, 401, "certificate_unknown"),
        (AuthError::UnknownSubject, 401, "subject_unknown"),
        (AuthError::NoGrant, 403, "grant_missing"),
        (AuthError::GrantNotYetValid, 403, "grant_not_yet_valid"),
        (AuthError::GrantExpired, 403, "grant_expired"),
        (AuthError::NoConsent, 403, "grant_without_consent"),
        (AuthError::OutsideCakupan, 403, "grant_outside_cakupan"),
        (AuthError::MtlsRequired, 403, "mtls_required"),
        (AuthError::Internal("sign_failed"), 500, "sign_failed"),
    ];
    for (e, status, reason) in table {
        assert_eq!((e.status().as_u16(), e.reason()), (status, reason), "{e:?}");
        assert_eq!(
            e.www_authenticate().is_some(),
            status == 401 || status == 400
        );
    }
}

/// The example given to the lead for the config file parses and validates.
#[test]
fn auth_config_example_parses_and_validates() {
    use crate::auth::{AuthSettings, RedisSettings};
    use crate::catalog::parties::{validate_parties, ApplicationSpec, GrantSpec, OpdSpec};
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Svc {
        auth: ServiceAuthSettings,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        auth: AuthSettings,
        redis: Option<RedisSettings>,
        opd: Vec<OpdSpec>,
        application: Vec<ApplicationSpec>,
        grant: Vec<GrantSpec>,
        service: Vec<Svc>,
    }
    let example = format!(
        r#"
[auth]
token_cache_size = 10000
quota_utc_offset_hours = 7
[[auth.issuers]]
issuer = "https://sso.pemda.go.id/realms/opd"
audiences = ["penghubung"]
jwks_url = "https://sso.pemda.go.id/realms/opd/protocol/openid-connect/certs"
algorithms = ["RS256", "ES256"]
max_lifetime_secs = 3600
leeway_secs = 30
typ = "JWT"
[auth.token_endpoint]
enabled = true
issuer = "https://gw.pemda.go.id"
audience = "penghubung"
lifetime_secs = 3600
signing_key_file = "/etc/penghubung/token-key.pem"

[redis]
url = "redis://10.0.0.5:6379/0"
key_prefix = "penghubung:"
timeout_ms = 50
on_unavailable = "local"

[[opd]]
id = "bkd"
name = "Badan Kepegawaian Daerah"

[[application]]
id = "simpeg"
opd = "bkd"
name = "SIMPEG"
limits = {{ rate = "50/s" }}
[application.credentials]
client_id = "simpeg-client"
client_secret_hash = "{}"
api_key_sha256 = ["{}"]
certificate_sha256 = ["{}"]
jwt = [{{ issuer = "https://sso.pemda.go.id/realms/opd", sub = "service-account-simpeg" }}]

[[grant]]
id = "simpeg-dukcapil-nik"
application = "simpeg"
service = "dukcapil-nik"
tujuan = "Verifikasi NIK pegawai baru"
cakupan = [{{ methods = ["GET"], paths = ["/nik/{{nik}}", "/nik/{{nik}}/keluarga/*"] }}]
valid_from = "2026-01-01T00:00:00+07:00"
valid_until = "2027-01-01T00:00:00+07:00"
limits = {{ rate = "100/s", burst = 200, quota = {{ count = 50000, period = "day" }} }}
consent = {{ by = "Kepala Disdukcapil", at = "2025-12-15T09:00:00+07:00" }}

[[service]]
[service.auth]
credentials = ["gateway_token", "apikey", "mtls"]
anonymous = false
forward_credential = false
assertion = true
fault_style = "wso2"
"#,
        penghubung_testkit::secret::argon2_hash("s"),
        "a".repeat(64),
        "AB:".repeat(31) + "AB"
    );
    let f: File = toml::from_str(&example).unwrap();
    assert!(f.auth.validate().is_empty(), "{:?}", f.auth.validate());
    assert!(f.redis.unwrap().validate().is_empty());
    assert!(f.service[0].auth.validate().is_empty());
    let errs = validate_parties(&f.opd, &f.application, &f.grant, &["dukcapil-nik"]);
    assert!(errs.is_empty(), "{errs:?}");
}

/// The runtime is shared across connections and its futures run on a multi-threaded runtime.
#[tokio::test]
async fn auth_runtime_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let cert = client_cert("simpeg");
    let (rt, _dir) = rt_with_cert(&cert).await;
    send_sync(&rt);
    let (h, u, s) = (HeaderMap::new(), uri(), service());
    let fut = rt.authenticate(&h, &u, None, &s);
    send(&fut);
    let _ = fut.await;
    send(&rt.token_endpoint(&h, b""));
}
