//! The evidence log's error type.

use std::path::PathBuf;

/// Everything that can go wrong while writing, signing, time-stamping or reading evidence.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The record could not be made durable; the caller must not forward the call (503).
    #[error("evidence log not writable: {0}")]
    NotWritable(String),
    /// The time-stamp authority has been unreachable past the window and the policy is
    /// fail-closed.
    #[error("time-stamp authority unavailable past the configured window")]
    TsaUnavailable,
    /// The writer thread has stopped (shutdown or crash).
    #[error("evidence writer stopped")]
    Stopped,
    /// The log on disk is damaged somewhere other than a torn tail.
    #[error("corrupt evidence log {path}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key, certificate or signature problem.
    #[error("signer: {0}")]
    Signer(String),
    /// Time-stamp request or token problem.
    #[error("time-stamp: {0}")]
    Tsa(String),
    /// The configuration is invalid.
    #[error("invalid evidence settings: {0}")]
    Config(String),
}

impl EvidenceError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status the gateway answers when an append fails with this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Io { .. }
            | Self::NotWritable(_)
            | Self::TsaUnavailable
            | Self::Stopped
            | Self::Corrupt { .. }
            | Self::Signer(_)
            | Self::Tsa(_)
            | Self::Config(_) => 503,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_append_failure_is_a_503() {
        let io = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let table = [
            (EvidenceError::io("write", io()), 503),
            (EvidenceError::NotWritable("x".into()), 503),
            (EvidenceError::TsaUnavailable, 503),
            (EvidenceError::Stopped, 503),
            (
                EvidenceError::Corrupt {
                    path: "p".into(),
                    reason: "r".into(),
                },
                503,
            ),
            (EvidenceError::Signer("x".into()), 503),
            (EvidenceError::Tsa("x".into()), 503),
            (EvidenceError::Config("x".into()), 503),
        ];
        for (e, status) in table {
            assert_eq!(e.http_status(), status, "{e}");
        }
    }
}
