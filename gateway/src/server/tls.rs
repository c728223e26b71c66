//! TLS for listeners (stage 0, `accept`): rustls with the ring provider, TLS 1.2 and 1.3 only,
//! ALPN `h2` / `http/1.1`, optional or required client certificates verified against a CA bundle
//! and CRLs by webpki.
//!
//! webpki refuses, for client certificates: expired or not-yet-valid, an EKU without
//! `clientAuth`, an unknown or look-alike issuer, revoked serials, self-signed leaves, RSA keys
//! under 2048 bits and SHA-1 signatures (not in the verifier's algorithm list).

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::file::{ClientAuth, TlsSpec};
use crate::identity::PeerIdentity;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no usable private key ({e})", path.display()))
}

/// Reads a PEM CA bundle into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn load_crl(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

/// Builds a listener's server config (all file I/O happens here, at build time).
pub fn server_config(spec: &TlsSpec, http2: bool) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = load_certs(&spec.certificate)?;
    let key = load_key(&spec.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match spec.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let ca = spec
                .client_ca
                .as_ref()
                .ok_or("client_ca is required for client certificates")?;
            let roots = Arc::new(load_roots(ca)?);
            let mut crls = Vec::new();
            for path in &spec.crls {
                crls.extend(load_crl(path)?);
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots, provider()).with_crls(crls);
            let verifier = if spec.client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client verifier: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate/key: {e}"))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Builds a client config trusting only the CAs in `ca` (for TLS to upstreams).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = load_roots(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The identity of a verified client certificate.
pub fn peer_identity(der: &CertificateDer<'_>) -> PeerIdentity {
    let sha256 = hex::encode(Sha256::digest(der.as_ref()));
    let subject = x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_default();
    PeerIdentity {
        subject,
        sha256,
        der: der.as_ref().to_vec(),
    }
}
