//! The `penghubung` binary: parses the command line and runs the gateway.

use std::process::ExitCode;

use clap::Parser;
use penghubung::cli::{Cli, Command};
use penghubung::config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config: path } => validate(&path),
        Command::Run { config: path } => match config::load(&path) {
            Ok(file) => run(file, Some(path)),
            Err(error) => {
                eprintln!("penghubung: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { listen, admin } => demo(listen, admin),
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(file) => {
            // The build step without binding sockets: certificates, keys, CAs, upstream TLS.
            let built = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(async {
                        penghubung::runtime::Runtime::build(file, &Default::default(), None)
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
        let text = penghubung::cli::demo::config_text(&listen, &admin, upstream);
        let file = match config::parse(&text, "embedded demo config") {
            Ok(f) => f,
            Err(error) => {
                eprintln!("penghubung: {error}");
                return ExitCode::FAILURE;
            }
        };
        match penghubung::server::start(file, None).await {
            Ok(running) => {
                println!("{}", penghubung::cli::demo::curl_lines(&listen, &admin));
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
