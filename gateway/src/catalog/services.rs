//! Services (Layanan), their routes, and the upstream groups they forward to.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::{Classification, Exposure};

/// An upstream group: one or more targets serving the same backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Name that services refer to.
    pub name: String,
    /// How requests reach the targets: which adapter serves this group (see [`UpstreamKind`]).
    #[serde(default)]
    pub kind: UpstreamKind,
    /// Targets as `host:port`.
    pub targets: Vec<String>,
    /// `http1` or `http2` (prior knowledge on cleartext, ALPN on TLS).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// TLS to the upstream; absent means cleartext.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// How a target is chosen.
    #[serde(default)]
    pub balance: Balance,
    /// TCP (and TLS) connect timeout in milliseconds.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Time to wait for the response head, in milliseconds, per attempt (Envoy's
    /// `per_try_timeout`).
    #[serde(default = "default_head_ms")]
    pub response_head_timeout_ms: u64,
    /// The request budget, in milliseconds: the longest a client waits for the response head
    /// across every attempt and retry (Envoy's route timeout). Each attempt waits at most the
    /// smaller of `response_head_timeout_ms` and what is left of the budget; no retry starts
    /// once it is spent, and the client gets 504. Absent means `response_head_timeout_ms`, so a
    /// hung upstream is never waited for twice; set it larger to let idempotent requests be
    /// retried after a per-attempt timeout.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Time for the whole response including its body, in milliseconds.
    #[serde(default = "default_response_ms")]
    pub response_timeout_ms: u64,
    /// Extra attempts for idempotent requests whose body is buffered (never for POST).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Active health check; absent means only passive ejection.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// Consecutive failures that eject a target (passive health).
    #[serde(default = "default_eject_after")]
    pub eject_after_failures: u32,
    /// How long an ejected target stays out, in seconds.
    #[serde(default = "default_eject_secs")]
    pub eject_secs: u64,
    /// The largest share of the group's targets, in percent (0–100), that passive ejection may
    /// hold out at once (Envoy's `max_ejection_percent`). Whatever it says, the last available
    /// target is never ejected, so a group of one target never is. Only transport failures
    /// (connect errors, resets, broken response framing) count toward ejection, never an
    /// answer such as a 5xx. Default 50.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u8,
    /// Idle pooled connections kept per target.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: usize,
    /// Seconds an idle pooled connection is kept.
    #[serde(default = "default_pool_idle_secs")]
    pub pool_idle_timeout_secs: u64,
    /// The `Host` sent upstream: `target` (the target's authority, default), `preserve` (the
    /// client's host) or a fixed value.
    #[serde(default)]
    pub host_header: Option<String>,
    /// The peer behind a group of kind `splp` (required for that kind, refused for others):
    /// tier, token endpoint, credentials from secrets, client certificate, the peer's APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splp: Option<penghubung_adapter_splp::PeerSettings>,
    /// Settings of a `kind = "soap"` group (required for that kind, refused for others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap: Option<penghubung_adapter_soap::SoapSettings>,
}

fn default_connect_ms() -> u64 {
    2_000
}
fn default_head_ms() -> u64 {
    30_000
}
fn default_response_ms() -> u64 {
    120_000
}
fn default_retries() -> u32 {
    1
}
fn default_eject_after() -> u32 {
    5
}
fn default_max_ejection_percent() -> u8 {
    50
}
fn default_eject_secs() -> u64 {
    10
}
fn default_pool_idle() -> usize {
    64
}
fn default_pool_idle_secs() -> u64 {
    60
}

/// Which adapter serves an upstream group. Every kind speaks HTTP to its targets through the
/// group's pooled, health-checked HTTP transport; a kind decides what happens around it
/// (`snapshot::Adapters` builds one adapter per group from its kind).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// Plain forwarding: the cleaned request goes to a target as it is.
    #[default]
    Http,
    /// A peer SPL (provinsi or the national SPLP, WSO2 API Manager): the `splp` table says how
    /// (`penghubung-adapter-splp`).
    Splp,
    /// SOAP 1.1/1.2 back ends (`adapters/soap`): operations authorised and recorded, hardened
    /// XML, WSDL, SOAP faults, JSON mediation, WS-Security UsernameToken (the `soap` table).
    Soap,
}

/// Upstream wire protocol.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2.
    Http2,
}

/// Load-balancing policy.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each healthy target in turn.
    #[default]
    RoundRobin,
    /// The healthy target with the fewest requests in flight.
    LeastOutstanding,
}

/// TLS to an upstream.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of CAs trusted for this upstream (the system roots are never used).
    pub ca: PathBuf,
    /// Server name to verify, when it differs from the target host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Active health check of every target of a group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// Path requested with GET; 2xx and 3xx count as healthy.
    #[serde(default = "default_hc_path")]
    pub path: String,
    /// Milliseconds between checks.
    #[serde(default = "default_hc_interval")]
    pub interval_ms: u64,
    /// Milliseconds before a check counts as failed.
    #[serde(default = "default_hc_timeout")]
    pub timeout_ms: u64,
    /// Failed checks in a row that mark a target unhealthy.
    #[serde(default = "default_hc_fall")]
    pub unhealthy_after: u32,
    /// Good checks in a row that mark it healthy again.
    #[serde(default = "default_hc_rise")]
    pub healthy_after: u32,
}

fn default_hc_path() -> String {
    "/".into()
}
fn default_hc_interval() -> u64 {
    5_000
}
fn default_hc_timeout() -> u64 {
    1_000
}
fn default_hc_fall() -> u32 {
    2
}
fn default_hc_rise() -> u32 {
    1
}

/// A service (Layanan) offered through the gateway.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Stable identifier, used in metrics, evidence and grants.
    pub id: String,
    /// Service version, e.g. `v1`.
    #[serde(default)]
    pub version: Option<String>,
    /// The OPD that owns the service.
    #[serde(default)]
    pub owner_opd: Option<String>,
    /// Virtual hosts the service answers on (`api.example.go.id`, or `*` for any host).
    pub hosts: Vec<String>,
    /// Upstream group to forward to.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Security classification.
    #[serde(default)]
    pub classification: Classification,
    /// Exposure.
    #[serde(default)]
    pub exposure: Exposure,
    /// The service carries personal data (NIK, NIP…): its declared fields (`personal`) are
    /// committed, masked in logs and never written in clear (README, "Personal data").
    #[serde(default)]
    pub personal_data: bool,
    /// Which path parameters, query parameters, headers and JSON/XML fields are personal, and
    /// of which category. Required when `personal_data` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<crate::privacy::PersonalSpec>,
    /// Who may call: accepted credentials, anonymous access, what reaches the backend.
    /// Deny by default: without `anonymous = true`, a caller needs a credential and a grant.
    #[serde(default)]
    pub auth: ServiceAuthSettings,
    /// Routes of this service.
    #[serde(default)]
    pub route: Vec<RouteSpec>,
    /// Headers added to this service's responses (and its refusals once routed), replacing
    /// what the upstream sent under the same name and winning over the listener's
    /// `response_headers`. Framing, hop-by-hop and gateway (`x-penghubung-*`) names are
    /// refused.
    #[serde(default)]
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// The id of the service's *kelaikan operasi dan keamanan* approval, recorded in the
    /// `approval_id` of every request record (the registry fills it from the approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

/// One route of a service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Path pattern: `/exact`, `/prefix/*` (the prefix and everything below it) or a template
    /// with whole-segment parameters such as `/penduduk/{nik}`.
    pub path: String,
    /// Allowed methods. Absent or empty means GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS;
    /// any other method (`TRACE`, `CONNECT`, custom ones) is answered 405 unless a route lists
    /// it.
    #[serde(default)]
    pub methods: Vec<String>,
    /// `forward` (default) or `deny` (403, never forwarded).
    #[serde(default)]
    pub action: RouteAction,
    /// Replace this leading part of the canonical path before forwarding (e.g. `/api/v1`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Forward paths with ambiguous encodings (`%2F`, `%5C`…) as they are instead of refusing.
    #[serde(default)]
    pub allow_raw_path: bool,
    /// Stream the request body to the upstream instead of buffering it (for large uploads);
    /// the body digest is then recorded with the outcome.
    #[serde(default)]
    pub stream_body: bool,
    /// Body limit for this route in bytes (defaults to `limits.body_bytes`).
    #[serde(default)]
    pub body_bytes: Option<u64>,
}

/// What a route does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RouteAction {
    /// Forward to the service's upstream.
    #[default]
    Forward,
    /// Refuse with 403; nothing is forwarded.
    Deny,
}

/// Kinds of credential a service may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSetting {
    /// Bearer JWT from a configured external issuer.
    Jwt,
    /// WSO2-style `apikey` header.
    Apikey,
    /// TLS client certificate.
    Mtls,
    /// Bearer token issued by this gateway's token endpoint.
    GatewayToken,
}

/// Shape of error bodies for a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultStyle {
    /// RFC 9457 problem+json.
    #[default]
    Problem,
    /// WSO2 API Manager fault JSON (`{"code":"900901",…}`) for existing SPLP clients.
    Wso2,
    /// A SOAP 1.1 fault: set by the pipeline for SOAP 1.1 requests to a `soap` upstream, never
    /// configured.
    #[serde(skip)]
    Soap11,
    /// A SOAP 1.2 fault, likewise.
    #[serde(skip)]
    Soap12,
}

/// A service's `auth` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAuthSettings {
    /// Credential kinds accepted.
    #[serde(default = "default_credentials")]
    pub credentials: Vec<CredentialSetting>,
    /// Whether callers without any credential are let through (deny by default).
    #[serde(default)]
    pub anonymous: bool,
    /// Whether the client's credential header is forwarded to the backend.
    #[serde(default)]
    pub forward_credential: bool,
    /// Whether a short gateway-signed JWT describing the caller is sent to the backend.
    #[serde(default)]
    pub assertion: bool,
    /// Error body style.
    #[serde(default)]
    pub fault_style: FaultStyle,
}

fn default_credentials() -> Vec<CredentialSetting> {
    vec![
        CredentialSetting::Jwt,
        CredentialSetting::Apikey,
        CredentialSetting::Mtls,
        CredentialSetting::GatewayToken,
    ]
}

impl Default for ServiceAuthSettings {
    fn default() -> Self {
        Self {
            credentials: default_credentials(),
            anonymous: false,
            forward_credential: false,
            assertion: false,
            fault_style: FaultStyle::Problem,
        }
    }
}

impl ServiceAuthSettings {
    /// Validates the table; returns `(field path, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if self.credentials.is_empty() && !self.anonymous {
            e.push((
                "credentials".into(),
                "no credential kind accepted and anonymous is false: nobody can call".into(),
            ));
        }
        e
    }
}
