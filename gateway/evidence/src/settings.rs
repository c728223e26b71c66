//! The `[evidence]` table of the gateway configuration, with its pure validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What `append` does when a record cannot be made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// `append` fails; the gateway answers 503 and forwards nothing (the default, X-Road's rule).
    #[default]
    FailClosed,
    /// `append` succeeds with sequence 0 and the record is lost (counted in
    /// `penghubung_evidence_dropped_records_total`). Dangerous: calls then leave no evidence.
    FailOpen,
}

/// What happens when the TSA stays unreachable past `unreachable_window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TsaPolicy {
    /// Appends fail (503) until a time-stamp is obtained again.
    #[default]
    FailClosed,
    /// Keep serving; health and metrics flag the missing time-stamps.
    Continue,
}

/// Who signs checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SignerSettings {
    /// Key held in this process (development only: the writer can then forge checkpoints).
    KeyFile {
        /// PKCS#8 PEM private key, Ed25519 or ECDSA P-256.
        key: PathBuf,
        /// PEM certificate chain of the key, leaf first.
        certificate_chain: PathBuf,
    },
    /// A `penghubung signer` process listening on a Unix socket (production).
    Socket {
        /// Path of the signer's Unix socket.
        path: PathBuf,
    },
}

/// The RFC 3161 time-stamp authority.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TsaSettings {
    /// `http://host[:port]/path` of the TSA (plain HTTP: the token is self-authenticating).
    pub url: String,
    /// PEM certificate(s) of the CA the TSA certificate must chain to.
    pub ca_certificate: PathBuf,
    /// How long the TSA may be unreachable before `policy` applies, in seconds.
    #[serde(default = "default_tsa_window")]
    pub unreachable_window_secs: u64,
    /// What happens past the window.
    #[serde(default)]
    pub policy: TsaPolicy,
    /// Timeout of one time-stamp request, in milliseconds.
    #[serde(default = "default_tsa_timeout")]
    pub timeout_ms: u64,
    /// TSA policy OIDs (dotted) a token may carry; empty accepts any policy.
    #[serde(default)]
    pub accepted_policies: Vec<String>,
}

/// The `[evidence]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceSettings {
    /// Write evidence at all. Off only for development.
    pub enabled: bool,
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// A new segment file is started once the current one would pass this size, in bytes.
    pub segment_size_bytes: u64,
    /// What `append` does when the disk refuses the write.
    pub on_failure: OnFailure,
    /// Seconds between checkpoints (a checkpoint is written only if records were added).
    pub checkpoint_interval_secs: u64,
    /// Who signs checkpoints; none means unsigned checkpoints (development only).
    pub signer: Option<SignerSettings>,
    /// RFC 3161 time-stamp authority; none means checkpoints are not time-stamped.
    pub tsa: Option<TsaSettings>,
    /// Most records written in one group commit.
    pub max_batch_records: usize,
}

fn default_tsa_window() -> u64 {
    300
}

fn default_tsa_timeout() -> u64 {
    5_000
}

impl Default for EvidenceSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("./evidence"),
            segment_size_bytes: 64 * 1024 * 1024,
            on_failure: OnFailure::FailClosed,
            checkpoint_interval_secs: 5,
            signer: None,
            tsa: None,
            max_batch_records: 4096,
        }
    }
}

impl EvidenceSettings {
    /// Every problem as (field path relative to `evidence`, message). Pure: touches no file.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |path: &str, msg: &str| errors.push((path.to_owned(), msg.to_owned()));
        if !self.enabled {
            return errors;
        }
        if self.dir.as_os_str().is_empty() {
            err("dir", "must not be empty");
        }
        if self.segment_size_bytes < 4096 {
            err("segment_size_bytes", "must be at least 4096");
        }
        if self.checkpoint_interval_secs == 0 {
            err("checkpoint_interval_secs", "must be at least 1");
        }
        if self.max_batch_records == 0 {
            err("max_batch_records", "must be at least 1");
        }
        match &self.signer {
            Some(SignerSettings::KeyFile {
                key,
                certificate_chain,
            }) => {
                if key.as_os_str().is_empty() {
                    err("signer.key", "must not be empty");
                }
                if certificate_chain.as_os_str().is_empty() {
                    err("signer.certificate_chain", "must not be empty");
                }
            }
            Some(SignerSettings::Socket { path }) if path.as_os_str().is_empty() => {
                err("signer.path", "must not be empty");
            }
            Some(SignerSettings::Socket { .. }) | None => {}
        }
        if let Some(tsa) = &self.tsa {
            if crate::tsa::parse_http_url(&tsa.url).is_none() {
                err("tsa.url", "must be http://host[:port]/path");
            }
            if tsa.ca_certificate.as_os_str().is_empty() {
                err("tsa.ca_certificate", "must not be empty");
            }
            if tsa.timeout_ms == 0 {
                err("tsa.timeout_ms", "must be at least 1");
            }
            if tsa
                .accepted_policies
                .iter()
                .any(|o| crate::pki::oid_der(o).is_none())
            {
                err(
                    "tsa.accepted_policies",
                    "must be dotted object identifiers (e.g. 1.2.3.4)",
                );
            }
            if self.signer.is_none() {
                err(
                    "tsa",
                    "time-stamping needs a signer (the token covers the signature)",
                );
            }
        }
        errors
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let s: EvidenceSettings = toml::from_str(
            r#"
            dir = "/var/lib/penghubung/evidence"
            on_failure = "fail_open"
            signer = { mode = "socket", path = "/run/penghubung/signer.sock" }
            tsa = { url = "http://tsa.example:318/", ca_certificate = "tsa-ca.pem", policy = "continue" }
            "#,
        )
        .unwrap();
        assert_eq!(s.on_failure, OnFailure::FailOpen);
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        let bad = EvidenceSettings {
            segment_size_bytes: 1,
            checkpoint_interval_secs: 0,
            tsa: Some(TsaSettings {
                url: "https://x".into(),
                ca_certificate: "".into(),
                unreachable_window_secs: 1,
                accepted_policies: vec!["not-an-oid".into()],
                policy: TsaPolicy::Continue,
                timeout_ms: 1,
            }),
            ..Default::default()
        };
        let paths: Vec<_> = bad.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "segment_size_bytes",
                "checkpoint_interval_secs",
                "tsa.url",
                "tsa.ca_certificate",
                "tsa.accepted_policies",
                "tsa"
            ]
        );
        assert!(toml::from_str::<EvidenceSettings>("bogus = 1").is_err());
    }
}
