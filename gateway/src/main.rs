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
        Command::Catalog { command, remote } => {
            let runtime = match tokio_runtime(1) {
                Ok(rt) => rt,
                Err(error) => {
                    eprintln!("penghubung: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(penghubung::cli::catalog::run(command, remote)) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("penghubung catalog: {error}");
                    ExitCode::FAILURE
                }
            }
        }
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
    use anyhow::Context as _;
    use penghubung_evidence::cli;
    let result = match command {
        EvidenceCommand::Verify { dir, anchor, trust } => {
            cli::verify_with(&dir, &trust.into(), anchor.as_deref())
                .with_context(|| dir.display().to_string())
        }
        EvidenceCommand::Show {
            dir,
            exchange,
            since,
            until,
            service,
            format,
        } => cli::show::show(
            &dir,
            &cli::show::ShowOptions {
                exchange,
                since,
                until,
                service,
                format,
            },
        )
        .with_context(|| dir.display().to_string()),
        EvidenceCommand::Export { dir, exchange, out } => cli::export(&dir, &exchange, &out)
            .map(|()| true)
            .with_context(|| dir.display().to_string()),
        EvidenceCommand::CheckBundle { file, trust } => {
            cli::check_bundle_with(&file, &trust.into()).with_context(|| file.display().to_string())
        }
        EvidenceCommand::Anchor { dir, out } => cli::anchor(&dir, &out)
            .map(|()| true)
            .with_context(|| dir.display().to_string()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!(
                "penghubung evidence: {}",
                config::error_chain(AsRef::<dyn std::error::Error>::as_ref(&error))
            );
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
            let evidence = &file.settings().evidence;
            if evidence.enabled {
                if let Err(error) = config::check_evidence_dir_writable(&evidence.dir) {
                    eprintln!("{}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            // The build step without binding sockets: certificates, keys, CAs, upstream TLS.
            let built = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(async {
                        penghubung::snapshot::Snapshot::build(&file, &Default::default(), None)
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

fn run(file: config::Compiled, path: Option<std::path::PathBuf>) -> ExitCode {
    penghubung::telemetry::init_logging(file.settings().log.json);
    let runtime = match tokio_runtime(file.settings().runtime.threads) {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("penghubung: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match penghubung::control::start(file, path).await {
            Ok(running) => {
                penghubung::control::signals::install(running.gateway.clone());
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
    use penghubung::cli::demo;
    penghubung::telemetry::init_logging(false);
    let runtime = match tokio_runtime(0) {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("penghubung: {error}");
            return ExitCode::FAILURE;
        }
    };
    let files = demo::DemoFiles::under(
        &std::env::temp_dir().join(format!("penghubung-demo-{}", std::process::id())),
    );
    if let Err(error) = demo::write_pki(&files) {
        eprintln!("penghubung: {error}");
        return ExitCode::FAILURE;
    }
    runtime.block_on(async move {
        let upstream = match demo::start_upstream().await {
            Ok(addr) => addr,
            Err(error) => {
                eprintln!("penghubung: demo upstream: {error}");
                return ExitCode::FAILURE;
            }
        };
        // Held until the gateway has written its final checkpoint; killed when dropped.
        let _signer = match demo::spawn_signer(&files).await {
            Ok(child) => child,
            Err(error) => {
                eprintln!("penghubung: {error}");
                return ExitCode::FAILURE;
            }
        };
        let text = demo::config_text(&listen, &admin, upstream, &files);
        let file = match config::parse(&text, "embedded demo config").and_then(|f| {
            let (settings, catalog) = f.split();
            config::validate(&settings, &catalog).map_err(config::ConfigError::Invalid)
        }) {
            Ok(f) => f,
            Err(error) => {
                eprintln!("penghubung: {error}");
                return ExitCode::FAILURE;
            }
        };
        let running = match penghubung::control::start(file, None).await {
            Ok(running) => running,
            Err(error) => {
                eprintln!("penghubung: {error}");
                return ExitCode::FAILURE;
            }
        };
        penghubung::control::signals::install(running.gateway.clone());
        // The first operator account, printed once (a fresh registry each demo).
        let password = penghubung_registry::secret::generate("pw");
        let bootstrapped = match &running.gateway.registry {
            Some(control) => control.bootstrap(demo::OPERATOR, &password).await,
            None => Err("the demo config has no admin.registry".to_owned()),
        };
        if let Err(error) = bootstrapped {
            eprintln!("penghubung: demo operator: {error}");
            running.shutdown().await;
            return ExitCode::FAILURE;
        }
        let first = match running.listeners.first() {
            Some(addr) => demo::first_exchange(*addr).await,
            None => Err("demo: no listener".to_owned()),
        };
        match first {
            Ok(exchange) => {
                println!(
                    "{}",
                    demo::curl_lines(&listen, &admin, &files, &exchange, &password)
                );
            }
            Err(error) => {
                eprintln!("penghubung: {error}");
                running.shutdown().await;
                return ExitCode::FAILURE;
            }
        }
        running.wait().await;
        ExitCode::SUCCESS
    })
}
