//! The `/metrics` exposition: a scrape's plain stats encoded by a `prometheus-client`
//! [`Collector`] as OpenMetrics text.
//!
//! Every value is read once per scrape into [`Scrape`] (atomics loaded, no lock held while
//! encoding); names, types and help texts come from [`names`] only. Label values are escaped
//! here (`prometheus-client` writes them as given).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{names, ListenerCounts, ServiceCounts, BUCKETS, CLASSES};
use crate::stage::Stage;
use penghubung_evidence::EvidenceStats;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Process counters that survive reloads.
#[derive(Debug, Clone, Default)]
pub struct ProcessStats {
    /// By service id (`-` for requests that matched no service), sorted.
    pub services: Vec<(String, ServiceCounts)>,
    /// By listener name, in start order.
    pub listeners: Vec<(String, ListenerCounts)>,
    /// Successful reloads.
    pub reloads_ok: u64,
    /// Refused reloads.
    pub reloads_refused: u64,
}

/// One target of an upstream group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UpstreamTargetStats {
    /// The upstream group's name.
    pub upstream: String,
    /// The target's authority.
    pub target: String,
    /// Available (not down or ejected).
    pub up: bool,
    /// Requests in flight.
    pub outstanding: u64,
}

/// A credential an upstream's adapter holds that expires (a peer's JWT API key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CredentialExpiryStats {
    /// The upstream group's name.
    pub upstream: String,
    /// The credential (the peer API's prefix).
    pub credential: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// One JWT issuer's key set.
#[derive(Debug, Clone, Default)]
pub struct IssuerStats {
    /// The issuer's name.
    pub issuer: String,
    /// Successful JWKS loads.
    pub loads_ok: u64,
    /// Failed JWKS loads.
    pub loads_failed: u64,
    /// The keys are stale.
    pub stale: bool,
    /// Unix seconds of the last successful load (`None`: never loaded).
    pub last_ok_unix: Option<i64>,
}

/// Authentication counters.
#[derive(Debug, Clone, Default)]
pub struct AuthStats {
    /// Per issuer, sorted by name.
    pub issuers: Vec<IssuerStats>,
    /// Entries in the verified-token cache.
    pub token_cache_entries: u64,
    /// Verified-token cache hits.
    pub token_cache_hits: u64,
    /// Tokens issued by the token endpoint.
    pub tokens_issued: u64,
    /// Refused token-endpoint requests.
    pub token_requests_failed: u64,
    /// The signing key is ephemeral.
    pub signing_key_ephemeral: bool,
}

/// Rate-limit counters; `None` fields when Redis is not configured.
#[derive(Debug, Clone, Default)]
pub struct ThrottleStats {
    /// Redis reachable, when configured.
    pub redis_up: Option<bool>,
    /// Failed Redis calls.
    pub redis_errors: u64,
}

/// Refusal accounting counters.
#[derive(Debug, Clone, Default)]
pub struct RefusalStats {
    /// Refusals counted into summaries instead of recorded one by one.
    pub suppressed: u64,
    /// Sources being tracked.
    pub sources: u64,
}

/// Everything one scrape exposes.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Requests, connections, reloads.
    pub process: ProcessStats,
    /// Upstream targets of the current snapshot.
    pub upstreams: Vec<UpstreamTargetStats>,
    /// Expiring credentials held by upstream adapters.
    pub credential_expiries: Vec<CredentialExpiryStats>,
    /// Authentication.
    pub auth: AuthStats,
    /// Rate limits.
    pub throttle: ThrottleStats,
    /// The evidence log.
    pub evidence: EvidenceStats,
    /// Refusal accounting.
    pub refusals: RefusalStats,
}

/// Renders a scrape as OpenMetrics text (ending in `# EOF`).
pub fn render(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail; an encoder error would be a bug in a collector.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(%error, "metrics exposition failed");
    }
    out
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type Labels = Vec<(&'static str, String)>;

fn help(name: &str) -> &'static str {
    names::ALL
        .iter()
        .find(|family| family.0 == name)
        .map_or("", |family| family.2)
}

/// A family with one sample per label set.
fn family<V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &'static str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error>
where
    ConstCounter<V>: EncodeMetric,
    ConstGauge<V>: EncodeMetric,
{
    let mut metric = encoder.encode_descriptor(name, help(name), None, kind)?;
    for (labels, value) in rows {
        let sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(sample)?,
            _ => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

/// A family with one unlabelled sample.
fn single<V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &'static str,
    kind: MetricType,
    value: V,
) -> Result<(), std::fmt::Error>
where
    ConstCounter<V>: EncodeMetric,
    ConstGauge<V>: EncodeMetric,
{
    let metric = encoder.encode_descriptor(name, help(name), None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(metric),
        _ => ConstGauge::new(value).encode(metric),
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let p = &self.process;
        let mut rows = Vec::new();
        for (id, counts) in &p.services {
            for (si, stage) in Stage::ALL.iter().enumerate() {
                for (ci, class) in CLASSES.iter().enumerate() {
                    let v = counts.by_stage_class[si][ci];
                    if v > 0 {
                        let labels = vec![
                            ("service", escape(id)),
                            ("stage", stage.as_str().to_owned()),
                            ("status_class", (*class).to_owned()),
                        ];
                        rows.push((labels, v));
                    }
                }
            }
        }
        family(&mut e, names::REQUESTS, Counter, rows)?;
        let consumers = p.services.iter().flat_map(|(id, counts)| {
            counts.by_opd.iter().flat_map(move |(opd, classes)| {
                CLASSES
                    .iter()
                    .zip(classes)
                    .filter(|(_, v)| **v > 0)
                    .map(move |(class, v)| {
                        let labels = vec![
                            ("service", escape(id)),
                            ("opd", escape(opd)),
                            ("status_class", (*class).to_owned()),
                        ];
                        (labels, *v)
                    })
            })
        });
        family(&mut e, names::CONSUMER_REQUESTS, Counter, consumers)?;
        let mut histogram = e.encode_descriptor(
            names::REQUEST_SECONDS,
            help(names::REQUEST_SECONDS),
            None,
            MetricType::Histogram,
        )?;
        for (id, counts) in &p.services {
            for (si, stage) in Stage::ALL.iter().enumerate() {
                let count: u64 = counts.buckets[si].iter().sum();
                if count == 0 {
                    continue;
                }
                let buckets: Vec<(f64, u64)> = BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::MAX])
                    .zip(counts.buckets[si].iter().copied())
                    .collect();
                let labels: Labels = vec![
                    ("service", escape(id)),
                    ("stage", stage.as_str().to_owned()),
                ];
                histogram
                    .encode_family(&labels)?
                    .encode_histogram::<Labels>(
                        counts.sum_micros[si] as f64 / 1e6,
                        count,
                        &buckets,
                        None,
                    )?;
            }
        }
        let listeners = |get: fn(&ListenerCounts) -> u64| {
            p.listeners
                .iter()
                .map(move |(name, c)| (vec![("listener", escape(name))], get(c)))
        };
        family(
            &mut e,
            names::CONNECTIONS_OPEN,
            Gauge,
            listeners(|c| c.open),
        )?;
        family(&mut e, names::CONNECTIONS, Counter, listeners(|c| c.total))?;
        family(
            &mut e,
            names::CONNECTIONS_REJECTED,
            Counter,
            listeners(|c| c.rejected),
        )?;
        family(
            &mut e,
            names::CONNECTION_ERRORS,
            Counter,
            listeners(|c| c.errors),
        )?;
        family(
            &mut e,
            names::RELOADS,
            Counter,
            [
                (vec![("result", "ok".to_owned())], p.reloads_ok),
                (vec![("result", "refused".to_owned())], p.reloads_refused),
            ],
        )?;
        let targets = |get: fn(&UpstreamTargetStats) -> u64| {
            self.upstreams.iter().map(move |t| {
                (
                    vec![
                        ("upstream", escape(&t.upstream)),
                        ("target", escape(&t.target)),
                    ],
                    get(t),
                )
            })
        };
        family(
            &mut e,
            names::UPSTREAM_UP,
            Gauge,
            targets(|t| u64::from(t.up)),
        )?;
        family(
            &mut e,
            names::UPSTREAM_OUTSTANDING,
            Gauge,
            targets(|t| t.outstanding),
        )?;
        family(
            &mut e,
            names::PEER_KEY_EXPIRES,
            Gauge,
            self.credential_expiries.iter().map(|c| {
                (
                    vec![
                        ("upstream", escape(&c.upstream)),
                        ("credential", escape(&c.credential)),
                    ],
                    c.expires_at,
                )
            }),
        )?;
        single(
            &mut e,
            names::REFUSALS_SUPPRESSED,
            Counter,
            self.refusals.suppressed,
        )?;
        single(&mut e, names::REFUSAL_SOURCES, Gauge, self.refusals.sources)?;

        let a = &self.auth;
        let loads = a.issuers.iter().flat_map(|i| {
            [
                (
                    vec![("issuer", escape(&i.issuer)), ("result", "ok".to_owned())],
                    i.loads_ok,
                ),
                (
                    vec![
                        ("issuer", escape(&i.issuer)),
                        ("result", "error".to_owned()),
                    ],
                    i.loads_failed,
                ),
            ]
        });
        family(&mut e, names::JWKS_LOADS, Counter, loads)?;
        let stale = a
            .issuers
            .iter()
            .map(|i| (vec![("issuer", escape(&i.issuer))], u64::from(i.stale)));
        family(&mut e, names::JWKS_STALE, Gauge, stale)?;
        single(
            &mut e,
            names::TOKEN_CACHE_ENTRIES,
            Gauge,
            a.token_cache_entries,
        )?;
        single(&mut e, names::TOKEN_CACHE_HITS, Counter, a.token_cache_hits)?;
        single(&mut e, names::TOKENS_ISSUED, Counter, a.tokens_issued)?;
        single(
            &mut e,
            names::TOKEN_REQUESTS_FAILED,
            Counter,
            a.token_requests_failed,
        )?;
        single(
            &mut e,
            names::SIGNING_KEY_EPHEMERAL,
            Gauge,
            u64::from(a.signing_key_ephemeral),
        )?;
        if let Some(up) = self.throttle.redis_up {
            single(&mut e, names::REDIS_UP, Gauge, u64::from(up))?;
            single(
                &mut e,
                names::REDIS_ERRORS,
                Counter,
                self.throttle.redis_errors,
            )?;
        }

        let ev = &self.evidence;
        let h = &ev.health;
        let b = u64::from;
        for (name, kind, value) in [
            (names::EVIDENCE_ENABLED, Gauge, b(h.enabled)),
            (names::EVIDENCE_WRITABLE, Gauge, b(h.writable)),
            (names::EVIDENCE_RECORDS, Gauge, h.records),
            (names::EVIDENCE_WRITTEN_BYTES, Counter, ev.written_bytes),
            (names::EVIDENCE_GROUP_COMMITS, Counter, ev.group_commits),
            (names::EVIDENCE_WRITE_ERRORS, Counter, ev.write_errors),
            (names::EVIDENCE_DROPPED_RECORDS, Counter, h.dropped_records),
            (names::EVIDENCE_CHECKPOINTS, Counter, ev.checkpoints),
            (names::EVIDENCE_TSA_OK, Gauge, b(h.tsa_ok)),
            (names::EVIDENCE_TSA_BLOCKING, Gauge, b(h.tsa_blocking)),
            (names::EVIDENCE_SIGNER_OK, Gauge, b(h.signer_ok)),
        ] {
            single(&mut e, name, kind, value)?;
        }
        single(
            &mut e,
            names::EVIDENCE_GROUP_COMMIT_SECONDS,
            Counter,
            ev.group_commit_seconds,
        )?;
        if let Some(age) = h.last_checkpoint_age_secs {
            single(&mut e, names::EVIDENCE_LAST_CHECKPOINT_AGE, Gauge, age)?;
        }
        let (exported, dropped) = super::trace::span_counts();
        single(&mut e, names::TRACE_SPANS_EXPORTED, Counter, exported)?;
        single(&mut e, names::TRACE_SPANS_DROPPED, Counter, dropped)?;
        Ok(())
    }
}
