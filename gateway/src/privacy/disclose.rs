//! `penghubung evidence disclose`: opens one committed personal value of one exchange for an
//! auditor, and records that it did.
//!
//! The value is read from its sealed copy in the record (only the key file opens it), its salt
//! recomputed from the same key, and both are written as a disclosure file that `check-bundle
//! --disclosure` verifies against the exchange's bundle without any key. Before the file is
//! written, an `admin` record `personal.disclose` (actor, case reference, which commitment) is
//! made durable in the same log: no disclosure without evidence of it.
//!
//! The record goes into the log itself, so the command takes the log's writer lock: it runs
//! where the log is (the node's evidence directory) while no gateway writes it. The actor comes
//! from the required `--actor` flag; who may disclose (Auditor, Petugas Keamanan) is decided by
//! the control plane's roles once they exist, not by this command.

use anyhow::{bail, Context as _};
use penghubung_evidence::personal::{
    commitment, personal_values, Keyring, PersonalDisclosure, Place, DISCLOSURE_FORMAT,
};
use penghubung_evidence::schema::{self, record::Kind};
use penghubung_evidence::{EvidenceLog, EvidenceSettings};

/// What to disclose, and for whom.
#[derive(Debug, Clone)]
pub struct DiscloseRequest {
    /// The exchange.
    pub exchange_id: String,
    /// `path`, `query`, `header`, `json` or `xml`.
    pub location: String,
    /// Parameter, header name, JSON pointer or XML path, as in the record.
    pub field: String,
    /// Which occurrence (0 for the first).
    pub occurrence: u32,
    /// `request` or `response`.
    pub direction: String,
    /// Who discloses.
    pub actor: String,
    /// For which case.
    pub case_reference: String,
}

/// Parses `LOCATION:FIELD` (`path:nik`, `json:/nik`, `header:x-nik`).
pub fn parse_field(text: &str) -> Result<(String, String), String> {
    let (location, field) = text
        .split_once(':')
        .ok_or("expected LOCATION:FIELD, e.g. path:nik or json:/nik")?;
    if !matches!(location, "path" | "query" | "header" | "json" | "xml") || field.is_empty() {
        return Err("LOCATION is one of path, query, header, json, xml; FIELD is not empty".into());
    }
    Ok((location.to_owned(), field.to_owned()))
}

/// Finds the committed value, opens it, records the disclosure in the log and returns the
/// disclosure (the caller writes it out).
pub async fn disclose(
    evidence: &EvidenceSettings,
    node_id: &str,
    keys: &Keyring,
    request: &DiscloseRequest,
) -> anyhow::Result<PersonalDisclosure> {
    if request.actor.trim().is_empty() || request.case_reference.trim().is_empty() {
        bail!("--actor and --case must name who discloses and for which case");
    }
    let mut found: Option<(u64, schema::PersonalValue, String)> = None;
    penghubung_evidence::verify::scan(&evidence.dir, &mut |s| {
        if s.record.exchange_id != request.exchange_id {
            return true;
        }
        if let Some((direction, key_id, values)) = personal_values(&s.record) {
            if direction == request.direction {
                if let Some(v) = values.iter().find(|v| {
                    v.location == request.location
                        && v.field == request.field
                        && v.occurrence == request.occurrence
                }) {
                    found = Some((s.record.sequence, v.clone(), key_id.to_owned()));
                    return false;
                }
            }
        }
        true
    })
    .with_context(|| format!("read {}", evidence.dir.display()))?;
    let Some((sequence, value, key_id)) = found else {
        bail!(
            "exchange {} has no committed {} {} value {:?} (occurrence {})",
            request.exchange_id,
            request.direction,
            request.location,
            request.field,
            request.occurrence
        );
    };
    let key = keys
        .get(&key_id)
        .with_context(|| format!("the key file has no key {key_id:?} (the record's key id)"))?;
    let clear = key
        .unseal(&request.exchange_id, &value.commitment, &value.sealed)
        .context("the sealed value does not open with the record's key")?;
    let place = Place {
        direction: &request.direction,
        location: &value.location,
        field: &value.field,
        occurrence: value.occurrence,
    };
    let salt = key.salt(&request.exchange_id, place);
    if commitment(&salt, &clear)[..] != value.commitment[..] {
        bail!("the opened value does not match its commitment; the record or the key is wrong");
    }
    let admin = schema::Admin {
        actor: request.actor.clone(),
        action: "personal.disclose".into(),
        target: request.exchange_id.clone(),
        reason: request.case_reference.clone(),
        detail: format!(
            "{} {} {:?} occurrence {} of record #{sequence}",
            request.direction, value.location, value.field, value.occurrence
        ),
        disclosed: Some(schema::PersonalDisclosed {
            exchange_id: request.exchange_id.clone(),
            record_sequence: sequence,
            location: value.location.clone(),
            field: value.field.clone(),
            occurrence: value.occurrence,
            category: value.category.clone(),
            commitment: value.commitment.clone(),
            personal_key_id: key_id.clone(),
            case_reference: request.case_reference.clone(),
        }),
        ..Default::default()
    };
    let log = EvidenceLog::open(evidence, node_id)
        .await
        .context("open the evidence log to record the disclosure")?;
    let appended = log
        .append(schema::Record {
            gateway_version: env!("CARGO_PKG_VERSION").into(),
            kind: Some(Kind::Admin(admin)),
            ..Default::default()
        })
        .await;
    log.shutdown().await;
    let disclosure_sequence = appended.context("record the disclosure")?;
    let (value_text, value_hex) = match String::from_utf8(clear) {
        Ok(text) => (text, String::new()),
        Err(e) => (String::new(), hex::encode(e.as_bytes())),
    };
    Ok(PersonalDisclosure {
        format: DISCLOSURE_FORMAT.into(),
        exchange_id: request.exchange_id.clone(),
        record_sequence: sequence,
        direction: request.direction.clone(),
        location: value.location,
        field: value.field,
        occurrence: value.occurrence,
        category: value.category,
        personal_key_id: key_id,
        value: value_text,
        value_hex,
        salt: hex::encode(salt),
        commitment: hex::encode(&value.commitment),
        actor: request.actor.clone(),
        case_reference: request.case_reference.clone(),
        disclosure_sequence,
    })
}
