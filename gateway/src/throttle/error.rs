//! Why stage 5, `throttle`, refused an exchange.

use std::time::Duration;

use http::StatusCode;

use super::RateInfo;

/// A refusal of the throttle stage.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThrottleError {
    /// Rate limit exceeded.
    #[error("rate limit exceeded")]
    RateLimited(Box<RateInfo>),
    /// Quota for the period used up.
    #[error("quota exceeded")]
    QuotaExceeded(Box<RateInfo>),
    /// The shared limiter store is unreachable and `on_unavailable = "deny"`.
    #[error("rate limiter unavailable")]
    LimiterUnavailable,
}

impl ThrottleError {
    /// HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RateLimited(_) | Self::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::LimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable reason class for the evidence record and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate_limited",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::LimiterUnavailable => "limiter_unavailable",
        }
    }

    /// WSO2 API Manager fault code and message, for `fault_style = "wso2"` services.
    pub fn wso2_code(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::RateLimited(_) => Some(("900800", "Message throttled out")),
            Self::QuotaExceeded(_) => Some(("900804", "Message throttled out")),
            Self::LimiterUnavailable => None,
        }
    }

    /// Value for `Retry-After`, on 429.
    pub fn retry_after(&self) -> Option<Duration> {
        self.rate_info().map(|i| i.retry_after)
    }

    /// Rate-limit state for the `RateLimit` headers of a 429.
    pub fn rate_info(&self) -> Option<&RateInfo> {
        match self {
            Self::RateLimited(i) | Self::QuotaExceeded(i) => Some(i),
            Self::LimiterUnavailable => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_reasons_and_retry_after() {
        let ri = || Box::new(RateInfo::default());
        let table = [
            (ThrottleError::RateLimited(ri()), 429, "rate_limited"),
            (ThrottleError::QuotaExceeded(ri()), 429, "quota_exceeded"),
            (
                ThrottleError::LimiterUnavailable,
                503,
                "limiter_unavailable",
            ),
        ];
        for (e, status, reason) in table {
            assert_eq!((e.status().as_u16(), e.reason()), (status, reason), "{e:?}");
            assert_eq!(e.retry_after().is_some(), status == 429);
            assert_eq!(e.wso2_code().is_some(), status == 429);
        }
    }
}
