//! The compiled, immutable snapshot that requests use, built from a [`Compiled`] config (so only
//! from one that passed `config::validate`). It keeps no config file: the request path reads
//! what it needs from the snapshot's own fields.
//!
//! `build` does all the I/O of the config lifecycle (certificates, upstream clients); the server
//! swaps the result in whole (`ArcSwap<Snapshot>`), and each request loads it once. Upstream
//! groups whose settings did not change are carried over from the previous snapshot, so a reload
//! keeps their connection pools and health state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use penghubung_adapter::Adapter;
use penghubung_adapter_http::{Balance, HealthCheck, HostHeader, HttpUpstream, UpstreamSettings};

use crate::auth::AuthRuntime;
use crate::catalog::services::{self, UpstreamSpec};
use crate::config::file::{RequestLimits, Settings};
use crate::config::{Compiled, ConfigError};
use crate::routing::{Route, Router};
use crate::telemetry::{Metrics, ServiceMetrics, UpstreamTargetStats, NO_SERVICE};
use crate::tls;

pub use crate::routing::Service;

/// Everything a request needs, compiled from one config.
pub struct Snapshot {
    /// Whether each listener offers HTTP/2 (same order as the config's listeners).
    pub listener_http2: Vec<bool>,
    /// Whether the gateway's own OAuth2 token endpoint answers (`auth.token_endpoint.enabled`).
    pub token_endpoint: bool,
    /// Whether an access-log line is written per exchange (`log.access_log`).
    pub access_log: bool,
    /// Whether evidence checkpoints are signed (`evidence.signer` is set).
    pub evidence_signer: bool,
    /// This node's name.
    pub node_id: String,
    /// Request size limits and deadlines.
    pub limits: RequestLimits,
    /// Headers added to every response, per listener (same order as the config's listeners).
    pub listener_headers: Vec<crate::admit::headers::AddedHeaders>,
    /// Headers added to a service's responses, by service id.
    pub service_headers: HashMap<String, crate::admit::headers::AddedHeaders>,
    /// Other gateways' identity headers stripped from requests (`[headers]`).
    pub foreign_identity: crate::admit::headers::ForeignIdentity,
    /// Routing table.
    pub router: Router,
    /// Upstream groups by name.
    pub upstreams: HashMap<String, (UpstreamSpec, HttpUpstream)>,
    /// TLS server config per listener (same order as the config's listeners).
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// Counters for requests that matched no service.
    pub unrouted: Arc<ServiceMetrics>,
    /// Stages 3–5: credentials, grants, limits.
    pub auth: AuthRuntime,
    /// The digest of the config this snapshot was built from ([`Compiled::digest`]; for `admin`
    /// evidence records).
    pub source_sha256: [u8; 32],
    /// The configuration in force, as request records name it (`config_version_id`): the
    /// registry revision, or `sha256:` and the canonical digest ([`Compiled::version_id`]).
    pub config_version_id: Arc<str>,
    service_metrics: HashMap<String, Arc<ServiceMetrics>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("node_id", &self.node_id)
            .finish()
    }
}

fn upstream_settings(spec: &UpstreamSpec) -> Result<UpstreamSettings, String> {
    let tls = match &spec.tls {
        Some(t) => {
            if let Some(name) = &t.server_name {
                rustls_pki_types::ServerName::try_from(name.as_str()).map_err(|_| {
                    format!("tls.server_name {name:?} is not a DNS name or IP address")
                })?;
            }
            Some((tls::client_config(&t.ca)?, t.server_name.clone()))
        }
        None => None,
    };
    let host_header = match spec.host_header.as_deref() {
        None | Some("target") => HostHeader::Target,
        Some("preserve") => HostHeader::Preserve,
        Some(other) => {
            HostHeader::Fixed(http::HeaderValue::from_str(other).map_err(|e| e.to_string())?)
        }
    };
    Ok(UpstreamSettings {
        name: spec.name.clone(),
        targets: spec.targets.clone(),
        http2: spec.protocol == services::UpstreamProtocol::Http2,
        tls,
        balance: match spec.balance {
            services::Balance::RoundRobin => Balance::RoundRobin,
            services::Balance::LeastOutstanding => Balance::LeastOutstanding,
        },
        connect_timeout: Duration::from_millis(spec.connect_timeout_ms),
        head_timeout: Duration::from_millis(spec.response_head_timeout_ms),
        request_timeout: Duration::from_millis(
            spec.request_timeout_ms
                .unwrap_or(spec.response_head_timeout_ms),
        ),
        response_timeout: Duration::from_millis(spec.response_timeout_ms),
        retries: spec.retries,
        health_check: spec.health_check.as_ref().map(|h| HealthCheck {
            path: h.path.clone(),
            interval: Duration::from_millis(h.interval_ms),
            timeout: Duration::from_millis(h.timeout_ms),
            unhealthy_after: h.unhealthy_after,
            healthy_after: h.healthy_after,
        }),
        eject_after: spec.eject_after_failures,
        eject_for: Duration::from_secs(spec.eject_secs),
        max_ejection_percent: spec.max_ejection_percent,
        pool_max_idle: spec.pool_max_idle,
        pool_idle_timeout: Duration::from_secs(spec.pool_idle_timeout_secs),
        host_header,
    })
}

/// The node id: configured, or the host name, or `penghubung`.
pub fn node_id(config: &Settings) -> String {
    config
        .node_id
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "penghubung".into())
}

/// Adapters supplied by upstream name instead of the HTTP client built from the `[[upstream]]`
/// table: the seam through which a pipeline test puts `MockAdapter` behind a service.
#[derive(Default, Clone)]
pub(crate) struct Adapters {
    by_upstream: HashMap<String, Arc<dyn Adapter>>,
}

impl Adapters {
    /// Serves the services of upstream `name` with `adapter`.
    #[cfg(test)]
    pub(crate) fn with(mut self, name: &str, adapter: Arc<dyn Adapter>) -> Adapters {
        self.by_upstream.insert(name.to_owned(), adapter);
        self
    }
}

impl Snapshot {
    /// Builds a snapshot from a validated config. Must run inside the tokio runtime (upstream
    /// health checks are spawned here).
    pub async fn build(
        compiled: &Compiled,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        Snapshot::build_with(compiled, metrics, previous, &Adapters::default()).await
    }

    /// [`Snapshot::build`], with the adapters of some upstreams given.
    pub(crate) async fn build_with(
        compiled: &Compiled,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
        adapters: &Adapters,
    ) -> Result<Snapshot, ConfigError> {
        let (config, catalog) = (compiled.settings(), compiled.catalog());
        let mut errors = Vec::new();
        let mut tls_configs = Vec::new();
        for (i, listener) in config.listener.iter().enumerate() {
            match &listener.tls {
                Some(spec) => match tls::server_config(spec, listener.http2) {
                    Ok(c) => tls_configs.push(Some(c)),
                    Err(e) => {
                        errors.push(format!("listener[{i}].tls: {e}"));
                        tls_configs.push(None);
                    }
                },
                None => tls_configs.push(None),
            }
        }
        let mut upstreams = HashMap::new();
        for (i, spec) in catalog.upstream.iter().enumerate() {
            let reused = previous
                .and_then(|p| p.upstreams.get(&spec.name))
                .filter(|(old, _)| old == spec && spec.tls.is_none())
                .map(|(_, up)| up.clone());
            let upstream = match reused {
                Some(up) => up,
                None => match upstream_settings(spec) {
                    Ok(settings) => HttpUpstream::new(settings),
                    Err(e) => {
                        errors.push(format!("upstream[{i}]: {e}"));
                        continue;
                    }
                },
            };
            upstreams.insert(spec.name.clone(), (spec.clone(), upstream));
        }
        let mut routes = Vec::new();
        for (i, spec) in catalog.service.iter().enumerate() {
            let (adapter, upstream_http2) = match spec
                .upstream
                .as_ref()
                .and_then(|u| Some((u, upstreams.get(u)?)))
            {
                Some((name, (uspec, up))) => (
                    Some(
                        adapters
                            .by_upstream
                            .get(name)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(up.clone()) as Arc<dyn Adapter>),
                    ),
                    uspec.protocol == services::UpstreamProtocol::Http2,
                ),
                None => (None, false),
            };
            let service = Arc::new(Service {
                id: spec.id.clone(),
                version: spec.version.clone().unwrap_or_default(),
                owner_opd: spec.owner_opd.clone().unwrap_or_default(),
                classification: spec.classification,
                exposure: spec.exposure,
                personal_data: spec.personal_data,
                approval_id: spec.approval_id.clone().unwrap_or_default(),
                auth: spec.auth.clone(),
                adapter,
                upstream_http2,
                metrics: metrics.service(&spec.id),
            });
            for (r, rule) in compiled.routes(i).iter().enumerate() {
                routes.push((spec.hosts.clone(), Route::bind(service.clone(), r, rule)));
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError::Build(errors.join("; ")));
        }
        let auth = AuthRuntime::build(
            &config.auth,
            compiled.parties(),
            config.redis.as_ref(),
            previous.map(|p| &p.auth),
        )
        .await
        .map_err(|e| ConfigError::Build(format!("auth: {e}")))?;
        Ok(Snapshot {
            auth,
            source_sha256: compiled.digest(),
            config_version_id: compiled.version_id().into(),
            listener_http2: config.listener.iter().map(|l| l.http2).collect(),
            token_endpoint: config.auth.token_endpoint.enabled,
            access_log: config.log.access_log,
            evidence_signer: config.evidence.signer.is_some(),
            node_id: node_id(config),
            limits: config.limits.clone(),
            listener_headers: config
                .listener
                .iter()
                .map(|l| crate::admit::headers::added_headers(&l.response_headers))
                .collect(),
            service_headers: catalog
                .service
                .iter()
                .filter(|s| !s.response_headers.is_empty())
                .map(|s| {
                    (
                        s.id.clone(),
                        crate::admit::headers::added_headers(&s.response_headers),
                    )
                })
                .collect(),
            foreign_identity: crate::admit::headers::ForeignIdentity::new(
                &config.headers.strip_identity,
                &config.headers.verified_peer_may_send,
            ),
            router: Router::new(routes),
            upstreams,
            tls: tls_configs,
            unrouted: metrics.service(NO_SERVICE),
            service_metrics: catalog
                .service
                .iter()
                .map(|s| (s.id.clone(), metrics.service(&s.id)))
                .collect(),
        })
    }

    /// Counters of a service by id (refusals after routing); falls back to the unrouted counters.
    pub fn router_service_metrics(&self, id: &str) -> Arc<ServiceMetrics> {
        self.service_metrics
            .get(id)
            .cloned()
            .unwrap_or_else(|| self.unrouted.clone())
    }

    /// The targets of every upstream group, sorted, for `/metrics`. Groups reused across a
    /// reload are the same objects, so their state carries over.
    pub fn upstream_stats(&self) -> Vec<UpstreamTargetStats> {
        let mut rows = Vec::new();
        for (name, (_, up)) in &self.upstreams {
            for (i, target) in up.targets().iter().enumerate() {
                rows.push(UpstreamTargetStats {
                    upstream: name.clone(),
                    target: target.authority.clone(),
                    up: up.is_target_available(i),
                    outstanding: target.outstanding() as u64,
                });
            }
        }
        rows.sort();
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Source};
    use crate::config::{self, FileSource};

    /// A catalogue held in memory, as the registry will hand it over.
    struct Memory(serde_json::Value);

    impl Source for Memory {
        fn origin(&self) -> String {
            "memory".into()
        }

        fn catalog(&self) -> futures_util::future::BoxFuture<'_, Result<Catalog, String>> {
            Box::pin(
                async move { serde_json::from_value(self.0.clone()).map_err(|e| e.to_string()) },
            )
        }
    }

    const SETTINGS: &str =
        "node_id = \"mem\"\n[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n";

    const CATALOG: &str = "[[upstream]]\nname = \"u\"\ntargets = [\"127.0.0.1:2\"]\n[[service]]\nid = \"s\"\nhosts = [\"api.example\"]\nupstream = \"u\"\nauth = { anonymous = true }\n[[service.route]]\npath = \"/x/*\"\n";

    fn catalog_json(upstream: &str) -> serde_json::Value {
        serde_json::json!({
            "upstream": [{ "name": "u", "targets": ["127.0.0.1:2"] }],
            "service": [{
                "id": "s",
                "hosts": ["api.example"],
                "upstream": upstream,
                "auth": { "anonymous": true },
                "route": [{ "path": "/x/*" }],
            }],
        })
    }

    #[tokio::test]
    async fn an_in_memory_source_drives_the_same_validate_and_build() {
        let settings = config::parse(SETTINGS, "settings")
            .expect("parses")
            .split()
            .0;
        let compiled = config::load_from(&settings, &Memory(catalog_json("u")))
            .await
            .expect("the catalogue is valid");
        let snapshot = Snapshot::build(&compiled, &Metrics::default(), None)
            .await
            .expect("builds");
        assert!(snapshot.router.knows_host("api.example"));
        assert!(!snapshot.router.knows_host("other.example"));
        assert!(snapshot.upstreams.contains_key("u"));
        assert_eq!(snapshot.node_id, "mem");
        assert_eq!(snapshot.source_sha256, compiled.digest());

        // The same catalogue read from the config file compiles to the same digest.
        let dir = penghubung_testkit::dir::temp_dir("source");
        let path = dir.path().join("penghubung.toml");
        std::fs::write(&path, format!("{SETTINGS}{CATALOG}")).expect("writes");
        let from_file = config::load_from(&settings, &FileSource { path: path.clone() })
            .await
            .expect("the file's catalogue is valid");
        assert_eq!(from_file.digest(), compiled.digest());
        assert_eq!(
            config::load(&path).expect("loads").digest(),
            compiled.digest()
        );

        // A bad catalogue from the source is refused by the same validation.
        let Err(config::ConfigError::Invalid(issues)) =
            config::load_from(&settings, &Memory(catalog_json("missing"))).await
        else {
            panic!("an unknown upstream is refused");
        };
        assert!(
            issues.iter().any(|i| i.path == "service[0].upstream"),
            "{issues:?}"
        );
        // And one the source cannot read says where it came from.
        let unreadable = Memory(serde_json::json!({ "service": 5 }));
        let error = config::load_from(&settings, &unreadable)
            .await
            .expect_err("not a catalogue");
        assert!(error.to_string().starts_with("memory: "), "{error}");
    }
}
