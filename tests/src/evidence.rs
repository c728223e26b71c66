//! Reading the evidence log a test gateway wrote.

use std::path::Path;

use penghubung_evidence::schema::{record::Kind, Record};

/// Every readable record of the log in `dir`.
pub fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    penghubung_evidence::verify::scan(dir, &mut |s| {
        out.push(s.record);
        true
    })
    .unwrap();
    out
}

/// The kind of a record, as a word.
pub fn kind(r: &Record) -> &'static str {
    match &r.kind {
        Some(Kind::Request(_)) => "request",
        Some(Kind::Outcome(_)) => "outcome",
        Some(Kind::Refused(_)) => "refused",
        Some(Kind::Checkpoint(_)) => "checkpoint",
        Some(Kind::Admin(_)) => "admin",
        _ => "other",
    }
}
