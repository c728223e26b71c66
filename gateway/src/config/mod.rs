//! Config lifecycle: **load → validate → build → swap** (README, "Architecture").
//!
//! [`load`] reads and parses the TOML file into [`Settings`] and a [`Catalog`] (the catalogue is
//! read through a [`crate::catalog::Source`]; [`FileSource`] is the file's), [`validate::validate`]
//! checks both without I/O and either collects every problem with its path or returns them as a
//! [`Compiled`] config, `Snapshot::build` takes only a [`Compiled`] and does all I/O
//! (certificates, upstream clients), and the control side swaps the result in whole.
//!
//! The TOML layout operators write is [`ConfigFile`]; [`ConfigFile::split`] separates it.

pub mod file;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use file::{ConfigFile, Settings};
pub use validate::validate;

pub use crate::catalog::{Catalog, Source};

/// Settings and catalogue that passed [`validate()`], with what validation compiled from them
/// once (each service's routes: patterns and methods; the parties: credentials, API-key
/// digests, application limits, grants) and the digest of their canonical form. Only
/// [`validate()`] makes one, so a snapshot cannot be built from an unchecked config:
///
/// ```compile_fail
/// use penghubung::config::{Catalog, Compiled, Settings};
/// let compiled = Compiled { settings: Settings::default(), catalog: Catalog::default(), routes: Vec::new(), parties: Default::default(), digest: [0; 32] };
/// ```
#[derive(Debug, Clone)]
pub struct Compiled {
    settings: Settings,
    catalog: Catalog,
    /// The compiled routes of each service (same order as the catalogue's services).
    routes: Vec<Vec<crate::routing::RouteRule>>,
    /// The applications and grants compiled.
    parties: crate::auth::Parties,
    digest: [u8; 32],
}

impl Compiled {
    pub(crate) fn new(
        settings: Settings,
        catalog: Catalog,
        routes: Vec<Vec<crate::routing::RouteRule>>,
        parties: crate::auth::Parties,
    ) -> Compiled {
        let digest = digest(&settings, &catalog);
        Compiled {
            settings,
            catalog,
            routes,
            parties,
            digest,
        }
    }

    /// The applications and grants, compiled.
    pub(crate) fn parties(&self) -> &crate::auth::Parties {
        &self.parties
    }

    /// The compiled routes of the `service`th service of the catalogue (in its order).
    pub fn routes(&self, service: usize) -> &[crate::routing::RouteRule] {
        self.routes.get(service).map_or(&[], Vec::as_slice)
    }

    /// The static settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The catalogue.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The configuration's identity in request records (`config_version_id`): the registry
    /// revision of the catalogue (`rev-N`), or `sha256:` and the hex [`Compiled::digest`] for a
    /// file catalogue.
    pub fn version_id(&self) -> String {
        match &self.catalog.revision {
            Some(revision) => revision.clone(),
            None => format!("sha256:{}", hex::encode(self.digest)),
        }
    }

    /// SHA-256 of the canonical form of the settings and the catalogue (see [`digest`]).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// SHA-256 over the canonical form of the parsed settings and catalogue: their JSON
/// serialisation with every object's keys sorted and no whitespace. Key order, comments,
/// whitespace and TOML spelling (inline table or not, quoting) do not change it; any value does.
/// Fields left out take their default value, so writing a default explicitly does not change it
/// either. Recorded in `admin` evidence records as the configuration's identity.
pub fn digest(settings: &Settings, catalog: &Catalog) -> [u8; 32] {
    use sha2::Digest as _;
    let value = serde_json::json!({ "settings": settings, "catalog": catalog });
    let canonical = serde_json::to_vec(&canonical(value)).unwrap_or_default();
    sha2::Sha256::digest(&canonical).into()
}

/// `value` with every object's keys in sorted order (whatever map type serde_json uses).
fn canonical(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The config file as a catalogue [`Source`]: the `[[upstream]]`, `[[service]]`, `[[opd]]`,
/// `[[application]]` and `[[grant]]` tables of the file.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The config file.
    pub path: std::path::PathBuf,
}

impl Source for FileSource {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn catalog(&self) -> futures_util::future::BoxFuture<'_, Result<Catalog, String>> {
        Box::pin(async move {
            read(&self.path)
                .map(|file| file.split().1)
                .map_err(|e| e.to_string())
        })
    }
}

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
    /// Building the snapshot failed (a certificate could not be read, …).
    #[error("{0}")]
    Build(String),
}

/// Parses a config document. A syntax or type error names the key path it is at (as far as
/// the document's table headers and the offending line tell) besides toml's line and column.
pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.to_string();
        let at = e
            .span()
            .and_then(|span| key_path_at(text, span.start))
            .map(|key| format!("at {key}: "))
            .unwrap_or_default();
        ConfigError::Parse {
            path: origin.to_owned(),
            message: format!("{at}{}", message.trim_end()),
        }
    })
}

/// The dotted key path (`service[1].route[0].path`) of the line holding byte `offset` of a TOML
/// document: the innermost table header above it (arrays of tables indexed by occurrence) and
/// the key assigned on that line, if any.
pub fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text
        .get(line_start..)?
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = text.get(line_start..line_end)?.trim();
    let is_header = line.starts_with('[');
    let scanned = if is_header { line_end } else { line_start };
    let mut arrays: std::collections::HashMap<String, usize> = Default::default();
    let mut table = String::new();
    for l in text.get(..scanned)?.lines() {
        let l = l.trim();
        let (header, array) =
            if let Some(h) = l.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
                (h, true)
            } else if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
                (h, false)
            } else {
                continue;
            };
        let segments: Vec<&str> = header.split('.').map(str::trim).collect();
        let full = segments.join(".");
        if array {
            *arrays.entry(full.clone()).or_insert(0) += 1;
        }
        let mut path = String::new();
        for i in 1..=segments.len() {
            let prefix = segments[..i].join(".");
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(segments[i - 1]);
            if let Some(n) = arrays.get(&prefix) {
                path.push_str(&format!("[{}]", n.saturating_sub(1)));
            }
        }
        table = path;
    }
    let key = if is_header {
        None
    } else {
        line.split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"'))
    };
    match (table.is_empty(), key) {
        (true, Some(k)) => Some(k.to_owned()),
        (false, Some(k)) => Some(format!("{table}.{k}")),
        (false, None) => Some(table),
        (true, None) => None,
    }
}

/// Checks that the evidence directory can be written by this user: it exists and takes a new
/// file, or the nearest existing parent does (the gateway creates it at start).
pub fn check_evidence_dir_writable(dir: &Path) -> Result<(), String> {
    let mut probe_dir = dir;
    while !probe_dir.exists() {
        match probe_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe_dir = p,
            _ => {
                probe_dir = Path::new(".");
                break;
            }
        }
    }
    if !probe_dir.is_dir() {
        return Err(format!(
            "evidence.dir: {} is not a directory",
            probe_dir.display()
        ));
    }
    let probe = probe_dir.join(format!(".penghubung-validate-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "evidence.dir: cannot write in {}: {e}{}",
            probe_dir.display(),
            if probe_dir == dir {
                String::new()
            } else {
                format!(" (needed to create {})", dir.display())
            }
        )),
    }
}

/// An error and its causes, each cause once: a cause whose text the message already holds
/// (many errors print their source themselves) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains(&out) {
            // The cause repeats the context (e.g. a path) and says more: keep the cause.
            out = text;
        } else if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Reads and parses a config file (no validation).
pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Compiled, ConfigError> {
    let (settings, catalog) = read(path)?.split();
    validate(&settings, &catalog).map_err(ConfigError::Invalid)
}

/// Validates `settings` with the catalogue `source` yields now.
pub async fn load_from(settings: &Settings, source: &dyn Source) -> Result<Compiled, ConfigError> {
    let catalog = source
        .catalog()
        .await
        .map_err(|message| ConfigError::Parse {
            path: source.origin(),
            message,
        })?;
    validate(settings, &catalog).map_err(ConfigError::Invalid)
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn toml_errors_name_their_key_path_and_line() {
        let text = "node_id = \"x\"\n[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\n[[service]]\nid = \"s\"\nhosts = []\n[[service]]\nid = \"t\"\nhosts = []\n[[service.route]]\npath = 5\n";
        let Err(ConfigError::Parse { message, .. }) = parse(text, "t.toml") else {
            panic!("a type error");
        };
        assert!(
            message.starts_with("at service[1].route[0].path: "),
            "{message}"
        );
        assert!(message.contains("line 13"), "{message}");
        let Err(ConfigError::Parse { message, .. }) = parse(
            "[[service]]\nid = \"s\"\nhosts = []\n[[service]]\nid = \"t\"\n",
            "t",
        ) else {
            panic!("a missing field");
        };
        assert!(message.starts_with("at service[1]: "), "{message}");
        let Err(ConfigError::Parse { message, .. }) =
            parse("[limits]\nheader_bytes = \"big\"\n", "t")
        else {
            panic!("a type error");
        };
        assert!(message.starts_with("at limits.header_bytes: "), "{message}");
        let Err(ConfigError::Parse { message, .. }) = parse("node_id = \"x\"\n[limits\n", "t")
        else {
            panic!("a syntax error");
        };
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn error_chains_print_each_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "list segments in /x: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::from(std::io::ErrorKind::NotFound));
        let text = error_chain(&e);
        assert_eq!(text.matches("not found").count(), 1, "{text}");
        assert!(text.starts_with("list segments in /x: "));
    }

    #[test]
    fn an_evidence_dir_that_cannot_be_written_is_refused() {
        // Even root cannot create files in /proc.
        let e = check_evidence_dir_writable(Path::new("/proc/penghubung-evidence"))
            .expect_err("not writable");
        assert!(e.contains("/proc"), "{e}");
        let dir = std::env::temp_dir().join(format!("penghubung-vw-{}", std::process::id()));
        assert_eq!(check_evidence_dir_writable(&dir.join("evidence")), Ok(()));
        assert!(!dir.exists(), "validation creates nothing");
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;

    const WRITTEN: &str = r#"
node_id = "n1"
[[listener]]
name = "a"
address = "127.0.0.1:1"
[limits]
header_bytes = 8192
[[upstream]]
name = "u"
targets = ["127.0.0.1:2"]
[[service]]
id = "s"
hosts = ["*"]
upstream = "u"
[service.auth]
anonymous = true
[[service.route]]
path = "/x/*"
methods = ["GET"]
"#;

    /// The same config: other table and key order, dotted keys, inline tables, comments,
    /// other whitespace and quoting.
    const REWRITTEN: &str = r#"
# the same, written differently
limits.header_bytes   =   8192
node_id = 'n1'

[[service]]
upstream = "u"
id       = "s"
hosts    = [ "*" ]
auth     = { anonymous = true }
route    = [ { methods = [ "GET" ], path = "/x/*" } ]

[[upstream]]
targets = [ "127.0.0.1:2" ]
name = "u"

[[listener]]
address = "127.0.0.1:1"
name    = "a"
"#;

    fn compiled(text: &str) -> Compiled {
        let (settings, catalog) = parse(text, "t.toml").expect("parses").split();
        validate(&settings, &catalog).expect("valid")
    }

    #[test]
    fn the_digest_ignores_key_order_and_whitespace() {
        assert_eq!(compiled(WRITTEN).digest(), compiled(REWRITTEN).digest());
    }

    #[test]
    fn the_digest_changes_when_a_value_changes() {
        let base = compiled(WRITTEN).digest();
        for (from, to) in [
            ("header_bytes = 8192", "header_bytes = 8193"),
            ("path = \"/x/*\"", "path = \"/y/*\""),
            ("\"127.0.0.1:2\"", "\"127.0.0.1:3\""),
            ("methods = [\"GET\"]", "methods = [\"GET\", \"POST\"]"),
            ("node_id = \"n1\"", "node_id = \"n2\""),
        ] {
            assert!(WRITTEN.contains(from), "{from}");
            let changed = compiled(&WRITTEN.replace(from, to)).digest();
            assert_ne!(changed, base, "{from} -> {to}");
        }
    }

    #[test]
    fn only_a_valid_config_compiles() {
        let (settings, catalog) = parse(
            &WRITTEN.replace("upstream = \"u\"", "upstream = \"v\""),
            "t",
        )
        .expect("parses")
        .split();
        let issues = validate(&settings, &catalog).expect_err("unknown upstream");
        assert!(
            issues.iter().any(|i| i.path == "service[0].upstream"),
            "{issues:?}"
        );
    }

    #[test]
    fn splitting_keeps_every_table() {
        let file = parse(WRITTEN, "t").expect("parses");
        let (settings, catalog) = file.split();
        assert_eq!(settings.node_id.as_deref(), Some("n1"));
        assert_eq!(settings.listener.len(), 1);
        assert_eq!(settings.limits.header_bytes, 8192);
        assert_eq!(catalog.upstream.len(), 1);
        assert_eq!(catalog.service[0].route.len(), 1);
    }
}
