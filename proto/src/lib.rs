//! Generated Rust types for Penghubung's protocol buffer schemas.
//!
//! The `.proto` files under `penghubung/<area>/v1/` are the single definition of each schema;
//! `proto/README.md` describes the evidence log's on-disk format for auditors.

#![allow(missing_docs, clippy::all)]

/// Evidence records (`penghubung.evidence.v1`).
pub mod evidence {
    /// Version 1 of the evidence schema.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/penghubung.evidence.v1.rs"));
    }
}

/// The admin API over gRPC (`penghubung.admin.v1`).
pub mod admin {
    /// Version 1 of the admin API.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/penghubung.admin.v1.rs"));
    }
}
