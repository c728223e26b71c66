//! JWT attack set against `AuthRuntime::authenticate`: every token is built byte by byte here,
//! and every refused one would be accepted (or mis-parsed) without the protection it targets.

use super::support::*;
use crate::auth::{AuthError, AuthRuntime, CredentialKind};
use http::StatusCode;
use serde_json::{json, Value};

struct Fixture {
    rt: AuthRuntime,
    ec: ring::signature::EcdsaKeyPair,
    jwks: std::path::PathBuf,
    _dir: TempDir,
}

const H_RS: &str = r#"{"alg":"RS256","typ":"JWT","kid":"rsa-1"}"#;
const H_ES: &str = r#"{"alg":"ES256","typ":"JWT","kid":"ec-1"}"#;

async fn fixture() -> Fixture {
    let (rsa, _) = rsa_keys();
    let ec = ec_key();
    let dir = temp_dir("jwt");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[rsa_jwk(rsa, "rsa-1"), ec_jwk(&ec, "ec-1")]);
    let rt = runtime(&jwks, "").await;
    Fixture {
        rt,
        ec,
        jwks,
        _dir: dir,
    }
}

async fn check(f: &Fixture, token: &str) -> Result<crate::auth::Principal, AuthError> {
    f.rt.authenticate(&bearer(token), &uri(), None, &service())
        .await
}

fn good(_: &Fixture) -> String {
    sign_rs256(&rsa_keys().0, H_RS, &claims(&[]))
}

#[tokio::test]
async fn auth_jwt_valid_tokens_are_accepted() {
    let f = fixture().await;
    let p = check(&f, &good(&f)).await.unwrap();
    assert_eq!((p.application.as_str(), p.opd.as_str()), ("simpeg", "bkd"));
    assert_eq!(p.credential_kind, CredentialKind::Jwt);
    assert_eq!(p.credential_fingerprint.len(), 64);
    let es = sign_es256(&f.ec, H_ES, &claims(&[]));
    check(&f, &es).await.unwrap();
    // The second use of a token is served from the verified-token cache.
    check(&f, &es).await.unwrap();
    assert_eq!(f.rt.stats().token_cache_hits, 1);
}

#[tokio::test]
async fn auth_jwt_alg_none_in_every_spelling_is_refused() {
    let f = fixture().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let m = message(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &claims(&[]));
        for t in [format!("{m}."), format!("{m}.{}", b64(b"sig"))] {
            let e = check(&f, &t).await.unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{alg}");
        }
    }
}

#[tokio::test]
async fn auth_jwt_hs256_keyed_with_the_rsa_public_key_is_refused() {
    let f = fixture().await;
    let (rsa, _) = rsa_keys();
    for kid in [Some("rsa-1"), None] {
        let h = match kid {
            Some(k) => format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{k}"}}"#),
            None => r#"{"alg":"HS256","typ":"JWT"}"#.to_owned(),
        };
        let m = message(&h, &claims(&[]));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, rsa.public_pem.as_bytes());
        let t = format!("{m}.{}", b64(ring::hmac::sign(&key, m.as_bytes()).as_ref()));
        assert_eq!(
            check(&f, &t).await.unwrap_err(),
            AuthError::InvalidToken("jwt_alg_not_allowed")
        );
    }
}

#[tokio::test]
async fn auth_jwt_wrong_key_and_broken_signatures_are_refused() {
    let f = fixture().await;
    let (_, other) = rsa_keys();
    let wrong = sign_rs256(other, H_RS, &claims(&[]));
    assert_eq!(
        check(&f, &wrong).await.unwrap_err(),
        AuthError::InvalidToken("jwt_signature_invalid")
    );
    let t = good(&f);
    let (m, sig) = t.rsplit_once('.').unwrap();
    let mut flipped = sig.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let cases = [
        format!("{m}."),
        m.to_owned(),
        format!("{m}.{}", std::str::from_utf8(&flipped).unwrap()),
        format!("{m}.{}", &sig[..sig.len() - 4]),
        format!("{m}.{sig}="),
        format!("{m}.{sig}.x"),
    ];
    for c in cases {
        assert_eq!(
            check(&f, &c).await.unwrap_err().status(),
            StatusCode::UNAUTHORIZED,
            "{c}"
        );
    }
    // Tampered payload under the original signature.
    let tampered = format!(
        "{}.{sig}",
        message(H_RS, &claims(&[("sub", json!("svc-admin"))]))
    );
    assert_eq!(
        check(&f, &tampered).await.unwrap_err(),
        AuthError::InvalidToken("jwt_signature_invalid")
    );
}

#[tokio::test]
async fn auth_jwt_es256_zero_signature_cve_2022_21449_is_refused() {
    let f = fixture().await;
    let m = message(H_ES, &claims(&[]));
    let t = format!("{m}.{}", b64(&[0u8; 64]));
    assert_eq!(
        check(&f, &t).await.unwrap_err(),
        AuthError::InvalidToken("jwt_signature_invalid")
    );
}

#[tokio::test]
async fn auth_jwt_kid_injection_is_refused() {
    let f = fixture().await;
    for kid in [
        "../../etc/passwd",
        "' OR '1'='1",
        "rsa-1\u{0}",
        "/dev/null",
        "",
    ] {
        let h = json!({"alg":"RS256","typ":"JWT","kid":kid}).to_string();
        let t = sign_rs256(&rsa_keys().0, &h, &claims(&[]));
        let e = check(&f, &t).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{kid:?}");
    }
    let h = r#"{"alg":"RS256","typ":"JWT","kid":7}"#;
    let t = sign_rs256(&rsa_keys().0, h, &claims(&[]));
    assert_eq!(
        check(&f, &t).await.unwrap_err(),
        AuthError::InvalidToken("jwt_kid_invalid")
    );
}

#[tokio::test]
async fn auth_jwt_embedded_key_headers_are_never_fetched_or_trusted() {
    let f = fixture().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let (rsa, attacker) = rsa_keys();
    let attacker_jwk = rsa_jwk(attacker, "rsa-1");
    for (member, value) in [
        ("jku", json!(url)),
        ("x5u", json!(url)),
        ("jwk", attacker_jwk.clone()),
        ("x5c", json!([b64(b"not-a-cert")])),
    ] {
        let mut h = json!({"alg":"RS256","typ":"JWT","kid":"rsa-1"});
        h[member] = value;
        // Signed with the trusted key: only the member itself may cause the refusal.
        for key in [rsa, attacker] {
            let t = sign_rs256(key, &h.to_string(), &claims(&[]));
            assert_eq!(
                check(&f, &t).await.unwrap_err(),
                AuthError::InvalidToken("jwt_embedded_key_refused"),
                "{member}"
            );
        }
    }
    let accepted = listener.accept();
    assert!(
        matches!(accepted, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "something connected: {accepted:?}"
    );
}

#[tokio::test]
async fn auth_jwt_crit_and_typ_are_checked() {
    let f = fixture().await;
    let h = r#"{"alg":"RS256","typ":"JWT","kid":"rsa-1","crit":["exp"],"exp":1}"#;
    let t = sign_rs256(&rsa_keys().0, h, &claims(&[]));
    assert_eq!(
        check(&f, &t).await.unwrap_err(),
        AuthError::InvalidToken("jwt_crit_unsupported")
    );
    for typ in ["dpop+jwt", "logout+jwt", "JWE"] {
        let h = json!({"alg":"RS256","typ":typ,"kid":"rsa-1"}).to_string();
        let t = sign_rs256(&rsa_keys().0, &h, &claims(&[]));
        assert_eq!(
            check(&f, &t).await.unwrap_err(),
            AuthError::InvalidToken("jwt_typ_invalid"),
            "{typ}"
        );
    }
}

#[tokio::test]
async fn auth_jwt_each_claim_is_checked() {
    let f = fixture().await;
    let n = now();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("exp", Value::Null, "jwt_claim_missing"),
        ("exp", json!((n + 300).to_string()), "jwt_claim_invalid"),
        ("exp", json!(-5), "jwt_claim_invalid"),
        ("exp", json!(n - 31), "jwt_expired"),
        ("exp", json!(n + 7200), "jwt_lifetime_too_long"),
        ("nbf", json!(n + 120), "jwt_not_yet_valid"),
        ("nbf", json!("soon"), "jwt_claim_invalid"),
        ("iat", json!(n + 120), "jwt_issued_in_future"),
        ("iat", json!(true), "jwt_claim_invalid"),
        ("iss", Value::Null, "jwt_claim_missing"),
        ("iss", json!("https://evil.example"), "jwt_issuer_unknown"),
        ("iss", json!(format!("{ISS}/")), "jwt_issuer_unknown"),
        ("iss", json!(42), "jwt_claim_invalid"),
        ("aud", Value::Null, "jwt_claim_missing"),
        ("aud", json!("penghubung-lain"), "jwt_audience_mismatch"),
        ("aud", json!(["x", "y"]), "jwt_audience_mismatch"),
        ("aud", json!([]), "jwt_claim_invalid"),
        ("aud", json!(1), "jwt_claim_invalid"),
        ("sub", Value::Null, "jwt_claim_missing"),
        ("sub", json!(""), "jwt_claim_invalid"),
        ("sub", json!(["svc-simpeg"]), "jwt_claim_invalid"),
        ("jti", json!({"a": 1}), "jwt_claim_invalid"),
    ];
    for (claim, value, reason) in cases {
        let t = sign_rs256(&rsa_keys().0, H_RS, &claims(&[(claim, value.clone())]));
        assert_eq!(
            check(&f, &t).await.unwrap_err(),
            AuthError::InvalidToken(reason),
            "{claim}={value}"
        );
    }
    // Within leeway still passes; an array audience with one match passes.
    let t = sign_rs256(
        &rsa_keys().0,
        H_RS,
        &claims(&[("exp", json!(n - 5)), ("iat", json!(n - 60))]),
    );
    check(&f, &t).await.unwrap();
    let t = sign_rs256(&rsa_keys().0, H_RS, &claims(&[("aud", json!(["x", AUD]))]));
    check(&f, &t).await.unwrap();
    // A valid token of an unmapped subject authenticates nobody.
    let t = sign_rs256(
        &rsa_keys().0,
        H_RS,
        &claims(&[("sub", json!("svc-unknown"))]),
    );
    assert_eq!(check(&f, &t).await.unwrap_err(), AuthError::UnknownSubject);
}

#[tokio::test]
async fn auth_jwt_duplicate_members_are_refused() {
    let f = fixture().await;
    let n = now();
    let dup_header = r#"{"alg":"RS256","typ":"JWT","kid":"rsa-1","alg":"RS256"}"#;
    let t = sign_rs256(&rsa_keys().0, dup_header, &claims(&[]));
    assert_eq!(
        check(&f, &t).await.unwrap_err(),
        AuthError::InvalidToken("jwt_header_invalid")
    );
    let dup_payload = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"svc-other","sub":"svc-simpeg","iat":{n},"exp":{}}}"#,
        n + 300
    );
    let t = sign_rs256(&rsa_keys().0, H_RS, &dup_payload);
    assert_eq!(
        check(&f, &t).await.unwrap_err(),
        AuthError::InvalidToken("jwt_payload_invalid")
    );
    // The same member spelled with an escape is the same member.
    let esc = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","s\u0075b":"svc-simpeg","exp":{}}}"#,
        n + 300
    );
    let t = sign_rs256(&rsa_keys().0, H_RS, &esc);
    assert_eq!(
        check(&f, &t).await.unwrap_err(),
        AuthError::InvalidToken("jwt_payload_invalid")
    );
}

#[tokio::test]
async fn auth_jwt_oversized_and_deeply_nested_tokens_are_refused() {
    let f = fixture().await;
    let big = sign_rs256(
        &rsa_keys().0,
        H_RS,
        &claims(&[("pad", json!("x".repeat(9000)))]),
    );
    assert_eq!(
        check(&f, &big).await.unwrap_err(),
        AuthError::CredentialTooLarge
    );
    assert_eq!(
        AuthError::CredentialTooLarge.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let mut nested = String::from("1");
    for _ in 0..64 {
        nested = format!(r#"{{"a":{nested}}}"#);
    }
    let p = claims(&[]).replacen('{', &format!(r#"{{"deep":{nested},"#), 1);
    let t = sign_rs256(&rsa_keys().0, H_RS, &p);
    assert_eq!(
        check(&f, &t).await.unwrap_err(),
        AuthError::InvalidToken("jwt_payload_invalid")
    );
}

fn loads_ok(rt: &AuthRuntime) -> u64 {
    rt.stats()
        .issuers
        .iter()
        .find(|i| i.issuer.contains(ISS))
        .unwrap()
        .loads_ok
}

#[tokio::test]
async fn auth_jwt_key_rotation_without_restart() {
    let f = fixture().await;
    let (old, new) = rsa_keys();
    let old_token = good(&f);
    check(&f, &old_token).await.unwrap(); // now cached
    let loads = loads_ok(&f.rt);
    write_jwks(&f.jwks, &[rsa_jwk(new, "rsa-2")]);
    let h2 = r#"{"alg":"RS256","typ":"JWT","kid":"rsa-2"}"#;
    let new_token = sign_rs256(new, h2, &claims(&[]));
    check(&f, &new_token).await.unwrap();
    assert_eq!(
        loads_ok(&f.rt),
        loads + 1,
        "one refresh for the unknown kid"
    );
    // The removed key no longer verifies anything, cached or not.
    assert_eq!(
        check(&f, &old_token).await.unwrap_err(),
        AuthError::InvalidToken("jwt_key_unknown")
    );
    let fresh_old = sign_rs256(old, H_RS, &claims(&[("jti", json!("j2"))]));
    assert_eq!(
        check(&f, &fresh_old).await.unwrap_err(),
        AuthError::InvalidToken("jwt_key_unknown")
    );
    // Unknown kids cannot force further reloads within jwks_min_refresh_secs.
    for i in 0..5 {
        let h = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"nope-{i}"}}"#);
        let t = sign_rs256(new, &h, &claims(&[]));
        assert!(check(&f, &t).await.is_err());
    }
    assert_eq!(loads_ok(&f.rt), loads + 1);
}
