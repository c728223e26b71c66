//! The control side: the process-wide [`Gateway`] state, starting and stopping listeners, and
//! configuration reloads (SIGHUP, `POST /reload`, changed CRL files). The data side (`server`,
//! `pipeline` and the stages) sees only the [`Plane`] and never imports this module.

pub mod api;
pub mod grpc;
pub mod registry;
pub mod service;
pub mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::catalog::Source;
use crate::config::{self, Compiled, ConfigError, Settings};
pub use crate::pipeline::Plane;
use crate::snapshot::Snapshot;
use crate::telemetry::Metrics;
use penghubung_evidence::{schema, EvidenceLog};

/// Process-wide state: the data plane's shared state ([`Plane`]: snapshot, evidence log,
/// refusal accounting, shutdown signal; reached through `Deref`), metrics, and lifecycle flags.
pub struct Gateway {
    /// What the data side shares.
    pub plane: Arc<Plane>,
    /// Counters (survive reloads).
    pub metrics: Arc<Metrics>,
    /// The config file reloads read the settings from, when there is one.
    pub config_path: Option<PathBuf>,
    /// Where reloads read the catalogue: the config file, or the registry.
    source: Option<Arc<dyn Source>>,
    /// The control service (operator accounts; the catalogue too with
    /// `admin.catalogue = "registry"`), when `admin.registry` is set.
    pub registry: Option<Arc<service::Control>>,
    /// The validated config in force (the snapshot keeps none); replaced by reloads.
    config: std::sync::Mutex<Arc<Compiled>>,
    /// Set once listeners are up; cleared when shutdown starts.
    pub ready: AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
}

impl std::ops::Deref for Gateway {
    type Target = Plane;

    fn deref(&self) -> &Plane {
        &self.plane
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config_path", &self.config_path)
            .finish()
    }
}

/// Settings that only take effect on restart; a reload that changes them is refused.
fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<String> {
    let mut changes = Vec::new();
    let addresses = |c: &Settings| {
        c.listener
            .iter()
            .map(|l| (l.name.clone(), l.address.clone()))
            .collect::<Vec<_>>()
    };
    if addresses(old) != addresses(new) {
        changes.push("listener names/addresses changed (restart needed)".to_owned());
    }
    if old.admin.address != new.admin.address {
        changes.push("admin.address changed (restart needed)".to_owned());
    }
    if old.admin != new.admin {
        changes.push("admin settings changed (restart needed)".to_owned());
    }
    if old.runtime != new.runtime {
        changes.push("runtime settings changed (restart needed)".to_owned());
    }
    if old.node_id != new.node_id {
        changes.push("node_id changed (restart needed)".to_owned());
    }
    if old.evidence != new.evidence {
        changes.push("evidence settings changed (restart needed)".to_owned());
    }
    if old.telemetry != new.telemetry {
        changes.push("telemetry settings changed (restart needed)".to_owned());
    }
    changes
}

impl crate::admin::Operations for Gateway {
    fn plane(&self) -> &Plane {
        &self.plane
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn process_stats(&self) -> crate::telemetry::ProcessStats {
        self.metrics.stats()
    }

    async fn admit(
        &self,
        head: &http::request::Parts,
        access: crate::admin::Access,
        loopback: bool,
    ) -> Result<(), http::Response<http_body_util::Full<bytes::Bytes>>> {
        self.admit_call(head, access, loopback).await
    }

    async fn api(
        &self,
        request: crate::admin::ApiRequest,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        self.api_call(request).await
    }

    async fn grpc(
        self: Arc<Self>,
        mut request: http::Request<hyper::body::Incoming>,
        peer: std::net::SocketAddr,
    ) -> http::Response<tonic::body::Body> {
        use tonic::codegen::Service as _;
        request.extensions_mut().insert(grpc::Peer(peer));
        let mut server = grpc::AdminServer::new(grpc::GrpcAdmin::new(self))
            .max_decoding_message_size(crate::admin::API_BODY_LIMIT);
        match server.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

impl Gateway {
    /// The validated config in force.
    pub fn config(&self) -> Arc<Compiled> {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_config(&self, compiled: Arc<Compiled>) {
        *self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = compiled;
    }

    /// Starts a graceful shutdown: listeners stop accepting, connections drain.
    pub fn begin_shutdown(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.plane.begin_shutdown();
    }

    /// Reloads (SIGHUP; or uses `replacement`, validated already) as the host's operator.
    /// See [`Gateway::reload_as`].
    pub async fn reload(&self, replacement: Option<Compiled>) -> Result<(), ConfigError> {
        self.reload_as(&Actor::host(), replacement).await
    }

    /// Reloads: the settings from the config file, the catalogue through the [`Source`] (the
    /// file or the registry), or `replacement` (validated already); validate, build, record,
    /// swap. The new configuration is swapped in only once its `admin` record
    /// (`config.reload`) is durable: when the record cannot be written, nothing changes and
    /// the error says so. A refused reload is recorded too (`config.reload_refused`), and the
    /// current snapshot keeps serving.
    pub async fn reload_as(
        &self,
        actor: &Actor,
        replacement: Option<Compiled>,
    ) -> Result<(), ConfigError> {
        let _guard = self.reload_lock.lock().await;
        self.reload_locked(actor, replacement).await
    }

    /// [`Gateway::reload_as`] with the reload lock held (the registry's changes hold it across
    /// their store commit).
    pub(crate) async fn reload_locked(
        &self,
        actor: &Actor,
        replacement: Option<Compiled>,
    ) -> Result<(), ConfigError> {
        let before = self.snapshot.load().source_sha256;
        let built = self.build_new(replacement).await;
        let (runtime, new) = match built {
            Ok(pair) => pair,
            Err(error) => {
                self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "configuration reload refused; the previous configuration keeps serving");
                let record = actor.record(
                    "config.reload_refused",
                    self.target(),
                    before,
                    None,
                    error.to_string(),
                );
                if let Err(e) = self.evidence.append(record).await {
                    tracing::error!(error = %e, "could not record the refused reload in the evidence log");
                }
                return Err(error);
            }
        };
        let after = new.digest();
        let mut record = actor.record(
            "config.reload",
            self.target(),
            before,
            Some(after),
            String::new(),
        );
        if let Some(schema::record::Kind::Admin(admin)) = &mut record.kind {
            admin.revision_id = new.catalog().revision.clone().unwrap_or_default();
        }
        if let Err(error) = self.evidence.append(record).await {
            self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "the reload could not be recorded in the evidence log: not applied");
            return Err(ConfigError::Build(format!(
                "not applied: its evidence record could not be made durable ({error})"
            )));
        }
        self.snapshot.store(Arc::new(runtime));
        self.set_config(Arc::new(new));
        self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!("configuration reloaded");
        Ok(())
    }

    fn target(&self) -> String {
        match &self.source {
            Some(source) => source.origin(),
            None => self
                .config_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }

    /// Rebuilds the configuration in force because a CRL file changed: the same config, its
    /// files read again. A CRL that cannot be used leaves the running configuration in place.
    /// Both outcomes are `admin` evidence records (`tls.crl_reload`, `tls.crl_reload_refused`).
    pub async fn reload_crls(&self, changed: &str) -> Result<(), ConfigError> {
        let _guard = self.reload_lock.lock().await;
        let current = self.snapshot.load_full();
        let result = Snapshot::build(&self.config(), &self.metrics, Some(&current)).await;
        let (action, detail, outcome) = match result {
            Ok(runtime) => {
                self.snapshot.store(Arc::new(runtime));
                tracing::info!(crl = changed, "CRL changed: TLS configuration reloaded");
                ("tls.crl_reload", String::new(), Ok(()))
            }
            Err(error) => {
                tracing::error!(crl = changed, %error, "CRL changed but cannot be used; the previous TLS configuration keeps serving");
                ("tls.crl_reload_refused", error.to_string(), Err(error))
            }
        };
        let record = schema::Record {
            kind: Some(schema::record::Kind::Admin(schema::Admin {
                actor: "gateway".into(),
                role: "system".into(),
                action: action.into(),
                before_sha256: current.source_sha256.to_vec().into(),
                after_sha256: current.source_sha256.to_vec().into(),
                detail,
                target: changed.to_owned(),
                ..Default::default()
            })),
            ..Default::default()
        };
        if let Err(error) = self.evidence.append(record).await {
            tracing::error!(%error, "could not record the CRL reload in the evidence log");
        }
        outcome
    }

    /// Reads (unless `replacement` is given), validates and builds the next configuration
    /// without swapping it in.
    pub(crate) async fn build_new(
        &self,
        replacement: Option<Compiled>,
    ) -> Result<(Snapshot, Compiled), ConfigError> {
        let new = match replacement {
            Some(c) => c,
            None => {
                let path = self
                    .config_path
                    .as_ref()
                    .ok_or(ConfigError::Build("no config file to reload".into()))?;
                let (settings, catalog) = config::read(path)?.split();
                match &self.source {
                    Some(source) => {
                        if settings.admin.catalogue == "registry" && !catalog_is_empty(&catalog) {
                            return Err(ConfigError::Build(format!(
                                "{}: the catalogue is in the registry; the config file must not declare upstreams, services, OPDs, applications or grants",
                                path.display()
                            )));
                        }
                        config::load_from(&settings, &**source).await?
                    }
                    None => config::validate(&settings, &catalog).map_err(ConfigError::Invalid)?,
                }
            }
        };
        let current = self.snapshot.load_full();
        let changes = restart_only_changes(self.config().settings(), new.settings());
        if !changes.is_empty() {
            return Err(ConfigError::Build(changes.join("; ")));
        }
        let runtime = Snapshot::build(&new, &self.metrics, Some(&current)).await?;
        Ok((runtime, new))
    }
}

/// Whether a catalogue declares nothing.
pub fn catalog_is_empty(c: &crate::catalog::Catalog) -> bool {
    c.upstream.is_empty()
        && c.service.is_empty()
        && c.opd.is_empty()
        && c.application.is_empty()
        && c.grant.is_empty()
}

/// Who made a change, as `admin` evidence records name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The operator account (or `host` for a signal from the host).
    pub account: String,
    /// The role it acted in.
    pub role: String,
    /// The OPD a per-OPD role acted for; empty otherwise.
    pub opd: String,
}

impl Actor {
    /// Whoever can signal the process on the host (SIGHUP): the host's operator.
    pub fn host() -> Actor {
        Actor {
            account: "host".into(),
            role: "host_operator".into(),
            opd: String::new(),
        }
    }

    /// An `admin` record of an action by this actor.
    pub fn record(
        &self,
        action: &str,
        target: String,
        before: [u8; 32],
        after: Option<[u8; 32]>,
        detail: String,
    ) -> schema::Record {
        schema::Record {
            kind: Some(schema::record::Kind::Admin(schema::Admin {
                actor: self.account.clone(),
                role: self.role.clone(),
                actor_opd: self.opd.clone(),
                action: action.into(),
                before_sha256: before.to_vec().into(),
                after_sha256: after.map(|a| a.to_vec()).unwrap_or_default().into(),
                refused: after.is_none(),
                detail,
                target,
                ..Default::default()
            })),
            ..Default::default()
        }
    }
}

/// A running gateway: its bound addresses and a way to stop it.
#[derive(Debug)]
pub struct Running {
    /// The shared state.
    pub gateway: Arc<Gateway>,
    /// Bound traffic listener addresses, in config order.
    pub listeners: Vec<SocketAddr>,
    /// Bound admin address.
    pub admin: Option<SocketAddr>,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    /// Begins a graceful shutdown, waits until listeners and connections are done (bounded by
    /// `limits.drain_timeout_secs`), then closes the evidence log with a final checkpoint.
    pub async fn shutdown(mut self) {
        self.gateway.begin_shutdown();
        self.drain_and_close().await;
    }

    /// Waits until a shutdown starts (a signal, or [`Gateway::begin_shutdown`]), drains
    /// connections (bounded by `limits.drain_timeout_secs`), then closes the evidence log with a
    /// final checkpoint covering every record written, so no record is left uncovered by a
    /// signed checkpoint when the process exits.
    pub async fn wait(mut self) {
        let mut shutdown = self.gateway.shutdown_signal();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => if changed.is_err() { break },
                joined = self.tasks.join_next() => if joined.is_none() { break },
            }
        }
        self.drain_and_close().await;
    }

    async fn drain_and_close(&mut self) {
        let drain = std::time::Duration::from_secs(
            self.gateway.snapshot.load().limits.drain_timeout_secs + 1,
        );
        let drained = tokio::time::timeout(drain, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                seconds = drain.as_secs(),
                "connections did not drain in time; closing them"
            );
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        // The suppressed refusals of the windows still open are counted too.
        let limits = self.gateway.snapshot.load().limits.clone();
        for record in self.gateway.refusals.take_summaries(&limits, true) {
            if let Err(error) = self.gateway.evidence.append(record).await {
                tracing::error!(%error, "suppressed refusals could not be recorded");
            }
        }
        // After the drain: the last outcomes are in, so the final checkpoint covers them.
        self.gateway.evidence.shutdown().await;
        tracing::info!("stopped");
    }
}

/// Binds every listener and starts serving `compiled`. Must run inside a tokio runtime.
/// `config_path` is what reloads read (settings and catalogue).
pub async fn start(
    compiled: Compiled,
    config_path: Option<PathBuf>,
) -> Result<Running, ConfigError> {
    start_with(compiled, config_path, None).await
}

/// [`start`] with the catalogue read through `source` on reloads (the config file when
/// `None`).
pub async fn start_with(
    compiled: Compiled,
    config_path: Option<PathBuf>,
    source: Option<Arc<dyn Source>>,
) -> Result<Running, ConfigError> {
    let settings = compiled.settings().clone();
    let evidence = EvidenceLog::open(&settings.evidence, &crate::snapshot::node_id(&settings))
        .await
        .map_err(|e| ConfigError::Build(format!("evidence: {e}")))?;
    let (compiled, registry) = match &settings.admin.registry {
        None => (compiled, None),
        Some(path) => {
            // The signer's certificate, pinned: revisions must carry it.
            let signer_certificate = evidence
                .sign_revision(&[0; 32])
                .await
                .map_err(|e| ConfigError::Build(format!("evidence signer: {e}")))?
                .and_then(|s| s.chain.into_iter().next());
            let control = service::Control::open(&settings.admin, path, signer_certificate)
                .await
                .map_err(|e| ConfigError::Build(format!("admin.registry: {e}")))?;
            let compiled = if settings.admin.catalogue == "registry" {
                if !catalog_is_empty(compiled.catalog()) {
                    return Err(ConfigError::Build(
                        "admin.catalogue = \"registry\": the config file must not declare upstreams, services, OPDs, applications or grants".into(),
                    ));
                }
                config::load_from(&settings, &*control.source).await?
            } else {
                compiled
            };
            (compiled, Some(Arc::new(control)))
        }
    };
    let source = match &registry {
        Some(control) if settings.admin.catalogue == "registry" => {
            Some(control.source.clone() as Arc<dyn Source>)
        }
        _ => source,
    };
    let compiled = Arc::new(compiled);
    let config = compiled.settings();
    let metrics = Arc::new(Metrics::default());
    let runtime = Snapshot::build(&compiled, &metrics, None).await?;
    let gateway = Arc::new(Gateway {
        plane: Arc::new(Plane::new(runtime, evidence)),
        metrics,
        config: std::sync::Mutex::new(compiled.clone()),
        source: source.or_else(|| {
            config_path
                .clone()
                .map(|path| Arc::new(config::FileSource { path }) as Arc<dyn Source>)
        }),
        registry,
        config_path,
        ready: AtomicBool::new(false),
        reload_lock: tokio::sync::Mutex::new(()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut bound = Vec::new();
    for (index, spec) in config.listener.iter().enumerate() {
        let listener = TcpListener::bind(&spec.address).await.map_err(|e| {
            ConfigError::Build(format!(
                "listener[{index}]: cannot bind {}: {e}",
                spec.address
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ConfigError::Build(e.to_string()))?;
        bound.push(addr);
        let limit = Arc::new(Semaphore::new(spec.max_connections));
        let listener_metrics = gateway.metrics.listener(&spec.name);
        tasks.spawn(crate::server::accept_loop(
            gateway.plane.clone(),
            index,
            listener,
            limit,
            listener_metrics,
        ));
        tracing::info!(listener = %spec.name, %addr, tls = spec.tls.is_some(), "listening");
    }
    let admin = if config.admin.address.is_empty() {
        None
    } else {
        let listener = TcpListener::bind(&config.admin.address)
            .await
            .map_err(|e| {
                ConfigError::Build(format!("admin: cannot bind {}: {e}", config.admin.address))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ConfigError::Build(e.to_string()))?;
        tasks.spawn(crate::admin::serve(gateway.clone(), listener));
        tracing::info!(%addr, "admin listening");
        Some(addr)
    };
    tasks.spawn(write_refusal_summaries(gateway.clone()));
    if let (Some(opdata), true) = (&config.telemetry.opdata, config.evidence.enabled) {
        let evidence = config.evidence.dir.clone();
        let shutdown = gateway.shutdown_signal();
        tasks.spawn(crate::telemetry::opdata::run(
            opdata.clone(),
            evidence,
            shutdown,
        ));
    }
    tasks.spawn(watch_crls(Arc::downgrade(&gateway)));
    gateway.ready.store(true, Ordering::SeqCst);
    Ok(Running {
        gateway,
        listeners: bound,
        admin,
        tasks,
    })
}

/// Writes the `refusals_suppressed` records of refusal windows that have ended (checked every
/// second), until shutdown; the shutdown writes those of the windows still open.
async fn write_refusal_summaries(gateway: Arc<Gateway>) {
    let mut shutdown = gateway.shutdown_signal();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let limits = gateway.snapshot.load().limits.clone();
        for record in gateway.refusals.take_summaries(&limits, false) {
            if let Err(error) = gateway.evidence.append(record).await {
                tracing::error!(%error, "suppressed refusals could not be recorded");
            }
        }
    }
}

/// How often CRL files are checked for changes.
const CRL_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The CRL files of `config` with their modification time and length (`None`: unreadable).
fn crl_stamps(config: &Settings) -> Vec<(PathBuf, Option<(std::time::SystemTime, u64)>)> {
    config
        .listener
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|t| t.crls.iter())
        .map(|path| {
            let stamp = std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (path.clone(), stamp)
        })
        .collect()
}

/// Watches the CRL files of the configuration in force; a changed file rebuilds it
/// ([`Gateway::reload_crls`]). Ends with the gateway or at shutdown.
async fn watch_crls(weak: std::sync::Weak<Gateway>) {
    let Some((mut seen, mut shutdown)) = weak.upgrade().map(|gateway| {
        (
            crl_stamps(gateway.config().settings()),
            gateway.shutdown_signal(),
        )
    }) else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CRL_POLL) => {}
            _ = shutdown.changed() => return,
        }
        let Some(gateway) = weak.upgrade() else {
            return;
        };
        let now = crl_stamps(gateway.config().settings());
        // When a reload changed the set of files, that reload read them already.
        let same_files = seen.len() == now.len() && seen.iter().zip(&now).all(|(a, b)| a.0 == b.0);
        let changed = same_files
            .then(|| {
                seen.iter()
                    .zip(&now)
                    .find(|(a, b)| a.1 != b.1)
                    .map(|(_, b)| b.0.display().to_string())
            })
            .flatten();
        seen = now;
        if let Some(path) = changed {
            let _ = gateway.reload_crls(&path).await;
        }
    }
}
