//! Identities established by the gateway itself (never by a client-supplied header).

use std::fmt;

use http::HeaderName;

/// The exchange id header: the UUIDv7 the gateway gives each exchange, returned to the client
/// and sent upstream.
pub const EXCHANGE_ID: HeaderName = HeaderName::from_static("x-penghubung-exchange-id");

/// The verified TLS client certificate of a connection (stage 0, `accept`).
///
/// Only the TLS handshake creates this value; no header can stand in for it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject distinguished name in RFC 4514 form, e.g. `CN=simpeg,O=BKD,C=ID`.
    pub subject: String,
    /// Lower-case hex SHA-256 of the certificate's DER encoding.
    pub sha256: String,
    /// The leaf certificate, DER encoded.
    pub der: Vec<u8>,
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("subject", &self.subject)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// What the connection tells later stages about the peer.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Remote socket address.
    pub peer: std::net::SocketAddr,
    /// Local socket address the connection arrived on.
    pub local: std::net::SocketAddr,
    /// Index of the listener in the config.
    pub listener: usize,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// TLS server name (SNI) the client asked for, lower-cased.
    pub sni: Option<String>,
    /// The verified client certificate, when the client presented one.
    pub client: Option<PeerIdentity>,
}
