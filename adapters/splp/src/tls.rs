//! TLS toward a peer: verification is always on, against the CA bundle configured for the peer
//! only (no system roots, "CA pinning"), with an optional client certificate. The verifier
//! remembers the SHA-256 of the certificate each server name last presented, so every exchange's
//! evidence names the certificate the peer answered with.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// The fingerprint of the certificate each server name last presented (after it was verified).
#[derive(Debug, Clone, Default)]
pub struct Fingerprints(Arc<Mutex<HashMap<String, [u8; 32]>>>);

impl Fingerprints {
    /// The SHA-256 of the certificate `name` last presented, if a handshake with it succeeded.
    pub fn get(&self, name: &str) -> Option<[u8; 32]> {
        self.0.lock().get(name).copied()
    }

    /// Any one recorded fingerprint (a group's targets usually share one name).
    pub fn any(&self) -> Option<[u8; 32]> {
        self.0.lock().values().next().copied()
    }
}

#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Fingerprints,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        self.seen
            .0
            .lock()
            .insert(server_name.to_str().into_owned(), digest);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting only the CAs in `ca` (PEM), presenting `identity` (certificate
/// chain and key, PEM files) when given, and recording fingerprints into `seen`.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    seen: &Fingerprints,
) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("ca {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("ca {}: no certificate", ca.display()));
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("ca {}: {e}", ca.display()))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording {
            inner: verifier,
            seen: seen.clone(),
        }));
    match identity {
        Some((cert, key)) => {
            let chain = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
            let chain = CertificateDer::pem_slice_iter(&chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("{}: no certificate", cert.display()));
            }
            let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}
