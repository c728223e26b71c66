//! Operator-written settings of stages 3–5: `[auth]`, `[redis]` and a service's `auth` table.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::catalog::services::{CredentialSetting, FaultStyle, ServiceAuthSettings};
pub use crate::throttle::RedisSettings;

/// The `[auth]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// External JWT issuers whose tokens are accepted (credential kind `jwt`).
    #[serde(default)]
    pub issuers: Vec<IssuerSettings>,
    /// The gateway's own OAuth2 token endpoint (credential kind `gateway_token`).
    #[serde(default)]
    pub token_endpoint: TokenEndpointSettings,
    /// Maximum number of verified tokens kept so signatures are not checked again.
    #[serde(default = "default_cache_size")]
    pub token_cache_size: usize,
    /// UTC offset in hours of the calendar used for quota periods (7 = WIB).
    #[serde(default = "default_quota_offset")]
    pub quota_utc_offset_hours: i8,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            token_endpoint: TokenEndpointSettings::default(),
            token_cache_size: default_cache_size(),
            quota_utc_offset_hours: default_quota_offset(),
        }
    }
}

fn default_cache_size() -> usize {
    10_000
}
fn default_quota_offset() -> i8 {
    7
}

/// JWS algorithms that may be allowed for an issuer. Shared-secret (`HS*`) and `none` are not
/// representable, so an issuer's public key can never be used as an HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` header value, case-sensitively (RFC 7515 §4.1.1).
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Self::RS256,
            Self::RS384,
            Self::RS512,
            Self::PS256,
            Self::PS384,
            Self::PS512,
            Self::ES256,
            Self::ES384,
            Self::EdDSA,
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }
}

/// One trusted JWT issuer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (a token must carry one of them).
    pub audiences: Vec<String>,
    /// JWKS file (exclusive with `jwks_url`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS HTTPS URL (exclusive with `jwks_file`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM CA bundle for `jwks_url`; absent means the system roots.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// Algorithm allow-list.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Longest accepted lifetime (`exp` − `iat`, or `exp` − now without `iat`).
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_secs: u64,
    /// Clock skew tolerance, at most 60.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Required `typ` header (compared case-insensitively, `application/` prefix optional).
    /// Absent: `typ` may be absent, `JWT` or `at+jwt`.
    #[serde(default)]
    pub typ: Option<String>,
    /// Seconds between periodic JWKS reloads.
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
    /// Minimum seconds between reloads forced by an unknown `kid`.
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh_secs: u64,
}

fn default_max_lifetime() -> u64 {
    86_400
}
fn default_leeway() -> u64 {
    30
}
fn default_refresh() -> u64 {
    300
}
fn default_min_refresh() -> u64 {
    30
}

/// The gateway's OAuth2 client-credentials token endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEndpointSettings {
    /// Whether `POST /oauth2/token` is served.
    #[serde(default)]
    pub enabled: bool,
    /// `iss` of issued tokens (and of backend assertions).
    #[serde(default = "default_gw_issuer")]
    pub issuer: String,
    /// `aud` of issued tokens.
    #[serde(default = "default_gw_audience")]
    pub audience: String,
    /// Lifetime of issued tokens.
    #[serde(default = "default_token_lifetime")]
    pub lifetime_secs: u64,
    /// PKCS#8 PEM private key, EC P-256 (ES256) or Ed25519 (EdDSA). Absent: an ephemeral key
    /// is generated at start (tokens then do not survive a restart).
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Argon2 client-secret verifications running at once (each holds the hash's memory,
    /// ≈19 MiB at the default cost, and a core). A request that finds every slot taken is
    /// answered 503 `temporarily_unavailable` with `Retry-After` at once, never queued.
    /// 1..=64, default 4.
    #[serde(default = "default_token_verifications")]
    pub max_concurrent_verifications: usize,
    /// Token requests per source address (IPv6: per /64), as a rate (`120/min`), checked
    /// before the body is read and any secret verified; beyond it 429. Shared through Redis
    /// when `[redis]` is configured.
    #[serde(default = "default_token_per_source")]
    pub per_source_rate: String,
    /// Token requests per client id, as a rate (`30/min`); requests naming an unknown client id
    /// share one bucket, so they cannot exhaust a real client's. Beyond it 429.
    #[serde(default = "default_token_per_client")]
    pub per_client_rate: String,
}

fn default_token_verifications() -> usize {
    4
}
fn default_token_per_source() -> String {
    "120/min".into()
}
fn default_token_per_client() -> String {
    "30/min".into()
}

impl Default for TokenEndpointSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: default_gw_issuer(),
            audience: default_gw_audience(),
            lifetime_secs: default_token_lifetime(),
            signing_key_file: None,
            max_concurrent_verifications: default_token_verifications(),
            per_source_rate: default_token_per_source(),
            per_client_rate: default_token_per_client(),
        }
    }
}

fn default_gw_issuer() -> String {
    "penghubung".into()
}
fn default_gw_audience() -> String {
    "penghubung".into()
}
fn default_token_lifetime() -> u64 {
    3600
}

impl AuthSettings {
    /// Validates the table; returns `(field path, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.issuers.iter().enumerate() {
            let p = format!("issuers[{i}]");
            if s.issuer.is_empty() {
                e.push((format!("{p}.issuer"), "must not be empty".into()));
            }
            if !seen.insert(s.issuer.as_str())
                || (self.token_endpoint.enabled && s.issuer == self.token_endpoint.issuer)
            {
                e.push((
                    format!("{p}.issuer"),
                    format!("duplicate issuer {:?}", s.issuer),
                ));
            }
            if s.audiences.is_empty() || s.audiences.iter().any(String::is_empty) {
                e.push((
                    format!("{p}.audiences"),
                    "at least one non-empty audience".into(),
                ));
            }
            if s.algorithms.is_empty() {
                e.push((format!("{p}.algorithms"), "at least one algorithm".into()));
            }
            match (&s.jwks_file, &s.jwks_url) {
                (Some(_), Some(_)) | (None, None) => e.push((
                    format!("{p}.jwks_file"),
                    "exactly one of jwks_file and jwks_url".into(),
                )),
                (None, Some(u)) if !u.starts_with("https://") => {
                    e.push((format!("{p}.jwks_url"), "must be an https:// URL".into()));
                }
                _ => {}
            }
            if s.jwks_ca_file.is_some() && s.jwks_url.is_none() {
                e.push((format!("{p}.jwks_ca_file"), "only with jwks_url".into()));
            }
            if s.leeway_secs > 60 {
                e.push((format!("{p}.leeway_secs"), "at most 60".into()));
            }
            if s.max_lifetime_secs == 0 {
                e.push((format!("{p}.max_lifetime_secs"), "must be positive".into()));
            }
            if s.jwks_min_refresh_secs == 0 || s.jwks_refresh_secs < s.jwks_min_refresh_secs {
                e.push((
                    format!("{p}.jwks_min_refresh_secs"),
                    "must be ≥ 1 and ≤ jwks_refresh_secs".into(),
                ));
            }
        }
        let t = &self.token_endpoint;
        if t.issuer.is_empty() {
            e.push(("token_endpoint.issuer".into(), "must not be empty".into()));
        }
        if t.audience.is_empty() {
            e.push(("token_endpoint.audience".into(), "must not be empty".into()));
        }
        if !(60..=86_400).contains(&t.lifetime_secs) {
            e.push((
                "token_endpoint.lifetime_secs".into(),
                "must be in 60..=86400".into(),
            ));
        }
        if !(1..=64).contains(&t.max_concurrent_verifications) {
            e.push((
                "token_endpoint.max_concurrent_verifications".into(),
                "must be in 1..=64".into(),
            ));
        }
        for (field, rate) in [
            ("per_source_rate", &t.per_source_rate),
            ("per_client_rate", &t.per_client_rate),
        ] {
            if let Err(m) = crate::catalog::rate::parse_rate(rate) {
                e.push((format!("token_endpoint.{field}"), m));
            }
        }
        if self.token_cache_size > 10_000_000 {
            e.push(("token_cache_size".into(), "at most 10000000".into()));
        }
        if !(-12..=14).contains(&self.quota_utc_offset_hours) {
            e.push((
                "quota_utc_offset_hours".into(),
                "must be in -12..=14".into(),
            ));
        }
        e
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::throttle::OnUnavailable;

    fn issuer(extra: &str) -> String {
        format!("[[issuers]]\nissuer = \"https://sso\"\naudiences = [\"gw\"]\nalgorithms = [\"RS256\"]\n{extra}\n")
    }

    #[test]
    fn auth_settings_validation_collects_all_errors() {
        let s: AuthSettings = toml::from_str(&format!(
            "{}{}",
            issuer("jwks_url = \"http://sso/jwks\"\nleeway_secs = 61"),
            issuer("jwks_file = \"/a\"\njwks_url = \"https://sso/jwks\"")
        ))
        .unwrap();
        let paths: Vec<String> = s.validate().into_iter().map(|(p, _)| p).collect();
        for want in [
            "issuers[0].jwks_url",
            "issuers[0].leeway_secs",
            "issuers[1].issuer",
            "issuers[1].jwks_file",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "{want} missing in {paths:?}"
            );
        }
        for alg in ["HS256", "none", "es256"] {
            let r: Result<AuthSettings, _> = toml::from_str(
                &issuer(&format!("jwks_file = \"/a\"\nalgorithms = [\"{alg}\"]"))
                    .replace("algorithms = [\"RS256\"]\n", ""),
            );
            assert!(r.is_err(), "{alg} accepted");
        }
        let ok: AuthSettings = toml::from_str(&issuer("jwks_file = \"/a\"")).unwrap();
        assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    }

    #[test]
    fn token_endpoint_bounds_are_validated() {
        let s: AuthSettings = toml::from_str(
            "[token_endpoint]\nmax_concurrent_verifications = 0\nper_source_rate = \"lots\"\nper_client_rate = \"0/min\"\n",
        )
        .unwrap();
        let paths: Vec<String> = s.validate().into_iter().map(|(p, _)| p).collect();
        for want in [
            "token_endpoint.max_concurrent_verifications",
            "token_endpoint.per_source_rate",
            "token_endpoint.per_client_rate",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "{want} missing in {paths:?}"
            );
        }
        let d = TokenEndpointSettings::default();
        assert_eq!(d.max_concurrent_verifications, 4);
        assert!(AuthSettings::default().validate().is_empty());
    }

    #[test]
    fn auth_redis_and_service_settings_validate() {
        let r: RedisSettings = toml::from_str("url = \"nope://x\"\ntimeout_ms = 0").unwrap();
        assert_eq!(r.validate().len(), 2);
        let r: RedisSettings = toml::from_str("url = \"redis://127.0.0.1:6379/0\"").unwrap();
        assert!(r.validate().is_empty());
        let r: RedisSettings = toml::from_str(
            "url = \"rediss://u:p@127.0.0.1:6380/0\"\nca = \"/ca.pem\"\nusername = \"gw\"\npassword_env = \"REDIS_PW\"",
        )
        .unwrap();
        assert!(r.validate().is_empty(), "{:?}", r.validate());
        let r: RedisSettings = toml::from_str(
            "url = \"redis://127.0.0.1\"\nca = \"/ca.pem\"\nusername = \"\"\npassword_env = \"X\"\npassword_file = \"/p\"",
        )
        .unwrap();
        let paths: Vec<String> = r.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["ca", "password_env", "username"]);
        assert_eq!(r.on_unavailable, OnUnavailable::Local);
        let s: ServiceAuthSettings = toml::from_str("credentials = []").unwrap();
        assert_eq!(s.validate().len(), 1);
        let s: ServiceAuthSettings = toml::from_str("").unwrap();
        assert!(!s.anonymous && !s.forward_credential && !s.assertion);
        assert!(toml::from_str::<ServiceAuthSettings>("anonymus = true").is_err());
    }
}
