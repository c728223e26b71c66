//! Checkpoint signing, held apart from the writer: a `penghubung signer` process behind a Unix
//! socket ([`run_signer`]) or, for development, a key file in the gateway process.
//!
//! Socket protocol (one or more exchanges per connection), every message framed as
//! `u32 BE length ‖ body`:
//! - request body: `0x01 ‖ 32-byte checkpoint digest`
//! - response body: `0x00 ‖ u16 BE len ‖ algorithm ‖ u32 BE len ‖ signature ‖ u16 BE count ‖
//!   (u32 BE len ‖ certificate DER)*` or `0x01 ‖ UTF-8 error message`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{EvidenceError, SignerSettings};

/// Ed25519 signature algorithm name stored in checkpoints.
pub const ED25519: &str = "ed25519";
/// ECDSA P-256 with SHA-256 (ASN.1 DER signature) algorithm name stored in checkpoints.
pub const ECDSA_P256: &str = "ecdsa-p256-sha256";
const MAX_MESSAGE: usize = 1024 * 1024;

/// A signature with the signer's identity.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The signature over the 32-byte checkpoint digest.
    pub signature: Vec<u8>,
    /// [`ED25519`] or [`ECDSA_P256`].
    pub algorithm: String,
    /// Certificate chain, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
}

enum KeyKind {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair, SystemRandom),
}

/// A private key and its certificate chain loaded from PEM files.
pub struct LocalKey {
    key: KeyKind,
    chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey")
            .field("algorithm", &self.algorithm())
            .finish()
    }
}

impl LocalKey {
    /// Loads a PKCS#8 PEM key (Ed25519 or ECDSA P-256) and its PEM chain; the leaf certificate
    /// must carry the key's public key.
    pub fn load(key_pem: &Path, chain_pem: &Path) -> Result<Self, EvidenceError> {
        let bad =
            |what: &str, e: &dyn std::fmt::Display| EvidenceError::Signer(format!("{what}: {e}"));
        let der = PrivatePkcs8KeyDer::from_pem_file(key_pem).map_err(|e| bad("read key", &e))?;
        let rng = SystemRandom::new();
        let key = match Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()) {
            Ok(k) => KeyKind::Ed(k),
            Err(_) => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                der.secret_pkcs8_der(),
                &rng,
            )
            .map(|k| KeyKind::Ec(k, rng))
            .map_err(|e| bad("key is neither Ed25519 nor ECDSA P-256", &e))?,
        };
        let chain = CertificateDer::pem_file_iter(chain_pem)
            .map_err(|e| bad("read certificate chain", &e))?
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("parse certificate chain", &e))?;
        let leaf = chain
            .first()
            .ok_or_else(|| EvidenceError::Signer("certificate chain is empty".into()))?;
        let (_, cert) =
            X509Certificate::from_der(leaf).map_err(|e| bad("parse leaf certificate", &e))?;
        let public = match &key {
            KeyKind::Ed(k) => k.public_key().as_ref().to_vec(),
            KeyKind::Ec(k, _) => k.public_key().as_ref().to_vec(),
        };
        if cert.public_key().subject_public_key.data.as_ref() != public.as_slice() {
            return Err(EvidenceError::Signer(
                "leaf certificate does not match the key".into(),
            ));
        }
        Ok(Self { key, chain })
    }

    /// The algorithm name stored in checkpoints.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            KeyKind::Ed(_) => ED25519,
            KeyKind::Ec(..) => ECDSA_P256,
        }
    }

    /// Signs a checkpoint digest.
    pub fn sign(&self, digest: &[u8; 32]) -> Result<Signed, EvidenceError> {
        let signature = match &self.key {
            KeyKind::Ed(k) => k.sign(digest).as_ref().to_vec(),
            KeyKind::Ec(k, rng) => k
                .sign(rng, digest)
                .map_err(|_| EvidenceError::Signer("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Ok(Signed {
            signature,
            algorithm: self.algorithm().to_owned(),
            chain: self.chain.clone(),
        })
    }
}

/// The configured way of signing.
pub(crate) enum Signer {
    None,
    Local(Box<LocalKey>),
    Socket(PathBuf),
}

impl Signer {
    pub(crate) fn from_settings(settings: Option<&SignerSettings>) -> Result<Self, EvidenceError> {
        Ok(match settings {
            None => Self::None,
            Some(SignerSettings::KeyFile {
                key,
                certificate_chain,
            }) => Self::Local(Box::new(LocalKey::load(key, certificate_chain)?)),
            Some(SignerSettings::Socket { path }) => Self::Socket(path.clone()),
        })
    }

    /// Unix seconds when the local key's certificate expires.
    pub(crate) fn not_after(&self) -> Option<i64> {
        match self {
            Self::Local(k) => k.chain.first().and_then(|c| not_after(c)),
            Self::None | Self::Socket(_) => None,
        }
    }

    /// `Ok(None)` when no signer is configured.
    pub(crate) async fn sign(&self, digest: &[u8; 32]) -> Result<Option<Signed>, EvidenceError> {
        match self {
            Self::None => Ok(None),
            Self::Local(k) => k.sign(digest).map(Some),
            Self::Socket(path) => {
                tokio::time::timeout(Duration::from_secs(5), sign_remote(path, digest))
                    .await
                    .map_err(|_| EvidenceError::Signer("signer did not answer within 5 s".into()))?
                    .map(Some)
            }
        }
    }
}

pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    X509Certificate::from_der(der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

async fn read_message<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

async fn write_message<W: AsyncWriteExt + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

async fn sign_remote(path: &Path, digest: &[u8; 32]) -> Result<Signed, EvidenceError> {
    let io = |e| EvidenceError::io(format!("signer socket {}", path.display()), e);
    let mut stream = tokio::net::UnixStream::connect(path).await.map_err(io)?;
    let mut req = vec![1u8];
    req.extend_from_slice(digest);
    write_message(&mut stream, &req).await.map_err(io)?;
    let body = read_message(&mut stream)
        .await
        .map_err(io)?
        .ok_or_else(|| EvidenceError::Signer("signer closed the connection".into()))?;
    decode_response(&body).ok_or_else(|| {
        let msg = body
            .get(1..)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        EvidenceError::Signer(format!("signer refused: {msg}"))
    })
}

fn decode_response(body: &[u8]) -> Option<Signed> {
    let mut r = Reader(body);
    if r.take(1)? != [0] {
        return None;
    }
    let alg_len = u16::from_be_bytes(r.take(2)?.try_into().ok()?) as usize;
    let algorithm = String::from_utf8(r.take(alg_len)?.to_vec()).ok()?;
    let sig_len = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
    let signature = r.take(sig_len)?.to_vec();
    let count = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
    let mut chain = Vec::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
        chain.push(r.take(len)?.to_vec());
    }
    Some(Signed {
        signature,
        algorithm,
        chain,
    })
}

fn encode_response(s: &Signed) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(s.algorithm.len() as u16).to_be_bytes());
    out.extend_from_slice(s.algorithm.as_bytes());
    out.extend_from_slice(&(s.signature.len() as u32).to_be_bytes());
    out.extend_from_slice(&s.signature);
    out.extend_from_slice(&(s.chain.len() as u16).to_be_bytes());
    for c in &s.chain {
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
}

/// Serves checkpoint signatures on a Unix socket (mode 0600) until an I/O error on the
/// listener. This is the body of `penghubung signer`.
pub async fn run_signer(
    key_pem: &Path,
    chain_pem: &Path,
    socket: &Path,
) -> Result<(), EvidenceError> {
    use std::os::unix::fs::PermissionsExt;
    let key = std::sync::Arc::new(LocalKey::load(key_pem, chain_pem)?);
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(EvidenceError::io("remove stale signer socket", e)),
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| EvidenceError::io("bind signer socket", e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| EvidenceError::io("chmod signer socket", e))?;
    tracing::info!(socket = %socket.display(), algorithm = key.algorithm(), "evidence signer listening");
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| EvidenceError::io("accept", e))?;
        let key = key.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = read_message(&mut stream).await {
                let answer = match (
                    req.first(),
                    req.get(1..).and_then(|d| <[u8; 32]>::try_from(d).ok()),
                ) {
                    (Some(1), Some(digest)) => match key.sign(&digest) {
                        Ok(s) => {
                            tracing::info!(digest = %hex::encode(digest), "signed checkpoint digest");
                            encode_response(&s)
                        }
                        Err(e) => [&[1u8][..], e.to_string().as_bytes()].concat(),
                    },
                    _ => [&[1u8][..], b"bad request"].concat(),
                };
                if write_message(&mut stream, &answer).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Checks a checkpoint signature and its certificate chain up to one of `anchors` (DER), with
/// every certificate valid at `at_unix` (the checkpoint's signed time).
pub fn verify_signature(
    algorithm: &str,
    digest: &[u8; 32],
    signature: &[u8],
    chain: &[impl AsRef<[u8]>],
    anchors: &[Vec<u8>],
    at_unix: i64,
) -> Result<(), String> {
    let leaf_der = chain.first().ok_or("no signer certificate")?;
    let (_, leaf) = X509Certificate::from_der(leaf_der.as_ref())
        .map_err(|e| format!("signer certificate: {e}"))?;
    let alg: &dyn signature::VerificationAlgorithm = match algorithm {
        ED25519 => &signature::ED25519,
        ECDSA_P256 => &signature::ECDSA_P256_SHA256_ASN1,
        other => return Err(format!("unknown signature algorithm {other:?}")),
    };
    signature::UnparsedPublicKey::new(alg, leaf.public_key().subject_public_key.data.as_ref())
        .verify(digest, signature)
        .map_err(|_| "checkpoint signature does not verify".to_string())?;
    verify_chain(chain, anchors, at_unix)
}

/// Checks that `chain` (leaf first) is a valid chain to one of `anchors` at `at_unix`.
pub fn verify_chain(
    chain: &[impl AsRef<[u8]>],
    anchors: &[Vec<u8>],
    at_unix: i64,
) -> Result<(), String> {
    let mut certs = Vec::new();
    for der in chain {
        let (_, c) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| format!("certificate: {e}"))?;
        certs.push(c);
    }
    let mut parsed_anchors = Vec::new();
    for der in anchors {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| format!("trust anchor: {e}"))?;
        parsed_anchors.push(c);
    }
    for c in &certs {
        let v = c.validity();
        if at_unix < v.not_before.timestamp() || at_unix > v.not_after.timestamp() {
            return Err(format!(
                "certificate {} not valid at signing time",
                c.subject()
            ));
        }
    }
    for pair in certs.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|_| {
                format!(
                    "certificate {} not signed by {}",
                    pair[0].subject(),
                    pair[1].subject()
                )
            })?;
    }
    let last = certs.last().ok_or("empty certificate chain")?;
    let last_der = chain.last().map(|c| c.as_ref()).unwrap_or_default();
    let anchored = anchors.iter().any(|a| a.as_slice() == last_der)
        || parsed_anchors.iter().any(|a| {
            last.issuer() == a.subject() && last.verify_signature(Some(a.public_key())).is_ok()
        });
    if anchored {
        Ok(())
    } else {
        Err(format!(
            "certificate chain of {} does not reach a trust anchor",
            last.subject()
        ))
    }
}

/// Reads every certificate of a PEM file as DER.
pub fn load_pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, EvidenceError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| {
            it.map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| EvidenceError::Signer(format!("read certificates {}: {e}", path.display())))
}
