//! OAuth2 client-credentials tokens from the peer's token endpoint (WSO2 `/oauth2/token`:
//! `grant_type=client_credentials`, HTTP Basic `consumerKey:consumerSecret`), cached per peer
//! and credential.
//!
//! - **Early refresh**: a token is renewed `refresh_before_secs` before it expires (at most a
//!   quarter of its lifetime before), so a caller never sends one about to lapse; when renewal
//!   fails the still-valid token keeps serving.
//! - **Single-flight**: one token request per credential however many callers wait (a per-
//!   credential async mutex, re-checked after it is taken).
//! - **Shared across nodes**: with a [`SharedTokens`] store (the gateway passes one on its Redis
//!   client), a node first reads the store, and only the node holding the store's short lock
//!   asks the peer; the others wait for its token.
//! - **Invalidation**: [`TokenSource::rejected`] drops a token the peer refused (`900901`), here
//!   and in the store, unless a newer one already replaced it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use sha2::{Digest, Sha256};

use crate::wso2::{parse_token_response, MAX_TOKEN_BODY};

/// A boxed future of the shared store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A token as cached: the value and when it expires (milliseconds since the epoch).
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The access token.
    pub token: String,
    /// Expiry, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// When it was issued, in milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A store shared by the gateway nodes (Redis). Keys are opaque (a digest of the token endpoint
/// and client id). Failures are answered as "nothing there" / "not locked": a node then asks the
/// peer itself rather than failing the call.
pub trait SharedTokens: Send + Sync + 'static {
    /// The token stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<CachedToken>>;
    /// Stores `token` under `key` until it expires.
    fn put<'a>(&'a self, key: &'a str, token: &'a CachedToken) -> StoreFuture<'a, ()>;
    /// Removes the token under `key` if it is still `token`.
    fn remove<'a>(&'a self, key: &'a str, token: &'a str) -> StoreFuture<'a, ()>;
    /// Takes the refresh lock of `key` for `hold` (true when this node got it).
    fn lock<'a>(&'a self, key: &'a str, hold: Duration) -> StoreFuture<'a, bool>;
    /// Releases the refresh lock of `key`.
    fn unlock<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;
}

/// Counters of one token source.
#[derive(Debug, Default)]
pub struct TokenStats {
    /// Tokens obtained from the peer's token endpoint by this node.
    pub fetched: AtomicU64,
    /// Tokens taken from the shared store.
    pub shared_hits: AtomicU64,
    /// Token requests that failed.
    pub failures: AtomicU64,
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Tokens for one credential at one peer.
pub struct TokenSource {
    endpoint: http::Uri,
    basic: String,
    key: String,
    client: HttpsClient,
    timeout: Duration,
    refresh_before: Duration,
    cached: parking_lot::Mutex<Option<CachedToken>>,
    flight: tokio::sync::Mutex<()>,
    shared: Option<Arc<dyn SharedTokens>>,
    /// Counters.
    pub stats: TokenStats,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Why no token could be had. Never holds a secret.
#[derive(Debug, Clone)]
pub struct TokenFailure(pub String);

impl TokenSource {
    /// A source for `client_id`/`client_secret` at `endpoint`, over `tls`.
    pub fn new(
        endpoint: &str,
        client_id: &str,
        client_secret: &str,
        tls: rustls::ClientConfig,
        timeout: Duration,
        refresh_before: Duration,
        shared: Option<Arc<dyn SharedTokens>>,
    ) -> Result<TokenSource, String> {
        let endpoint: http::Uri = endpoint
            .parse()
            .map_err(|_| "token_endpoint is not a URL".to_owned())?;
        if endpoint.scheme_str() != Some("https") {
            return Err("token_endpoint must be https".into());
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        // RFC 6749 §2.3.1: the client id and secret are form-urlencoded before Basic.
        let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        let key = hex::encode(Sha256::digest(format!("{endpoint}\n{client_id}")));
        Ok(TokenSource {
            endpoint,
            basic,
            key: format!("penghubung:splp:token:{key}"),
            client,
            timeout,
            refresh_before,
            cached: parking_lot::Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            shared,
            stats: TokenStats::default(),
        })
    }

    fn fresh(&self, token: &CachedToken, now: u64) -> bool {
        let lifetime = token.expires_at_ms.saturating_sub(token.issued_at_ms);
        let margin = u64::try_from(self.refresh_before.as_millis())
            .unwrap_or(u64::MAX)
            .min(lifetime / 4);
        now + margin < token.expires_at_ms
    }

    fn usable(token: &CachedToken, now: u64) -> bool {
        now + 1_000 < token.expires_at_ms
    }

    fn local(&self) -> Option<CachedToken> {
        self.cached.lock().clone()
    }

    /// A token to send now: cached and fresh, or a new one (one request however many wait).
    pub async fn token(&self) -> Result<String, TokenFailure> {
        if let Some(t) = self.local().filter(|t| self.fresh(t, now_ms())) {
            return Ok(t.token);
        }
        let _flight = self.flight.lock().await;
        if let Some(t) = self.local().filter(|t| self.fresh(t, now_ms())) {
            return Ok(t.token);
        }
        let result = match &self.shared {
            Some(shared) => self.through_store(shared.as_ref()).await,
            None => self.fetch().await,
        };
        match result {
            Ok(token) => {
                let value = token.token.clone();
                *self.cached.lock() = Some(token);
                Ok(value)
            }
            Err(failure) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                // Renewal failed: a token that is still valid keeps serving.
                match self.local().filter(|t| Self::usable(t, now_ms())) {
                    Some(t) => {
                        tracing::warn!(endpoint = %self.endpoint, error = %failure.0, "token renewal failed; the current token serves until it expires");
                        Ok(t.token)
                    }
                    None => Err(failure),
                }
            }
        }
    }

    async fn through_store(&self, shared: &dyn SharedTokens) -> Result<CachedToken, TokenFailure> {
        if let Some(t) = shared
            .get(&self.key)
            .await
            .filter(|t| self.fresh(t, now_ms()))
        {
            self.stats.shared_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(t);
        }
        let lock = format!("{}:lock", self.key);
        let hold = self.timeout + Duration::from_secs(1);
        if shared.lock(&lock, hold).await {
            let fetched = self.fetch().await;
            if let Ok(t) = &fetched {
                shared.put(&self.key, t).await;
            }
            shared.unlock(&lock).await;
            return fetched;
        }
        // Another node is asking the peer: wait for its token, then ask ourselves.
        let deadline = tokio::time::Instant::now() + hold;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if let Some(t) = shared
                .get(&self.key)
                .await
                .filter(|t| self.fresh(t, now_ms()))
            {
                self.stats.shared_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(t);
            }
        }
        let fetched = self.fetch().await;
        if let Ok(t) = &fetched {
            shared.put(&self.key, t).await;
        }
        fetched
    }

    /// The peer refused `token` (`900901`): forget it unless a newer one replaced it.
    pub async fn rejected(&self, token: &str) {
        {
            let mut cached = self.cached.lock();
            if cached.as_ref().is_some_and(|t| t.token == token) {
                *cached = None;
            }
        }
        if let Some(shared) = &self.shared {
            shared.remove(&self.key, token).await;
        }
    }

    async fn fetch(&self) -> Result<CachedToken, TokenFailure> {
        let request = http::Request::post(self.endpoint.clone())
            .header(http::header::AUTHORIZATION, &self.basic)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials",
            )))
            .map_err(|e| TokenFailure(format!("token request: {e}")))?;
        let issued = now_ms();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TokenFailure(format!("token endpoint unreachable: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_TOKEN_BODY)
                .collect()
                .await
                .map_err(|_| TokenFailure("token response body unreadable or too large".into()))?
                .to_bytes();
            Ok::<_, TokenFailure>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| TokenFailure("token endpoint timed out".into()))??;
        let parsed = parse_token_response(&body)
            .map_err(|e| TokenFailure(format!("token endpoint answered {status}: {e}")))?;
        if !status.is_success() {
            return Err(TokenFailure(format!("token endpoint answered {status}")));
        }
        self.stats.fetched.fetch_add(1, Ordering::Relaxed);
        let lifetime = u64::try_from(parsed.expires_in.as_millis()).unwrap_or(u64::MAX);
        Ok(CachedToken {
            token: parsed.access_token,
            issued_at_ms: issued,
            expires_at_ms: issued.saturating_add(lifetime),
        })
    }
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 Appendix B).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::form_encode;

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("abc_DEF-1.2"), "abc_DEF-1.2");
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}
