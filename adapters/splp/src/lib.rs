//! Peering with SPL Provinsi and the national SPLP, which run WSO2 API Manager.
//!
//! An upstream group of kind `splp` is a peer: its targets are the peer's API gateway
//! (`api-splp.layanan.go.id:443`), always over TLS verified against the peer's own CA bundle,
//! and its `[upstream.splp]` table ([`PeerSettings`]) says how the gateway authenticates and how
//! each of the peer's APIs is called. [`SplpAdapter`] then, per call:
//!
//! 1. refuses at once with a clean 503 while the peer's circuit is open ([`breaker`]);
//! 2. picks the API by the longest matching path prefix and rewrites the path to WSO2's tenant
//!    form `/t/{tenant}/{context}/{version}/{rest}` (or `/{context}/{version}/{rest}`);
//! 3. removes every credential header the OPD application may have sent (`Authorization`,
//!    `AuthorizationSPLP`, `apikey`, `X-JWT-Assertion`, and the API's backend header names),
//!    then sets the API's own: a client-credentials token from the peer's token endpoint
//!    ([`token`]) in `Authorization: Bearer` or `AuthorizationSPLP: Bearer`, or its JWT API key
//!    in `apikey`, and the backend headers from secrets;
//! 4. sends it through the group's HTTP transport (per-peer timeouts, bounded retries of
//!    idempotent requests, passive ejection);
//! 5. on `401` with WSO2 code `900901` for a token, drops that token, gets a new one and retries
//!    once (replayable bodies only);
//! 6. maps a WSO2 fault body to `application/problem+json` (or passes it through when the API
//!    says `faults = "pass"`);
//! 7. attaches a [`PeerExchange`] to the response for the evidence record: the direction, the
//!    SHA-256 of the peer's TLS certificate and its correlation (activity) id.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use penghubung_adapter::{
    full, Adapter, AdapterError, AdapterFuture, CredentialExpiry, GatewayRequest, GatewayResponse,
    PeerExchange,
};
use penghubung_adapter_http::{HttpUpstream, UpstreamSettings};

pub mod breaker;
pub mod settings;
pub mod tls;
pub mod token;
pub mod wso2;

pub use settings::{ApiSettings, CredentialHeader, FaultMode, PeerSettings, SecretRef, Tier};
pub use token::{CachedToken, SharedTokens, StoreFuture, TokenSource};

const APIKEY: HeaderName = HeaderName::from_static("apikey");
const AUTHORIZATION_SPLP: HeaderName = HeaderName::from_static("authorizationsplp");
/// WSO2's backend JWT header; never sent to a peer.
pub const X_JWT_ASSERTION: HeaderName = HeaderName::from_static("x-jwt-assertion");
/// The correlation id header WSO2 API Manager reads and logs (`activityid`).
pub const ACTIVITY_ID: HeaderName = HeaderName::from_static("activityid");
const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const EXCHANGE_ID: HeaderName = HeaderName::from_static("x-penghubung-exchange-id");

enum Credential {
    Token(Arc<TokenSource>),
    Key {
        value: HeaderValue,
        expires_at: Option<u64>,
    },
}

struct Api {
    prefix: String,
    base: String,
    header: CredentialHeader,
    credential: Credential,
    backend: Vec<(HeaderName, HeaderValue)>,
    faults: FaultMode,
}

/// The adapter of one peer (see the crate docs).
pub struct SplpAdapter {
    name: String,
    direction: String,
    transport: HttpUpstream,
    fingerprints: tls::Fingerprints,
    server_name: Option<String>,
    apis: Vec<Api>,
    breaker: breaker::Breaker,
    warn_secs: u64,
}

impl std::fmt::Debug for SplpAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplpAdapter")
            .field("name", &self.name)
            .finish()
    }
}

/// Where the group's TLS comes from.
#[derive(Debug, Clone, Copy)]
pub struct PeerTls<'a> {
    /// The CA bundle trusted for the peer's gateway (the group's `tls.ca`).
    pub ca: &'a Path,
    /// The name verified, when it differs from the target host.
    pub server_name: Option<&'a str>,
}

fn header_value(secret: &str, what: &str) -> Result<HeaderValue, String> {
    let mut value =
        HeaderValue::from_str(secret).map_err(|_| format!("{what} is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl SplpAdapter {
    /// Builds the peer's transport (the group's `settings` with the peer's TLS: its CA only,
    /// its client certificate, fingerprint recording) and the adapter on top of it. Reads every
    /// secret now, so a missing one fails the config build, not a call.
    pub fn connect(
        peer: &PeerSettings,
        peer_tls: PeerTls<'_>,
        mut settings: UpstreamSettings,
        shared: Option<Arc<dyn SharedTokens>>,
    ) -> Result<(HttpUpstream, Arc<SplpAdapter>), String> {
        let problems = peer.validate();
        if let Some((path, message)) = problems.first() {
            return Err(format!("splp.{path}: {message}"));
        }
        let identity = match (&peer.client_certificate, &peer.client_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let fingerprints = tls::Fingerprints::default();
        let mut config = tls::client_config(peer_tls.ca, identity, &fingerprints)?;
        config.alpn_protocols = if settings.http2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        settings.tls = Some((Arc::new(config), peer_tls.server_name.map(str::to_owned)));
        let name = settings.name.clone();
        let mut sources: HashMap<String, Arc<TokenSource>> = HashMap::new();
        let mut apis = Vec::new();
        for (i, api) in peer.api.iter().enumerate() {
            let at = format!("splp.api[{i}]");
            let credential = match api.credential {
                CredentialHeader::Apikey => {
                    let key = api
                        .api_key
                        .as_ref()
                        .ok_or_else(|| format!("{at}.api_key: missing"))?
                        .read()
                        .map_err(|e| format!("{at}.api_key: {e}"))?;
                    Credential::Key {
                        expires_at: wso2::jwt_expiry(&key),
                        value: header_value(&key, &format!("{at}.api_key"))?,
                    }
                }
                CredentialHeader::Bearer | CredentialHeader::AuthorizationSplp => {
                    let id_ref = api.client_id.as_ref().or(peer.client_id.as_ref());
                    let secret_ref = api.client_secret.as_ref().or(peer.client_secret.as_ref());
                    let (Some(id_ref), Some(secret_ref)) = (id_ref, secret_ref) else {
                        return Err(format!("{at}: no client_id/client_secret"));
                    };
                    let id = id_ref.read().map_err(|e| format!("{at}.client_id: {e}"))?;
                    let secret = secret_ref
                        .read()
                        .map_err(|e| format!("{at}.client_secret: {e}"))?;
                    let endpoint = peer
                        .token_endpoint
                        .as_deref()
                        .ok_or_else(|| "splp.token_endpoint: missing".to_owned())?;
                    let source = match sources.get(&id) {
                        Some(s) => s.clone(),
                        None => {
                            let ca = peer.token_ca.as_deref().unwrap_or(peer_tls.ca);
                            let token_tls =
                                tls::client_config(ca, identity, &tls::Fingerprints::default())?;
                            let s = Arc::new(TokenSource::new(
                                endpoint,
                                &id,
                                &secret,
                                token_tls,
                                Duration::from_millis(peer.token_timeout_ms),
                                Duration::from_secs(peer.refresh_before_secs),
                                shared.clone(),
                            )?);
                            sources.insert(id.clone(), s.clone());
                            s
                        }
                    };
                    Credential::Token(source)
                }
            };
            let mut backend = Vec::new();
            for (header, secret) in &api.backend_headers {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("{at}.backend_headers.{header}: not a header name"))?;
                let value = secret
                    .read()
                    .map_err(|e| format!("{at}.backend_headers.{header}: {e}"))?;
                backend.push((
                    name,
                    header_value(&value, &format!("{at}.backend_headers.{header}"))?,
                ));
            }
            let base = match &api.tenant {
                Some(t) => format!("/t/{t}/{}/{}", api.context, api.version),
                None => format!("/{}/{}", api.context, api.version),
            };
            apis.push(Api {
                prefix: api.prefix.clone(),
                base,
                header: api.credential,
                credential,
                backend,
                faults: api.faults,
            });
        }
        apis.sort_by_key(|a| std::cmp::Reverse(a.prefix.len()));
        let transport = HttpUpstream::new(settings);
        let adapter = Arc::new(SplpAdapter {
            direction: format!("outbound-to-{}", peer.tier.as_str()),
            name,
            transport: transport.clone(),
            fingerprints,
            server_name: peer_tls.server_name.map(str::to_owned),
            apis,
            breaker: breaker::Breaker::new(
                peer.breaker_failures,
                Duration::from_secs(peer.breaker_open_secs),
            ),
            warn_secs: peer.api_key_warn_days.saturating_mul(86_400),
        });
        Ok((transport, adapter))
    }

    /// The circuit breaker's state.
    pub fn circuit(&self) -> breaker::State {
        self.breaker.state()
    }

    /// Token counters `(fetched from the peer, taken from the shared store, failures)`, summed
    /// over the peer's credentials.
    pub fn token_counts(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut seen: Vec<*const TokenSource> = Vec::new();
        let mut counts = (0, 0, 0);
        for api in &self.apis {
            if let Credential::Token(source) = &api.credential {
                if seen.contains(&Arc::as_ptr(source)) {
                    continue;
                }
                seen.push(Arc::as_ptr(source));
                counts.0 += source.stats.fetched.load(Relaxed);
                counts.1 += source.stats.shared_hits.load(Relaxed);
                counts.2 += source.stats.failures.load(Relaxed);
            }
        }
        counts
    }

    fn api_for(&self, path: &str) -> Option<(&Api, String)> {
        self.apis.iter().find_map(|api| {
            let rest = if api.prefix == "/" {
                path
            } else {
                let rest = path.strip_prefix(api.prefix.as_str())?;
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return None;
                }
                rest
            };
            Some((api, format!("{}{rest}", api.base)))
        })
    }

    fn fingerprint(&self) -> Option<[u8; 32]> {
        match &self.server_name {
            Some(name) => self.fingerprints.get(name),
            None => self.fingerprints.any(),
        }
    }

    async fn call_peer(
        &self,
        mut request: GatewayRequest,
    ) -> Result<GatewayResponse, AdapterError> {
        let (path, query) = {
            let uri = &request.head.uri;
            (uri.path().to_owned(), uri.query().map(str::to_owned))
        };
        let Some((api, peer_path)) = self.api_for(&path) else {
            return Err(AdapterError::Request(format!(
                "no API of peer {:?} serves this path",
                self.name
            )));
        };
        let target = match query {
            Some(q) => format!("{peer_path}?{q}"),
            None => peer_path,
        };
        let sent_path = target.clone();
        request.head.uri = target
            .parse()
            .map_err(|_| AdapterError::Request("peer path is not a valid URI".into()))?;
        let headers = &mut request.head.headers;
        for name in [
            http::header::AUTHORIZATION,
            AUTHORIZATION_SPLP,
            APIKEY,
            X_JWT_ASSERTION,
            http::header::COOKIE,
        ] {
            headers.remove(name);
        }
        for (name, value) in &api.backend {
            headers.remove(name);
            headers.insert(name.clone(), value.clone());
        }
        let exchange_id = headers.get(EXCHANGE_ID).cloned();
        if let Some(id) = &exchange_id {
            headers.insert(ACTIVITY_ID, id.clone());
        }
        let mut token = self.credential(api, &mut request).await?;
        let replay = match &request.body {
            penghubung_adapter::RequestBody::Buffered(b) => Some(b.clone()),
            penghubung_adapter::RequestBody::Streaming(_) => None,
        };
        let retry_head = replay.as_ref().map(|_| request.head.clone());
        let retryable = request.retryable;
        let mut answered = self.transport.call(request).await?;
        let mut fault = None;
        if answered.response.status() == StatusCode::UNAUTHORIZED {
            let (parts, body) = answered.response.into_parts();
            let bytes = read_fault_body(body).await?;
            fault = wso2::parse_fault(&bytes);
            answered.response = http::Response::from_parts(parts, full(bytes));
            let invalid = fault
                .as_ref()
                .is_some_and(|f| f.class() == wso2::FaultClass::InvalidCredentials);
            if let (true, Some(source), Some(body), Some(head)) =
                (invalid, token.take(), replay, retry_head)
            {
                tracing::info!(peer = %self.name, "peer refused the token (900901): one refresh, one retry");
                source.0.rejected(&source.1).await;
                let fresh = source
                    .0
                    .token()
                    .await
                    .map_err(|e| AdapterError::Connect(format!("peer token: {}", e.0)))?;
                let mut again = GatewayRequest {
                    head,
                    body: penghubung_adapter::RequestBody::Buffered(body),
                    retryable,
                };
                set_token(&mut again.head.headers, api.header, &fresh)?;
                let before = answered.attempts;
                answered = self.transport.call(again).await?;
                answered.attempts += before;
                fault = None;
            }
        }
        let status = answered.response.status();
        if status.is_client_error() || status.is_server_error() {
            let (parts, body) = answered.response.into_parts();
            let bytes = read_fault_body(body).await?;
            if fault.is_none() {
                fault = wso2::parse_fault(&bytes);
            }
            answered.response = match (&fault, api.faults) {
                (Some(f), FaultMode::Problem) => problem(f, exchange_id.as_ref(), &parts),
                _ => http::Response::from_parts(parts, full(bytes)),
            };
        }
        let correlation = [ACTIVITY_ID, CORRELATION_ID]
            .iter()
            .find_map(|h| answered.response.headers().get(h))
            .or(exchange_id.as_ref())
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect();
        answered.response.extensions_mut().insert(PeerExchange {
            direction: self.direction.clone(),
            tls_sha256: self.fingerprint(),
            correlation_id: correlation,
            fault_code: fault.map(|f| f.code),
            path: sent_path,
            credential: match api.header {
                CredentialHeader::Bearer => "authorization",
                CredentialHeader::AuthorizationSplp => "authorizationsplp",
                CredentialHeader::Apikey => "apikey",
            }
            .into(),
        });
        Ok(answered)
    }

    /// Sets the API's credential; returns the token source and token when it is a token.
    async fn credential(
        &self,
        api: &Api,
        request: &mut GatewayRequest,
    ) -> Result<Option<(Arc<TokenSource>, String)>, AdapterError> {
        match &api.credential {
            Credential::Key { value, .. } => {
                request.head.headers.insert(APIKEY, value.clone());
                Ok(None)
            }
            Credential::Token(source) => {
                let token = source
                    .token()
                    .await
                    .map_err(|e| AdapterError::Connect(format!("peer token: {}", e.0)))?;
                set_token(&mut request.head.headers, api.header, &token)?;
                Ok(Some((source.clone(), token)))
            }
        }
    }
}

fn set_token(
    headers: &mut http::HeaderMap,
    header: CredentialHeader,
    token: &str,
) -> Result<(), AdapterError> {
    let value = header_value(&format!("Bearer {token}"), "token")
        .map_err(|_| AdapterError::Request("the peer's token is not a header value".into()))?;
    let name = match header {
        CredentialHeader::AuthorizationSplp => AUTHORIZATION_SPLP,
        _ => http::header::AUTHORIZATION,
    };
    headers.insert(name, value);
    Ok(())
}

async fn read_fault_body(mut body: penghubung_adapter::Body) -> Result<Bytes, AdapterError> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| AdapterError::BadResponse(format!("peer error body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > wso2::MAX_FAULT_BODY {
                return Err(AdapterError::BadResponse(
                    "peer error body larger than 16 KiB".into(),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Every `reason` a mapped WSO2 fault can carry (the gateway's README lists them).
pub const FAULT_REASONS: [&str; 7] = [
    "peer_credentials_invalid",
    "peer_credentials_missing",
    "peer_authentication_failed",
    "peer_forbidden",
    "peer_resource_not_found",
    "peer_throttled",
    "peer_fault",
];

/// The status and reason a client gets for a peer's fault of `class` answered with `status`.
fn fault_answer(class: wso2::FaultClass, status: StatusCode) -> (StatusCode, &'static str) {
    use wso2::FaultClass as C;
    match class {
        C::InvalidCredentials => (StatusCode::BAD_GATEWAY, FAULT_REASONS[0]),
        C::MissingCredentials => (StatusCode::BAD_GATEWAY, FAULT_REASONS[1]),
        C::Authentication => (StatusCode::BAD_GATEWAY, FAULT_REASONS[2]),
        C::Forbidden if status == StatusCode::NOT_FOUND => {
            (StatusCode::NOT_FOUND, FAULT_REASONS[4])
        }
        C::Forbidden => (StatusCode::FORBIDDEN, FAULT_REASONS[3]),
        C::Throttled => (StatusCode::TOO_MANY_REQUESTS, FAULT_REASONS[5]),
        C::Other => (StatusCode::BAD_GATEWAY, FAULT_REASONS[6]),
    }
}

/// A WSO2 fault as the gateway's problem+json: what failed at the peer, by class; the peer's
/// code goes along in `peer_code`, its free text does not.
fn problem(
    fault: &wso2::Fault,
    exchange_id: Option<&HeaderValue>,
    parts: &http::response::Parts,
) -> http::Response<penghubung_adapter::Body> {
    let (status, reason) = fault_answer(fault.class(), parts.status);
    let exchange = exchange_id
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "reason": reason,
        "peer_code": fault.code.to_string(),
        "exchange_id": exchange,
    });
    let mut response = http::Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if let Some(retry) = parts.headers.get(http::header::RETRY_AFTER) {
        h.insert(http::header::RETRY_AFTER, retry.clone());
    }
    for name in [ACTIVITY_ID, CORRELATION_ID] {
        if let Some(v) = parts.headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    response
}

impl Adapter for SplpAdapter {
    fn call(&self, request: GatewayRequest) -> AdapterFuture<'_> {
        Box::pin(async move {
            let Some(permit) = self.breaker.admit() else {
                tracing::debug!(peer = %self.name, "peer circuit open: call refused");
                return Err(AdapterError::NoHealthyTarget);
            };
            let result = self.call_peer(request).await;
            let ok = match &result {
                Ok(answered) => {
                    !matches!(
                        answered.response.status(),
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    ) || answered
                        .response
                        .extensions()
                        .get::<PeerExchange>()
                        .is_some_and(|p| p.fault_code.is_some())
                }
                Err(AdapterError::Request(_)) => true,
                Err(_) => false,
            };
            self.breaker.record(permit, ok);
            result
        })
    }

    fn describe(&self) -> String {
        format!("splp peer {:?} ({})", self.name, self.direction)
    }

    fn is_healthy(&self) -> bool {
        self.breaker.state() != breaker::State::Open && self.transport.is_healthy()
    }

    fn credential_expiries(&self) -> Vec<CredentialExpiry> {
        let now = token::now_ms() / 1000;
        self.apis
            .iter()
            .filter_map(|api| match &api.credential {
                Credential::Key {
                    expires_at: Some(at),
                    ..
                } => Some(CredentialExpiry {
                    name: api.prefix.clone(),
                    expires_at: *at,
                    warn: now.saturating_add(self.warn_secs) >= *at,
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wso2::FaultClass as C;

    #[test]
    fn every_fault_class_maps_to_a_listed_reason() {
        let cases = [
            (C::InvalidCredentials, 401, 502, "peer_credentials_invalid"),
            (C::MissingCredentials, 401, 502, "peer_credentials_missing"),
            (C::Authentication, 401, 502, "peer_authentication_failed"),
            (C::Forbidden, 403, 403, "peer_forbidden"),
            (C::Forbidden, 404, 404, "peer_resource_not_found"),
            (C::Throttled, 429, 429, "peer_throttled"),
            (C::Other, 500, 502, "peer_fault"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (class, peer, status, reason) in cases {
            let peer = StatusCode::from_u16(peer).expect("status");
            let (s, r) = fault_answer(class, peer);
            assert_eq!((s.as_u16(), r), (status, reason), "{class:?}");
            assert!(FAULT_REASONS.contains(&r));
            seen.insert(r);
        }
        assert_eq!(
            seen.len(),
            FAULT_REASONS.len(),
            "every listed reason is reachable"
        );
    }
}
