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
use crate::catalog::services::{self, UpstreamKind, UpstreamSpec};
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
    /// The CRL files of each TLS listener (listener name, file), for `/health`.
    pub crl_files: Vec<(String, std::path::PathBuf)>,
    /// The operational-data index directory, when configured (`GET /opdata`).
    pub opdata_dir: Option<std::path::PathBuf>,
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
    pub upstreams: HashMap<String, Upstream>,
    /// TLS server config per listener (same order as the config's listeners).
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// Counters for requests that matched no service.
    pub unrouted: Arc<ServiceMetrics>,
    /// Stages 3–5: credentials, grants, limits.
    pub auth: AuthRuntime,
    /// Peer SPLs that call in (`[[peer]]`): their applications and backend JWT keys.
    pub peers: crate::peering::InboundPeers,
    /// The personal-data key and route templates (`privacy`).
    pub privacy: crate::privacy::Privacy,
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

/// One upstream group: its settings, the HTTP transport to its targets (pools, health checks,
/// ejection) and the adapter its kind built on top of that transport.
#[derive(Clone)]
pub struct Upstream {
    /// The `[[upstream]]` entry it was built from.
    pub spec: UpstreamSpec,
    /// Connections to the targets, and their health.
    pub transport: HttpUpstream,
    /// What the pipeline calls (stage 7).
    pub adapter: Arc<dyn Adapter>,
    /// The compiled SOAP settings of a group of kind `soap`.
    pub soap: Option<Arc<penghubung_adapter_soap::Soap>>,
}

/// Builds the HTTP transport and the adapter of one upstream group from its settings (a kind may
/// shape the transport first: a `splp` peer brings its own TLS).
pub(crate) type Connect = Arc<
    dyn Fn(&UpstreamSpec, UpstreamSettings) -> Result<(HttpUpstream, Arc<dyn Adapter>), String>
        + Send
        + Sync,
>;

/// How each [`UpstreamKind`] becomes an adapter: one builder per kind, so a new kind (SPLP, SOAP)
/// is one entry here and one crate under `adapters/`, and a test swaps a whole kind for
/// `MockAdapter`.
#[derive(Clone)]
pub(crate) struct Adapters {
    by_kind: HashMap<UpstreamKind, Connect>,
}

impl Default for Adapters {
    fn default() -> Adapters {
        let http: Connect = Arc::new(|_, settings| {
            let transport = HttpUpstream::new(settings);
            Ok((transport.clone(), Arc::new(transport)))
        });
        Adapters {
            by_kind: HashMap::from([
                (UpstreamKind::Http, http),
                (UpstreamKind::Soap, soap_adapter()),
            ]),
        }
    }
}

/// The SOAP settings of a group of kind `soap`, compiled (validation already checked them).
fn soap_settings(
    spec: &UpstreamSpec,
) -> Result<Option<Arc<penghubung_adapter_soap::Soap>>, String> {
    match (&spec.kind, &spec.soap) {
        (UpstreamKind::Soap, Some(settings)) => penghubung_adapter_soap::Soap::compile(settings)
            .map(|s| Some(Arc::new(s)))
            .map_err(|problems| format!("soap: {problems:?}")),
        (UpstreamKind::Soap, None) => Err("soap: the soap table is missing".into()),
        _ => Ok(None),
    }
}

/// `kind = "soap"`: the SOAP adapter over the group's transport, with its UsernameToken read
/// from the secret file or environment variable now (a missing secret fails the build).
fn soap_adapter() -> Connect {
    Arc::new(|spec, settings| {
        let transport = HttpUpstream::new(settings);
        let soap = soap_settings(spec)?.ok_or("soap: the soap table is missing")?;
        let token = spec
            .soap
            .as_ref()
            .and_then(|s| s.username_token.as_ref())
            .map(|t| {
                penghubung_adapter_soap::wsse::UsernameToken::load(
                    &t.username,
                    t.password_file.as_deref(),
                    t.password_env.as_deref(),
                )
                .map_err(|e| format!("soap.username_token: {e}"))
            })
            .transpose()?;
        let adapter = Arc::new(penghubung_adapter_soap::SoapAdapter::new(
            &spec.name,
            Arc::new(transport.clone()),
            soap,
            token,
        ));
        Ok((transport, adapter as Arc<dyn Adapter>))
    })
}

impl Adapters {
    /// Serves every group of `kind` with `adapter` instead of what the kind builds.
    #[cfg(test)]
    pub(crate) fn with(mut self, kind: UpstreamKind, adapter: Arc<dyn Adapter>) -> Adapters {
        self.by_kind.insert(
            kind,
            Arc::new(move |_, settings| Ok((HttpUpstream::new(settings), adapter.clone()))),
        );
        self
    }

    /// Adds the `splp` kind (peers), sharing tokens through `[redis]` when configured, unless a
    /// test already replaced that kind.
    fn with_peers(
        &self,
        redis: Option<&crate::throttle::RedisSettings>,
    ) -> Result<Adapters, String> {
        let mut adapters = self.clone();
        if let std::collections::hash_map::Entry::Vacant(slot) =
            adapters.by_kind.entry(UpstreamKind::Splp)
        {
            let shared: Option<Arc<dyn penghubung_adapter_splp::SharedTokens>> = match redis {
                Some(r) => Some(Arc::new(crate::peering::RedisTokens::new(r)?)),
                None => None,
            };
            slot.insert(Arc::new(move |spec, settings| {
                crate::peering::connect(spec, settings, shared.clone())
            }));
        }
        Ok(adapters)
    }

    fn connect(
        &self,
        spec: &UpstreamSpec,
        settings: UpstreamSettings,
    ) -> Result<(HttpUpstream, Arc<dyn Adapter>), String> {
        match self.by_kind.get(&spec.kind) {
            Some(connect) => connect(spec, settings),
            None => Err(format!(
                "no adapter is built for upstream kind {:?}",
                spec.kind
            )),
        }
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
        let adapters = adapters
            .with_peers(config.redis.as_ref())
            .map_err(|e| ConfigError::Build(format!("redis: {e}")))?;
        let mut upstreams = HashMap::new();
        for (i, spec) in catalog.upstream.iter().enumerate() {
            let reused = previous
                .and_then(|p| p.upstreams.get(&spec.name))
                .filter(|old| &old.spec == spec && spec.tls.is_none())
                // A UsernameToken's secret is read again on every reload.
                .filter(|_| {
                    spec.soap
                        .as_ref()
                        .is_none_or(|s| s.username_token.is_none())
                });
            if let Some(old) = reused {
                upstreams.insert(spec.name.clone(), old.clone());
                continue;
            }
            let built = upstream_settings(spec)
                .and_then(|settings| adapters.connect(spec, settings))
                .and_then(|(transport, adapter)| {
                    Ok(Upstream {
                        spec: spec.clone(),
                        transport,
                        adapter,
                        soap: soap_settings(spec)?,
                    })
                });
            match built {
                Ok(upstream) => {
                    upstreams.insert(spec.name.clone(), upstream);
                }
                Err(e) => errors.push(format!("upstream[{i}]: {e}")),
            }
        }
        let keys = match &config.privacy.key_file {
            Some(path) => match penghubung_evidence::personal::Keyring::load(path) {
                Ok(keys) => Some(Arc::new(keys)),
                Err(e) => {
                    errors.push(format!("privacy.key_file: {e}"));
                    None
                }
            },
            None => None,
        };
        let mut policies = Vec::new();
        let mut routes = Vec::new();
        for (i, spec) in catalog.service.iter().enumerate() {
            let policy = match (&spec.personal, spec.personal_data) {
                (Some(personal), true) => {
                    let paths: Vec<&str> = spec.route.iter().map(|r| r.path.as_str()).collect();
                    match crate::privacy::ServicePolicy::compile(personal, &paths) {
                        Ok(p) => Some(Arc::new(p)),
                        Err(e) => {
                            errors.extend(e.into_iter().map(|(path, message)| {
                                format!("service[{i}].personal.{path}: {message}")
                            }));
                            None
                        }
                    }
                }
                _ => None,
            };
            policies.extend(policy.clone());
            let (adapter, upstream_http2, soap) =
                match spec.upstream.as_ref().and_then(|u| upstreams.get(u)) {
                    Some(up) => (
                        Some(up.adapter.clone()),
                        up.spec.protocol == services::UpstreamProtocol::Http2,
                        up.soap.clone(),
                    ),
                    None => (None, false, None),
                };
            let service = Arc::new(Service {
                id: spec.id.clone(),
                version: spec.version.clone().unwrap_or_default(),
                owner_opd: spec.owner_opd.clone().unwrap_or_default(),
                classification: spec.classification,
                exposure: spec.exposure,
                personal_data: spec.personal_data,
                privacy: policy,
                approval_id: spec.approval_id.clone().unwrap_or_default(),
                auth: spec.auth.clone(),
                adapter,
                upstream_http2,
                soap,
                metrics: metrics.service(&spec.id),
                peer_direction: spec
                    .upstream
                    .as_ref()
                    .and_then(|u| upstreams.get(u))
                    .and_then(|up| up.spec.splp.as_ref())
                    .map(|peer| format!("outbound-to-{}", peer.tier.as_str()))
                    .unwrap_or_default(),
            });
            for (r, rule) in compiled.routes(i).iter().enumerate() {
                routes.push((spec.hosts.clone(), Route::bind(service.clone(), r, rule)));
            }
        }
        let applications: HashMap<String, String> = catalog
            .application
            .iter()
            .map(|a| (a.id.clone(), a.opd.clone()))
            .collect();
        let peers = crate::peering::InboundPeers::build(&catalog.peer, &applications)
            .unwrap_or_else(|e| {
                errors.push(e);
                crate::peering::InboundPeers::default()
            });
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
            peers,
            privacy: crate::privacy::Privacy::new(keys, &policies),
            source_sha256: compiled.digest(),
            config_version_id: compiled.version_id().into(),
            listener_http2: config.listener.iter().map(|l| l.http2).collect(),
            token_endpoint: config.auth.token_endpoint.enabled,
            access_log: config.log.access_log,
            evidence_signer: config.evidence.signer.is_some(),
            opdata_dir: config.telemetry.opdata.as_ref().map(|o| o.dir.clone()),
            crl_files: config
                .listener
                .iter()
                .flat_map(|l| {
                    l.tls
                        .iter()
                        .flat_map(|t| t.crls.iter().map(|c| (l.name.clone(), c.clone())))
                })
                .collect(),
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
            unrouted: {
                metrics.set_opds(&catalog.opd.iter().map(|o| o.id.clone()).collect::<Vec<_>>());
                metrics.service(NO_SERVICE)
            },
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

    /// Credentials held by upstream adapters that expire (peers' JWT API keys), sorted, for
    /// `/metrics`.
    pub fn credential_expiries(&self) -> Vec<crate::telemetry::CredentialExpiryStats> {
        let mut rows: Vec<_> = self
            .upstreams
            .iter()
            .flat_map(|(name, group)| {
                group.adapter.credential_expiries().into_iter().map(|c| {
                    crate::telemetry::CredentialExpiryStats {
                        upstream: name.clone(),
                        credential: c.name,
                        expires_at: c.expires_at,
                    }
                })
            })
            .collect();
        rows.sort();
        rows
    }

    /// The targets of every upstream group, sorted, for `/metrics`. Groups reused across a
    /// reload are the same objects, so their state carries over.
    pub fn upstream_stats(&self) -> Vec<UpstreamTargetStats> {
        let mut rows = Vec::new();
        for (name, group) in &self.upstreams {
            let up = &group.transport;
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
