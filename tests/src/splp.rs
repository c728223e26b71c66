//! A test double of a peer SPL running WSO2 API Manager (the national SPLP), on loopback with
//! real TLS from the test kit. What it reproduces, and from which documentation:
//!
//! - the OAuth2 token endpoint `POST /oauth2/token` (WSO2 API-M "Secure APIs using OAuth2
//!   tokens"; RFC 6749 §4.4): `grant_type=client_credentials` in a form body, the consumer key
//!   and secret in HTTP Basic; answers `{"access_token","scope":"default","token_type":"Bearer",
//!   "expires_in"}`, or `401 {"error":"invalid_client"}` for wrong credentials;
//! - tokens that expire (`expires_in`), and a peer whose clock runs ahead of the gateway's
//!   (`skew`): a token is refused a little before its announced expiry, as a real peer may;
//! - tenant gateway paths `/t/{tenant-domain}/{context}/{version}/…` (WSO2 "Customize the API
//!   Store and Gateway URLs for tenants") and super-tenant paths `/{context}/{version}/…`;
//! - per-API authorization headers: `Authorization: Bearer`, a custom header
//!   (`AuthorizationSPLP: Bearer`, WSO2 "Use a custom authorization header") and `apikey` with a
//!   self-contained JWT API key (WSO2 "Secure APIs using API keys": RS256, header `kid:
//!   gateway_certificate_alias`, claim `token_type: apiKey`, `exp`);
//! - fault bodies (WSO2 "Error handling" and its error-code table): `900901` Invalid
//!   Credentials (flat `{"code":"900901",…}`, as observed on the national SPLP), `900902`
//!   Missing Credentials (nested `{"fault":{"code":900902,…}}`, WSO2's documented shape) and
//!   `900906` no matching resource (404);
//! - the `activityid` correlation header, echoed or generated;
//! - a backend JWT (`X-JWT-Assertion`, WSO2 "Passing enduser attributes to the backend using
//!   JWT") signed by the peer's key, for inbound calls ([`SplpDouble::backend_jwt`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use penghubung_testkit::jwt::{b64, rsa_keys, sign_rs256};
use penghubung_testkit::pki::Pki;
use tokio::net::TcpListener;

/// Which header an API of the double wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    Bearer,
    AuthorizationSplp,
    Apikey,
}

/// One API published on the double.
#[derive(Debug, Clone)]
pub struct Api {
    /// `/t/jatimprov.go.id/dukcapil/1.0` or `/sapa/1.0`.
    pub base: String,
    pub wants: Wants,
}

/// One call the double's gateway received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

#[derive(Debug)]
struct State {
    client_id: String,
    client_secret: String,
    lifetime_secs: AtomicU64,
    skew_ms: AtomicU64,
    down: AtomicBool,
    tokens: Mutex<HashMap<String, Instant>>,
    api_keys: Mutex<HashSet<String>>,
    apis: Vec<Api>,
    token_requests: AtomicU64,
    invalid_credentials: AtomicU64,
    counter: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

/// The double: gateway and token endpoint on one TLS port.
#[derive(Debug, Clone)]
pub struct SplpDouble {
    pub addr: SocketAddr,
    /// SHA-256 of its certificate (DER).
    pub cert_sha256: [u8; 32],
    state: Arc<State>,
}

fn json(status: u16, body: serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

impl SplpDouble {
    /// Starts the double with the server identity of `pki`, for `client_id`/`client_secret`,
    /// issuing tokens valid `lifetime_secs`.
    pub async fn start(
        pki: &Pki,
        client_id: &str,
        client_secret: &str,
        lifetime_secs: u64,
        apis: Vec<Api>,
    ) -> SplpDouble {
        use sha2::Digest as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pki.server.cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.as_ref().to_vec())
            .unwrap();
        let cert_sha256: [u8; 32] = sha2::Sha256::digest(&der).into();
        let mut config = (*pki.server.server_config()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let state = Arc::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            lifetime_secs: AtomicU64::new(lifetime_secs),
            skew_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
            api_keys: Mutex::new(HashSet::new()),
            apis,
            token_requests: AtomicU64::new(0),
            invalid_credentials: AtomicU64::new(0),
            counter: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                if s.down.load(Ordering::SeqCst) {
                    drop(tcp);
                    continue;
                }
                let acceptor = acceptor.clone();
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move {
                            // Down: established connections break too (no answer, closed).
                            if s.down.load(Ordering::SeqCst) {
                                return Err(std::io::Error::other("peer down"));
                            }
                            Ok(answer(&s, req).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        SplpDouble {
            addr,
            cert_sha256,
            state,
        }
    }

    /// Token requests answered with a token.
    pub fn token_requests(&self) -> u64 {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Calls refused with `900901`.
    pub fn invalid_credentials(&self) -> u64 {
        self.state.invalid_credentials.load(Ordering::SeqCst)
    }

    /// Calls received by the API gateway part.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }

    /// The peer's clock runs `ms` ahead: tokens are refused that long before their expiry.
    pub fn set_skew_ms(&self, ms: u64) {
        self.state.skew_ms.store(ms, Ordering::SeqCst);
    }

    /// Down: new connections are closed at once, before TLS, and open ones at their next
    /// request, unanswered.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Issues a JWT API key (WSO2's self-contained API key) expiring at `exp`.
    pub fn api_key(&self, exp: u64) -> String {
        let header = r#"{"typ":"JWT","alg":"RS256","kid":"gateway_certificate_alias"}"#;
        let payload = serde_json::json!({
            "sub": "pemda@carbon.super",
            "token_type": "apiKey",
            "iss": "https://splp.example/oauth2/token",
            "iat": exp.saturating_sub(86_400 * 90),
            "exp": exp,
            "jti": format!("key-{}", self.state.counter.fetch_add(1, Ordering::SeqCst)),
        })
        .to_string();
        let key = sign_rs256(&rsa_keys().1, header, &payload);
        self.state.api_keys.lock().insert(key.clone());
        key
    }

    /// A backend JWT as WSO2 sends it to a backend (`X-JWT-Assertion`), signed by the peer's
    /// key (`rsa_keys().1`), with the given expiry and subscriber.
    pub fn backend_jwt(exp: u64, subscriber: &str) -> String {
        let header = r#"{"typ":"JWT","alg":"RS256","kid":"splp-backend"}"#;
        let payload = serde_json::json!({
            "iss": "wso2.org/products/am",
            "sub": subscriber,
            "exp": exp,
            "http://wso2.org/claims/subscriber": subscriber,
            "http://wso2.org/claims/applicationname": "integrasi-pusat",
        })
        .to_string();
        sign_rs256(&rsa_keys().1, header, &payload)
    }

    /// The JWK of the key that signs backend JWTs and API keys.
    pub fn jwk() -> serde_json::Value {
        penghubung_testkit::jwt::rsa_jwk(&rsa_keys().1, "splp-backend")
    }
}

fn unix_now() -> u64 {
    penghubung_testkit::jwt::now()
}

async fn answer(
    s: &State,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if parts.uri.path() == "/oauth2/token" {
        let form = String::from_utf8_lossy(&body);
        let expected = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{}", s.client_id, s.client_secret)
            )
        );
        if parts.method != http::Method::POST || !form.contains("grant_type=client_credentials") {
            return json(400, serde_json::json!({"error": "unsupported_grant_type"}));
        }
        if header("authorization").as_deref() != Some(expected.as_str()) {
            return json(
                401,
                serde_json::json!({"error": "invalid_client", "error_description": "A valid OAuth client could not be found for client_id"}),
            );
        }
        let n = s.counter.fetch_add(1, Ordering::SeqCst);
        let token = format!("splp-access-{n}-{}", b64(&n.to_be_bytes()));
        let lifetime = s.lifetime_secs.load(Ordering::SeqCst);
        s.tokens.lock().insert(
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        );
        s.token_requests.fetch_add(1, Ordering::SeqCst);
        return json(
            200,
            serde_json::json!({"access_token": token, "scope": "default", "token_type": "Bearer", "expires_in": lifetime}),
        );
    }
    let path = parts.uri.path().to_owned();
    s.seen.lock().push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    let activity = header("activityid")
        .unwrap_or_else(|| format!("act-{}", s.counter.fetch_add(1, Ordering::SeqCst)));
    let Some(api) = s
        .apis
        .iter()
        .find(|a| path == a.base || path.starts_with(&format!("{}/", a.base)))
    else {
        let mut r = json(
            404,
            serde_json::json!({"fault": {"code": 900906, "message": "No matching resource found for given API Request", "description": "The requested resource is not available."}}),
        );
        r.headers_mut()
            .insert("activityid", activity.parse().unwrap());
        return r;
    };
    let credential = match api.wants {
        Wants::Bearer => header("authorization"),
        Wants::AuthorizationSplp => header("authorizationsplp"),
        Wants::Apikey => header("apikey"),
    };
    let valid = match (api.wants, credential.as_deref()) {
        (_, None) => None,
        (Wants::Apikey, Some(key)) => Some(
            s.api_keys.lock().contains(key)
                && penghubung_adapter_splp::wso2::jwt_expiry(key).is_some_and(|e| e > unix_now()),
        ),
        (_, Some(value)) => Some(value.strip_prefix("Bearer ").is_some_and(|t| {
            let skew = Duration::from_millis(s.skew_ms.load(Ordering::SeqCst));
            s.tokens
                .lock()
                .get(t)
                .is_some_and(|expiry| Instant::now() + skew < *expiry)
        })),
    };
    let mut response = match valid {
        None => json(
            401,
            serde_json::json!({"fault": {"code": 900902, "message": "Missing Credentials", "description": "Invalid Credentials. Make sure your API invocation call has a header: 'Authorization : Bearer ACCESS_TOKEN' or 'Authorization : Basic ACCESS_TOKEN' or 'apikey: API_KEY'"}}),
        ),
        Some(false) => {
            s.invalid_credentials.fetch_add(1, Ordering::SeqCst);
            json(
                401,
                serde_json::json!({"code": "900901", "message": "Invalid Credentials", "description": "Invalid Credentials. Make sure you have provided the correct security credentials"}),
            )
        }
        Some(true) => json(
            200,
            serde_json::json!({"path": path, "backend_auth": header("auth").is_some(), "body_length": body.len()}),
        ),
    };
    response
        .headers_mut()
        .insert("activityid", activity.parse().unwrap());
    response
}
