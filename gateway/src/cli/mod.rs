//! The command line: `run` (the gateway), `validate` (a config, without starting anything),
//! `evidence` (`verify`, `show`, `export`, `anchor`: offline tools for operators and auditors),
//! `signer` (the checkpoint signer process), `secret` (the stored forms of credentials) and
//! `demo` (a gateway with a built-in upstream).

pub mod catalog;
pub mod demo;
pub mod openapi;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Penghubung — Sistem Penghubung Layanan gateway.
#[derive(Debug, Parser)]
#[command(name = "penghubung", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with a config file.
    Run {
        /// The TOML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check a config file without starting anything: prints every problem with its path and
    /// exits with code 1 if there is any. Also reads the files it names (certificates, keys, CA
    /// bundles, JWKS) unless `--offline` is given.
    Validate {
        /// The TOML config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Only the pure checks: do not read the files the config names.
        #[arg(long)]
        offline: bool,
    },
    /// Evidence log tools for operators and auditors (work offline on a copy of the log).
    Evidence {
        /// What to do with the log.
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Run the checkpoint signer: a separate process holding the signing key, serving the
    /// gateway over a Unix socket (mode 0600).
    Signer {
        /// PEM private key (Ed25519 or ECDSA P-256).
        #[arg(long)]
        key: PathBuf,
        /// PEM certificate chain of the key (leaf first).
        #[arg(long)]
        chain: PathBuf,
        /// Unix socket path to serve.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Produce the stored forms of credentials for the config: secrets are read from standard
    /// input (one line) and never appear in the config or the shell history.
    Secret {
        /// Which form.
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// The catalogue: the registry's as TOML over the admin API (export, apply, diff, history,
    /// rollback; token in `PENGHUBUNG_TOKEN`), and `openapi` offline on a config file.
    Catalog {
        /// What to do.
        #[command(subcommand)]
        command: catalog::CatalogCommand,
        #[allow(missing_docs)] // documented on `Remote`
        #[command(flatten)]
        remote: catalog::Remote,
    },
    /// Operational data: the per-call index built from the evidence log (`[telemetry.opdata]`).
    Opdata {
        /// What to do with the index.
        #[command(subcommand)]
        command: OpdataCommand,
    },
    /// Run the gateway on an embedded default config with a built-in demo upstream.
    Demo {
        /// Traffic listener address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Admin listener address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
    },
}

/// `penghubung catalog openapi`: the document as pretty JSON.
pub fn catalog_openapi(config: &std::path::Path, tier: Option<&str>) -> Result<String, String> {
    let compiled = crate::config::load(config).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&openapi::document(compiled.catalog(), tier))
        .map_err(|e| e.to_string())
}

/// `penghubung opdata …`
#[derive(Debug, Subcommand)]
pub enum OpdataCommand {
    /// Print the calls matching a period, an OPD, a service and a status, one JSON object a
    /// line (oldest first).
    Query {
        /// The index directory (`[telemetry.opdata] dir`).
        #[arg(long)]
        index: PathBuf,
        /// From this time (RFC 3339), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Until this time (RFC 3339), exclusive.
        #[arg(long)]
        until: Option<String>,
        /// The consumer's or the provider's OPD id.
        #[arg(long)]
        opd: Option<String>,
        /// Service (Layanan) id.
        #[arg(long)]
        service: Option<String>,
        /// A status (`200`), a class (`5xx`) or `refused`.
        #[arg(long)]
        status: Option<String>,
        /// Most calls printed.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Build the index again from the whole evidence log (its files are replaced).
    Rebuild {
        /// The evidence directory.
        #[arg(long)]
        evidence: PathBuf,
        /// The index directory.
        #[arg(long)]
        index: PathBuf,
    },
}

/// Runs `penghubung opdata …`, writing to `out`.
pub fn opdata(command: OpdataCommand, out: &mut dyn std::io::Write) -> Result<(), String> {
    use crate::telemetry::opdata::{Index, Query};
    match command {
        OpdataCommand::Query {
            index,
            from,
            until,
            opd,
            service,
            status,
            limit,
        } => {
            let limit = limit.to_string();
            let pairs = [
                ("from", from.as_deref()),
                ("until", until.as_deref()),
                ("opd", opd.as_deref()),
                ("service", service.as_deref()),
                ("status", status.as_deref()),
                ("limit", Some(limit.as_str())),
            ];
            let query = Query::from_pairs(pairs.iter().filter_map(|(n, v)| Some((*n, (*v)?))))?;
            if !index.is_dir() {
                return Err(format!("{}: no index there", index.display()));
            }
            for call in Index::open(&index)?.query(&query)? {
                let line = serde_json::to_string(&call).map_err(|e| e.to_string())?;
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        OpdataCommand::Rebuild { evidence, index } => {
            if !evidence.is_dir() {
                return Err(format!("{}: not an evidence directory", evidence.display()));
            }
            for name in ["calls.jsonl", "state.json"] {
                match std::fs::remove_file(index.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("{}: {e}", index.join(name).display())),
                }
            }
            let added = Index::open(&index)?.update(&evidence)?;
            writeln!(out, "{added} calls indexed").map_err(|e| e.to_string())
        }
    }
}

/// `penghubung evidence …`
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Verify framing, chain, sequence, Merkle roots, signatures, certificates and time-stamps;
    /// reports the first bad record and why. Exit code 1 when the log does not verify.
    Verify {
        /// The evidence directory.
        dir: PathBuf,
        /// A checkpoint exported earlier with `evidence anchor`: detects truncation and rollback.
        #[arg(long)]
        anchor: Option<PathBuf>,
        #[allow(missing_docs)] // the flags are documented on `TrustFlags`
        #[command(flatten)]
        trust: TrustFlags,
    },
    /// Print records as a readable table (or JSON Lines), optionally filtered. Exits 1 when
    /// `--exchange` names an exchange the log has no record of.
    Show {
        /// The evidence directory.
        dir: PathBuf,
        /// Only this exchange.
        #[arg(long)]
        exchange: Option<String>,
        /// Only records at or after this time: RFC 3339 (2026-12-07T10:00:00Z) or Unix
        /// nanoseconds.
        #[arg(long, value_parser = penghubung_evidence::cli::show::parse_time)]
        since: Option<i64>,
        /// Only records before this time: RFC 3339 or Unix nanoseconds.
        #[arg(long, value_parser = penghubung_evidence::cli::show::parse_time)]
        until: Option<i64>,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// `table` (default) or `json` (one object per line: hex digests, RFC 3339 times).
        #[arg(long, default_value = "table")]
        format: penghubung_evidence::cli::show::Format,
    },
    /// Write a self-contained bundle for one exchange (records, inclusion proof, checkpoint,
    /// time-stamp token, certificates).
    Export {
        /// The evidence directory.
        dir: PathBuf,
        /// The exchange id.
        #[arg(long)]
        exchange: String,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Verify a bundle offline, and with `--disclosure` the personal-data disclosures made
    /// for its exchange (no key needed).
    CheckBundle {
        /// The bundle file.
        file: PathBuf,
        #[allow(missing_docs)] // the flags are documented on `TrustFlags`
        #[command(flatten)]
        trust: TrustFlags,
        /// A disclosure file written by `evidence disclose` for this exchange (repeatable):
        /// its value and salt must open the commitment in the bundle's record.
        #[arg(long = "disclosure")]
        disclosures: Vec<PathBuf>,
    },
    /// Disclose one committed personal value of one exchange (value and salt, written to a
    /// disclosure file, mode 0600) and record the disclosure as an `admin` evidence record.
    /// Needs the gateway's config (evidence log, `[privacy] key_file`) and the log's writer
    /// lock: run it on the node while no gateway writes the log.
    Disclose {
        /// The gateway's TOML config file.
        #[arg(short, long)]
        config: PathBuf,
        /// The exchange id.
        #[arg(long)]
        exchange: String,
        /// LOCATION:FIELD of the value: `path:nik`, `query:nik`, `header:x-nik`, `json:/nik`,
        /// `xml:/Envelope/Body/Cari/NIK` (as in the record).
        #[arg(long, value_parser = crate::privacy::disclose::parse_field)]
        field: (String, String),
        /// Which occurrence of the field (0 for the first).
        #[arg(long, default_value_t = 0)]
        occurrence: u32,
        /// Disclose a value of the response (outcome record) instead of the request.
        #[arg(long)]
        response: bool,
        /// Who discloses (recorded). Required; roles (Auditor, Petugas Keamanan) come with the
        /// control plane.
        #[arg(long)]
        actor: String,
        /// The case reference the disclosure is made for (recorded).
        #[arg(long = "case")]
        case_reference: String,
        /// Output disclosure file.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Personal-data key file: `rotate` adds a fresh random key and makes it current (creates
    /// the file, mode 0600, if missing); older keys stay for older records.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Export the latest checkpoint as an anchor file (keep it somewhere else).
    Anchor {
        /// The evidence directory.
        dir: PathBuf,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
    },
}

/// `penghubung evidence keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a fresh random key with this id and make it current.
    Rotate {
        /// The key file (`[privacy] key_file`).
        file: PathBuf,
        /// The new key's id (e.g. the month: 2026-12).
        #[arg(long)]
        id: String,
    },
}

/// `penghubung secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Argon2id PHC string of an OAuth2 client secret (`client_secret_hash`).
    ClientSecret,
    /// Lower-case hex SHA-256 of an API key (`api_key_sha256`).
    ApiKey,
}

/// Computes the stored form of a secret.
pub fn secret_form(command: &SecretCommand, secret: &str) -> Result<String, String> {
    use sha2::Digest as _;
    match command {
        SecretCommand::ApiKey => Ok(hex::encode(sha2::Sha256::digest(secret.as_bytes()))),
        SecretCommand::ClientSecret => {
            use argon2::password_hash::{PasswordHasher as _, SaltString};
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2::Argon2::default()
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_forms() {
        let key = secret_form(&SecretCommand::ApiKey, "kunci-demo-opd-bkd").unwrap();
        assert_eq!(
            key,
            "4e511560cc8d76db85aeae738021ab2d4f36a97e35039078df217ed81203dae2"
        );
        let phc = secret_form(&SecretCommand::ClientSecret, "rahasia").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        use argon2::PasswordVerifier as _;
        let parsed = argon2::PasswordHash::new(&phc).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(b"rahasia", &parsed)
            .is_ok());
        assert!(argon2::Argon2::default()
            .verify_password(b"salah", &parsed)
            .is_err());
    }
}

/// What `evidence verify` and `evidence check-bundle` trust: anchors, CRLs, accepted EKUs and
/// TSA policies.
#[derive(Debug, clap::Args)]
pub struct TrustFlags {
    /// PEM trust anchors for the checkpoint signer's certificate chain.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// PEM trust anchors of the time-stamping authority.
    #[arg(long)]
    pub tsa_ca: Option<PathBuf>,
    /// CRL files (PEM or DER) checked against the signer's certificate path (repeatable).
    #[arg(long = "crl")]
    pub crls: Vec<PathBuf>,
    /// CRL files (PEM or DER) checked against the TSA's certificate path (repeatable).
    #[arg(long = "tsa-crl")]
    pub tsa_crls: Vec<PathBuf>,
    /// Accepted signer extended key usage OID (repeatable; default: id-kp-documentSigning and
    /// the Penghubung checkpoint OID).
    #[arg(long = "eku")]
    pub ekus: Vec<String>,
    /// Accepted TSA policy OID (repeatable; default: any).
    #[arg(long = "tsa-policy")]
    pub tsa_policies: Vec<String>,
}

impl From<TrustFlags> for penghubung_evidence::cli::TrustArgs {
    fn from(f: TrustFlags) -> Self {
        penghubung_evidence::cli::TrustArgs {
            trust_ca: f.trust,
            tsa_ca: f.tsa_ca,
            crls: f.crls,
            tsa_crls: f.tsa_crls,
            ekus: f.ekus,
            tsa_policies: f.tsa_policies,
        }
    }
}
