//! The `penghubung` binary: parses the command line and runs the gateway.

use std::process::ExitCode;

/// mimalloc: the data plane allocates small, short-lived objects on every request, and
/// mimalloc's thread-local free lists make that markedly cheaper than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use penghubung::cli::{Cli, Command, EvidenceCommand};
use penghubung::config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate {
            config: path,
            offline,
        } => validate(&path, offline),
        Command::Run { config: path } => match config::load(&path) {
            Ok(file) => run(file, Some(path)),
            Err(error) => {
                eprintln!("penghubung: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { listen, admin } => demo(listen, admin),
        Command::Evidence { command } => evidence(command),
        Command::Secret { command } => {
            let mut line = String::new();
            if let Err(error) = std::io::stdin().read_line(&mut line) {
                eprintln!("penghubung secret: cannot read standard input: {error}");
                return ExitCode::FAILURE;
            }
            let secret = line.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                eprintln!("penghubung secret: the secret on standard input is empty");
                return ExitCode::FAILURE;
            }
            match penghubung::cli::secret_form(&command, secret) {
                Ok(form) => {
                    println!("{form}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("penghubung secret: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Signer { key, chain, socket } => {
            penghubung::telemetry::init_logging(false);
            let result = tokio_runtime(1).map_err(|e| e.to_string()).and_then(|rt| {
                rt.block_on(penghubung_evidence::signer::run_signer(
                    &key, &chain, &socket,
                ))
                .map_err(|e| e.to_string())
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("penghubung signer: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn evidence(command: EvidenceCommand) -> ExitCode {
    use penghubung_evidence::cli;
    let result = match command {
        EvidenceCommand::Verify {
            dir,
            trust,
            anchor,
            tsa_ca,
        } => cli::verify(&dir, trust.as_deref(), anchor.as_deref(), tsa_ca.as_deref()),
        EvidenceCommand::Show {
            dir,
            exchange,
            since,
            until,
            service,
        } => cli::show(&dir, exchange.as_deref(), since, until, service.as_deref()).map(|()| true),
        EvidenceCommand::Export { dir, exchange, out } => {
            cli::export(&dir, &exchange, &out).map(|()| true)
        }
        EvidenceCommand::CheckBundle {
            file,
            trust,
            tsa_ca,
        } => cli::check_bundle(&file, trust.as_deref(), tsa_ca.as_deref()),
        EvidenceCommand::Anchor { dir, out } => cli::anchor(&dir, &out).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("penghubung evidence: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(path: &std::path::Path, offline: bool) -> ExitCode {
    match config::load(path) {
        Ok(_) if offline => {
            println!("{}: ok (offline checks)", path.display());
            ExitCode::SUCCESS
        }
        Ok(file) => {
            // The build step without binding sockets: certificates, keys, CAs, upstream TLS.
            let built = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(async {
                        let digest = penghubung::config::digest_of(&file);
                        penghubung::snapshot::Snapshot::build(
                            file,
                            digest,
                            &Default::default(),
                            None,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                    })
                });
            match built {
                Ok(()) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{}: {error}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn tokio_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.enable_all().build()
}

fn run(file: config::ConfigFile, path: Option<std::path::PathBuf>) -> ExitCode {
    penghubung::telemetry::init_logging(file.log.json);
    let runtime = match tokio_runtime(file.runtime.threads) {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("penghubung: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match penghubung::server::start(file, path).await {
            Ok(running) => {
                penghubung::server::signals::install(running.gateway.clone());
                running.wait().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("penghubung: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn demo(listen: String, admin: String) -> ExitCode {
    penghubung::telemetry::init_logging(false);
    let runtime = match tokio_runtime(0) {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("penghubung: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let upstream = match penghubung::cli::demo::start_upstream().await {
            Ok(addr) => addr,
            Err(error) => {
                eprintln!("penghubung: demo upstream: {error}");
                return ExitCode::FAILURE;
            }
        };
        let evidence =
            std::env::temp_dir().join(format!("penghubung-demo-evidence-{}", std::process::id()));
        let text = penghubung::cli::demo::config_text(&listen, &admin, upstream, &evidence);
        let file = match config::parse(&text, "embedded demo config") {
            Ok(f) => f,
            Err(error) => {
                eprintln!("penghubung: {error}");
                return ExitCode::FAILURE;
            }
        };
        match penghubung::server::start(file, None).await {
            Ok(running) => {
                println!(
                    "{}",
                    penghubung::cli::demo::curl_lines(&listen, &admin, &evidence)
                );
                penghubung::server::signals::install(running.gateway.clone());
                running.wait().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("penghubung: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
