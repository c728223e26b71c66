//! Helpers of the auth tests: the auth settings and parties every test builds on; keys and
//! byte-exact tokens come from the test kit.

use std::path::Path;

use http::{HeaderMap, HeaderValue};

use crate::auth::{AuthRuntime, AuthSettings, ServiceAuthSettings};
use crate::catalog::parties::{ApplicationSpec, GrantSpec, OpdSpec};
pub use penghubung_testkit::dir::{temp_dir, TempDir};
pub use penghubung_testkit::jwt::*;
use penghubung_testkit::secret::{argon2_hash, sha256_hex};

pub fn auth_settings(jwks: &Path, extra: &str) -> AuthSettings {
    toml::from_str(&format!(
        r#"
        token_cache_size = 100
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        jwks_file = "{}"
        algorithms = ["RS256", "ES256"]
        max_lifetime_secs = 3600
        leeway_secs = 30
        jwks_min_refresh_secs = 30
        [token_endpoint]
        enabled = true
        issuer = "https://gw.pemda.example"
        audience = "penghubung"
        lifetime_secs = 600
        {extra}
        "#,
        jwks.display()
    ))
    .unwrap()
}

/// Parties: OPD `bkd`, application `simpeg` (JWT subject, API key, client secret, certificate),
/// grants as given in TOML.
pub fn parties(
    cert_sha256: &str,
    grants_toml: &str,
) -> (Vec<OpdSpec>, Vec<ApplicationSpec>, Vec<GrantSpec>) {
    #[derive(serde::Deserialize)]
    struct F {
        opd: Vec<OpdSpec>,
        application: Vec<ApplicationSpec>,
        #[serde(default)]
        grant: Vec<GrantSpec>,
    }
    let key_hash = sha256_hex(b"kunci-rahasia-simpeg");
    let secret_hash = argon2_hash("rahasia-klien");
    let f: F = toml::from_str(&format!(
        r#"
        [[opd]]
        id = "bkd"
        name = "Badan Kepegawaian Daerah"
        [[opd]]
        id = "disdukcapil"
        name = "Dinas Kependudukan dan Pencatatan Sipil"
        [[application]]
        id = "simpeg"
        opd = "bkd"
        name = "SIMPEG"
        [application.credentials]
        client_id = "simpeg-client"
        client_secret_hash = "{secret_hash}"
        api_key_sha256 = ["{key_hash}"]
        certificate_sha256 = ["{cert_sha256}"]
        certificate_subjects = ["CN=simpeg-by-subject,O=BKD,C=ID"]
        jwt = [{{ issuer = "{ISS}", sub = "svc-simpeg" }}]
        [[application]]
        id = "other"
        opd = "disdukcapil"
        name = "Other"
        {grants_toml}
        "#
    ))
    .unwrap();
    (f.opd, f.application, f.grant)
}

/// The parties compiled as `config::validate` compiles them (OPDs need no compiling).
pub fn compile(
    _opds: &[crate::catalog::parties::OpdSpec],
    apps: &[crate::catalog::parties::ApplicationSpec],
    grants: &[crate::catalog::parties::GrantSpec],
) -> crate::auth::Parties {
    crate::auth::Parties::compile(apps, grants).expect("the parties compile")
}

pub async fn runtime(jwks: &Path, grants_toml: &str) -> AuthRuntime {
    let (o, a, g) = parties(&"ab".repeat(32), grants_toml);
    AuthRuntime::build(&auth_settings(jwks, ""), &compile(&o, &a, &g), None, None)
        .await
        .unwrap()
}

pub fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

pub fn uri() -> http::Uri {
    http::Uri::from_static("/layanan/pegawai/123")
}

pub fn service() -> ServiceAuthSettings {
    ServiceAuthSettings::default()
}
