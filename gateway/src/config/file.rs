//! The operator-written configuration file: one TOML document, `deny_unknown_fields` everywhere.
//!
//! These types say what the operator wrote. [`ConfigFile::split`] separates the node's
//! [`Settings`] from the [`Catalog`]; [`super::validate()`] checks both without I/O and compiles
//! them, and the `snapshot` module builds the immutable snapshot that requests use from that.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::auth::settings::{AuthSettings, RedisSettings};
use crate::catalog::parties::{ApplicationSpec, GrantSpec, OpdSpec};
use crate::catalog::services::{ServiceSpec, UpstreamSpec};
use crate::catalog::Catalog;
use crate::telemetry::TelemetrySettings;
use penghubung_evidence::EvidenceSettings;

pub use crate::admit::settings::{HeaderSettings, RequestLimits};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Name of this gateway node, written into every evidence record. Defaults to the host name.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Process settings (need a restart to change).
    #[serde(default)]
    pub runtime: Workers,
    /// Traffic listeners. At least one.
    #[serde(default)]
    pub listener: Vec<ListenerSpec>,
    /// The admin listener (`/live`, `/ready`, `/health`, `/metrics`, `POST /reload`).
    #[serde(default)]
    pub admin: AdminSettings,
    /// Request size limits and deadlines (the `[limits]` table).
    #[serde(default)]
    pub limits: RequestLimits,
    /// Logging.
    #[serde(default)]
    pub log: LogSettings,
    /// Request header policy (the `[headers]` table).
    #[serde(default)]
    pub headers: HeaderSettings,
    /// Upstream groups that services forward to.
    #[serde(default)]
    pub upstream: Vec<UpstreamSpec>,
    /// Services (Layanan) with their routes.
    #[serde(default)]
    pub service: Vec<ServiceSpec>,
    /// The evidence log (needs a restart to change).
    #[serde(default)]
    pub evidence: EvidenceSettings,
    /// The personal-data key (`[privacy]`, README "Personal data").
    #[serde(default)]
    pub privacy: crate::privacy::PrivacySettings,
    /// JWT issuers and the gateway's token endpoint.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Shared rate-limit store for several gateway nodes; absent means in-memory limits.
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    /// OPDs (tenants).
    #[serde(default)]
    pub opd: Vec<OpdSpec>,
    /// Consumer applications and their credentials.
    #[serde(default)]
    pub application: Vec<ApplicationSpec>,
    /// Grants: which application may call which service, for what purpose, within what scope.
    #[serde(default)]
    pub grant: Vec<GrantSpec>,
    /// Peer SPLs that call in (`catalog::peers`).
    #[serde(default)]
    pub peer: Vec<crate::catalog::peers::PeerSpec>,
    /// Traces (the `[telemetry]` table; needs a restart to change).
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}

impl ConfigFile {
    /// Splits the file into the static settings and the catalogue it declares.
    pub fn split(self) -> (Settings, Catalog) {
        let ConfigFile {
            node_id,
            runtime,
            listener,
            admin,
            limits,
            log,
            headers,
            upstream,
            service,
            evidence,
            privacy,
            auth,
            redis,
            opd,
            application,
            grant,
            peer,
            telemetry,
        } = self;
        (
            Settings {
                node_id,
                runtime,
                listener,
                admin,
                limits,
                log,
                headers,
                evidence,
                privacy,
                auth,
                redis,
                telemetry,
            },
            Catalog {
                upstream,
                service,
                opd,
                application,
                grant,
                peer,
                revision: None,
            },
        )
    }
}

/// The static settings of a node: everything in the file but the catalogue (listeners, TLS,
/// limits, headers, logging, evidence, JWT issuers, Redis, admin). The fields mean what the
/// same-named fields of [`ConfigFile`] mean.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    /// This node's name (`node_id`).
    pub node_id: Option<String>,
    /// The `[runtime]` table.
    pub runtime: Workers,
    /// Traffic listeners with their TLS settings.
    pub listener: Vec<ListenerSpec>,
    /// The admin listener.
    pub admin: AdminSettings,
    /// Request size limits and deadlines.
    pub limits: RequestLimits,
    /// Logging.
    pub log: LogSettings,
    /// Request header policy.
    pub headers: HeaderSettings,
    /// The evidence log.
    pub evidence: EvidenceSettings,
    /// The personal-data key.
    pub privacy: crate::privacy::PrivacySettings,
    /// JWT issuers and the gateway's token endpoint.
    pub auth: AuthSettings,
    /// Shared rate-limit store.
    pub redis: Option<RedisSettings>,
    /// Traces.
    pub telemetry: TelemetrySettings,
}

/// The `[runtime]` table: worker threads of the tokio runtime; changing them needs a restart.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    /// Worker threads of the async runtime; 0 means one per CPU.
    #[serde(default)]
    pub threads: usize,
}

/// One traffic listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// A short name used in logs and metrics.
    pub name: String,
    /// Socket address to bind, e.g. `0.0.0.0:8443`. Needs a restart to change.
    pub address: String,
    /// TLS settings; absent means cleartext (HTTP/1.1 and h2c prior knowledge).
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Maximum concurrent connections on this listener; further connections are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Whether HTTP/2 is offered (ALPN `h2` on TLS, prior knowledge on cleartext).
    #[serde(default = "yes")]
    pub http2: bool,
    /// Headers added to every response this listener sends (answers and refusals alike),
    /// replacing what an upstream sent under the same name, e.g.
    /// `{ "strict-transport-security" = "max-age=31536000; includeSubDomains" }`. A service's
    /// `response_headers` win over the listener's for the same name. Framing, hop-by-hop and
    /// gateway (`x-penghubung-*`) names are refused.
    #[serde(default)]
    pub response_headers: std::collections::BTreeMap<String, String>,
}

fn default_max_connections() -> usize {
    10_000
}

fn yes() -> bool {
    true
}

/// Whether and how clients present certificates.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Client certificates are not requested.
    #[default]
    None,
    /// Requested and verified when presented; connections without one are allowed.
    Optional,
    /// Required: a connection without a valid certificate fails the handshake.
    Required,
}

/// TLS settings of a listener. Files are re-read on every reload. TLS 1.3 and 1.2 with AEAD,
/// forward-secret suites only; the server's suite order is enforced (the client's preference
/// is ignored). TLS 1.2 renegotiation is not supported (rustls implements none).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM certificate chain (leaf first).
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// Client certificate policy.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of CAs that issue client certificates (required unless `client_auth = "none"`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// CRL files (PEM or DER) checked for client certificates. Each is parsed when the config
    /// is built: a file that cannot be used stops the start (or refuses the reload) with its
    /// path and the reason. The files are watched: a changed CRL file reloads the running
    /// configuration (as `POST /reload` would, from the configuration in force) within a few
    /// seconds, and every reload re-reads them.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// What a CRL past its `nextUpdate` does: `refuse` (default) refuses every client
    /// certificate of that CA until a current CRL is in place (revocation status unknown);
    /// `warn` keeps using the stale CRL and logs a warning at every (re)load.
    #[serde(default)]
    pub crl_expired: CrlExpired,
    /// A DER-encoded OCSP response for the listener's certificate, stapled to every handshake
    /// (`status_request`). Read at start and at every reload: refresh the file before the
    /// response expires and reload (`SIGHUP` or `POST /reload`).
    #[serde(default)]
    pub ocsp_response: Option<PathBuf>,
}

/// Policy for a CRL whose `nextUpdate` has passed.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CrlExpired {
    /// Refuse client certificates whose revocation status only a stale CRL could tell.
    #[default]
    Refuse,
    /// Keep using the stale CRL; log a warning.
    Warn,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Address to bind; loopback by default. Needs a restart to change. Empty disables it.
    #[serde(default = "default_admin_address")]
    pub address: String,
    /// The registry file (SQLite, created when missing): operator accounts, API tokens and,
    /// with `catalogue = "registry"`, the catalogue and its signed revisions. Without it the
    /// admin listener has no accounts, so only `/live`, `/ready` and (on loopback) `/metrics`
    /// answer; everything else is 401. Needs a restart to change.
    #[serde(default)]
    pub registry: Option<PathBuf>,
    /// Where the catalogue lives: `file` (default: this file's tables, read-only in the API)
    /// or `registry` (changed through the admin API; this file then declares no catalogue
    /// tables). Needs a restart to change.
    #[serde(default = "default_catalogue")]
    pub catalogue: String,
    /// Who approves *kelaikan* (the seeds disagree): `petugas_kelaikan` (default) or
    /// `admin_platform`.
    #[serde(default = "default_kelaikan_approver")]
    pub kelaikan_approver: String,
    /// Whether a grant authorises only once the owner OPD consented (default `true`; the
    /// seeds disagree). With `false`, a granted, valid grant authorises without consent.
    #[serde(default = "yes")]
    pub consent_required: bool,
    /// Lifetime of an operator session, in minutes (default 480).
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u64,
    /// Lower-case hex SHA-256 of the token a scraper sends (`Authorization: Bearer …`) for
    /// `/metrics` when the admin listener is not on loopback. On loopback `/metrics` is open.
    #[serde(default)]
    pub metrics_token_sha256: Option<String>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            address: default_admin_address(),
            registry: None,
            catalogue: default_catalogue(),
            kelaikan_approver: default_kelaikan_approver(),
            consent_required: true,
            session_minutes: default_session_minutes(),
            metrics_token_sha256: None,
        }
    }
}

impl AdminSettings {
    /// Problems of the control-plane settings, as `(field path, message)`.
    pub fn issues(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        match (self.catalogue.as_str(), &self.registry) {
            ("file", _) | ("registry", Some(_)) => {}
            ("registry", None) => e.push((
                "admin.catalogue".into(),
                "\"registry\" needs admin.registry (the registry file)".into(),
            )),
            (other, _) => e.push((
                "admin.catalogue".into(),
                format!("{other:?}: file or registry"),
            )),
        }
        if !["petugas_kelaikan", "admin_platform"].contains(&self.kelaikan_approver.as_str()) {
            e.push((
                "admin.kelaikan_approver".into(),
                format!(
                    "{:?}: petugas_kelaikan or admin_platform",
                    self.kelaikan_approver
                ),
            ));
        }
        if self.session_minutes == 0 || self.session_minutes > 7 * 24 * 60 {
            e.push((
                "admin.session_minutes".into(),
                "between 1 and 10080 (a week)".into(),
            ));
        }
        if let Some(t) = &self.metrics_token_sha256 {
            if t.len() != 64
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                e.push((
                    "admin.metrics_token_sha256".into(),
                    "lower-case hex SHA-256 (64 characters)".into(),
                ));
            }
        }
        e
    }
}

fn default_catalogue() -> String {
    "file".into()
}

fn default_kelaikan_approver() -> String {
    "petugas_kelaikan".into()
}

fn default_session_minutes() -> u64 {
    480
}

fn default_admin_address() -> String {
    "127.0.0.1:9090".into()
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Write one access-log line per exchange (at `info` on target `penghubung::access`).
    #[serde(default)]
    pub access_log: bool,
    /// Log as JSON lines instead of text.
    #[serde(default)]
    pub json: bool,
}
