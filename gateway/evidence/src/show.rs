//! `penghubung evidence show`: records as a readable table (default) or as JSON Lines.
//!
//! Times are printed as RFC 3339 (UTC, nanoseconds) and accepted as RFC 3339 or as Unix
//! nanoseconds in `--since`/`--until`; digests are lower-case hex. JSON output is one object per
//! record and line (`sequence`, `time`, `node_id`, `exchange_id`, `trace_id`, `kind` and the
//! kind's fields under the kind's name), so it streams into `jq` and `head`. A closed output
//! (`| head`) ends the listing quietly.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::schema::{record::Kind, Consumer, Record};
use crate::verify::scan;

/// Output format of `evidence show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One aligned line per record.
    #[default]
    Table,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?} (table or json)")),
        }
    }
}

/// Filters and format of `evidence show`.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// Only this exchange.
    pub exchange: Option<String>,
    /// Only records at or after this time (Unix nanoseconds).
    pub since: Option<i64>,
    /// Only records before this time (Unix nanoseconds).
    pub until: Option<i64>,
    /// Only records of this service.
    pub service: Option<String>,
    /// Output format.
    pub format: Format,
}

/// Parses a time bound: RFC 3339 (`2026-12-07T10:00:00Z`, `2026-12-07T17:00:00+07:00`) or an
/// integer number of Unix nanoseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
        format!("{text:?} is neither an RFC 3339 time (2026-12-07T10:00:00Z) nor Unix nanoseconds: {e}")
    })?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{text:?} is out of range"))
}

/// RFC 3339 in UTC with nanoseconds; the raw number when out of range.
pub fn format_time(nanos: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| nanos.to_string())
}

/// What `show` printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// Records that matched the filters.
    pub matched: u64,
    /// The output was closed before everything was written (e.g. `| head`).
    pub output_closed: bool,
}

/// Writes the records of `dir` that match `options` to `out`. A closed output ends the listing
/// without an error.
pub fn show_to(dir: &Path, options: &ShowOptions, out: &mut dyn Write) -> anyhow::Result<Shown> {
    if !dir.is_dir() {
        anyhow::bail!("{}: not an evidence directory", dir.display());
    }
    let mut shown = Shown {
        matched: 0,
        output_closed: false,
    };
    let mut failure: Option<std::io::Error> = None;
    if options.format == Format::Table {
        if let Err(e) = writeln!(
            out,
            "{:>8}  {:<30}  {:<11}  {:<36}  DETAIL",
            "SEQ", "TIME (UTC)", "KIND", "EXCHANGE"
        ) {
            return closed_or(e, shown);
        }
    }
    scan(dir, &mut |s| {
        let r = &s.record;
        if !matches(r, options) {
            return true;
        }
        shown.matched += 1;
        let written = match options.format {
            Format::Table => writeln!(out, "{}", table_line(r)),
            Format::Json => writeln!(out, "{}", to_json(r)),
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return closed_or(e, shown);
    }
    if let Err(e) = out.flush() {
        return closed_or(e, shown);
    }
    Ok(shown)
}

fn closed_or(e: std::io::Error, mut shown: Shown) -> anyhow::Result<Shown> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        shown.output_closed = true;
        Ok(shown)
    } else {
        Err(anyhow::Error::new(e).context("write output"))
    }
}

/// `evidence show` on standard output: `Ok(false)` (exit 1) when `--exchange` names an
/// exchange the log has no record of.
pub fn show(dir: &Path, options: &ShowOptions) -> anyhow::Result<bool> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let shown = show_to(dir, options, &mut out)?;
    if let Some(id) = &options.exchange {
        if shown.matched == 0 {
            eprintln!(
                "penghubung evidence: no record of exchange {id} in {}",
                dir.display()
            );
            return Ok(false);
        }
    }
    Ok(true)
}

fn service_of(r: &Record) -> Option<&str> {
    match &r.kind {
        Some(Kind::Request(q)) => q.provider.as_ref().map(|p| p.service_id.as_str()),
        Some(Kind::Refused(x)) => Some(x.service_id.as_str()),
        _ => None,
    }
}

fn matches(r: &Record, o: &ShowOptions) -> bool {
    o.exchange.as_deref().is_none_or(|e| r.exchange_id == e)
        && o.since.is_none_or(|t| r.time_unix_nanos >= t)
        && o.until.is_none_or(|t| r.time_unix_nanos < t)
        && o.service
            .as_deref()
            .is_none_or(|sv| service_of(r) == Some(sv))
}

fn kind_name(r: &Record) -> &'static str {
    r.kind.as_ref().map_or("unknown", crate::decode::kind_name)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn consumer_label(c: Option<&Consumer>) -> String {
    match c {
        Some(c) if !c.application.is_empty() => format!("{}/{}", or_dash(&c.opd), c.application),
        Some(c) if !c.tls_subject.is_empty() => c.tls_subject.clone(),
        _ => "-".to_owned(),
    }
}

fn millis(nanos: u64) -> String {
    format!("{:.1}ms", nanos as f64 / 1e6)
}

fn detail(r: &Record) -> String {
    match &r.kind {
        Some(Kind::Request(q)) => format!(
            "{} {}{} service={} consumer={} grant={} body={}B{}",
            q.method,
            q.host,
            // A personal-data request keeps its route template, never the path (§16).
            if q.canonical_path.is_empty() {
                &q.route_template
            } else {
                &q.canonical_path
            },
            q.provider.as_ref().map_or("-", |p| or_dash(&p.service_id)),
            consumer_label(q.consumer.as_ref()),
            or_dash(&q.grant_id),
            q.body_length,
            if q.body_streamed { " (streamed)" } else { "" }
        ),
        Some(Kind::Outcome(o)) => format!(
            "{} {} request=#{} upstream={} attempts={} body={}B total={}",
            o.status,
            or_dash(&o.outcome_class),
            o.request_sequence,
            or_dash(&o.upstream_address),
            o.attempts,
            o.response_length,
            millis(o.total_nanos)
        ),
        Some(Kind::Refused(x)) => format!(
            "{} {}/{} {} {}{} peer={} consumer={}",
            x.status,
            or_dash(&x.stage),
            or_dash(&x.reason_class),
            or_dash(&x.method),
            x.host,
            x.path,
            or_dash(&x.peer_address),
            consumer_label(x.consumer.as_ref())
        ),
        Some(Kind::Admin(a)) => format!(
            "{} actor={} target={}{}",
            or_dash(&a.action),
            or_dash(&a.actor),
            or_dash(&a.target),
            if a.detail.is_empty() {
                String::new()
            } else {
                format!(" detail={:?}", a.detail)
            }
        ),
        Some(Kind::Checkpoint(c)) => format!(
            "tree_size={} root={} signed={} tsa={}",
            c.tree_size,
            hex::encode(&c.root_hash),
            if c.signature.is_empty() {
                "no".to_owned()
            } else {
                c.signature_algorithm.clone()
            },
            or_dash(&c.tsa_status)
        ),
        Some(Kind::RefusalsSuppressed(s)) => format!(
            "source={} suppressed={} after {} recorded, {} to {} ({})",
            s.source,
            s.suppressed,
            s.recorded,
            format_time(s.first_unix_nanos),
            format_time(s.last_unix_nanos),
            s.reasons
                .iter()
                .map(|r| format!("{}/{}={}", r.stage, r.reason_class, r.count))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "-".to_owned(),
    }
}

fn table_line(r: &Record) -> String {
    format!(
        "{:>8}  {:<30}  {:<11}  {:<36}  {}",
        r.sequence,
        format_time(r.time_unix_nanos),
        kind_name(r),
        or_dash(&r.exchange_id),
        detail(r).replace(['\n', '\r', '\t'], " ")
    )
}

fn consumer_json(c: Option<&Consumer>) -> Value {
    match c {
        None => Value::Null,
        Some(c) => json!({
            "opd": c.opd,
            "application": c.application,
            "credential_kind": c.credential_kind,
            "credential_fingerprint": c.credential_fingerprint,
            "tls_subject": c.tls_subject,
            "tls_sha256": hex::encode(&c.tls_sha256),
            "instansi": c.instansi,
            "on_behalf_of": c.on_behalf_of,
        }),
    }
}

/// Committed personal values: where, which category, the commitment (the sealed copy is left
/// out: only the key opens it).
fn personal_json(values: &[crate::schema::PersonalValue]) -> Value {
    values
        .iter()
        .map(|v| {
            json!({
                "location": v.location,
                "field": v.field,
                "category": v.category,
                "occurrence": v.occurrence,
                "commitment": hex::encode(&v.commitment),
            })
        })
        .collect()
}

/// One record as a JSON object (hex digests, RFC 3339 times).
pub fn to_json(r: &Record) -> Value {
    let body = match &r.kind {
        Some(Kind::Request(q)) => json!({
            "consumer": consumer_json(q.consumer.as_ref()),
            "provider": q.provider.as_ref().map(|p| json!({
                "opd": p.opd,
                "service_id": p.service_id,
                "service_version": p.service_version,
                "approval_id": p.approval_id,
                "personal_data": p.personal_data,
                "classification": p.classification,
            })),
            "grant_id": q.grant_id,
            "tujuan": q.tujuan,
            "method": q.method,
            "host": q.host,
            "canonical_path": q.canonical_path,
            "query_sha256": hex::encode(&q.query_sha256),
            "headers_sha256": hex::encode(&q.headers_sha256),
            "body_sha256": hex::encode(&q.body_sha256),
            "body_length": q.body_length,
            "body_streamed": q.body_streamed,
            "body_commitment_root": hex::encode(&q.body_commitment_root),
            "peer_address": q.peer_address,
            "listener": q.listener,
            "content_type": q.content_type,
            "cakupan": q.cakupan,
            "consent_id": q.consent_id,
            "direction": q.direction,
            "tls_version": q.tls_version,
            "message_id": q.message_id,
            "peer_direction": q.peer_direction,
            "personal_key_id": q.personal_key_id,
            "personal_values": personal_json(&q.personal_values),
            "path_hmac": hex::encode(&q.path_hmac),
            "query_hmac": hex::encode(&q.query_hmac),
            "headers_hmac": hex::encode(&q.headers_hmac),
            "body_hmac": hex::encode(&q.body_hmac),
            "route_template": q.route_template,
        }),
        Some(Kind::Outcome(o)) => json!({
            "request_sequence": o.request_sequence,
            "upstream_address": o.upstream_address,
            "upstream_tls_sha256": hex::encode(&o.upstream_tls_sha256),
            "status": o.status,
            "response_sha256": hex::encode(&o.response_sha256),
            "response_length": o.response_length,
            "attempts": o.attempts,
            "upstream_head_nanos": o.upstream_head_nanos,
            "total_nanos": o.total_nanos,
            "outcome_class": o.outcome_class,
            "reason": o.reason,
            "request_body_sha256": hex::encode(&o.request_body_sha256),
            "request_body_length": o.request_body_length,
            "peer_direction": o.peer_direction,
            "peer_correlation_id": o.peer_correlation_id,
            "peer_fault_code": o.peer_fault_code,
            "peer_path": o.peer_path,
            "peer_credential": o.peer_credential,
            "personal_key_id": o.personal_key_id,
            "personal_values": personal_json(&o.personal_values),
            "response_hmac": hex::encode(&o.response_hmac),
        }),
        Some(Kind::Refused(x)) => json!({
            "stage": x.stage,
            "reason_class": x.reason_class,
            "status": x.status,
            "peer_address": x.peer_address,
            "tls_subject": x.tls_subject,
            "tls_sha256": hex::encode(&x.tls_sha256),
            "method": x.method,
            "host": x.host,
            "path": x.path,
            "consumer": consumer_json(x.consumer.as_ref()),
            "grant_id": x.grant_id,
            "tujuan": x.tujuan,
            "service_id": x.service_id,
            "policy_rule_id": x.policy_rule_id,
            "query_sha256": hex::encode(&x.query_sha256),
            "headers_sha256": hex::encode(&x.headers_sha256),
            "personal_key_id": x.personal_key_id,
            "path_hmac": hex::encode(&x.path_hmac),
            "query_hmac": hex::encode(&x.query_hmac),
            "headers_hmac": hex::encode(&x.headers_hmac),
        }),
        Some(Kind::Admin(a)) => json!({
            "actor": a.actor,
            "role": a.role,
            "action": a.action,
            "before_sha256": hex::encode(&a.before_sha256),
            "after_sha256": hex::encode(&a.after_sha256),
            "detail": a.detail,
            "target": a.target,
            "reason": a.reason,
            "approval_id": a.approval_id,
            "tenant": a.tenant,
            "disclosed": a.disclosed.as_ref().map(|d| json!({
                "exchange_id": d.exchange_id,
                "record_sequence": d.record_sequence,
                "location": d.location,
                "field": d.field,
                "occurrence": d.occurrence,
                "category": d.category,
                "commitment": hex::encode(&d.commitment),
                "personal_key_id": d.personal_key_id,
                "case_reference": d.case_reference,
            })),
            "actor_opd": a.actor_opd,
            "ticket": a.ticket,
            "revision_id": a.revision_id,
            "refused": a.refused,
            "approval_refs": a.approval_refs,
        }),
        Some(Kind::Checkpoint(c)) => json!({
            "tree_size": c.tree_size,
            "root_hash": hex::encode(&c.root_hash),
            "previous_checkpoint_sha256": hex::encode(&c.previous_checkpoint_sha256),
            "signature": hex::encode(&c.signature),
            "signature_algorithm": c.signature_algorithm,
            "signer_certificates": c.signer_certificate_chain.len(),
            "timestamp_token_bytes": c.timestamp_token.len(),
            "tsa_status": c.tsa_status,
            "signed_time": format_time(c.signed_time_unix_nanos),
        }),
        Some(Kind::RefusalsSuppressed(s)) => json!({
            "source": s.source,
            "window_secs": s.window_secs,
            "recorded": s.recorded,
            "suppressed": s.suppressed,
            "first_time": format_time(s.first_unix_nanos),
            "last_time": format_time(s.last_unix_nanos),
            "first_exchange_id": s.first_exchange_id,
            "last_exchange_id": s.last_exchange_id,
            "limit": s.limit,
            "reasons": s.reasons.iter().map(|r| json!({
                "stage": r.stage,
                "reason_class": r.reason_class,
                "status": r.status,
                "count": r.count,
            })).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    };
    let kind = kind_name(r);
    let mut out = json!({
        "sequence": r.sequence,
        "time": format_time(r.time_unix_nanos),
        "time_unix_nanos": r.time_unix_nanos,
        "node_id": r.node_id,
        "exchange_id": r.exchange_id,
        "trace_id": r.trace_id,
        "gateway_version": r.gateway_version,
        "config_version_id": r.config_version_id,
        "kind": kind,
    });
    if let Some(map) = out.as_object_mut() {
        map.insert(kind.to_owned(), body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_accepted_as_rfc3339_or_unix_nanos() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(
            parse_time("1765100000000000000"),
            Ok(1_765_100_000_000_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1_000_000_000));
        assert_eq!(parse_time("1970-01-01T07:00:01+07:00"), Ok(1_000_000_000));
        assert!(parse_time("yesterday")
            .unwrap_err()
            .contains("neither an RFC 3339"));
        assert_eq!(format_time(1_000_000_000), "1970-01-01T00:00:01Z");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!("table".parse::<Format>(), Ok(Format::Table));
        assert!("yaml".parse::<Format>().is_err());
    }
}
