//! Shared helpers of the `auth_*` tests: keys generated at run time, byte-exact tokens.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use penghubung::auth::{AuthRuntime, AuthSettings, ServiceAuthSettings};
use penghubung::catalog::parties::{ApplicationSpec, GrantSpec, OpdSpec};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};

pub const ISS: &str = "https://sso.pemda.example/realms/opd";
pub const AUD: &str = "penghubung";

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An RSA key: ring key pair for signing, JWK and public PEM.
pub struct Rsa {
    pub pair: RsaKeyPair,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub public_pem: String,
}

pub fn rsa_key() -> Rsa {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let der = k.to_pkcs8_der().unwrap();
    let public_pem = rsa::RsaPublicKey::from(&k)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    Rsa {
        pair: RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap(),
        n: k.n().to_bytes_be(),
        e: k.e().to_bytes_be(),
        public_pem,
    }
}

/// Two RSA keys made once per test binary (key generation is slow in debug builds).
pub fn rsa_keys() -> &'static (Rsa, Rsa) {
    static K: OnceLock<(Rsa, Rsa)> = OnceLock::new();
    K.get_or_init(|| (rsa_key(), rsa_key()))
}

pub fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let d = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, d.as_ref(), &rng).unwrap()
}

pub fn rsa_jwk(k: &Rsa, kid: &str) -> Value {
    json!({"kty":"RSA","kid":kid,"use":"sig","alg":"RS256","n":b64(&k.n),"e":b64(&k.e)})
}

pub fn ec_jwk(k: &EcdsaKeyPair, kid: &str) -> Value {
    let p = k.public_key().as_ref();
    json!({"kty":"EC","kid":kid,"crv":"P-256","x":b64(&p[1..33]),"y":b64(&p[33..65])})
}

/// `b64(header).b64(payload)` from the exact JSON texts given.
pub fn message(header: &str, payload: &str) -> String {
    format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()))
}

pub fn sign_rs256(k: &Rsa, header: &str, payload: &str) -> String {
    let m = message(header, payload);
    let mut sig = vec![0; k.pair.public().modulus_len()];
    k.pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            m.as_bytes(),
            &mut sig,
        )
        .unwrap();
    format!("{m}.{}", b64(&sig))
}

pub fn sign_es256(k: &EcdsaKeyPair, header: &str, payload: &str) -> String {
    let m = message(header, payload);
    let sig = k.sign(&SystemRandom::new(), m.as_bytes()).unwrap();
    format!("{m}.{}", b64(sig.as_ref()))
}

/// Standard claims for the test issuer, as compact JSON text.
pub fn claims(extra: &[(&str, Value)]) -> String {
    let n = now();
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "svc-simpeg", "iat": n, "nbf": n, "exp": n + 300, "jti": "j1"});
    for (k, v) in extra {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(*k);
        } else {
            c[*k] = v.clone();
        }
    }
    c.to_string()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "penghubung-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn write_jwks(path: &Path, keys: &[Value]) {
    // Write then rename, as an operator's deployment would, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

pub fn auth_settings(jwks: &Path, extra: &str) -> AuthSettings {
    toml::from_str(&format!(
        r#"
        token_cache_size = 100
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        jwks_file = "{}"
        algorithms = ["RS256", "ES256"]
        max_lifetime_secs = 3600
        leeway_secs = 30
        jwks_min_refresh_secs = 30
        [token_endpoint]
        enabled = true
        issuer = "https://gw.pemda.example"
        audience = "penghubung"
        lifetime_secs = 600
        {extra}
        "#,
        jwks.display()
    ))
    .unwrap()
}

/// Parties: OPD `bkd`, application `simpeg` (JWT subject, API key, client secret, certificate),
/// grants as given in TOML.
pub fn parties(
    cert_sha256: &str,
    grants_toml: &str,
) -> (Vec<OpdSpec>, Vec<ApplicationSpec>, Vec<GrantSpec>) {
    #[derive(serde::Deserialize)]
    struct F {
        opd: Vec<OpdSpec>,
        application: Vec<ApplicationSpec>,
        #[serde(default)]
        grant: Vec<GrantSpec>,
    }
    let key_hash = hex::encode(sha2::Sha256::digest(b"kunci-rahasia-simpeg"));
    let secret_hash = secret_hash("rahasia-klien");
    let f: F = toml::from_str(&format!(
        r#"
        [[opd]]
        id = "bkd"
        name = "Badan Kepegawaian Daerah"
        [[opd]]
        id = "disdukcapil"
        name = "Dinas Kependudukan dan Pencatatan Sipil"
        [[application]]
        id = "simpeg"
        opd = "bkd"
        name = "SIMPEG"
        [application.credentials]
        client_id = "simpeg-client"
        client_secret_hash = "{secret_hash}"
        api_key_sha256 = ["{key_hash}"]
        certificate_sha256 = ["{cert_sha256}"]
        certificate_subjects = ["CN=simpeg-by-subject,O=BKD,C=ID"]
        jwt = [{{ issuer = "{ISS}", sub = "svc-simpeg" }}]
        [[application]]
        id = "other"
        opd = "disdukcapil"
        name = "Other"
        {grants_toml}
        "#
    ))
    .unwrap();
    (f.opd, f.application, f.grant)
}

use sha2::Digest as _;

pub fn secret_hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

pub async fn runtime(jwks: &Path, grants_toml: &str) -> AuthRuntime {
    let (o, a, g) = parties(&"ab".repeat(32), grants_toml);
    AuthRuntime::build(&auth_settings(jwks, ""), &o, &a, &g, None, None)
        .await
        .unwrap()
}

pub fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

pub fn uri() -> http::Uri {
    http::Uri::from_static("/layanan/pegawai/123")
}

pub fn service() -> ServiceAuthSettings {
    ServiceAuthSettings::default()
}
