//! A test PKI made with rcgen at run time: a CA, a `localhost` server certificate, client
//! certificates of every kind a listener must refuse, a CRL, and an evidence checkpoint signer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::dir::write_file;
use crate::IO_TIMEOUT;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Kinds of client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Valid, from the test CA, for client authentication.
    Good,
    /// Expired yesterday.
    Expired,
    /// Valid from tomorrow.
    NotYetValid,
    /// Extended key usage `serverAuth` only.
    ServerAuthOnly,
    /// From another CA with the same name as the test CA.
    UnknownCaSameName,
    /// Listed in [`Pki::crl_pem`].
    Revoked,
    /// Self-signed.
    SelfSigned,
}

const CA_NAME: &str = "Penghubung Test CA";
const REVOKED_SERIAL: [u8; 3] = [0x0d, 0xea, 0xd1];

/// The test PKI: one CA, a `localhost` server certificate, client certificates, a CRL.
pub struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// A server identity for `localhost` and `other.example`.
    pub server: Identity,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pki")
    }
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

fn leaf(cn: &str, sans: Vec<String>, eku: Vec<ExtendedKeyUsagePurpose>) -> CertificateParams {
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = eku;
    params.is_ca = IsCa::ExplicitNoCa;
    params
}

impl Pki {
    /// A fresh CA with its `localhost` server identity.
    pub fn new() -> Pki {
        let (ca_cert, ca_key) = ca(CA_NAME);
        let key = KeyPair::generate().unwrap();
        let server = leaf(
            "localhost",
            vec!["localhost".into(), "other.example".into()],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            server: Identity {
                cert_pem: server.pem(),
                key_pem: key.serialize_pem(),
            },
            ca_cert,
            ca_key,
        }
    }

    /// A server certificate from this CA for other names (DNS names or IP addresses).
    pub fn server_for(&self, names: &[&str]) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = leaf(
            names.first().copied().unwrap_or("localhost"),
            names.iter().map(|n| (*n).to_owned()).collect(),
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
        .signed_by(&key, &self.ca_cert, &self.ca_key)
        .unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client certificate of the given kind.
    ///
    /// Not made here: RSA-1024 (rcgen with ring cannot generate RSA keys, and ring refuses to
    /// sign with RSA keys under 2048 bits) and SHA-1 signatures (rcgen has no SHA-1
    /// algorithm). Those are made with the `openssl` CLI from [`Pki::ca_key_pem`] and
    /// presented by `openssl s_client`; see `weak_client_certificate_*` in `tests/tests/tls.rs`.
    pub fn client(&self, kind: ClientKind) -> Identity {
        let key = KeyPair::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let mut params = leaf(
            "dinas-test",
            vec!["dinas-test.pemda.example".into()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        params.not_before = now - day;
        params.not_after = now + day * 30;
        let cert = match kind {
            ClientKind::Good => params.signed_by(&key, &self.ca_cert, &self.ca_key),
            ClientKind::Expired => {
                params.not_before = now - day * 30;
                params.not_after = now - day;
                params.signed_by(&key, &self.ca_cert, &self.ca_key)
            }
            ClientKind::NotYetValid => {
                params.not_before = now + day;
                params.not_after = now + day * 30;
                params.signed_by(&key, &self.ca_cert, &self.ca_key)
            }
            ClientKind::ServerAuthOnly => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.signed_by(&key, &self.ca_cert, &self.ca_key)
            }
            ClientKind::UnknownCaSameName => {
                let (other, other_key) = ca(CA_NAME);
                params.signed_by(&key, &other, &other_key)
            }
            ClientKind::Revoked => {
                params.serial_number = Some(SerialNumber::from(REVOKED_SERIAL.to_vec()));
                params.signed_by(&key, &self.ca_cert, &self.ca_key)
            }
            ClientKind::SelfSigned => params.self_signed(&key),
        }
        .unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The CA's private key, PEM (PKCS#8, ECDSA P-256), for signing certificates with tools
    /// other than rcgen (the `openssl` CLI). Write it only into a temp dir.
    pub fn ca_key_pem(&self) -> String {
        self.ca_key.serialize_pem()
    }

    /// A CRL from the CA revoking the `Revoked` client certificate.
    pub fn crl_pem(&self) -> String {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(REVOKED_SERIAL.to_vec()),
                revocation_time: now - time::Duration::hours(2),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.ca_cert, &self.ca_key)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// Writes server cert, key, CA and CRL into `dir`; returns the `[listener.tls]` table
    /// for `client_auth` (`none`, `optional`, `required`).
    pub fn listener_tls(&self, dir: &Path, client_auth: &str) -> String {
        self.listener_tls_with(dir, client_auth, true)
    }

    /// Like [`Pki::listener_tls`], optionally without the CRL.
    pub fn listener_tls_with(&self, dir: &Path, client_auth: &str, with_crl: bool) -> String {
        let cert = write_file(dir, "server.pem", &self.server.cert_pem);
        let key = write_file(dir, "server.key", &self.server.key_pem);
        let ca = write_file(dir, "ca.pem", &self.ca_pem);
        let crl = write_file(dir, "ca.crl.pem", &self.crl_pem());
        let mut table = format!(
            "[listener.tls]\ncertificate = {:?}\nkey = {:?}\nclient_auth = {client_auth:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        );
        if client_auth != "none" {
            table.push_str(&format!("client_ca = {:?}\n", ca.display().to_string()));
            if with_crl {
                table.push_str(&format!("crls = [{:?}]\n", crl.display().to_string()));
            }
        }
        table
    }

    /// A rustls client config trusting this CA, offering `alpn`, with an optional identity.
    pub fn client_config(
        &self,
        identity: Option<&Identity>,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => {
                use rustls_pki_types::pem::PemObject;
                let certs =
                    rustls_pki_types::CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap();
                let key =
                    rustls_pki_types::PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Identity {
    /// A rustls server config presenting this identity (no client authentication).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Arc::new(config)
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

/// Connects with TLS to `addr` using `sni`.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tokio::time::timeout(
        IO_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("tls handshake timed out"))?
}

/// PEM files of an evidence checkpoint signer: its key, its chain (leaf then CA) and its CA.
#[derive(Debug, Clone)]
pub struct SignerFiles {
    /// The signer's private key (PKCS#8).
    pub key: PathBuf,
    /// The signer certificate followed by its CA certificate.
    pub chain: PathBuf,
    /// The CA certificate alone (what a verifier trusts).
    pub ca: PathBuf,
}

/// id-kp-documentSigning (RFC 9336), the extended key usage a checkpoint signer carries.
pub fn document_signing() -> rcgen::ExtendedKeyUsagePurpose {
    rcgen::ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 36])
}

/// Makes a CA (keyCertSign) and a checkpoint signer certificate (P-256, or Ed25519; keyUsage
/// digitalSignature, EKU documentSigning, so RFC 5280 path validation accepts it) and writes them
/// to `dir`.
pub fn signer_files(dir: &Path, ed25519: bool) -> SignerFiles {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test Evidence CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let alg = if ed25519 {
        &rcgen::PKCS_ED25519
    } else {
        &rcgen::PKCS_ECDSA_P256_SHA256
    };
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Penghubung checkpoint signer");
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![document_signing()];
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let files = SignerFiles {
        key: dir.join("signer.key"),
        chain: dir.join("signer-chain.pem"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&files.ca, ca.pem()).unwrap();
    files
}
