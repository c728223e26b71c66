//! Peers that call in: SPL Provinsi or the national SPLP calling this Pemda's Layanan
//! (`[[peer]]`). A call is a peer's when it carries WSO2's backend JWT (`X-JWT-Assertion`)
//! signed by a key of the peer's `assertion_jwks`, or when it authenticates (mTLS, or any
//! credential) as the peer's `application`. Either way it acts as that application (its
//! grants apply) and reaches only services whose `exposure` includes the peer's tier. Any other
//! `X-JWT-Assertion` is no credential; it is stripped before forwarding with the other identity
//! headers (`[headers]`).

use std::path::PathBuf;

use penghubung_adapter_splp::Tier;
use serde::{Deserialize, Serialize};

/// One `[[peer]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// Name, for logs and evidence.
    pub name: String,
    /// `provinsi` or `pusat`.
    pub tier: Tier,
    /// The `[[application]]` the peer's calls act as (its OPD, its grants).
    pub application: String,
    /// JWKS file (JSON) of the keys that sign the peer's `X-JWT-Assertion` (WSO2's backend JWT
    /// signing certificate as a JWK). Absent: the peer calls over mTLS only.
    #[serde(default)]
    pub assertion_jwks: Option<PathBuf>,
    /// The `iss` of the peer's backend JWTs (WSO2's default is `wso2.org/products/am`).
    #[serde(default = "default_issuer")]
    pub assertion_issuer: String,
}

fn default_issuer() -> String {
    "wso2.org/products/am".into()
}
