//! Peering with SPL Provinsi and the national SPLP (upstream groups of kind `splp`): the glue
//! between the gateway and `penghubung-adapter-splp`, which knows nothing of the gateway. It
//! builds a peer's adapter from its `[[upstream]]` entry, and hands it the token cache shared
//! through the gateway's Redis (`[redis]`), so several nodes fetch one token between them.

use std::sync::Arc;
use std::time::Duration;

use penghubung_adapter::Adapter;
use penghubung_adapter_http::{HttpUpstream, UpstreamSettings};
use penghubung_adapter_splp::{CachedToken, PeerTls, SharedTokens, SplpAdapter, StoreFuture};
use redis::aio::ConnectionManager;

use crate::catalog::services::UpstreamSpec;
use crate::throttle::redis_store::RedisStore;
use crate::throttle::RedisSettings;

/// Builds the transport and adapter of a peer group.
pub(crate) fn connect(
    spec: &UpstreamSpec,
    settings: UpstreamSettings,
    shared: Option<Arc<dyn SharedTokens>>,
) -> Result<(HttpUpstream, Arc<dyn Adapter>), String> {
    let peer = spec
        .splp
        .as_ref()
        .ok_or("an upstream of kind \"splp\" needs its [upstream.splp] table")?;
    let tls = spec
        .tls
        .as_ref()
        .ok_or("a peer is reached over TLS only: set tls.ca")?;
    let (transport, adapter) = SplpAdapter::connect(
        peer,
        PeerTls {
            ca: &tls.ca,
            server_name: tls.server_name.as_deref(),
        },
        settings,
        shared,
    )?;
    Ok((transport, adapter))
}

/// The token cache on Redis: one JSON value per credential (`t` token, `e` expiry and `i`
/// issue time in ms), expiring with the token; a `SET NX PX` lock elects the node that asks the
/// peer. Any Redis failure reads as "nothing cached" or "not locked", so a node then asks the
/// peer itself rather than failing a call.
pub(crate) struct RedisTokens {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

const REMOVE_IF: &str = r"
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).t == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
";

impl RedisTokens {
    /// A store on the Redis of `[redis]`.
    pub(crate) fn new(settings: &RedisSettings) -> Result<RedisTokens, String> {
        let store = RedisStore::new(settings)?;
        Ok(RedisTokens {
            conn: store.connection(),
            prefix: settings.key_prefix.clone(),
            timeout: Duration::from_millis(settings.timeout_ms),
        })
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis: peer token cache unavailable");
                None
            }
            Err(_) => {
                tracing::warn!("redis: peer token cache timed out");
                None
            }
        }
    }
}

impl SharedTokens for RedisTokens {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<CachedToken>> {
        Box::pin(async move {
            let text: Option<String> = self
                .run(
                    redis::cmd("GET")
                        .arg(format!("{}{key}", self.prefix))
                        .clone(),
                )
                .await
                .flatten();
            let value: serde_json::Value = serde_json::from_str(&text?).ok()?;
            Some(CachedToken {
                token: value.get("t")?.as_str()?.to_owned(),
                expires_at_ms: value.get("e")?.as_u64()?,
                issued_at_ms: value.get("i")?.as_u64()?,
            })
        })
    }

    fn put<'a>(&'a self, key: &'a str, token: &'a CachedToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let now = penghubung_adapter_splp::token::now_ms();
            let ttl = token.expires_at_ms.saturating_sub(now);
            if ttl == 0 {
                return;
            }
            let value = serde_json::json!({
                "t": token.token,
                "e": token.expires_at_ms,
                "i": token.issued_at_ms,
            })
            .to_string();
            let _: Option<()> = self
                .run(
                    redis::cmd("SET")
                        .arg(format!("{}{key}", self.prefix))
                        .arg(value)
                        .arg("PX")
                        .arg(ttl)
                        .clone(),
                )
                .await;
        })
    }

    fn remove<'a>(&'a self, key: &'a str, token: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _: Option<i64> = self
                .run(
                    redis::cmd("EVAL")
                        .arg(REMOVE_IF)
                        .arg(1)
                        .arg(format!("{}{key}", self.prefix))
                        .arg(token)
                        .clone(),
                )
                .await;
        })
    }

    fn lock<'a>(&'a self, key: &'a str, hold: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let answer: Option<Option<String>> = self
                .run(
                    redis::cmd("SET")
                        .arg(format!("{}{key}", self.prefix))
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX))
                        .clone(),
                )
                .await;
            matches!(answer, Some(Some(_)))
        })
    }

    fn unlock<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _: Option<i64> = self
                .run(
                    redis::cmd("DEL")
                        .arg(format!("{}{key}", self.prefix))
                        .clone(),
                )
                .await;
        })
    }
}

/// WSO2's backend JWT header. Before forwarding it is removed like any other identity header
/// (`[headers] strip_identity`, by default), unless a verified mTLS client may send it
/// (`verified_peer_may_send`).
use penghubung_adapter_splp::X_JWT_ASSERTION;

struct AssertionPeer {
    name: String,
    tier: &'static str,
    application: String,
    opd: String,
    issuer: String,
    keys: Vec<(
        Option<String>,
        jsonwebtoken::DecodingKey,
        jsonwebtoken::Algorithm,
    )>,
}

/// The peers that call in (`[[peer]]`), compiled: which application each acts as, and the keys
/// of their backend JWTs.
#[derive(Default)]
pub struct InboundPeers {
    by_application: std::collections::HashMap<String, &'static str>,
    assertion: Vec<AssertionPeer>,
}

impl std::fmt::Debug for InboundPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundPeers")
            .field("peers", &self.by_application.len())
            .finish()
    }
}

fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    use jsonwebtoken::Algorithm as A;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(A::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(A::ES256),
            EllipticCurve::P384 => Some(A::ES384),
            _ => None,
        },
        _ => None,
    }
}

impl InboundPeers {
    /// Loads every peer's JWKS. `applications` maps application ids to their OPD.
    pub(crate) fn build(
        peers: &[crate::catalog::peers::PeerSpec],
        applications: &std::collections::HashMap<String, String>,
    ) -> Result<InboundPeers, String> {
        let mut out = InboundPeers::default();
        for (i, p) in peers.iter().enumerate() {
            let tier = p.tier.as_str();
            out.by_application.insert(p.application.clone(), tier);
            let Some(path) = &p.assertion_jwks else {
                continue;
            };
            let at = format!("peer[{i}].assertion_jwks");
            let text = std::fs::read(path).map_err(|e| format!("{at}: {}: {e}", path.display()))?;
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_slice(&text).map_err(|e| format!("{at}: not a JWKS: {e}"))?;
            let mut keys = Vec::new();
            for jwk in &set.keys {
                let alg = algorithm_of(jwk)
                    .ok_or_else(|| format!("{at}: only RSA and P-256/P-384 keys are accepted"))?;
                let key =
                    jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| format!("{at}: {e}"))?;
                keys.push((jwk.common.key_id.clone(), key, alg));
            }
            if keys.is_empty() {
                return Err(format!("{at}: no key"));
            }
            out.assertion.push(AssertionPeer {
                name: p.name.clone(),
                tier,
                application: p.application.clone(),
                opd: applications
                    .get(&p.application)
                    .cloned()
                    .unwrap_or_default(),
                issuer: p.assertion_issuer.clone(),
                keys,
            });
        }
        Ok(out)
    }

    /// The tier of the peer acting as `application`, if it is a peer's.
    pub(crate) fn tier_of(&self, application: &str) -> Option<&'static str> {
        self.by_application.get(application).copied()
    }

    /// A call carrying `X-JWT-Assertion` whose `iss` is a peer's: the peer's principal when a
    /// key of a peer with that issuer verifies it (signature, `exp`, `nbf`), else a refusal.
    /// `None` when there is no assertion or it does not claim a peer's issuer: it is someone
    /// else's, and the pipeline strips it before forwarding.
    pub(crate) fn verify(
        &self,
        headers: &http::HeaderMap,
    ) -> Option<Result<crate::auth::Principal, crate::auth::AuthError>> {
        use crate::auth::AuthError;
        let token = headers.get(&X_JWT_ASSERTION)?.to_str().ok()?.trim();
        let claimed = unverified_issuer(token)?;
        let candidates: Vec<&AssertionPeer> = self
            .assertion
            .iter()
            .filter(|p| p.issuer == claimed)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        if headers.get_all(&X_JWT_ASSERTION).iter().count() > 1 {
            return Some(Err(AuthError::AmbiguousCredentials));
        }
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let mut error = AuthError::InvalidToken("peer_assertion_invalid");
        for peer in candidates {
            for (key_id, key, alg) in &peer.keys {
                if kid.is_some() && key_id.is_some() && key_id != &kid {
                    continue;
                }
                let mut validation = jsonwebtoken::Validation::new(*alg);
                validation.set_issuer(&[&peer.issuer]);
                validation.set_required_spec_claims(&["exp", "iss"]);
                validation.validate_aud = false;
                validation.validate_nbf = true;
                validation.leeway = 30;
                match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
                    Ok(data) => {
                        use sha2::Digest as _;
                        let sub = data
                            .claims
                            .get("sub")
                            .and_then(|s| s.as_str())
                            .unwrap_or_default()
                            .to_owned();
                        let exp = data.claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
                        let fingerprint = hex::encode(sha2::Sha256::digest(
                            format!("{}|{sub}|{exp}", peer.issuer).as_bytes(),
                        ));
                        tracing::debug!(peer = %peer.name, "peer backend JWT verified");
                        return Some(Ok(crate::auth::Principal {
                            opd: peer.opd.clone(),
                            application: peer.application.clone(),
                            credential_kind: crate::auth::CredentialKind::Jwt,
                            credential_fingerprint: fingerprint,
                            token_subject: Some((peer.issuer.clone(), sub)),
                            expires_at: Some(std::time::UNIX_EPOCH + Duration::from_secs(exp)),
                            mtls_verified: false,
                            peer_tier: Some(peer.tier),
                        }));
                    }
                    Err(e) => {
                        if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) {
                            error = AuthError::InvalidToken("peer_assertion_expired");
                        }
                    }
                }
            }
        }
        Some(Err(error))
    }
}

/// The `iss` claim of a JWT, unverified (only to pick the peer whose keys must verify it).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(claims.get("iss")?.as_str()?.to_owned())
}
