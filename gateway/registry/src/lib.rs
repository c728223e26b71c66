//! Penghubung's registry: the home of the catalogue (OPDs, Layanan with their lifecycle and
//! kelaikan approval, applications with hashed credentials, grants with the owner's consent),
//! the operator accounts with their roles per OPD, and the signed history of catalogue
//! revisions.
//!
//! Storage is behind one trait, [`Store`]; [`SqliteStore`] (an embedded SQLite file, nothing to
//! install) is the implementation today, with versioned migrations (`migrations/`), so a
//! PostgreSQL store is a second implementation, not a rewrite. `sqlx` was chosen because it
//! speaks both SQLite and PostgreSQL through the same API and runs migrations; its compile-time
//! checked queries are not used, so building needs no database.
//!
//! This crate knows nothing of the gateway: the gateway's control side compiles a
//! [`Catalogue`] into its own catalogue type, checks who may change what, and signs revisions
//! through the evidence signer.

pub mod model;
pub mod secret;
mod sqlite;
mod store;

pub use model::*;
pub use sqlite::SqliteStore;
pub use store::{Store, StoreError};

use sha2::Digest as _;

/// The canonical JSON of a value: its serde JSON with every object's keys sorted and no
/// whitespace. Revisions are stored, digested and signed in this form.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    serde_json::to_string(&sort(serde_json::to_value(value)?))
}

/// The purpose tag a revision signature covers, so a revision signature can never pass for an
/// evidence checkpoint signature (or the reverse).
pub const REVISION_PURPOSE: &[u8] = b"penghubung.registry.revision.v1\0";

/// What a revision's signature covers: SHA-256 over [`REVISION_PURPOSE`], the revision id
/// (8 bytes big-endian), the creation time (RFC 3339, then a NUL byte) and the SHA-256 of the
/// body.
pub fn signing_input(id: i64, created_at: &str, body_sha256: &[u8; 32]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(REVISION_PURPOSE);
    h.update(id.to_be_bytes());
    h.update(created_at.as_bytes());
    h.update([0]);
    h.update(body_sha256);
    h.finalize().into()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}
