//! Metric names, types and help texts, in one place. Labels are bounded: service ids (from the catalogue), stages,
//! status classes, listener and upstream names — never raw paths or client values.
//!
//! Counters are named here without their `_total` suffix: the OpenMetrics text format
//! (prometheus-client) writes the family name in `# TYPE` and appends `_total` to every sample,
//! so `REQUESTS` (`penghubung_requests`) is exposed as `penghubung_requests_total`, the same
//! sample name as before the move to prometheus-client. [`exposed`] gives the sample name.

use prometheus_client::metrics::MetricType;

/// Requests answered, by service, stage that answered, and status class (counter).
pub const REQUESTS: &str = "penghubung_requests";
/// Requests answered, by service, consumer OPD (catalogue ids) and status class (counter).
pub const CONSUMER_REQUESTS: &str = "penghubung_consumer_requests";
/// Request duration histogram in seconds, by service and the stage that answered.
pub const REQUEST_SECONDS: &str = "penghubung_request_duration_seconds";
/// Connections currently open, by listener (gauge).
pub const CONNECTIONS_OPEN: &str = "penghubung_connections_open";
/// Connections accepted, by listener (counter).
pub const CONNECTIONS: &str = "penghubung_connections";
/// Connections closed at once because the listener was at its limit (counter).
pub const CONNECTIONS_REJECTED: &str = "penghubung_connections_rejected";
/// Connection-level protocol errors (parse errors hyper answered itself, TLS failures, HTTP/2
/// control-frame floods) (counter).
pub const CONNECTION_ERRORS: &str = "penghubung_connection_errors";
/// Config reloads, by result (counter).
pub const RELOADS: &str = "penghubung_config_reloads";
/// Upstream target availability (1 up, 0 down or ejected) (gauge).
pub const UPSTREAM_UP: &str = "penghubung_upstream_target_up";
/// Requests in flight to an upstream target (gauge).
pub const UPSTREAM_OUTSTANDING: &str = "penghubung_upstream_target_outstanding";
/// When a credential an adapter holds expires (a peer SPL's JWT API key), seconds since the
/// epoch, by upstream and credential (gauge).
pub const PEER_KEY_EXPIRES: &str = "penghubung_peer_api_key_expires_timestamp_seconds";
/// Unauthenticated refusals counted into `refusals_suppressed` records (pipeline::refusals)
/// (counter).
pub const REFUSALS_SUPPRESSED: &str = "penghubung_refusals_suppressed";
/// Source addresses whose refusals are being counted (gauge).
pub const REFUSAL_SOURCES: &str = "penghubung_refusal_sources";
/// JWKS loads, by issuer and result (counter).
pub const JWKS_LOADS: &str = "penghubung_auth_jwks_loads";
/// The issuer's keys are stale (the last refresh failed) (gauge).
pub const JWKS_STALE: &str = "penghubung_auth_jwks_stale";
/// Entries in the verified-token cache (gauge).
pub const TOKEN_CACHE_ENTRIES: &str = "penghubung_auth_token_cache_entries";
/// Verified-token cache hits (counter).
pub const TOKEN_CACHE_HITS: &str = "penghubung_auth_token_cache_hits";
/// Access tokens issued by the gateway's token endpoint (counter).
pub const TOKENS_ISSUED: &str = "penghubung_auth_tokens_issued";
/// Refused token-endpoint requests (counter).
pub const TOKEN_REQUESTS_FAILED: &str = "penghubung_auth_token_requests_failed";
/// The assertion signing key is ephemeral (generated at start) (gauge).
pub const SIGNING_KEY_EPHEMERAL: &str = "penghubung_auth_signing_key_ephemeral";
/// Redis (shared rate limits) reachable; only when Redis is configured (gauge).
pub const REDIS_UP: &str = "penghubung_ratelimit_redis_up";
/// Failed Redis calls; only when Redis is configured (counter).
pub const REDIS_ERRORS: &str = "penghubung_ratelimit_redis_errors";
/// Evidence is being recorded (gauge).
pub const EVIDENCE_ENABLED: &str = "penghubung_evidence_enabled";
/// The last evidence write succeeded (gauge).
pub const EVIDENCE_WRITABLE: &str = "penghubung_evidence_writable";
/// Records in the evidence log (gauge).
pub const EVIDENCE_RECORDS: &str = "penghubung_evidence_records";
/// Bytes written to the evidence log (counter).
pub const EVIDENCE_WRITTEN_BYTES: &str = "penghubung_evidence_written_bytes";
/// Group commits (one fsync each) (counter).
pub const EVIDENCE_GROUP_COMMITS: &str = "penghubung_evidence_group_commits";
/// Seconds spent in group-commit fsyncs (counter).
pub const EVIDENCE_GROUP_COMMIT_SECONDS: &str = "penghubung_evidence_group_commit_seconds";
/// Failed evidence writes (counter).
pub const EVIDENCE_WRITE_ERRORS: &str = "penghubung_evidence_write_errors";
/// Records accepted without being written under `fail_open` (counter).
pub const EVIDENCE_DROPPED_RECORDS: &str = "penghubung_evidence_dropped_records";
/// Checkpoints written (counter).
pub const EVIDENCE_CHECKPOINTS: &str = "penghubung_evidence_checkpoints";
/// The last time-stamp request succeeded (gauge).
pub const EVIDENCE_TSA_OK: &str = "penghubung_evidence_tsa_ok";
/// Appends are refused because the TSA is down past its window (gauge).
pub const EVIDENCE_TSA_BLOCKING: &str = "penghubung_evidence_tsa_blocking";
/// The last checkpoint was signed (gauge).
pub const EVIDENCE_SIGNER_OK: &str = "penghubung_evidence_signer_ok";
/// Seconds since the last checkpoint; only once there is one (gauge).
pub const EVIDENCE_LAST_CHECKPOINT_AGE: &str = "penghubung_evidence_last_checkpoint_age_seconds";
/// Finished spans exported to the OTLP collector (counter; 0 while traces are off).
pub const TRACE_SPANS_EXPORTED: &str = "penghubung_trace_spans_exported";
/// Finished spans dropped: the export queue was full, or the export failed or timed out
/// (counter).
pub const TRACE_SPANS_DROPPED: &str = "penghubung_trace_spans_dropped";

/// Every metric family with its type and help text, as exposed on `/metrics`.
pub const ALL: &[(&str, MetricType, &str)] = &[
    (REQUESTS, MetricType::Counter, "Requests answered, by service, stage and status class."),
    (CONSUMER_REQUESTS, MetricType::Counter, "Requests answered, by service, consumer OPD and status class."),
    (REQUEST_SECONDS, MetricType::Histogram, "Request duration in seconds, by service and the stage that answered."),
    (CONNECTIONS_OPEN, MetricType::Gauge, "Open connections."),
    (CONNECTIONS, MetricType::Counter, "Accepted connections."),
    (CONNECTIONS_REJECTED, MetricType::Counter, "Connections closed at the connection limit."),
    (CONNECTION_ERRORS, MetricType::Counter, "Connection-level protocol and TLS errors."),
    (RELOADS, MetricType::Counter, "Config reloads by result."),
    (UPSTREAM_UP, MetricType::Gauge, "Upstream target availability."),
    (UPSTREAM_OUTSTANDING, MetricType::Gauge, "Requests in flight per target."),
    (PEER_KEY_EXPIRES, MetricType::Gauge, "When a peer SPL's JWT API key expires (Unix seconds)."),
    (REFUSALS_SUPPRESSED, MetricType::Counter, "Unauthenticated refusals counted into refusals_suppressed records instead of recorded one by one."),
    (REFUSAL_SOURCES, MetricType::Gauge, "Source addresses whose refusals are being counted."),
    (JWKS_LOADS, MetricType::Counter, "JWKS loads by issuer and result."),
    (JWKS_STALE, MetricType::Gauge, "The issuer's keys are stale."),
    (TOKEN_CACHE_ENTRIES, MetricType::Gauge, "Entries in the verified-token cache."),
    (TOKEN_CACHE_HITS, MetricType::Counter, "Verified-token cache hits."),
    (TOKENS_ISSUED, MetricType::Counter, "Access tokens issued by the token endpoint."),
    (TOKEN_REQUESTS_FAILED, MetricType::Counter, "Refused token-endpoint requests."),
    (SIGNING_KEY_EPHEMERAL, MetricType::Gauge, "The assertion signing key was generated at start."),
    (REDIS_UP, MetricType::Gauge, "Redis for shared rate limits is reachable."),
    (REDIS_ERRORS, MetricType::Counter, "Failed Redis calls."),
    (EVIDENCE_ENABLED, MetricType::Gauge, "Evidence is being recorded."),
    (EVIDENCE_WRITABLE, MetricType::Gauge, "The last evidence write succeeded."),
    (EVIDENCE_RECORDS, MetricType::Gauge, "Records in the evidence log."),
    (EVIDENCE_WRITTEN_BYTES, MetricType::Counter, "Bytes written to the evidence log."),
    (EVIDENCE_GROUP_COMMITS, MetricType::Counter, "Evidence group commits."),
    (EVIDENCE_GROUP_COMMIT_SECONDS, MetricType::Counter, "Seconds spent in evidence group-commit fsyncs."),
    (EVIDENCE_WRITE_ERRORS, MetricType::Counter, "Failed evidence writes."),
    (EVIDENCE_DROPPED_RECORDS, MetricType::Counter, "Evidence records accepted without being written (fail_open)."),
    (EVIDENCE_CHECKPOINTS, MetricType::Counter, "Evidence checkpoints written."),
    (EVIDENCE_TSA_OK, MetricType::Gauge, "The last time-stamp request succeeded."),
    (EVIDENCE_TSA_BLOCKING, MetricType::Gauge, "Evidence appends are refused while the TSA is down."),
    (EVIDENCE_SIGNER_OK, MetricType::Gauge, "The last evidence checkpoint was signed."),
    (EVIDENCE_LAST_CHECKPOINT_AGE, MetricType::Gauge, "Seconds since the last evidence checkpoint."),
    (TRACE_SPANS_EXPORTED, MetricType::Counter, "Spans exported to the OTLP collector."),
    (TRACE_SPANS_DROPPED, MetricType::Counter, "Spans dropped: export queue full, export failed or timed out."),
];

/// The sample name a family is exposed under (`_total` appended to counters).
pub fn exposed(name: &str, kind: &MetricType) -> String {
    match kind {
        MetricType::Counter => format!("{name}_total"),
        _ => name.to_owned(),
    }
}
