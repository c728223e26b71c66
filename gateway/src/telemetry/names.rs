//! Metric and span names, in one place. Labels are bounded: service ids (from the catalogue),
//! stages, status classes — never raw paths or client values.

/// Requests answered, by service, stage that answered, and status class.
pub const REQUESTS: &str = "penghubung_requests_total";
/// Request duration histogram, by service.
pub const REQUEST_SECONDS: &str = "penghubung_request_duration_seconds";
/// Connections currently open, by listener.
pub const CONNECTIONS_OPEN: &str = "penghubung_connections_open";
/// Connections accepted, by listener.
pub const CONNECTIONS_TOTAL: &str = "penghubung_connections_total";
/// Connections closed at once because the listener was at its limit.
pub const CONNECTIONS_REJECTED: &str = "penghubung_connections_rejected_total";
/// Connection-level protocol errors (parse errors hyper answered itself, TLS failures, HTTP/2
/// control-frame floods).
pub const CONNECTION_ERRORS: &str = "penghubung_connection_errors_total";
/// Config reloads, by result.
pub const RELOADS: &str = "penghubung_config_reloads_total";
/// Upstream target availability (1 up, 0 down or ejected).
pub const UPSTREAM_UP: &str = "penghubung_upstream_target_up";
/// Requests in flight to an upstream target.
pub const UPSTREAM_OUTSTANDING: &str = "penghubung_upstream_target_outstanding";
/// Unauthenticated refusals counted into `refusals_suppressed` records (pipeline::refusals).
pub const REFUSALS_SUPPRESSED: &str = "penghubung_refusals_suppressed_total";
/// Source addresses whose refusals are being counted.
pub const REFUSAL_SOURCES: &str = "penghubung_refusal_sources";
