//! The shared limiter store: one atomic Lua script (GCRA + quota) per check, on Redis's clock,
//! so several gateway nodes enforce one limit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::local::Verdict;
use super::RedisSettings;

/// KEYS[1] TAT (µs), KEYS[2] quota counter; ARGV: T µs (0 = no rate), burst, quota max
/// (0 = none), quota TTL s. Nothing is written when the request is refused.
const SCRIPT: &str = r"
local T = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local qmax = tonumber(ARGV[3])
local qttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new_tat = 0
local diff = 0
if T > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  new_tat = tat + T
  diff = new_tat - now
  if diff > T * burst then
    return {1, diff - T * burst, 0, 0}
  end
end
local used = 0
if qmax > 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= qmax then
    return {2, 0, 0, used}
  end
  used = redis.call('INCR', KEYS[2])
  if used == 1 then redis.call('EXPIRE', KEYS[2], qttl) end
end
if T > 0 then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(diff / 1000) + 1)
end
return {0, 0, diff, used}
";

/// Redis connection and health.
pub(crate) struct RedisStore {
    pub settings: RedisSettings,
    conn: ConnectionManager,
    script: redis::Script,
    /// Whether the last call succeeded.
    pub reachable: AtomicBool,
    /// Calls that failed or timed out.
    pub errors: AtomicU64,
}

impl RedisStore {
    /// Creates the store; the connection is made lazily and re-made after failures.
    pub fn new(settings: &RedisSettings) -> Result<Self, String> {
        use redis::IntoConnectionInfo as _;
        let info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("url: {e}"))?;
        let mut acl = info.redis_settings().clone();
        if let Some(user) = &settings.username {
            acl = acl.set_username(user);
        }
        if let Some(password) = settings.password()? {
            acl = acl.set_password(password);
        }
        let info = info.set_redis_settings(acl);
        let client = if settings.url.starts_with("rediss://") {
            let root_cert = match &settings.ca {
                Some(path) => {
                    Some(std::fs::read(path).map_err(|e| format!("ca {}: {e}", path.display()))?)
                }
                None => None,
            };
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert,
                },
            )
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| e.to_string())?;
        let t = Duration::from_millis(settings.timeout_ms);
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = client
            .get_connection_manager_lazy(cfg)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            settings: settings.clone(),
            conn,
            script: redis::Script::new(SCRIPT),
            reachable: AtomicBool::new(true),
            errors: AtomicU64::new(0),
        })
    }

    /// The connection, for other shared state on the same Redis (the SPLP token cache).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs the script; `None` when Redis could not answer in time.
    pub async fn check(
        &self,
        key: &str,
        t_ns: u64,
        burst: u64,
        quota: Option<(u64, u32, u64)>,
    ) -> Option<Verdict> {
        let p = &self.settings.key_prefix;
        let (qmax, idx, ttl) = quota.unwrap_or((0, 0, 1));
        let mut inv = self.script.prepare_invoke();
        // Hash tag so both keys live in one cluster slot.
        inv.key(format!("{p}{{{key}}}:gcra"))
            .key(format!("{p}{{{key}}}:quota:{idx}"));
        inv.arg(t_ns.div_ceil(1000)).arg(burst).arg(qmax).arg(ttl);
        let mut conn = self.conn.clone();
        let fut = inv.invoke_async::<(u8, u64, u64, u64)>(&mut conn);
        let res = tokio::time::timeout(Duration::from_millis(self.settings.timeout_ms), fut).await;
        match res {
            Ok(Ok((code, retry_us, diff_us, used))) => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis reachable again; shared rate limits restored");
                }
                Some(match code {
                    0 => {
                        let remaining = (t_ns
                            .saturating_mul(burst)
                            .saturating_sub(diff_us.saturating_mul(1000)))
                        .checked_div(t_ns)
                        .unwrap_or(u64::MAX);
                        Verdict::Allow {
                            remaining,
                            reset_ns: diff_us.saturating_mul(1000),
                            used,
                        }
                    }
                    1 => Verdict::Rate {
                        retry_ns: retry_us.saturating_mul(1000),
                    },
                    _ => Verdict::Quota,
                })
            }
            Ok(Err(error)) => {
                self.fail(&error.to_string());
                None
            }
            Err(_) => {
                self.fail("timeout");
                None
            }
        }
    }

    fn fail(&self, error: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.reachable.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, on_unavailable = ?self.settings.on_unavailable, "redis unreachable");
        }
    }
}
