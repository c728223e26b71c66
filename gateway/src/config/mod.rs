//! Config lifecycle (DESIGN.md §5): **load → validate → build → swap**.
//!
//! [`load`] reads and parses the TOML file, [`validate::validate`] checks it without I/O and
//! collects every problem with its path, [`crate::snapshot::Snapshot::build`] does all I/O
//! (certificates, upstream clients), and the server swaps the result in whole.

pub mod file;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use file::ConfigFile;

/// One problem in a config, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Field path, e.g. `service[2].route[0].path`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown / mistyped fields.
    #[error("{path}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// Parser message (with line and column).
        message: String,
    },
    /// Validation found problems; all of them are listed.
    #[error("{} problem(s):\n{}", .0.len(), .0.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
    /// Building the runtime failed (a certificate could not be read, …).
    #[error("{0}")]
    Build(String),
}

/// Parses a config document.
pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_owned(),
        message: e.to_string(),
    })
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    load_with_digest(path).map(|(config, _)| config)
}

/// Like [`load`], also returning the SHA-256 of the file's bytes (recorded in `admin` evidence).
pub fn load_with_digest(path: &Path) -> Result<(ConfigFile, [u8; 32]), ConfigError> {
    use sha2::Digest as _;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let config = parse(&text, &path.display().to_string())?;
    let issues = validate::validate(&config);
    if issues.is_empty() {
        Ok((config, sha2::Sha256::digest(text.as_bytes()).into()))
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

/// SHA-256 of a config given as a value rather than a file (tests, the demo).
pub fn digest_of(config: &ConfigFile) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(format!("{config:?}").as_bytes()).into()
}
