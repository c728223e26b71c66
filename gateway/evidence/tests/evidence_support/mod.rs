//! Shared helpers of the evidence integration tests: temporary directories, a test PKI,
//! settings and raw frame manipulation.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use penghubung_evidence::schema::{self, record::Kind};
use penghubung_evidence::segment::{self, encode_frame, parse_frame};
use penghubung_evidence::{EvidenceSettings, SignerSettings};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("penghubung-ev-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a checkpoint signer certificate written as PEM files (the test kit's).
pub use penghubung_testkit::pki::SignerFiles as Pki;
#[allow(unused_imports)] // not every test file that includes this module uses both
pub use penghubung_testkit::pki::{document_signing, signer_files as pki};

/// Settings writing to `dir` with a key-file signer and no periodic checkpoints in test time.
pub fn settings(dir: &Path, pki: Option<&Pki>) -> EvidenceSettings {
    EvidenceSettings {
        dir: dir.to_path_buf(),
        checkpoint_interval_secs: 3600,
        signer: pki.map(|p| SignerSettings::KeyFile {
            key: p.key.clone(),
            certificate_chain: p.chain.clone(),
        }),
        ..EvidenceSettings::default()
    }
}

/// A request record of exchange `ex`.
pub fn request(ex: &str) -> schema::Record {
    schema::Record {
        exchange_id: ex.to_owned(),
        kind: Some(Kind::Request(schema::Request {
            method: "GET".into(),
            host: "dukcapil.pemda.go.id".into(),
            canonical_path: "/v1/penduduk".into(),
            body_sha256: vec![7u8; 32].into(),
            provider: Some(schema::Provider {
                service_id: "dukcapil.nik".into(),
                approval_id: "kl-0192".into(),
                ..Default::default()
            }),
            consent_id: "ct-0042".into(),
            ..Default::default()
        })),
        config_version_id: "rev-7".into(),
        ..Default::default()
    }
}

/// The frames of the single segment of `dir`, as raw bytes each.
pub fn frames(dir: &Path) -> Vec<Vec<u8>> {
    let segs = segment::list_segments(dir).unwrap();
    assert_eq!(segs.len(), 1, "tamper tests use one segment");
    let data = std::fs::read(&segs[0].1).unwrap();
    let mut off = 0;
    let mut out = Vec::new();
    while let Some(f) = parse_frame(&data[off..]).unwrap() {
        out.push(data[off..off + f.len].to_vec());
        off += f.len;
    }
    out
}

pub fn write_frames(dir: &Path, frames: &[Vec<u8>]) {
    let segs = segment::list_segments(dir).unwrap();
    std::fs::write(&segs[0].1, frames.concat()).unwrap();
}

/// The record bytes inside a frame.
pub fn record_bytes(frame: &[u8]) -> Vec<u8> {
    parse_frame(frame).unwrap().unwrap().record.to_vec()
}

/// Re-frames `records` with a freshly computed chain (what a forger with file access can do).
pub fn rechain(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut h = segment::GENESIS;
    records
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            h = encode_frame(&mut out, r, &h);
            out
        })
        .collect()
}

/// Copies every file of `from` into a new temporary directory.
pub fn copy_dir(from: &Path, name: &str) -> TempDir {
    let to = TempDir::new(name);
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
    }
    to
}
