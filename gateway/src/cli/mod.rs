//! The command line: `run`, `validate`, `demo`.

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
    /// Check a config file offline: prints every problem with its path; exit code 1 if any.
    Validate {
        /// The TOML config file.
        #[arg(short, long)]
        config: PathBuf,
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
