//! Stage 5, `throttle`: per-grant and per-application rate (GCRA) and quota per calendar
//! period, in a local lock-free store or shared through Redis.

mod error;
mod local;
pub(crate) mod redis_store;
mod settings;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

use crate::catalog::parties::{LimitSpec, QuotaPeriod};
use crate::catalog::rate::rate_parts;
pub use error::ThrottleError;
pub(crate) use local::{LocalStore, Verdict};
pub(crate) use redis_store::RedisStore;
pub use settings::{OnUnavailable, RedisSettings};

/// A compiled limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitPolicy {
    /// Store key, e.g. `grant:simpeg-nik` or `app:simpeg`.
    pub key: String,
    /// GCRA emission interval in nanoseconds (0: no rate limit).
    pub emission_ns: u64,
    /// Burst size.
    pub burst: u64,
    /// Quota count and period.
    pub quota: Option<(u64, QuotaPeriod)>,
}

impl LimitPolicy {
    /// Compiles a validated spec.
    pub fn compile(key: &str, l: &LimitSpec) -> Result<Self, String> {
        // Default burst: the rate's whole count (`3/min` allows 3 at once), or one second's worth.
        let (per_second, default_burst) = match (&l.rate, l.per_second) {
            (Some(r), _) => {
                let (n, secs) = rate_parts(r)?;
                (Some(n as f64 / secs as f64), n)
            }
            (None, p) => (p, p.map(|p| p.ceil() as u64).unwrap_or(1)),
        };
        let (emission_ns, burst) = match per_second {
            Some(p) if p > 0.0 && p.is_finite() => {
                let burst = l.burst.map(u64::from).unwrap_or(default_burst).max(1);
                (((1e9 / p).round() as u64).max(1), burst)
            }
            _ => (0, 0),
        };
        Ok(Self {
            key: key.to_owned(),
            emission_ns,
            burst,
            quota: l.quota.as_ref().map(|q| (q.count, q.period)),
        })
    }

    fn window_secs(&self) -> u64 {
        (self.emission_ns.saturating_mul(self.burst))
            .div_ceil(1_000_000_000)
            .max(1)
    }
}

/// Rate-limit state after a check, for the draft IETF `RateLimit` / `RateLimit-Policy` fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RateInfo {
    /// Policy name (the limiter key); empty when no limit applied.
    pub policy: String,
    /// Burst size (`q`) and its window in seconds (`w`), if rate limited.
    pub burst: Option<(u64, u64)>,
    /// Remaining burst (`r`).
    pub remaining: u64,
    /// Seconds until the burst is full again (`t`).
    pub reset: Duration,
    /// Quota: limit, remaining, seconds to the period's end, period length in seconds.
    pub quota: Option<(u64, u64, Duration, u64)>,
    /// On refusal: when to retry.
    pub retry_after: Duration,
    /// Whether the local store was used because Redis was unreachable.
    pub degraded: bool,
}

impl RateInfo {
    /// Writes `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers), and
    /// `Retry-After` when `retry_after` is set.
    pub fn headers(&self, h: &mut HeaderMap) {
        if self.policy.is_empty() {
            return;
        }
        let mut policy = Vec::new();
        let mut state = Vec::new();
        if let Some((q, w)) = self.burst {
            policy.push(format!("\"burst\";q={q};w={w}"));
            state.push(format!(
                "\"burst\";r={};t={}",
                self.remaining,
                self.reset.as_secs_f64().ceil() as u64
            ));
        }
        if let Some((q, r, t, w)) = self.quota {
            policy.push(format!("\"quota\";q={q};w={w}"));
            state.push(format!("\"quota\";r={r};t={}", t.as_secs()));
        }
        if let Ok(v) = HeaderValue::from_str(&policy.join(", ")) {
            h.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&state.join(", ")) {
            h.insert("ratelimit", v);
        }
        if !self.retry_after.is_zero() {
            let secs = self.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
}

/// Current period index, seconds to its end and its nominal length.
pub(crate) fn period(p: QuotaPeriod, now: SystemTime, offset_hours: i8) -> (u32, Duration, u64) {
    let unix = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let local = unix.saturating_add_signed(i64::from(offset_hours) * 3600);
    match p {
        QuotaPeriod::Hour => (
            (local / 3600) as u32,
            Duration::from_secs(3600 - local % 3600),
            3600,
        ),
        QuotaPeriod::Day => (
            (local / 86_400) as u32,
            Duration::from_secs(86_400 - local % 86_400),
            86_400,
        ),
        QuotaPeriod::Month => {
            let days = (local / 86_400) as i64;
            let date =
                time::Date::from_julian_day(2_440_588 + days as i32).unwrap_or(time::Date::MIN);
            let (y, m) = (date.year(), date.month());
            let next = if m == time::Month::December {
                time::Date::from_calendar_date(y + 1, time::Month::January, 1)
            } else {
                time::Date::from_calendar_date(y, m.next(), 1)
            };
            let next_days = next
                .map(|d| i64::from(d.to_julian_day() - 2_440_588))
                .unwrap_or(days + 31);
            let left = (next_days as u64 * 86_400).saturating_sub(local);
            (
                (y * 12 + m as i32) as u32,
                Duration::from_secs(left.max(1)),
                30 * 86_400,
            )
        }
    }
}

/// The limiter: local store, optionally Redis in front of it.
pub(crate) struct Limiter {
    pub local: Arc<LocalStore>,
    pub redis: Option<Arc<RedisStore>>,
    pub offset_hours: i8,
}

impl Limiter {
    /// Builds the limiter, reusing the previous local state and Redis connection.
    pub fn new(
        redis: Option<&RedisSettings>,
        offset_hours: i8,
        previous: Option<&Limiter>,
    ) -> Result<Self, String> {
        let local = previous
            .map(|p| p.local.clone())
            .unwrap_or_else(|| Arc::new(LocalStore::new()));
        let redis = match redis {
            None => None,
            Some(s) => match previous
                .and_then(|p| p.redis.as_ref())
                .filter(|r| &r.settings == s)
            {
                Some(r) => Some(r.clone()),
                None => Some(Arc::new(RedisStore::new(s)?)),
            },
        };
        Ok(Self {
            local,
            redis,
            offset_hours,
        })
    }

    /// Checks one policy; `Err(None)` means the store is unavailable and deny applies.
    pub async fn check(&self, p: &LimitPolicy, now: SystemTime) -> Result<RateInfo, ThrottleError> {
        let q = p
            .quota
            .map(|(max, per)| (max, period(per, now, self.offset_hours)));
        let mut degraded = false;
        let verdict = match &self.redis {
            Some(r) => match r
                .check(
                    &p.key,
                    p.emission_ns,
                    p.burst,
                    q.map(|(m, (i, left, _))| (m, i, left.as_secs() + 60)),
                )
                .await
            {
                Some(v) => v,
                None if r.settings.on_unavailable == OnUnavailable::Deny => {
                    return Err(ThrottleError::LimiterUnavailable)
                }
                None => {
                    degraded = true;
                    self.local.check(
                        &p.key,
                        p.emission_ns,
                        p.burst,
                        q.map(|(m, (i, _, _))| (m, i)),
                    )
                }
            },
            None => self.local.check(
                &p.key,
                p.emission_ns,
                p.burst,
                q.map(|(m, (i, _, _))| (m, i)),
            ),
        };
        let mut info = RateInfo {
            policy: p.key.clone(),
            burst: (p.emission_ns > 0).then(|| (p.burst, p.window_secs())),
            degraded,
            ..RateInfo::default()
        };
        match verdict {
            Verdict::Allow {
                remaining,
                reset_ns,
                used,
            } => {
                info.remaining = remaining;
                info.reset = Duration::from_nanos(reset_ns);
                if let Some((max, (_, left, len))) = q {
                    info.quota = Some((max, max.saturating_sub(used), left, len));
                }
                Ok(info)
            }
            Verdict::Rate { retry_ns } => {
                info.retry_after = Duration::from_nanos(retry_ns);
                info.reset = info.retry_after;
                Err(ThrottleError::RateLimited(Box::new(info)))
            }
            Verdict::Quota => {
                if let Some((max, (_, left, len))) = q {
                    info.quota = Some((max, 0, left, len));
                    info.retry_after = left;
                }
                Err(ThrottleError::QuotaExceeded(Box::new(info)))
            }
        }
    }

    /// Whether Redis is configured and reachable (`None` when not configured).
    pub fn redis_reachable(&self) -> Option<bool> {
        self.redis
            .as_ref()
            .map(|r| r.reachable.load(Ordering::Relaxed))
    }

    /// The counters for `/metrics`.
    pub fn stats(&self) -> crate::telemetry::ThrottleStats {
        crate::telemetry::ThrottleStats {
            redis_up: self.redis_reachable(),
            redis_errors: self.redis_errors(),
        }
    }

    /// Redis call failures so far.
    pub fn redis_errors(&self) -> u64 {
        self.redis
            .as_ref()
            .map(|r| r.errors.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalog::rate::parse_rate;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("60/min"), Ok(1.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("10/fortnight").is_err());
    }

    #[test]
    fn month_period_ends_at_month_start_wib() {
        // 2026-01-31T17:00:00Z is 2026-02-01T00:00 WIB.
        let t = UNIX_EPOCH + Duration::from_secs(1_769_878_800);
        let (i, left, _) = period(QuotaPeriod::Month, t, 7);
        assert_eq!(i, (2026 * 12 + 2) as u32);
        assert_eq!(left, Duration::from_secs(28 * 86_400));
    }
}
