//! Checkpoint signing, held apart from the writer: a `penghubung signer` process behind a Unix
//! socket ([`run_signer`]) or, for development, a key file in the gateway process.
//!
//! Socket protocol (one or more exchanges per connection), every message framed as
//! `u32 BE length ‖ body` (`proto/README.md` §10):
//! - request body: `0x02 ‖ u8 len ‖ purpose tag ‖ 32-byte digest`; the signer signs
//!   [`signing_message`](crate::checkpoint::signing_message)`(purpose, digest)`, never a bare
//!   digest, and only for the purposes in [`PURPOSES`] (the legacy `0x01` request is refused);
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

use super::checkpoint::signing_message;
use super::pki::{self, PathPolicy, Role};
use super::{EvidenceError, SignerSettings};

/// Purpose tags the signer signs for. A signature for one purpose never verifies as another:
/// the tag is inside the signed message. New purposes (catalogue revisions, reports) are added
/// here and in `proto/README.md` §10 together.
pub const PURPOSES: &[&str] = &[super::checkpoint::PURPOSE_CHECKPOINT, PURPOSE_REVISION];

/// Purpose tag of catalogue revision signatures (the registry's signed revisions): a revision
/// signature never verifies as a checkpoint signature, nor the reverse.
pub const PURPOSE_REVISION: &str = "catalog-revision";

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
        validate_own_chain(&chain)?;
        Ok(Self { key, chain })
    }

    /// The algorithm name stored in checkpoints.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            KeyKind::Ed(_) => ED25519,
            KeyKind::Ec(..) => ECDSA_P256,
        }
    }

    /// Signs `digest` for `purpose` (one of [`PURPOSES`]): the signature is over
    /// `signing_message(purpose, digest)`.
    pub fn sign(&self, purpose: &str, digest: &[u8; 32]) -> Result<Signed, EvidenceError> {
        if !PURPOSES.contains(&purpose) {
            return Err(EvidenceError::Signer(format!(
                "unknown signature purpose {purpose:?}"
            )));
        }
        let message = signing_message(purpose, digest)
            .ok_or_else(|| EvidenceError::Signer("bad purpose tag".into()))?;
        let signature = match &self.key {
            KeyKind::Ed(k) => k.sign(&message).as_ref().to_vec(),
            KeyKind::Ec(k, rng) => k
                .sign(rng, &message)
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
    pub(crate) async fn sign(
        &self,
        purpose: &str,
        digest: &[u8; 32],
    ) -> Result<Option<Signed>, EvidenceError> {
        match self {
            Self::None => Ok(None),
            Self::Local(k) => k.sign(purpose, digest).map(Some),
            Self::Socket(path) => {
                tokio::time::timeout(Duration::from_secs(5), sign_remote(path, purpose, digest))
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

/// The request body asking for a `purpose` signature of `digest`.
pub fn encode_request(purpose: &str, digest: &[u8; 32]) -> Option<Vec<u8>> {
    let len = u8::try_from(purpose.len()).ok()?;
    let mut req = vec![2u8, len];
    req.extend_from_slice(purpose.as_bytes());
    req.extend_from_slice(digest);
    Some(req)
}

/// `(purpose, digest)` of a request body, `None` if it is not a well-formed `0x02` request.
pub fn decode_request(body: &[u8]) -> Option<(&str, [u8; 32])> {
    let mut r = Reader(body);
    if r.take(1)? != [2] {
        return None;
    }
    let len = r.take(1)?[0] as usize;
    let purpose = std::str::from_utf8(r.take(len)?).ok()?;
    let digest = <[u8; 32]>::try_from(r.take(32)?).ok()?;
    r.0.is_empty().then_some((purpose, digest))
}

async fn sign_remote(
    path: &Path,
    purpose: &str,
    digest: &[u8; 32],
) -> Result<Signed, EvidenceError> {
    let io = |e| EvidenceError::io(format!("signer socket {}", path.display()), e);
    let mut stream = tokio::net::UnixStream::connect(path).await.map_err(io)?;
    let req = encode_request(purpose, digest)
        .ok_or_else(|| EvidenceError::Signer("bad purpose tag".into()))?;
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
                let answer = match decode_request(&req) {
                    Some((purpose, digest)) => match key.sign(purpose, &digest) {
                        Ok(s) => {
                            tracing::info!(purpose, digest = %hex::encode(digest), "signed digest");
                            encode_response(&s)
                        }
                        Err(e) => [&[1u8][..], e.to_string().as_bytes()].concat(),
                    },
                    None => [&[1u8][..], b"bad request"].concat(),
                };
                if write_message(&mut stream, &answer).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Checks `signature` over `message` with the public key of the certificate `leaf_der`.
pub fn verify_signature(
    algorithm: &str,
    message: &[u8],
    signature: &[u8],
    leaf_der: &[u8],
) -> Result<(), String> {
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| format!("signer certificate: {e}"))?;
    let alg: &dyn signature::VerificationAlgorithm = match algorithm {
        ED25519 => &signature::ED25519,
        ECDSA_P256 => &signature::ECDSA_P256_SHA256_ASN1,
        other => return Err(format!("unknown signature algorithm {other:?}")),
    };
    signature::UnparsedPublicKey::new(alg, leaf.public_key().subject_public_key.data.as_ref())
        .verify(message, signature)
        .map_err(|_| "checkpoint signature does not verify".to_string())
}

/// Refuses a signer chain that a verifier trusting the chain's own last certificate would
/// refuse now (path, keyUsage, the default extended key usages, validity).
pub fn validate_own_chain(chain: &[Vec<u8>]) -> Result<(), EvidenceError> {
    let root = match chain {
        [_, .., root] => root.clone(),
        _ => {
            return Err(EvidenceError::Signer(
                "the certificate chain must hold the signer certificate and its CA".into(),
            ))
        }
    };
    let policy = PathPolicy::signer(vec![root], Vec::new(), &pki::default_signer_ekus())
        .map_err(EvidenceError::Signer)?;
    let refs: Vec<&[u8]> = chain.iter().map(|c| c.as_slice()).collect();
    let now = super::writer::now_nanos().div_euclid(1_000_000_000);
    pki::validate(&refs, &policy, Role::Signer, now)
        .map_err(|f| EvidenceError::Signer(format!("certificate would not validate: {f}")))
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
