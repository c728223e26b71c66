//! The catalogue: services (Layanan), their routes and upstreams, and the parties that call them.
//!
//! For now the catalogue is declared in the config file; a later issue moves it into the
//! embedded registry, which is why these types live apart from the static settings.

pub mod parties;
pub mod pattern;
pub mod rate;
pub mod source;

pub use source::{Catalog, Source};

use serde::{Deserialize, Serialize};

/// Security classification of a service (*klasifikasi keamanan*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    /// Open data; any granted application may call it.
    #[default]
    Terbuka,
    /// Restricted.
    Terbatas,
    /// Secret: callers must authenticate with an mTLS client certificate.
    Rahasia,
}

/// Who may reach a service (*eksposur*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Exposure {
    /// Only OPDs of this Pemda.
    #[default]
    Internal,
    /// Also the provincial service bus.
    Provinsi,
    /// Also the national SPLP.
    Pusat,
    /// Outside government.
    Eksternal,
}

impl Exposure {
    /// Whether a peer of `tier` (`provinsi`, `pusat`) may call a service with this exposure:
    /// `provinsi` admits the provincial bus, `pusat` also the national SPLP, `eksternal`
    /// both; `internal` no peer.
    pub fn includes_tier(self, tier: &str) -> bool {
        match self {
            Exposure::Internal => false,
            Exposure::Provinsi => tier == "provinsi",
            Exposure::Pusat | Exposure::Eksternal => tier == "provinsi" || tier == "pusat",
        }
    }
}

pub mod peers;
pub mod services;
