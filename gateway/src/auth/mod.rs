//! Stages 3 and 4, `authenticate` and `authorize`, and the runtime that also drives stage 5
//! (`throttle`, in `crate::throttle`). Built from the config on every load and swapped whole.

pub mod endpoints;
mod error;
mod extract;
pub mod grants;
mod jwks;
mod jwt;
pub mod settings;
mod strict_json;
mod token;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use error::{AuthBuildError, AuthError};
pub use grants::GrantRuntime;
pub use settings::{
    AuthSettings, CredentialSetting, IssuerSettings, RedisSettings, ServiceAuthSettings,
    TokenEndpointSettings,
};
pub use token::TokenFacts;

use crate::catalog::parties::{normalize_fingerprint, ApplicationSpec, GrantSpec};
use crate::catalog::Classification;
use crate::identity::PeerIdentity;
use crate::telemetry::{AuthStats, IssuerStats, ThrottleStats};
use crate::throttle::{LimitPolicy, Limiter, RateInfo, ThrottleError};
use extract::Presented;
use jwks::{IssuerKeys, KeySet};
use jwt::{Issuer, TokenCache, Verified};
use token::{SecretCache, Signer};

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// Bearer JWT of an external issuer.
    Jwt,
    /// `apikey` header.
    ApiKey,
    /// TLS client certificate.
    Mtls,
    /// Bearer token from the gateway's token endpoint.
    GatewayToken,
    /// No credential (anonymous service).
    Anonymous,
}

impl CredentialKind {
    /// Stable name for evidence and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "apikey",
            Self::Mtls => "mtls",
            Self::GatewayToken => "gateway_token",
            Self::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller (stage 3's output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Consumer OPD id.
    pub opd: String,
    /// Consumer application id.
    pub application: String,
    /// How it authenticated.
    pub credential_kind: CredentialKind,
    /// Non-secret fingerprint of the credential: JWT SHA-256 of `iss|sub|jti`, certificate
    /// SHA-256, or the first 16 hex digits of the API key's SHA-256.
    pub credential_fingerprint: String,
    /// JWT issuer and subject, for token credentials.
    pub token_subject: Option<(String, String)>,
    /// Token expiry, for token credentials.
    pub expires_at: Option<SystemTime>,
    /// Whether the application is (also) authenticated by its TLS client certificate.
    pub mtls_verified: bool,
    /// The tier (`provinsi`, `pusat`) when the caller is a peer SPL (`[[peer]]`).
    pub peer_tier: Option<&'static str>,
}

/// Health of the auth subsystem for `/health` and the console.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuthHealth {
    /// Redis reachability (`None`: not configured).
    pub redis_reachable: Option<bool>,
    /// Issuers whose last JWKS load failed (old keys still in use).
    pub stale_jwks: Vec<String>,
    /// Whether the token signing key was generated at start.
    pub ephemeral_signing_key: bool,
}

impl AuthHealth {
    /// Whether everything is as configured.
    pub fn ok(&self) -> bool {
        self.redis_reachable != Some(false) && self.stale_jwks.is_empty()
    }
}

/// The parties of the catalogue compiled for the request path: credentials indexed, API-key
/// digests decoded, application limits and grants compiled. Pure; `config::validate` compiles
/// them once and `AuthRuntime::build` takes them as they are.
#[derive(Debug, Clone, Default)]
pub struct Parties {
    apps: HashMap<String, App>,
    by_client_id: HashMap<String, String>,
    api_keys: Vec<([u8; 32], String)>,
    cert_fp: HashMap<String, String>,
    cert_subject: HashMap<String, String>,
    jwt_subject: HashMap<(String, String), String>,
    grants: HashMap<String, HashMap<String, Vec<Arc<GrantRuntime>>>>,
}

impl Parties {
    /// Compiles the applications and grants (already checked by `validate_parties`; OPD ids
    /// need no compiling, principals carry them). The error is the entry's config path and what is wrong.
    pub fn compile(
        apps: &[ApplicationSpec],
        grants: &[GrantSpec],
    ) -> Result<Parties, (String, String)> {
        let cat = |path: String, message: String| (path, message);
        let mut rt_apps = HashMap::new();
        let (mut by_client_id, mut api_keys, mut cert_fp, mut cert_subject, mut jwt_subject) = (
            HashMap::new(),
            Vec::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
        );
        for (i, a) in apps.iter().enumerate() {
            let c = &a.credentials;
            if let Some(id) = &c.client_id {
                by_client_id.insert(id.clone(), a.id.clone());
            }
            for (j, h) in c.api_key_sha256.iter().enumerate() {
                let mut d = [0u8; 32];
                hex::decode_to_slice(h, &mut d).map_err(|e| {
                    cat(
                        format!("application[{i}].credentials.api_key_sha256[{j}]"),
                        e.to_string(),
                    )
                })?;
                api_keys.push((d, a.id.clone()));
            }
            for f in &c.certificate_sha256 {
                cert_fp.insert(normalize_fingerprint(f), a.id.clone());
            }
            for s in &c.certificate_subjects {
                cert_subject.insert(s.clone(), a.id.clone());
            }
            for s in &c.jwt {
                jwt_subject.insert((s.issuer.clone(), s.sub.clone()), a.id.clone());
            }
            let limits = a
                .limits
                .as_ref()
                .map(|l| LimitPolicy::compile(&format!("app:{}", a.id), l))
                .transpose()
                .map_err(|m| cat(format!("application[{i}].limits"), m))?;
            rt_apps.insert(
                a.id.clone(),
                App {
                    opd: a.opd.clone(),
                    client_id: c.client_id.clone(),
                    secret_hash: c.client_secret_hash.clone(),
                    limits,
                },
            );
        }
        let mut rt_grants: HashMap<String, HashMap<String, Vec<Arc<GrantRuntime>>>> =
            HashMap::new();
        for (i, g) in grants.iter().enumerate() {
            let gr = GrantRuntime::compile(g).map_err(|m| cat(format!("grant[{i}]"), m))?;
            rt_grants
                .entry(g.application.clone())
                .or_default()
                .entry(g.service.clone())
                .or_default()
                .push(Arc::new(gr));
        }
        Ok(Parties {
            apps: rt_apps,
            by_client_id,
            api_keys,
            cert_fp,
            cert_subject,
            jwt_subject,
            grants: rt_grants,
        })
    }
}

#[derive(Debug, Clone)]
struct App {
    opd: String,
    client_id: Option<String>,
    secret_hash: Option<String>,
    limits: Option<LimitPolicy>,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    tokens_issued: AtomicU64,
    token_failures: AtomicU64,
}

/// The bucket of a source address: an IPv4 address (IPv4-mapped IPv6 included) on its own,
/// an IPv6 address by its /64, the smallest prefix a single site is usually given (one client
/// could otherwise rotate through 2^64 buckets, and fill the store with them).
fn source_key(source: std::net::IpAddr) -> String {
    match source.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn token_policy(key: &str, rate: &str) -> Result<LimitPolicy, AuthBuildError> {
    let spec = crate::catalog::parties::LimitSpec {
        rate: Some(rate.to_owned()),
        per_second: None,
        burst: None,
        quota: None,
    };
    LimitPolicy::compile(key, &spec).map_err(|message| AuthBuildError::Catalog {
        path: format!("auth.{key}"),
        message,
    })
}

/// Everything stages 3–5 need, compiled from one config load.
pub struct AuthRuntime {
    issuer_settings: Vec<IssuerSettings>,
    issuers: HashMap<String, Issuer>,
    token: TokenEndpointSettings,
    signer: Arc<Signer>,
    apps: HashMap<String, App>,
    by_client_id: HashMap<String, String>,
    api_keys: Vec<([u8; 32], String)>,
    cert_fp: HashMap<String, String>,
    cert_subject: HashMap<String, String>,
    jwt_subject: HashMap<(String, String), String>,
    /// Grants by application, then by service (looked up without allocating).
    grants: HashMap<String, HashMap<String, Vec<Arc<GrantRuntime>>>>,
    anonymous: Arc<GrantRuntime>,
    cache: Arc<TokenCache>,
    secrets: Arc<SecretCache>,
    /// Argon2 slots of the token endpoint (`max_concurrent_verifications`).
    token_slots: Arc<tokio::sync::Semaphore>,
    token_per_source: LimitPolicy,
    token_per_client: LimitPolicy,
    limiter: Limiter,
    counters: Arc<Counters>,
}

impl AuthRuntime {
    /// Builds the runtime: loads JWKS and the signing key, compiles parties and grants, and
    /// reuses the previous runtime's limiter state, caches, signing key and Redis connection.
    pub async fn build(
        settings: &AuthSettings,
        parties: &Parties,
        redis: Option<&RedisSettings>,
        previous: Option<&AuthRuntime>,
    ) -> Result<AuthRuntime, AuthBuildError> {
        let signer = match previous
            .filter(|p| p.token.signing_key_file == settings.token_endpoint.signing_key_file)
        {
            Some(p) => p.signer.clone(),
            None => {
                let s = Signer::load(settings.token_endpoint.signing_key_file.as_deref())
                    .map_err(AuthBuildError::SigningKey)?;
                if s.ephemeral {
                    tracing::warn!(kid = %s.kid, "token signing key is ephemeral (generated at start)");
                }
                Arc::new(s)
            }
        };
        let mut issuers = HashMap::new();
        for s in &settings.issuers {
            let prev = previous
                .and_then(|p| p.issuers.get(&s.issuer))
                .map(|i| &i.keys);
            let keys = IssuerKeys::load(s, prev)
                .await
                .map_err(|message| AuthBuildError::Jwks {
                    issuer: s.issuer.clone(),
                    message,
                })?;
            issuers.insert(
                s.issuer.clone(),
                Issuer {
                    name: s.issuer.clone(),
                    audiences: s.audiences.clone(),
                    algorithms: s.algorithms.clone(),
                    max_lifetime_secs: s.max_lifetime_secs,
                    leeway_secs: s.leeway_secs.min(60),
                    typ: s.typ.clone(),
                    keys,
                    gateway: false,
                },
            );
        }
        let t = &settings.token_endpoint;
        let vk = signer.verify_key().map_err(AuthBuildError::SigningKey)?;
        issuers.insert(
            t.issuer.clone(),
            Issuer {
                name: t.issuer.clone(),
                audiences: vec![t.audience.clone()],
                algorithms: vec![signer.alg()],
                max_lifetime_secs: t.lifetime_secs,
                leeway_secs: 30,
                typ: Some("at+jwt".into()),
                keys: IssuerKeys::fixed(KeySet::from_keys(vec![(Some(signer.kid.clone()), vk)])),
                gateway: true,
            },
        );
        let Parties {
            apps: rt_apps,
            by_client_id,
            api_keys,
            cert_fp,
            cert_subject,
            jwt_subject,
            grants: rt_grants,
        } = parties.clone();
        let cache =
            match previous.filter(|p| p.issuer_settings == settings.issuers && p.token == *t) {
                Some(p) => p.cache.clone(),
                None => Arc::new(TokenCache::new(settings.token_cache_size)),
            };
        let limiter = Limiter::new(
            redis,
            settings.quota_utc_offset_hours,
            previous.map(|p| &p.limiter),
        )
        .map_err(AuthBuildError::Redis)?;
        Ok(AuthRuntime {
            issuer_settings: settings.issuers.clone(),
            issuers,
            token: t.clone(),
            signer,
            apps: rt_apps,
            by_client_id,
            api_keys,
            cert_fp,
            cert_subject,
            jwt_subject,
            grants: rt_grants,
            anonymous: Arc::new(GrantRuntime::anonymous()),
            cache,
            secrets: previous.map(|p| p.secrets.clone()).unwrap_or_default(),
            token_slots: previous
                .filter(|p| p.token.max_concurrent_verifications == t.max_concurrent_verifications)
                .map(|p| p.token_slots.clone())
                .unwrap_or_else(|| {
                    Arc::new(tokio::sync::Semaphore::new(t.max_concurrent_verifications))
                }),
            token_per_source: token_policy("token:source", &t.per_source_rate)?,
            token_per_client: token_policy("token:client", &t.per_client_rate)?,
            limiter,
            counters: previous.map(|p| p.counters.clone()).unwrap_or_default(),
        })
    }

    async fn verify_token(&self, token: &str) -> Result<Arc<Verified>, AuthError> {
        let now = token::unix_now();
        let key = TokenCache::key(token);
        if let Some(v) = self.cache.get(&key, now) {
            // A cached token stays valid only while its issuer and key are still trusted.
            if let Some(iss) = self.issuers.get(&v.issuer) {
                if iss.keys.current().contains(v.kid.as_deref()) {
                    self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(v);
                }
            }
        }
        let v = jwt::verify(token, &self.issuers, now)
            .await
            .map_err(AuthError::InvalidToken)?;
        let leeway = self
            .issuers
            .get(&v.issuer)
            .map(|i| i.leeway_secs)
            .unwrap_or(0);
        let v = Arc::new(v);
        self.cache
            .put(key, v.clone(), v.exp.saturating_add(leeway), now);
        Ok(v)
    }

    fn principal(
        &self,
        app_id: &str,
        kind: CredentialKind,
        fingerprint: String,
        tls: Option<&PeerIdentity>,
    ) -> Result<Principal, AuthError> {
        let app = self.apps.get(app_id).ok_or(AuthError::UnknownSubject)?;
        let cert_app = tls.and_then(|t| self.cert_app(t));
        Ok(Principal {
            opd: app.opd.clone(),
            application: app_id.to_owned(),
            credential_kind: kind,
            credential_fingerprint: fingerprint,
            token_subject: None,
            expires_at: None,
            mtls_verified: cert_app == Some(app_id),
            peer_tier: None,
        })
    }

    fn cert_app(&self, t: &PeerIdentity) -> Option<&str> {
        self.cert_fp
            .get(&normalize_fingerprint(&t.sha256))
            .or_else(|| self.cert_subject.get(&t.subject))
            .map(String::as_str)
    }

    /// Stage 3: establishes the caller from exactly one credential.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        tls: Option<&PeerIdentity>,
        service: &ServiceAuthSettings,
    ) -> Result<Principal, AuthError> {
        let allows = |k: CredentialSetting| service.credentials.contains(&k);
        match extract::presented(headers, uri)? {
            Presented::Bearer(tok) => {
                let v = self.verify_token(tok).await?;
                let (kind, setting) = if v.gateway {
                    (
                        CredentialKind::GatewayToken,
                        CredentialSetting::GatewayToken,
                    )
                } else {
                    (CredentialKind::Jwt, CredentialSetting::Jwt)
                };
                if !allows(setting) {
                    return Err(AuthError::CredentialNotAccepted);
                }
                let app = if v.gateway {
                    Some(v.sub.as_str())
                } else {
                    self.jwt_subject
                        .get(&(v.issuer.clone(), v.sub.clone()))
                        .map(String::as_str)
                };
                let fp = v.fingerprint.clone();
                let mut p = self.principal(app.ok_or(AuthError::UnknownSubject)?, kind, fp, tls)?;
                p.token_subject = Some((v.issuer.clone(), v.sub.clone()));
                p.expires_at = Some(UNIX_EPOCH + Duration::from_secs(v.exp));
                Ok(p)
            }
            Presented::ApiKey(k) => {
                if !allows(CredentialSetting::Apikey) {
                    return Err(AuthError::CredentialNotAccepted);
                }
                let d: [u8; 32] = Sha256::digest(k.as_bytes()).into();
                // Every stored digest is compared, in constant time, so timing says nothing.
                let mut found = None;
                for (h, app) in &self.api_keys {
                    if extract::ct_eq(h, &d) {
                        found = Some(app.as_str());
                    }
                }
                let app = found.ok_or(AuthError::UnknownApiKey)?;
                self.principal(
                    app,
                    CredentialKind::ApiKey,
                    hex::encode(d).chars().take(16).collect(),
                    tls,
                )
            }
            // A certificate that maps to no application is still fine on an anonymous service
            // (its identity is recorded with the exchange); elsewhere it is refused.
            Presented::Nothing => match tls {
                Some(t)
                    if allows(CredentialSetting::Mtls)
                        && (!service.anonymous || self.cert_app(t).is_some()) =>
                {
                    let app = self.cert_app(t).ok_or(AuthError::UnknownCertificate)?;
                    self.principal(
                        app,
                        CredentialKind::Mtls,
                        normalize_fingerprint(&t.sha256),
                        tls,
                    )
                }
                _ if service.anonymous => Ok(Principal {
                    opd: String::new(),
                    application: "anonymous".into(),
                    credential_kind: CredentialKind::Anonymous,
                    credential_fingerprint: String::new(),
                    token_subject: None,
                    expires_at: None,
                    mtls_verified: false,
                    peer_tier: None,
                }),
                _ => Err(AuthError::MissingCredentials),
            },
        }
    }

    /// Stage 4: finds a usable grant (consented, valid at `now`, covering method and path).
    pub fn authorize(
        &self,
        principal: &Principal,
        service_id: &str,
        classification: Classification,
        method: &http::Method,
        canonical_path: &str,
        now: SystemTime,
    ) -> Result<Arc<GrantRuntime>, AuthError> {
        if classification == Classification::Rahasia && !principal.mtls_verified {
            return Err(AuthError::MtlsRequired);
        }
        if principal.credential_kind == CredentialKind::Anonymous {
            return Ok(self.anonymous.clone());
        }
        let list = self
            .grants
            .get(&principal.application)
            .and_then(|by_service| by_service.get(service_id))
            .ok_or(AuthError::NoGrant)?;
        // Report the refusal closest to success: no consent < outside validity < outside scope.
        let mut best = (0, AuthError::NoGrant);
        for g in list {
            let (rank, err) = if !g.consented {
                (1, AuthError::NoConsent)
            } else if let Err(e) = g.validity(now) {
                (2, e)
            } else if !g.covers(method, canonical_path) {
                (3, AuthError::OutsideCakupan)
            } else {
                return Ok(g.clone());
            };
            if rank > best.0 {
                best = (rank, err);
            }
        }
        Err(best.1)
    }

    /// Stage 4 for a SOAP call, once the operation is known from the envelope: a consented,
    /// valid grant of the caller for this service whose *cakupan* names the operation (on the
    /// method and path). Anonymous callers of anonymous services pass.
    pub fn authorize_operation(
        &self,
        principal: &Principal,
        service_id: &str,
        (method, canonical_path): (&http::Method, &str),
        operation: &str,
        now: SystemTime,
    ) -> Result<Arc<GrantRuntime>, AuthError> {
        if principal.credential_kind == CredentialKind::Anonymous {
            return Ok(self.anonymous.clone());
        }
        self.grants
            .get(&principal.application)
            .and_then(|by_service| by_service.get(service_id))
            .and_then(|list| {
                list.iter().find(|g| {
                    g.consented
                        && g.validity(now).is_ok()
                        && g.covers_operation(method, canonical_path, operation)
                })
            })
            .cloned()
            .ok_or(AuthError::OutsideCakupan)
    }

    /// Stage 5: applies the grant's and the application's limits.
    pub async fn throttle(
        &self,
        principal: &Principal,
        grant: &GrantRuntime,
    ) -> Result<RateInfo, ThrottleError> {
        let now = SystemTime::now();
        let mut info = None;
        let app_limit = self
            .apps
            .get(&principal.application)
            .and_then(|a| a.limits.as_ref());
        for p in grant.limits.iter().chain(app_limit) {
            let i = self.limiter.check(p, now).await?;
            info.get_or_insert(i);
        }
        Ok(info.unwrap_or_default())
    }

    /// The per-source-address limit of `POST /oauth2/token`, checked before the body is read
    /// and before any secret is verified. `Err` is the answer (429, or 503 when the shared
    /// store is down and denies), carrying [`token::TokenFacts`].
    pub async fn token_source_check(
        &self,
        source: std::net::IpAddr,
    ) -> Result<(), http::Response<Bytes>> {
        let policy = LimitPolicy {
            key: format!("{}:{}", self.token_per_source.key, source_key(source)),
            ..self.token_per_source.clone()
        };
        match self.limiter.check(&policy, SystemTime::now()).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.token_limited(error, "token_source_rate", None)),
        }
    }

    fn token_limited(
        &self,
        error: ThrottleError,
        reason: &'static str,
        application: Option<(String, String)>,
    ) -> http::Response<Bytes> {
        self.counters.token_failures.fetch_add(1, Ordering::Relaxed);
        let (status, code, retry) = match &error {
            ThrottleError::RateLimited(info) | ThrottleError::QuotaExceeded(info) => (
                http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                info.retry_after.as_secs().max(1),
            ),
            _ => (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                1,
            ),
        };
        let mut r = token::json_response(status, &json!({ "error": code }), false);
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(retry));
        r.extensions_mut().insert(token::TokenFacts {
            application,
            result: Err(("throttle", reason)),
        });
        r
    }

    /// `POST /oauth2/token`: client credentials (HTTP Basic or form), WSO2-shaped JSON. The
    /// per-client limit and the bounded argon2 slots apply here (the per-source limit is
    /// [`AuthRuntime::token_source_check`]); every answer carries [`token::TokenFacts`] in its
    /// extensions for the evidence log.
    pub async fn token_endpoint(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> http::Response<Bytes> {
        let fail = |(status, error, basic): token::OAuthError,
                    stage: &'static str,
                    application: Option<(String, String)>| {
            self.counters.token_failures.fetch_add(1, Ordering::Relaxed);
            let mut r = token::json_response(status, &json!({ "error": error }), basic);
            if status == http::StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1u32));
            }
            r.extensions_mut().insert(token::TokenFacts {
                application,
                result: Err((stage, error)),
            });
            r
        };
        if !self.token.enabled {
            return fail(
                (http::StatusCode::NOT_FOUND, "not_found", false),
                "route",
                None,
            );
        }
        let req = match token::parse_request(headers, body) {
            Ok(r) => r,
            Err(e) => return fail(e, "admit", None),
        };
        let busy = (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            false,
        );
        let known = self
            .by_client_id
            .get(&req.client_id)
            .and_then(|id| self.apps.get(id).map(|app| (id, app)));
        let named = known.map(|(id, app)| (id.clone(), app.opd.clone()));
        // Unknown client ids share one bucket: they cannot exhaust a real client's.
        let policy = LimitPolicy {
            key: format!(
                "{}:{}",
                self.token_per_client.key,
                known.map_or("?", |(id, _)| id.as_str())
            ),
            ..self.token_per_client.clone()
        };
        if let Err(error) = self.limiter.check(&policy, SystemTime::now()).await {
            return self.token_limited(error, "token_client_rate", named);
        }
        let invalid_client = (http::StatusCode::UNAUTHORIZED, "invalid_client", req.basic);
        let Some((app_id, app)) = known else {
            return match token::dummy_verify(&self.token_slots, &req.client_secret).await {
                Ok(()) => fail(invalid_client, "authenticate", None),
                Err(token::Busy) => fail(busy, "throttle", None),
            };
        };
        let (Some(cid), Some(phc)) = (&app.client_id, &app.secret_hash) else {
            return fail(invalid_client, "authenticate", named);
        };
        match token::verify_secret(
            &self.secrets,
            &self.token_slots,
            cid,
            &req.client_secret,
            phc,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(application = %app_id, "token request with a wrong client secret");
                return fail(invalid_client, "authenticate", named);
            }
            Err(token::Busy) => return fail(busy, "throttle", named),
        }
        if req.grant_type.as_deref() != Some("client_credentials") {
            let e = if req.grant_type.is_none() {
                "invalid_request"
            } else {
                "unsupported_grant_type"
            };
            return fail(
                (http::StatusCode::BAD_REQUEST, e, false),
                "authenticate",
                named,
            );
        }
        let now = token::unix_now();
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = json!({
            "iss": self.token.issuer, "aud": self.token.audience, "sub": app_id,
            "client_id": cid, "opd": app.opd, "iat": now, "nbf": now,
            "exp": now + self.token.lifetime_secs, "jti": jti,
            "scope": "default",
        });
        match self.signer.sign("at+jwt", &claims) {
            Ok(t) => {
                self.counters.tokens_issued.fetch_add(1, Ordering::Relaxed);
                let scope = req.scope.unwrap_or_else(|| "default".into());
                let mut r = token::json_response(
                    http::StatusCode::OK,
                    &json!({"access_token": t, "token_type": "Bearer", "expires_in": self.token.lifetime_secs, "scope": scope}),
                    false,
                );
                r.extensions_mut().insert(token::TokenFacts {
                    application: named,
                    result: Ok(jti),
                });
                r
            }
            Err(_) => fail(
                (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    false,
                ),
                "authenticate",
                named,
            ),
        }
    }

    /// The gateway's public keys, for `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> Bytes {
        Bytes::from(json!({ "keys": [self.signer.jwk] }).to_string())
    }

    /// A short gateway-signed JWT telling the backend who calls under which grant.
    pub fn assertion(
        &self,
        principal: &Principal,
        grant: &GrantRuntime,
        service_id: &str,
        exchange_id: &str,
    ) -> Result<String, AuthError> {
        let now = token::unix_now();
        let claims = json!({
            "iss": self.token.issuer, "aud": service_id, "sub": principal.application,
            "opd": principal.opd, "grant": grant.id, "tujuan": grant.tujuan,
            "cred": principal.credential_kind.as_str(), "jti": exchange_id,
            "iat": now, "exp": now + 60,
        });
        self.signer
            .sign("JWT", &claims)
            .map_err(AuthError::Internal)
    }

    /// Health of Redis and JWKS.
    pub fn health(&self) -> AuthHealth {
        let mut stale_jwks: Vec<String> = self
            .issuers
            .values()
            .filter(|i| i.keys.stale.load(Ordering::Relaxed))
            .map(|i| i.name.clone())
            .collect();
        stale_jwks.sort();
        AuthHealth {
            redis_reachable: self.limiter.redis_reachable(),
            stale_jwks,
            ephemeral_signing_key: self.signer.ephemeral,
        }
    }

    /// The auth counters for `/metrics` (named and exposed by `telemetry`).
    pub fn stats(&self) -> AuthStats {
        let mut issuers: Vec<IssuerStats> = self
            .issuers
            .iter()
            .map(|(name, i)| IssuerStats {
                issuer: name.clone(),
                loads_ok: i.keys.loads_ok.load(Ordering::Relaxed),
                loads_failed: i.keys.loads_failed.load(Ordering::Relaxed),
                stale: i.keys.stale.load(Ordering::Relaxed),
                last_ok_unix: Some(i.keys.last_ok_unix.load(Ordering::Relaxed)).filter(|t| *t > 0),
            })
            .collect();
        issuers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        let c = &self.counters;
        AuthStats {
            issuers,
            token_cache_entries: self.cache.len() as u64,
            token_cache_hits: c.cache_hits.load(Ordering::Relaxed),
            tokens_issued: c.tokens_issued.load(Ordering::Relaxed),
            token_requests_failed: c.token_failures.load(Ordering::Relaxed),
            signing_key_ephemeral: self.signer.ephemeral,
        }
    }

    /// The rate limiter's counters for `/metrics`.
    pub fn throttle_stats(&self) -> ThrottleStats {
        self.limiter.stats()
    }
}

#[cfg(test)]
mod source_key_tests {
    use super::source_key;

    #[test]
    fn ipv6_sources_share_their_64_and_mapped_ipv4_is_ipv4() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        assert_eq!(source_key(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(source_key(ip("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa::1")),
            source_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(source_key(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_ne!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:3::1"))
        );
    }
}
