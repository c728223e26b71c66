//! "Start a gateway": the gateway in this process on a config text ([`Gateway`]), or the
//! gateway binary ([`gateway_binary`]) for tests that kill the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::client::call;
/// Points the config's evidence log into the test's temp dir.
fn with_evidence_dir(dir: &Path, text: &str) -> String {
    text.replace(
        "@EVIDENCE_DIR@",
        &dir.join("evidence").display().to_string(),
    )
}

/// A gateway running in this process. Dropping it begins a shutdown.
#[derive(Debug)]
pub struct Gateway {
    running: Option<penghubung::control::Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts from a config text in a fresh temp dir.
    pub async fn start(text: &str) -> Gateway {
        Gateway::start_in(tempfile::tempdir().unwrap(), text).await
    }

    /// Starts in `dir` (which may hold certificates the config names).
    pub async fn start_in(dir: tempfile::TempDir, text: &str) -> Gateway {
        Gateway::try_start_in(dir, text)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n{text}"))
    }

    /// Starts as `penghubung run` does with `[telemetry.traces]` in the config: logging and
    /// traces set up from the config first (once per process), then the gateway.
    pub async fn start_traced(text: &str) -> (Gateway, penghubung::telemetry::trace::Tracing) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("check.toml");
        std::fs::write(&path, with_evidence_dir(dir.path(), text)).unwrap();
        let config = penghubung::config::load(&path).unwrap();
        let settings = config.settings();
        let traces = settings.telemetry.traces.as_ref();
        let node = penghubung::snapshot::node_id(settings);
        let tracing = penghubung::telemetry::init(false, traces, &node)
            .unwrap()
            .expect("the config has [telemetry.traces]");
        (Gateway::start_in(dir, text).await, tracing)
    }

    pub async fn try_start_in(
        dir: tempfile::TempDir,
        text: &str,
    ) -> Result<Gateway, penghubung::config::ConfigError> {
        let config_path = dir.path().join("penghubung.toml");
        std::fs::write(&config_path, with_evidence_dir(dir.path(), text)).unwrap();
        let config = penghubung::config::load(&config_path)?;
        let running = penghubung::control::start(config, Some(config_path.clone())).await?;
        Ok(Gateway {
            addr: running.listeners[0],
            admin: running.admin.unwrap(),
            running: Some(running),
            config_path,
            dir,
        })
    }

    /// The process-wide state (metrics, runtime).
    pub fn state(&self) -> &Arc<penghubung::control::Gateway> {
        &self.running.as_ref().unwrap().gateway
    }

    /// All bound listener addresses.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.running.as_ref().unwrap().listeners.clone()
    }

    /// Rewrites the config file (for reloads).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, with_evidence_dir(self.dir.path(), text)).unwrap();
    }

    /// `POST /reload` on the admin listener: status and body.
    pub async fn reload(&self) -> (u16, String) {
        call(self.admin, http::Method::POST, "/reload").await
    }

    /// `GET` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        call(self.admin, http::Method::GET, path).await
    }

    /// Graceful shutdown, bounded.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), running.shutdown()).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.gateway.begin_shutdown();
        }
    }
}

/// The `penghubung` binary of this workspace's target directory, built first when missing
/// (`cargo nextest run -p penghubung-e2e` alone does not build other packages' binaries).
///
/// A binary that exists is used as it is: building it here with `-p penghubung` would resolve
/// other dependency features than the workspace build and rebuild half the tree. After changing
/// the gateway, a workspace run (or `cargo build -p penghubung`) brings it up to date.
pub fn gateway_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // This test binary is target/<profile>/deps/<name>; the gateway is target/<profile>/.
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let bin = profile_dir.join("penghubung");
            if !bin.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
                let status = std::process::Command::new(cargo)
                    .args(["build", "-p", "penghubung", "--bin", "penghubung"])
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .status()
                    .unwrap();
                assert!(status.success(), "cargo build of the gateway binary failed");
            }
            assert!(bin.exists(), "gateway binary not at {}", bin.display());
            bin
        })
        .clone()
}
