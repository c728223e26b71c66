//! The `[redis]` table: the shared store of the throttle stage.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[redis]` table: a shared store for rate limits across gateway nodes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`, `rediss://host:port/db` (TLS, rustls) or
    /// `redis+unix:///path`. An ACL user and password may be in the URL
    /// (`rediss://user:password@host:port/0`), but keep the password out of the config with
    /// `username` and `password_file` or `password_env`.
    pub url: String,
    /// PEM bundle of the CAs trusted for a `rediss://` server; absent means the system's
    /// roots. Only with `rediss://`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// ACL user name (Redis 6+ `AUTH username password`); replaces one in the URL.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (first line; surrounding whitespace is trimmed); replaces one
    /// in the URL. Read at start and whenever the `[redis]` table changes.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password; replaces one in the URL. Exclusive with
    /// `password_file`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Prefix of every key the gateway writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Deadline of one limiter call.
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
    /// What to do while Redis is unreachable.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
}

fn default_prefix() -> String {
    "penghubung:".into()
}
fn default_redis_timeout() -> u64 {
    50
}

/// Behaviour of the limiter while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Apply the limits with this node's local store.
    #[default]
    Local,
    /// Refuse requests with 503.
    Deny,
}

impl RedisSettings {
    /// The password from `password_file` or `password_env`, if one of them is set.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("password_file {}: {e}", path.display()))?;
            let password = text.lines().next().unwrap_or_default().trim().to_owned();
            if password.is_empty() {
                return Err(format!("password_file {}: empty", path.display()));
            }
            return Ok(Some(password));
        }
        if let Some(var) = &self.password_env {
            let password =
                std::env::var(var).map_err(|_| format!("password_env: ${var} is not set"))?;
            if password.is_empty() {
                return Err(format!("password_env: ${var} is empty"));
            }
            return Ok(Some(password));
        }
        Ok(None)
    }

    /// Validates the table; returns `(field path, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        use redis::IntoConnectionInfo as _;
        let tls = self.url.starts_with("rediss://");
        if self.url.as_str().into_connection_info().is_err() {
            e.push((
                "url".into(),
                "not a valid redis URL (redis://, rediss:// or redis+unix://)".into(),
            ));
        }
        if self.ca.is_some() && !tls {
            e.push(("ca".into(), "only used with a rediss:// URL".into()));
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            e.push((
                "password_env".into(),
                "password_file and password_env are exclusive".into(),
            ));
        }
        if self
            .username
            .as_deref()
            .is_some_and(|u| u.is_empty() || u.contains(char::is_whitespace))
        {
            e.push((
                "username".into(),
                "must be a non-empty ACL user name".into(),
            ));
        }
        if self.password_env.as_deref().is_some_and(str::is_empty) {
            e.push(("password_env".into(), "must name a variable".into()));
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            e.push(("timeout_ms".into(), "must be in 1..=10000".into()));
        }
        e
    }
}
