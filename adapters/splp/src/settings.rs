//! The `[upstream.splp]` table of an upstream group of kind `splp`: the peer (SPL Provinsi or
//! the national SPLP) the group's targets belong to, how the gateway authenticates to it, and
//! how each of its APIs is called. Secrets are never written in the table: they name a file or
//! an environment variable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The tier of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A provincial SPL.
    Provinsi,
    /// The national SPLP.
    Pusat,
}

impl Tier {
    /// `provinsi` or `pusat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Provinsi => "provinsi",
            Tier::Pusat => "pusat",
        }
    }
}

/// Where a secret is read from: exactly one of `file` (its content, trimmed) or `env`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// A file holding the secret (mode 0600 recommended).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
}

impl SecretRef {
    /// Reads the secret. Errors name the file or variable, never the value.
    pub fn read(&self) -> Result<String, String> {
        let value = match (&self.file, &self.env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| format!("secret file {}: {e}", path.display()))?,
            (None, Some(name)) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?,
            _ => return Err("a secret needs exactly one of `file` or `env`".into()),
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(match (&self.file, &self.env) {
                (Some(path), _) => format!("secret file {} is empty", path.display()),
                (_, Some(name)) => format!("environment variable {name} is empty"),
                _ => "empty secret".into(),
            });
        }
        Ok(value)
    }
}

/// How the credential travels to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CredentialHeader {
    /// `Authorization: Bearer <client-credentials token>` (WSO2's default).
    #[default]
    Bearer,
    /// `AuthorizationSPLP: Bearer <client-credentials token>` (an API whose backend keeps
    /// `Authorization` for itself; WSO2's custom authorization header).
    AuthorizationSplp,
    /// `apikey: <JWT API key>` (WSO2's self-contained API key; needs `api_key`).
    Apikey,
}

/// What happens to a WSO2 fault body from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    /// Mapped to the gateway's `application/problem+json` (default).
    #[default]
    Problem,
    /// Passed through as the peer sent it.
    Pass,
}

/// One API of the peer, selected by the leading part of the upstream path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Upstream paths (after the route's `strip_prefix`) starting with this segment prefix use
    /// this API; the prefix is replaced by the peer's path (e.g. `/dukcapil`). The longest
    /// matching prefix wins.
    pub prefix: String,
    /// The WSO2 tenant domain (`jatimprov.go.id`): the peer path starts `/t/{tenant}`. Absent
    /// for APIs published on the super tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The API's context on the peer (`kominfo/transformer`).
    pub context: String,
    /// The API's version (`v1`, `1.0`).
    pub version: String,
    /// The header that carries the credential.
    #[serde(default)]
    pub credential: CredentialHeader,
    /// The JWT API key of this API's subscription (for `credential = "apikey"`).
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// This API's own OAuth2 client (one key per subscription); absent means the peer's.
    #[serde(default)]
    pub client_id: Option<SecretRef>,
    /// The secret of `client_id`.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Headers the peer's backend needs (`auth`, `token`…), injected from secrets. The same
    /// names are removed from the OPD application's request first, so backend credentials
    /// never travel from an OPD app.
    #[serde(default)]
    pub backend_headers: BTreeMap<String, SecretRef>,
    /// WSO2 fault bodies: mapped to problem+json (`problem`) or passed through (`pass`).
    #[serde(default)]
    pub faults: FaultMode,
}

/// The `[upstream.splp]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSettings {
    /// `provinsi` or `pusat`.
    pub tier: Tier,
    /// The peer's OAuth2 token endpoint (`https://splp.layanan.go.id/oauth2/token`); https only.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The OAuth2 client id (WSO2 consumer key) of the gateway's application at the peer.
    #[serde(default)]
    pub client_id: Option<SecretRef>,
    /// Its secret (WSO2 consumer secret).
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// PEM CA bundle trusted for the token endpoint; absent means the group's `tls.ca`.
    #[serde(default)]
    pub token_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) presented to the peer and its token endpoint.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    /// The key of `client_certificate` (PKCS#8 PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Seconds before expiry a token is renewed (at most a quarter of its lifetime).
    #[serde(default = "default_refresh_before")]
    pub refresh_before_secs: u64,
    /// Milliseconds the token request may take.
    #[serde(default = "default_token_timeout")]
    pub token_timeout_ms: u64,
    /// Consecutive failed calls (no answer, or a 5xx from the peer) that open the circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// Seconds the circuit stays open before one probe call is let through (half-open).
    #[serde(default = "default_breaker_open")]
    pub breaker_open_secs: u64,
    /// Days before a JWT API key's expiry from which `/health` and metrics warn.
    #[serde(default = "default_warn_days")]
    pub api_key_warn_days: u64,
    /// The peer's APIs.
    #[serde(default)]
    pub api: Vec<ApiSettings>,
}

fn default_refresh_before() -> u64 {
    60
}
fn default_token_timeout() -> u64 {
    5_000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open() -> u64 {
    10
}
fn default_warn_days() -> u64 {
    14
}

fn header_name_ok(name: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

fn segment_ok(text: &str) -> bool {
    !text.is_empty()
        && text.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        })
}

impl PeerSettings {
    /// Pure checks; `(field path, message)` pairs relative to the table.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        let oauth = self
            .api
            .iter()
            .any(|a| a.credential != CredentialHeader::Apikey);
        if let Some(url) = &self.token_endpoint {
            match url.parse::<http::Uri>() {
                Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
                _ => e.push((
                    "token_endpoint".into(),
                    "must be an https:// URL (TLS verification is always on)".into(),
                )),
            }
        } else if oauth {
            e.push((
                "token_endpoint".into(),
                "an API uses an OAuth2 token: set the peer's token endpoint".into(),
            ));
        }
        for (field, secret) in [
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
        ] {
            if let Some(s) = secret {
                if s.file.is_some() == s.env.is_some() {
                    e.push((field.into(), "needs exactly one of `file` or `env`".into()));
                }
            }
        }
        if self.client_certificate.is_some() != self.client_key.is_some() {
            e.push((
                "client_certificate".into(),
                "client_certificate and client_key go together".into(),
            ));
        }
        if self.breaker_failures == 0 {
            e.push(("breaker_failures".into(), "must be at least 1".into()));
        }
        if self.breaker_open_secs == 0 {
            e.push(("breaker_open_secs".into(), "must be at least 1".into()));
        }
        if self.api.is_empty() {
            e.push((
                "api".into(),
                "a peer needs at least one [[upstream.splp.api]]".into(),
            ));
        }
        let mut prefixes = std::collections::HashSet::new();
        for (i, api) in self.api.iter().enumerate() {
            let at = format!("api[{i}]");
            if !api.prefix.starts_with('/') || api.prefix.len() > 1 && api.prefix.ends_with('/') {
                e.push((
                    format!("{at}.prefix"),
                    "must start with `/` and not end with one".into(),
                ));
            }
            if !prefixes.insert(api.prefix.as_str()) {
                e.push((
                    format!("{at}.prefix"),
                    "another API has the same prefix".into(),
                ));
            }
            if let Some(tenant) = &api.tenant {
                if !segment_ok(tenant) || tenant.contains('/') {
                    e.push((
                        format!("{at}.tenant"),
                        "must be a domain such as jatimprov.go.id".into(),
                    ));
                }
            }
            if !segment_ok(&api.context) {
                e.push((
                    format!("{at}.context"),
                    "must be path segments of letters, digits, `-._~`".into(),
                ));
            }
            if !segment_ok(&api.version) || api.version.contains('/') {
                e.push((format!("{at}.version"), "must be one path segment".into()));
            }
            match api.credential {
                CredentialHeader::Apikey if api.api_key.is_none() => e.push((
                    format!("{at}.api_key"),
                    "credential = \"apikey\" needs the API key's secret".into(),
                )),
                CredentialHeader::Apikey => {}
                _ => {
                    if api.api_key.is_some() {
                        e.push((
                            format!("{at}.api_key"),
                            "only used with credential = \"apikey\"".into(),
                        ));
                    }
                    let id = api.client_id.as_ref().or(self.client_id.as_ref());
                    let secret = api.client_secret.as_ref().or(self.client_secret.as_ref());
                    if id.is_none() || secret.is_none() {
                        e.push((
                            format!("{at}.client_id"),
                            "an OAuth2 API needs client_id and client_secret (its own or the peer's)".into(),
                        ));
                    }
                }
            }
            if api.client_id.is_some() != api.client_secret.is_some() {
                e.push((
                    format!("{at}.client_secret"),
                    "client_id and client_secret go together".into(),
                ));
            }
            for name in api.backend_headers.keys() {
                let lower = name.to_ascii_lowercase();
                if !header_name_ok(name)
                    || [
                        "authorization",
                        "authorizationsplp",
                        "apikey",
                        "host",
                        "content-length",
                        "transfer-encoding",
                        "connection",
                    ]
                    .contains(&lower.as_str())
                    || lower.starts_with("x-penghubung-")
                {
                    e.push((
                        format!("{at}.backend_headers.{name}"),
                        "not a header name the gateway may inject".into(),
                    ));
                }
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> PeerSettings {
        serde_json::from_str(text).expect("parses")
    }

    #[test]
    fn a_complete_peer_validates() {
        let p = peer(
            r#"{"tier":"pusat","token_endpoint":"https://splp.layanan.go.id/oauth2/token",
                "client_id":{"env":"ID"},"client_secret":{"file":"/s"},
                "api":[{"prefix":"/dukcapil","tenant":"jatimprov.go.id","context":"dukcapil","version":"1.0"},
                       {"prefix":"/sapa","context":"sapa","version":"1.0","credential":"apikey","api_key":{"file":"/k"}}]}"#,
        );
        assert_eq!(p.validate(), Vec::new());
    }

    #[test]
    fn every_mistake_is_named_with_its_path() {
        let p = peer(
            r#"{"tier":"provinsi","token_endpoint":"http://plain/oauth2/token",
                "client_id":{"env":"ID","file":"/both"},"client_key":"/k","breaker_failures":0,
                "api":[{"prefix":"dukcapil/","tenant":"a/b","context":"../x","version":"1/0"},
                       {"prefix":"dukcapil/","context":"c","version":"v1","credential":"apikey",
                        "backend_headers":{"authorization":{"env":"X"},"x-penghubung-grant-id":{"env":"Y"}}}]}"#,
        );
        let paths: Vec<String> = p.validate().into_iter().map(|(p, _)| p).collect();
        for expected in [
            "token_endpoint",
            "client_id",
            "client_certificate",
            "breaker_failures",
            "api[0].prefix",
            "api[0].tenant",
            "api[0].context",
            "api[0].version",
            "api[0].client_id",
            "api[1].prefix",
            "api[1].api_key",
            "api[1].backend_headers.authorization",
            "api[1].backend_headers.x-penghubung-grant-id",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} missing in {paths:?}"
            );
        }
    }

    #[test]
    fn secrets_name_their_source_never_their_value() {
        let missing = SecretRef {
            file: None,
            env: Some("PENGHUBUNG_TEST_SURELY_UNSET_42".into()),
        };
        assert!(missing
            .read()
            .unwrap_err()
            .contains("PENGHUBUNG_TEST_SURELY_UNSET_42"));
        let both = SecretRef {
            file: Some("/x".into()),
            env: Some("Y".into()),
        };
        assert!(both.read().is_err());
        let dir = std::env::temp_dir().join(format!("splp-secret-{}", std::process::id()));
        std::fs::write(&dir, "  rahasia-sekali\n").expect("writes");
        let file = SecretRef {
            file: Some(dir.clone()),
            env: None,
        };
        assert_eq!(file.read().expect("reads"), "rahasia-sekali");
        std::fs::write(&dir, "\n").expect("writes");
        let error = file.read().unwrap_err();
        assert!(
            error.contains("empty") && !error.contains("rahasia"),
            "{error}"
        );
        let _ = std::fs::remove_file(&dir);
    }
}
