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

use crate::config::file::{ClientAuth, CrlExpired, TlsSpec};
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

/// Reads a CRL file (PEM, possibly several, or DER) and checks every CRL in it with the parser
/// the verifier uses, so a CRL it cannot use is refused here with the file and the reason
/// instead of a bare `ParseError` from the verifier. Returns the CRLs and whether any is past
/// its `nextUpdate`.
pub fn load_crl(path: &Path) -> Result<(Vec<CertificateRevocationListDer<'static>>, bool), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("CRL {}: {e}", path.display()))?;
    let crls = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("CRL {}: not a PEM CRL: {e}", path.display()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(format!("CRL {}: no CRL found", path.display()));
    }
    let now = x509_parser::time::ASN1Time::now();
    let mut expired = false;
    for (i, crl) in crls.iter().enumerate() {
        let which = if crls.len() > 1 {
            format!("CRL {} (#{})", path.display(), i + 1)
        } else {
            format!("CRL {}", path.display())
        };
        webpki::OwnedCertRevocationList::from_der(crl.as_ref()).map_err(|e| {
            format!("{which}: cannot be used ({e:?}); a version 2 CRL with nextUpdate and a CRL number is needed")
        })?;
        let (_, parsed) =
            x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| format!("{which}: {e}"))?;
        if let Some(next) = parsed.next_update() {
            if next <= now {
                tracing::warn!(crl = %path.display(), next_update = %next, "CRL is past its nextUpdate");
                expired = true;
            }
        }
    }
    Ok((crls, expired))
}

/// Reads a DER OCSP response to staple; a file that is not one is refused with its path.
fn load_ocsp(path: &Path) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("OCSP response {}: {e}", path.display()))?;
    // An OCSPResponse is a DER SEQUENCE whose first element is the ENUMERATED responseStatus.
    let looks_right = bytes.first() == Some(&0x30) && bytes.len() > 4;
    if !looks_right {
        return Err(format!(
            "OCSP response {}: not a DER OCSPResponse (RFC 6960)",
            path.display()
        ));
    }
    Ok(bytes)
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
                let (found, expired) = load_crl(path)?;
                if expired && spec.crl_expired == CrlExpired::Refuse {
                    tracing::warn!(crl = %path.display(), "stale CRL: client certificates of its CA are refused until it is replaced (crl_expired = \"refuse\")");
                }
                crls.extend(found);
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(roots, provider()).with_crls(crls);
            if spec.crl_expired == CrlExpired::Refuse {
                verifier = verifier.enforce_revocation_expiration();
            }
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
    let mut config = match &spec.ocsp_response {
        None => builder.with_single_cert(certs, key),
        Some(path) => {
            let ocsp = load_ocsp(path)?;
            builder.with_single_cert_with_ocsp(certs, key, ocsp)
        }
    }
    .map_err(|e| format!("certificate/key: {e}"))?;
    // The server's suite order (strongest first), not the client's.
    config.ignore_client_order = true;
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

/// A server TLS stream that sends what rustls queued while reading. rustls answers a TLS 1.2
/// client-initiated renegotiation (a `ClientHello` after the handshake) with a
/// `no_renegotiation` warning alert, but only queues it; tokio-rustls writes queued records
/// when the application writes or flushes, which an idle HTTP connection waiting for its
/// next request never does, so the client would wait for an answer until a timeout. After
/// each read this flushes whatever rustls wants to send.
#[derive(Debug)]
pub struct FlushingTls<IO> {
    inner: tokio_rustls::server::TlsStream<IO>,
}

impl<IO> FlushingTls<IO> {
    /// Wraps an accepted TLS stream.
    pub fn new(inner: tokio_rustls::server::TlsStream<IO>) -> FlushingTls<IO> {
        FlushingTls { inner }
    }
}

impl<IO> tokio::io::AsyncRead for FlushingTls<IO>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.inner.get_ref().1.wants_write() {
            // Pending registers for writability; an error shows up on the next read or write.
            let _ = tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.inner), cx);
        }
        result
    }
}

impl<IO> tokio::io::AsyncWrite for FlushingTls<IO>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
