//! The operator-written configuration file: one TOML document, `deny_unknown_fields` everywhere.
//!
//! These types say what the operator wrote; [`super::validate`] checks them without I/O and
//! [`crate::snapshot`] compiles them into the immutable snapshot that requests use.

use serde::Deserialize;
use std::path::PathBuf;

use crate::auth::settings::{AuthSettings, RedisSettings};
use crate::catalog::parties::{ApplicationSpec, GrantSpec, OpdSpec};
use crate::catalog::services::{ServiceSpec, UpstreamSpec};
use penghubung_evidence::EvidenceSettings;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
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
}

/// The `[runtime]` table: worker threads of the tokio runtime; changing them needs a restart.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    /// Worker threads of the async runtime; 0 means one per CPU.
    #[serde(default)]
    pub threads: usize,
}

/// One traffic listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CrlExpired {
    /// Refuse client certificates whose revocation status only a stale CRL could tell.
    #[default]
    Refuse,
    /// Keep using the stale CRL; log a warning.
    Warn,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Address to bind; loopback by default. Needs a restart to change. Empty disables it.
    #[serde(default = "default_admin_address")]
    pub address: String,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            address: default_admin_address(),
        }
    }
}

fn default_admin_address() -> String {
    "127.0.0.1:9090".into()
}

/// The `[headers]` table: identity headers of *other* gateways that the gateway strips from every
/// request before it goes upstream.
///
/// The gateway always removes its own namespace (`x-penghubung-*`), hop-by-hop headers and the
/// forwarding headers it sets itself (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, client
/// certificate headers); that list is fixed. Back ends that used to sit behind another gateway
/// or an authenticating proxy often trust further names as "the user is already
/// authenticated"; a client must never be able to send one through this gateway. Those names
/// are this configurable list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderSettings {
    /// Request header names stripped from every request, case-insensitive; a trailing `*`
    /// matches every name with that prefix (`x-consumer-*`). Default: `x-remote-user`,
    /// `remote-user`, `x-authenticated-user`, `x-authenticated-*`, `x-forwarded-user`,
    /// `x-auth-request-*`, `x-consumer-*`, `x-userinfo`, `x-jwt-assertion`. Setting a list
    /// replaces the default; `[]` strips none of them.
    pub strip_identity: Vec<String>,
    /// Entries of `strip_identity` that are kept when the client connection presented a
    /// verified TLS client certificate (a peer gateway such as the provincial bus or SPLP
    /// that asserts the caller, e.g. WSO2's `X-JWT-Assertion`). Each must also be listed in
    /// `strip_identity`. Default: `x-jwt-assertion`.
    pub verified_peer_may_send: Vec<String>,
}

impl Default for HeaderSettings {
    fn default() -> Self {
        HeaderSettings {
            strip_identity: [
                "x-remote-user",
                "remote-user",
                "x-authenticated-user",
                "x-authenticated-*",
                "x-forwarded-user",
                "x-auth-request-*",
                "x-consumer-*",
                "x-userinfo",
                "x-jwt-assertion",
            ]
            .map(String::from)
            .to_vec(),
            verified_peer_may_send: vec!["x-jwt-assertion".into()],
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Write one access-log line per exchange (at `info` on target `penghubung::access`).
    #[serde(default)]
    pub access_log: bool,
    /// Log as JSON lines instead of text.
    #[serde(default)]
    pub json: bool,
}

/// Request limits and deadlines. Defaults follow the issue: 64 KiB head, 8 KiB URI, 10 MiB body.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    /// Largest request header section in bytes (431 beyond).
    pub header_bytes: usize,
    /// Most header fields in a request (431 beyond).
    pub header_count: usize,
    /// Longest request target in bytes (414 beyond).
    pub uri_bytes: usize,
    /// Largest request body in bytes (413 beyond); a route may lower or raise it.
    pub body_bytes: u64,
    /// Total time from a request's first byte to the end of its head, in seconds. For a new
    /// connection it runs from accept (TLS handshake included) to the end of the first request
    /// head: a connection that sends nothing, or too little, is closed then, not at the idle
    /// timeout. (HTTP/2: the first stream must have opened by then.)
    pub header_read_timeout_secs: u64,
    /// Total time to receive a request body, in seconds (408 beyond).
    pub body_timeout_secs: u64,
    /// A keep-alive connection with no request in flight is closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// A client that does not take response bytes for this many seconds is cut off.
    pub send_timeout_secs: u64,
    /// HTTP/2: concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: largest decoded header list in bytes.
    pub h2_max_header_list_bytes: u32,
    /// HTTP/2: streams reset by the client before being answered, tolerated per connection
    /// (rapid-reset protection; beyond it the connection gets GOAWAY).
    pub h2_max_pending_reset_streams: usize,
    /// HTTP/2: PING and SETTINGS frames (without ACK) a client may send per second (sliding
    /// one-second window); beyond it the connection is closed. Default 100: clients send a
    /// handful (one SETTINGS at start, keep-alive PINGs every few seconds).
    pub h2_max_control_frames_per_sec: u32,
    /// How long a shutting-down gateway lets requests in flight finish, in seconds.
    pub drain_timeout_secs: u64,
    /// Unauthenticated refusals per source address (IPv4 address, IPv6 /64) and window that are
    /// recorded one by one; beyond it, further refusals from the source in that window are
    /// summed into one `refusals_suppressed` evidence record, and a request from the source
    /// that presents no credential is answered 429 before any other stage runs. A source that
    /// had a successful exchange in the current or the previous window is never answered
    /// early (OPDs sit behind NAT). `0` turns both off: every refusal is then a record.
    pub refusals_per_source: u64,
    /// Length of the refusal window, in seconds (see `refusals_per_source`).
    pub refusal_window_secs: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            header_bytes: 64 * 1024,
            header_count: 100,
            uri_bytes: 8 * 1024,
            body_bytes: 10 * 1024 * 1024,
            header_read_timeout_secs: 30,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            send_timeout_secs: 30,
            h2_max_concurrent_streams: 100,
            h2_max_header_list_bytes: 64 * 1024,
            h2_max_pending_reset_streams: 20,
            h2_max_control_frames_per_sec: 100,
            drain_timeout_secs: 30,
            refusals_per_source: 100,
            refusal_window_secs: 10,
        }
    }
}
