//! "Start a gateway": the gateway in this process on a config text ([`Gateway`]), or the
//! gateway binary ([`gateway_binary`]) for tests that kill the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Points the config's evidence log into the test's temp dir, and gives the admin listener a
/// registry there (for the operator account the harness signs in with).
fn with_evidence_dir(dir: &Path, text: &str) -> String {
    let text = text.replace(
        "@EVIDENCE_DIR@",
        &dir.join("evidence").display().to_string(),
    );
    if text.contains("registry =") {
        return text;
    }
    let registry = format!(
        "[admin]\nregistry = \"{}\"\n",
        dir.join("registry.db").display()
    );
    if text.contains("[admin]\n") {
        text.replacen("[admin]\n", &registry, 1)
    } else {
        format!("{text}\n{registry}")
    }
}

/// The operator account every test gateway's registry starts with (Admin Platform).
pub const OPERATOR: &str = "operator";
/// Its password.
pub const OPERATOR_PASSWORD: &str = "kata-sandi-uji-123";

/// A gateway running in this process. Dropping it begins a shutdown.
#[derive(Debug)]
pub struct Gateway {
    running: Option<penghubung::control::Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    /// A session token of [`OPERATOR`] (Admin Platform) on the admin listener.
    pub token: String,
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
        let control = running
            .gateway
            .registry
            .clone()
            .expect("the harness sets admin.registry");
        control
            .bootstrap(OPERATOR, OPERATOR_PASSWORD)
            .await
            .map_err(penghubung::config::ConfigError::Build)?;
        let (token, _) = control
            .sign_in(&running.gateway, OPERATOR, OPERATOR_PASSWORD, "harness")
            .await
            .map_err(|e| penghubung::config::ConfigError::Build(e.to_string()))?;
        Ok(Gateway {
            token,
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

    /// `POST /reload` on the admin listener, as the harness's operator: status and body.
    pub async fn reload(&self) -> (u16, String) {
        self.admin_call(http::Method::POST, "/reload").await
    }

    /// `GET` on the admin listener, as the harness's operator.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        self.admin_call(http::Method::GET, path).await
    }

    /// A call on the admin listener with the operator's bearer token: status and body.
    pub async fn admin_call(&self, method: http::Method, path: &str) -> (u16, String) {
        crate::client::call_with(
            self.admin,
            method,
            path,
            &[("authorization", &format!("Bearer {}", self.token))],
        )
        .await
    }

    /// `GET` on the admin listener over the raw client, as the harness's operator.
    pub async fn admin_raw(&self, path: &str) -> crate::raw::RawResponse {
        crate::raw::get(
            self.admin,
            "admin",
            path,
            &[("authorization", &format!("Bearer {}", self.token))],
        )
        .await
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
