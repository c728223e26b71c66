//! The command line: `run` (the gateway), `validate` (a config, without starting anything),
//! `evidence` (`verify`, `show`, `export`, `anchor`: offline tools for operators and auditors),
//! `signer` (the checkpoint signer process), `secret` (the stored forms of credentials) and
//! `demo` (a gateway with a built-in upstream).

pub mod catalog;
pub mod demo;

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
    /// The registry's catalogue as TOML over the admin API: export, apply, diff, history,
    /// rollback (token in `PENGHUBUNG_TOKEN`).
    Catalog {
        /// What to do.
        #[command(subcommand)]
        command: catalog::CatalogCommand,
        #[allow(missing_docs)] // documented on `Remote`
        #[command(flatten)]
        remote: catalog::Remote,
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
    /// Verify a bundle offline.
    CheckBundle {
        /// The bundle file.
        file: PathBuf,
        #[allow(missing_docs)] // the flags are documented on `TrustFlags`
        #[command(flatten)]
        trust: TrustFlags,
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
