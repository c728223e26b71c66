//! The `/health` document: the node's summary `status` and the state of everything that keeps
//! an exchange provable — the checkpoint signer and its certificate, the time-stamp authority,
//! the CRLs of the TLS listeners, the JWT issuers' key sets, the evidence storage, Redis — and
//! the upstream groups.
//!
//! The summary is `down` (503) while the node is not ready, `degraded` while any check fails
//! (each failing check is named in `failing`), `ok` otherwise: never `ok` while a check fails.
//! `/ready` does not look at these (a stale CRL or an unreachable TSA is degraded, not unready).
//!
//! Every check is a [`Section`] built by one function of [`sections`]; a new source of trust
//! state (peers' tokens, API-key expiry, the registry database) is one more function there,
//! with its own key in `trust` and its own names in `failing`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use penghubung_evidence::{EvidenceHealth, EvidenceLog};
use serde_json::{json, Value};

use crate::snapshot::Snapshot;

/// A signing certificate closer than this to its `notAfter` marks the node degraded.
pub const CERT_EXPIRY_WARNING_DAYS: i64 = 30;
/// Less free space than this under the evidence directory marks the node degraded.
pub const EVIDENCE_MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;

/// One part of the trust state: its document and the names of its failing checks.
#[derive(Debug)]
pub struct Section {
    /// The key under `trust`.
    pub name: &'static str,
    /// What it reports.
    pub value: Value,
    /// Its failing checks (empty when all is well).
    pub failing: Vec<String>,
}

/// What the trust checks read.
struct Inputs<'a> {
    snapshot: &'a Snapshot,
    evidence: &'a EvidenceLog,
    health: EvidenceHealth,
    now: i64,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc3339(unix: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

/// The health document and its status code (200 unless the node is not ready).
pub fn document(snapshot: &Snapshot, evidence: &EvidenceLog, ready: bool) -> (StatusCode, Value) {
    let inputs = Inputs {
        snapshot,
        evidence,
        health: evidence.health(),
        now: unix_now(),
    };
    let mut failing = Vec::new();
    let mut trust = serde_json::Map::new();
    for section in sections(&inputs) {
        failing.extend(section.failing);
        trust.insert(section.name.to_owned(), section.value);
    }
    let mut upstreams = Vec::new();
    let mut names: Vec<&String> = snapshot.upstreams.keys().collect();
    names.sort();
    for name in names {
        let group = &snapshot.upstreams[name];
        let upstream = &group.transport;
        let targets: Vec<Value> = upstream
            .targets()
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"target": t.authority, "available": upstream.is_target_available(i), "outstanding": t.outstanding()}))
            .collect();
        let healthy = group.adapter.is_healthy();
        if !healthy {
            failing.push(format!("upstream:{name}"));
        }
        let mut entry = json!({"name": name, "healthy": healthy, "targets": targets});
        // Credentials the adapter holds that expire (a peer's JWT API keys): `warn` within the
        // peer's warning window, which degrades the node.
        let expiring: Vec<Value> = group
            .adapter
            .credential_expiries()
            .iter()
            .map(|c| {
                if c.warn {
                    failing.push(format!("credential:{name}:{}", c.name));
                }
                json!({"name": c.name, "expires_at": c.expires_at, "warn": c.warn})
            })
            .collect();
        if !expiring.is_empty() {
            entry["credentials"] = Value::Array(expiring);
        }
        upstreams.push(entry);
    }
    let status = match (ready, failing.is_empty()) {
        (false, _) => "down",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "failing": failing,
        "node": snapshot.node_id,
        "trust": trust,
        "upstreams": upstreams,
        "evidence": serde_json::to_value(&inputs.health).unwrap_or_default(),
        "auth": serde_json::to_value(snapshot.auth.health()).unwrap_or_default(),
    });
    (code, body)
}

/// Every trust section, in the document's order.
fn sections(inputs: &Inputs<'_>) -> Vec<Section> {
    vec![
        signer(inputs),
        tsa(inputs),
        crls(inputs),
        jwks(inputs),
        evidence_storage(inputs),
        redis(inputs),
    ]
}

/// The checkpoint signer: `ok` (the last checkpoint was signed), `failing` (it was not),
/// `pending` (no checkpoint yet), `disabled` (no signer, or no evidence); and its certificate's
/// expiry once a checkpoint was signed.
fn signer(inputs: &Inputs<'_>) -> Section {
    let h = &inputs.health;
    let mut failing = Vec::new();
    let state = if !h.enabled || !h.signer_configured {
        "disabled"
    } else if h.signer_ok {
        "ok"
    } else if h.last_checkpoint_age_secs.is_none() && h.last_error.is_none() {
        "pending"
    } else {
        failing.push("signer".to_owned());
        "failing"
    };
    let certificate = h.signer_cert_not_after.map(|not_after| {
        let days_left = (not_after - inputs.now).div_euclid(86_400);
        let expiring = days_left < CERT_EXPIRY_WARNING_DAYS;
        if expiring {
            failing.push("signer_certificate".to_owned());
        }
        json!({"not_after": rfc3339(not_after), "days_left": days_left, "expiring": expiring})
    });
    Section {
        name: "signer",
        value: json!({"state": state, "certificate": certificate}),
        failing,
    }
}

/// The time-stamp authority: `granted` (the last request got a token), `unavailable` (it did
/// not), `pending` (no checkpoint asked yet), `disabled` (none configured) — never `ok`.
fn tsa(inputs: &Inputs<'_>) -> Section {
    let h = &inputs.health;
    let mut failing = Vec::new();
    let state = if !h.enabled || !h.tsa_configured {
        "disabled"
    } else if !h.tsa_ok {
        failing.push("tsa".to_owned());
        "unavailable"
    } else if h.tsa_last_token_unix.is_some() {
        "granted"
    } else {
        "pending"
    };
    Section {
        name: "tsa",
        value: json!({
            "state": state,
            "last_token_at": h.tsa_last_token_unix.map_or(Value::Null, rfc3339),
            "blocking": h.tsa_blocking,
        }),
        failing,
    }
}

/// Each TLS listener's CRL files with their `nextUpdate`; one past it is `stale`.
fn crls(inputs: &Inputs<'_>) -> Section {
    let mut failing = Vec::new();
    let mut list = Vec::new();
    for (listener, path) in &inputs.snapshot.crl_files {
        let entry = match next_updates(path) {
            Ok(updates) => {
                let next = updates.iter().copied().min();
                let stale = next.is_some_and(|n| n <= inputs.now);
                if stale {
                    failing.push(format!("crl:{listener}"));
                }
                json!({"listener": listener, "file": path.display().to_string(),
                    "next_update": next.map_or(Value::Null, rfc3339), "stale": stale})
            }
            Err(error) => {
                failing.push(format!("crl:{listener}"));
                json!({"listener": listener, "file": path.display().to_string(), "error": error})
            }
        };
        list.push(entry);
    }
    Section {
        name: "crl",
        value: Value::Array(list),
        failing,
    }
}

/// The `nextUpdate` (Unix seconds) of every CRL in a file; a CRL without one never goes stale.
fn next_updates(path: &Path) -> Result<Vec<i64>, String> {
    let (crls, _) = crate::tls::load_crl(path)?;
    let mut updates = Vec::new();
    for crl in &crls {
        let (_, parsed) = x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| e.to_string())?;
        if let Some(next) = parsed.next_update() {
            updates.push(next.timestamp());
        }
    }
    Ok(updates)
}

/// Each JWT issuer's key set: `fresh` unless its last refresh failed (the old keys stay in use).
fn jwks(inputs: &Inputs<'_>) -> Section {
    let stats = inputs.snapshot.auth.stats();
    let mut failing = Vec::new();
    let list = stats
        .issuers
        .iter()
        .map(|i| {
            if i.stale {
                failing.push(format!("jwks:{}", i.issuer));
            }
            json!({
                "issuer": i.issuer,
                "fresh": !i.stale,
                "last_refresh_at": i.last_ok_unix.map_or(Value::Null, rfc3339),
                "loads_ok": i.loads_ok,
                "loads_failed": i.loads_failed,
            })
        })
        .collect();
    Section {
        name: "jwks",
        value: Value::Array(list),
        failing,
    }
}

/// The evidence directory: writable (the last write succeeded) and its free space.
fn evidence_storage(inputs: &Inputs<'_>) -> Section {
    let h = &inputs.health;
    let Some(dir) = inputs.evidence.dir() else {
        return Section {
            name: "evidence_storage",
            value: json!({"state": "disabled"}),
            failing: Vec::new(),
        };
    };
    let mut failing = Vec::new();
    if !h.writable {
        failing.push("evidence_writable".to_owned());
    }
    let free = rustix::fs::statvfs(dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .map_err(|e| e.to_string());
    let low = match &free {
        Ok(bytes) => *bytes < EVIDENCE_MIN_FREE_BYTES,
        Err(_) => true,
    };
    if low {
        failing.push("evidence_space".to_owned());
    }
    let value = json!({
        "state": if h.writable { "writable" } else { "unwritable" },
        "free_bytes": free.as_ref().ok(),
        "free_space_error": free.as_ref().err(),
        "low_space": low,
    });
    Section {
        name: "evidence_storage",
        value,
        failing,
    }
}

/// Redis for shared rate limits: `reachable`, `unreachable` or `not_configured`.
fn redis(inputs: &Inputs<'_>) -> Section {
    let (state, failing) = match inputs.snapshot.auth.health().redis_reachable {
        None => ("not_configured", Vec::new()),
        Some(true) => ("reachable", Vec::new()),
        Some(false) => ("unreachable", vec!["redis".to_owned()]),
    };
    Section {
        name: "redis",
        value: json!({"state": state}),
        failing,
    }
}
