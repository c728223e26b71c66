//! Unix signals: SIGHUP reloads the config, SIGTERM and SIGINT start a graceful shutdown.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use super::Gateway;

/// Installs the signal handlers for `gateway`.
pub fn install(gateway: Arc<Gateway>) {
    tokio::spawn(async move {
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading configuration");
                    let _ = gateway.reload(None).await;
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down: draining connections");
        gateway.begin_shutdown();
    });
}
