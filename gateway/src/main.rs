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
        Command::Catalog {
            command: penghubung::cli::catalog::CatalogCommand::Openapi { config, tier, out },
            ..
        } => match penghubung::cli::catalog_openapi(&config, tier.as_deref()) {
            Ok(document) => {
                let written = match &out {
                    Some(path) => std::fs::write(path, format!("{document}\n"))
                        .map_err(|e| format!("{}: {e}", path.display())),
                    None => {
                        use std::io::Write as _;
                        writeln!(std::io::stdout().lock(), "{document}")
                            .map_err(|e| format!("standard output: {e}"))
                    }
                };
                match written {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("penghubung catalog openapi: {error}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(error) => {
                eprintln!("penghubung catalog openapi: {error}");
                ExitCode::FAILURE
            }
        },
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
        Command::Opdata { command } => {
            match penghubung::cli::opdata(command, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("penghubung opdata: {error}");
                    ExitCode::FAILURE
                }
            }
        }
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
        EvidenceCommand::CheckBundle {
            file,
            trust,
            disclosures,
        } => cli::check_bundle_disclosures(&file, &trust.into(), &disclosures)
            .with_context(|| file.display().to_string()),
        EvidenceCommand::Disclose {
            config,
            exchange,
            field: (location, field),
            occurrence,
            response,
            actor,
            case_reference,
            out,
        } => {
            let request = penghubung::privacy::disclose::DiscloseRequest {
                exchange_id: exchange,
                location,
                field,
                occurrence,
                direction: if response { "response" } else { "request" }.into(),
                actor,
                case_reference,
            };
            disclose(&config, &request, &out)
                .map(|()| true)
                .with_context(|| config.display().to_string())
        }
        EvidenceCommand::Keys {
            command: penghubung::cli::KeysCommand::Rotate { file, id },
        } => penghubung_evidence::personal::rotate_key_file(&file, &id)
            .map(|()| {
                println!("{}: key {id} added and current", file.display());
                true
            })
            .map_err(anyhow::Error::msg),
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

/// `evidence disclose`: loads the config (evidence settings, node id, key file), discloses and
/// records the disclosure, writes the file (mode 0600: it holds a personal value in clear).
fn disclose(
    config: &std::path::Path,
    request: &penghubung::privacy::disclose::DiscloseRequest,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let compiled = config::load(config)?;
    let settings = compiled.settings();
    let key_file = settings
        .privacy
        .key_file
        .as_ref()
        .context("the config has no [privacy] key_file")?;
    let keys =
        penghubung_evidence::personal::Keyring::load(key_file).map_err(anyhow::Error::msg)?;
    let node_id = penghubung::snapshot::node_id(settings);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let disclosure = runtime.block_on(penghubung::privacy::disclose::disclose(
        &settings.evidence,
        &node_id,
        &keys,
        request,
    ))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("write {}", out.display()))?;
    std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(&disclosure)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!(
        "wrote {} (disclosure recorded as admin record #{})",
        out.display(),
        disclosure.disclosure_sequence
    );
    Ok(())
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
    let runtime = match tokio_runtime(file.settings().runtime.threads) {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("penghubung: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Inside the runtime: the trace exporter's channel and task live on it.
        let settings = file.settings();
        let node = penghubung::snapshot::node_id(settings);
        let traces = settings.telemetry.traces.as_ref();
        let tracing = match penghubung::telemetry::init(settings.log.json, traces, &node) {
            Ok(tracing) => tracing,
            Err(error) => {
                eprintln!("penghubung: {error}");
                return ExitCode::FAILURE;
            }
        };
        match penghubung::control::start(file, path).await {
            Ok(running) => {
                penghubung::control::signals::install(running.gateway.clone());
                running.wait().await;
                if let Some(tracing) = tracing {
                    tracing.shutdown().await;
                }
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
