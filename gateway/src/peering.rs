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
