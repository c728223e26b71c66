//! The gateway's own tokens: the signing key, `POST /oauth2/token` (client credentials, as on
//! SPLP's WSO2), the published JWKS, and backend assertions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::DecodingKey;
use parking_lot::Mutex;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::jwks::VerifyKey;
use super::settings::JwtAlgorithm;

enum KeyKind {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// The gateway's signing key.
pub(crate) struct Signer {
    key: KeyKind,
    /// RFC 7638 thumbprint, used as `kid`.
    pub kid: String,
    /// Public JWK.
    pub jwk: Value,
    /// Whether the key was generated at start.
    pub ephemeral: bool,
    rng: SystemRandom,
}

impl Signer {
    /// Loads a PKCS#8 PEM key (P-256 or Ed25519), or generates an ephemeral P-256 key.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let (der, ephemeral) = match path {
            Some(p) => {
                use rustls_pki_types::pem::PemObject as _;
                let k = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(p).map_err(|e| {
                    format!(
                        "{}: {e} (a PKCS#8 \"PRIVATE KEY\" PEM is expected)",
                        p.display()
                    )
                })?;
                (k.secret_pkcs8_der().to_vec(), false)
            }
            None => {
                let d = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| "cannot generate a key".to_string())?;
                (d.as_ref().to_vec(), true)
            }
        };
        let (key, jwk) = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
        {
            let pk = k.public_key().as_ref();
            let (x, y) = (
                pk.get(1..33).unwrap_or_default(),
                pk.get(33..65).unwrap_or_default(),
            );
            let jwk = json!({"crv":"P-256","kty":"EC","x":URL_SAFE_NO_PAD.encode(x),"y":URL_SAFE_NO_PAD.encode(y)});
            (KeyKind::Es256(k), jwk)
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            let jwk = json!({"crv":"Ed25519","kty":"OKP","x":URL_SAFE_NO_PAD.encode(k.public_key().as_ref())});
            (KeyKind::EdDsa(k), jwk)
        } else {
            return Err("not an EC P-256 or Ed25519 PKCS#8 key".into());
        };
        // serde_json maps are sorted, so this is the RFC 7638 canonical form.
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.to_string().as_bytes()));
        let mut jwk = jwk;
        if let Value::Object(o) = &mut jwk {
            o.insert("kid".into(), Value::String(kid.clone()));
            o.insert("use".into(), Value::String("sig".into()));
            o.insert(
                "alg".into(),
                Value::String(Self::alg_of(&key).name().into()),
            );
        }
        Ok(Self {
            key,
            kid,
            jwk,
            ephemeral,
            rng,
        })
    }

    fn alg_of(k: &KeyKind) -> JwtAlgorithm {
        match k {
            KeyKind::Es256(_) => JwtAlgorithm::ES256,
            KeyKind::EdDsa(_) => JwtAlgorithm::EdDSA,
        }
    }

    /// The signing algorithm.
    pub fn alg(&self) -> JwtAlgorithm {
        Self::alg_of(&self.key)
    }

    /// The verification key, as an issuer key.
    pub fn verify_key(&self) -> Result<VerifyKey, String> {
        let s = |k: &str| self.jwk.get(k).and_then(Value::as_str).unwrap_or_default();
        let key = match self.key {
            KeyKind::Es256(_) => DecodingKey::from_ec_components(s("x"), s("y")),
            KeyKind::EdDsa(_) => DecodingKey::from_ed_components(s("x")),
        }
        .map_err(|e| e.to_string())?;
        Ok(VerifyKey {
            algorithms: vec![self.alg()],
            key,
        })
    }

    /// Signs `claims` as a compact JWS with header `typ`.
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, &'static str> {
        let header = json!({"alg": self.alg().name(), "kid": self.kid, "typ": typ});
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match &self.key {
            KeyKind::Es256(k) => k
                .sign(&self.rng, msg.as_bytes())
                .map_err(|_| "sign_failed")?
                .as_ref()
                .to_vec(),
            KeyKind::EdDsa(k) => k.sign(msg.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Recent successful client-secret verifications, so a token request is not an argon2 run.
pub(crate) type SecretCache = Mutex<HashMap<[u8; 32], Instant>>;
const SECRET_CACHE_TTL: Duration = Duration::from_secs(300);
const SECRET_CACHE_MAX: usize = 4096;

/// Every argon2 slot is taken: the token request is answered 503 at once, never queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

/// Runs `f` on a blocking thread while holding one of the endpoint's argon2 slots (taken
/// without waiting). The slot stays held until the verification ends, even when the client
/// has gone away meanwhile.
async fn with_slot<T: Send + 'static>(
    slots: &Arc<tokio::sync::Semaphore>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<Option<T>, Busy> {
    let permit = slots.clone().try_acquire_owned().map_err(|_| Busy)?;
    Ok(tokio::task::spawn_blocking(move || {
        let out = f();
        drop(permit);
        out
    })
    .await
    .ok())
}

/// Verifies `secret` against a PHC string, off the async threads and within the argon2 slots,
/// with a short success cache (a cached success needs no slot).
pub(crate) async fn verify_secret(
    cache: &Arc<SecretCache>,
    slots: &Arc<tokio::sync::Semaphore>,
    client_id: &str,
    secret: &str,
    phc: &str,
) -> Result<bool, Busy> {
    let mut h = Sha256::new();
    for part in [client_id, secret, phc] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    if cache
        .lock()
        .get(&digest)
        .is_some_and(|t| t.elapsed() < SECRET_CACHE_TTL)
    {
        return Ok(true);
    }
    let (secret, phc) = (secret.to_owned(), phc.to_owned());
    let ok = with_slot(slots, move || {
        use argon2::PasswordVerifier as _;
        argon2::PasswordHash::new(&phc)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(secret.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await?
    .unwrap_or(false);
    if ok {
        let mut c = cache.lock();
        if c.len() >= SECRET_CACHE_MAX {
            c.retain(|_, t| t.elapsed() < SECRET_CACHE_TTL);
        }
        if c.len() < SECRET_CACHE_MAX {
            c.insert(digest, Instant::now());
        }
    }
    Ok(ok)
}

/// Runs one argon2 verification that cannot succeed, so an unknown `client_id` costs the
/// same time as a wrong secret and client ids cannot be enumerated by timing. It takes a slot
/// like a real verification.
pub(crate) async fn dummy_verify(
    slots: &Arc<tokio::sync::Semaphore>,
    secret: &str,
) -> Result<(), Busy> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let secret = secret.to_owned();
    with_slot(slots, move || {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        use argon2::PasswordVerifier as _;
        let phc = DUMMY.get_or_init(|| {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2::Argon2::default()
                .hash_password(b"penghubung-dummy", &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        });
        if let Ok(h) = argon2::PasswordHash::new(phc) {
            let _ = argon2::Argon2::default().verify_password(secret.as_bytes(), &h);
        }
    })
    .await
    .map(|_| ())
}

/// What the token endpoint tells the pipeline for the evidence log, carried in the response's
/// extensions.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    /// The application and its OPD, when the client id named one.
    pub application: Option<(String, String)>,
    /// `Ok(jti)` for an issued token, else the stage and reason class of the refusal.
    pub result: Result<String, (&'static str, &'static str)>,
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A parsed token request.
pub(crate) struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub basic: bool,
    pub scope: Option<String>,
}

/// OAuth2 error: status, `error` code.
pub(crate) type OAuthError = (http::StatusCode, &'static str, bool);

/// Parses form body and HTTP Basic client authentication (RFC 6749 §2.3.1, §4.4).
pub(crate) fn parse_request(
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<TokenRequest, OAuthError> {
    let bad = (http::StatusCode::BAD_REQUEST, "invalid_request", false);
    let body = std::str::from_utf8(body).map_err(|_| bad)?;
    let mut form: HashMap<String, String> = HashMap::new();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (pct_decode(k).ok_or(bad)?, pct_decode(v).ok_or(bad)?);
        if form.insert(k, v).is_some() {
            return Err(bad);
        }
    }
    let mut auth = headers.get_all(http::header::AUTHORIZATION).iter();
    let (a1, a2) = (auth.next(), auth.next());
    if a2.is_some() {
        return Err(bad);
    }
    let basic = match a1 {
        None => None,
        Some(a) => {
            let a = a.to_str().map_err(|_| bad)?;
            let (scheme, cred) = a.split_once(' ').ok_or(bad)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(bad);
            }
            let raw = STANDARD.decode(cred.trim()).map_err(|_| bad)?;
            let raw = String::from_utf8(raw).map_err(|_| bad)?;
            let (id, secret) = raw.split_once(':').ok_or(bad)?;
            Some((pct_decode(id).ok_or(bad)?, pct_decode(secret).ok_or(bad)?))
        }
    };
    let form_id = form.remove("client_id");
    let form_secret = form.remove("client_secret");
    let (client_id, client_secret, is_basic) = match (basic, form_id, form_secret) {
        (Some((id, s)), None, None) => (id, s, true),
        (None, Some(id), Some(s)) => (id, s, false),
        (None, None, None) => return Err((http::StatusCode::UNAUTHORIZED, "invalid_client", true)),
        _ => return Err(bad),
    };
    Ok(TokenRequest {
        grant_type: form.remove("grant_type"),
        client_id,
        client_secret,
        basic: is_basic,
        scope: form.remove("scope"),
    })
}

/// A JSON response with the no-store headers of RFC 6749 §5.1.
pub(crate) fn json_response(
    status: http::StatusCode,
    body: &Value,
    basic_challenge: bool,
) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::PRAGMA,
        http::HeaderValue::from_static("no-cache"),
    );
    if basic_challenge {
        h.insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"penghubung\""),
        );
    }
    r
}
