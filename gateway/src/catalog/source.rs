//! The catalogue as one value, and the seam it is read through.
//!
//! [`Catalog`] holds what the registry will own (OPDs, services with their routes, upstream
//! groups, applications, grants); the static settings (listeners, TLS, limits, evidence, Redis,
//! telemetry, admin) stay in the config file. A [`Source`] yields the catalogue as it is now:
//! the config file is the one implementation today (`config::FileSource`), the embedded
//! registry is the next. Whatever the source, the catalogue goes through the same
//! `config::validate` and `Snapshot::build`.

use serde::{Deserialize, Serialize};

use super::parties::{ApplicationSpec, GrantSpec, OpdSpec};
use super::services::{ServiceSpec, UpstreamSpec};

/// The catalogue: who offers which service, where it runs, and who may call it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Upstream groups that services forward to.
    #[serde(default)]
    pub upstream: Vec<UpstreamSpec>,
    /// Services (Layanan) with their routes.
    #[serde(default)]
    pub service: Vec<ServiceSpec>,
    /// OPDs (tenants).
    #[serde(default)]
    pub opd: Vec<OpdSpec>,
    /// Consumer applications and their credentials.
    #[serde(default)]
    pub application: Vec<ApplicationSpec>,
    /// Grants: which application may call which service, for what purpose, within what scope.
    #[serde(default)]
    pub grant: Vec<GrantSpec>,
    /// Peer SPLs that call in (provinsi, pusat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer: Vec<super::peers::PeerSpec>,
    /// The registry revision this catalogue is (`rev-N`); `None` for a file catalogue. Not
    /// part of the canonical digest; recorded as `config_version_id`.
    #[serde(skip)]
    pub revision: Option<String>,
}

/// Where the catalogue is read from.
pub trait Source: Send + Sync {
    /// Names the source in messages (a file path, a registry address).
    fn origin(&self) -> String;

    /// Reads the catalogue as it is now. The error says what could not be read or parsed.
    fn catalog(&self) -> futures_util::future::BoxFuture<'_, Result<Catalog, String>>;
}
