//! JWKS of one issuer (stage 3): loaded from a file or an HTTPS URL, refreshed periodically, and
//! refreshed at most once per `jwks_min_refresh_secs` when a token names an unknown `kid`.
//! Keys are only ever taken from here: `jku`, `x5u`, `jwk` and `x5c` in a token are refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::DecodingKey;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

use super::settings::{IssuerSettings, JwtAlgorithm};
use super::strict_json;

const MAX_JWKS_BYTES: usize = 512 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One verification key of a JWKS.
pub(crate) struct VerifyKey {
    /// The algorithms the key's type allows (narrowed by the JWK's own `alg`).
    pub algorithms: Vec<JwtAlgorithm>,
    /// The key.
    pub key: DecodingKey,
}

/// Keys of one issuer, by `kid`; keys without `kid` are kept apart.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    unnamed: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: JwtAlgorithm) -> Option<Arc<VerifyKey>> {
        match kid {
            Some(k) => self
                .by_kid
                .get(k)
                .filter(|v| v.algorithms.contains(&alg))
                .cloned(),
            None => {
                let mut fit = self
                    .by_kid
                    .values()
                    .chain(self.unnamed.iter())
                    .filter(|v| v.algorithms.contains(&alg));
                // Without a kid only an unambiguous key is used.
                match (fit.next(), fit.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    /// Whether the set still holds `kid` (cached tokens of removed keys stop working).
    pub fn contains(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(k) => self.by_kid.contains_key(k),
            None => !self.unnamed.is_empty() || !self.by_kid.is_empty(),
        }
    }

    /// Builds a set from keys the gateway holds itself.
    pub fn from_keys(keys: Vec<(Option<String>, VerifyKey)>) -> Self {
        let mut s = Self::default();
        for (kid, k) in keys {
            match kid {
                Some(kid) => {
                    s.by_kid.insert(kid, Arc::new(k));
                }
                None => s.unnamed.push(Arc::new(k)),
            }
        }
        s
    }
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

enum Source {
    File(PathBuf),
    Url(String, Box<HttpsClient>),
    Static,
}

/// The keys of one issuer and their refresh state.
pub(crate) struct IssuerKeys {
    settings: Option<IssuerSettings>,
    source: Source,
    keys: ArcSwap<KeySet>,
    last_load: Mutex<Instant>,
    last_forced: Mutex<Option<Instant>>,
    refreshing: AtomicBool,
    /// Successful loads.
    pub loads_ok: AtomicU64,
    /// Failed loads.
    pub loads_failed: AtomicU64,
    /// Whether the last load failed.
    pub stale: AtomicBool,
    /// Unix seconds of the last successful load (0: none; the gateway's own keys are never
    /// loaded).
    pub last_ok_unix: std::sync::atomic::AtomicI64,
}

impl IssuerKeys {
    /// Keys of an issuer that are known without loading (the gateway's own).
    pub fn fixed(keys: KeySet) -> Arc<Self> {
        Arc::new(Self {
            settings: None,
            source: Source::Static,
            keys: ArcSwap::from_pointee(keys),
            last_load: Mutex::new(Instant::now()),
            last_forced: Mutex::new(None),
            refreshing: AtomicBool::new(false),
            loads_ok: AtomicU64::new(1),
            loads_failed: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            last_ok_unix: Default::default(),
        })
    }

    /// Loads the issuer's JWKS, or reuses `previous` when its settings are unchanged (then
    /// reloading, but keeping the old keys if that fails).
    pub async fn load(
        s: &IssuerSettings,
        previous: Option<&Arc<Self>>,
    ) -> Result<Arc<Self>, String> {
        if let Some(p) = previous.filter(|p| p.settings.as_ref() == Some(s)) {
            let _ = p.reload().await;
            return Ok(p.clone());
        }
        let source = match (&s.jwks_file, &s.jwks_url) {
            (Some(f), _) => Source::File(f.clone()),
            (None, Some(u)) => {
                Source::Url(u.clone(), Box::new(https_client(s.jwks_ca_file.as_ref())?))
            }
            (None, None) => return Err("no jwks_file or jwks_url".into()),
        };
        let this = Self {
            settings: Some(s.clone()),
            source,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_load: Mutex::new(Instant::now()),
            last_forced: Mutex::new(None),
            refreshing: AtomicBool::new(false),
            loads_ok: AtomicU64::new(0),
            loads_failed: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            last_ok_unix: Default::default(),
        };
        this.reload().await?;
        Ok(Arc::new(this))
    }

    async fn fetch(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            Source::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| format!("{}: {e}", p.display())),
            Source::Url(u, client) => {
                let uri: http::Uri = u.parse().map_err(|_| "bad url".to_string())?;
                let fut = async {
                    let resp = client.get(uri).await.map_err(|e| e.to_string())?;
                    if !resp.status().is_success() {
                        return Err(format!("status {}", resp.status()));
                    }
                    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES);
                    let b = body.collect().await.map_err(|e| e.to_string())?;
                    Ok(b.to_bytes().to_vec())
                };
                tokio::time::timeout(FETCH_TIMEOUT, fut)
                    .await
                    .map_err(|_| "timeout".to_string())?
            }
            Source::Static => Err("static".into()),
        }
    }

    /// Loads the JWKS now; on failure the previous keys stay.
    pub async fn reload(&self) -> Result<(), String> {
        if matches!(self.source, Source::Static) {
            return Ok(());
        }
        let res = self.fetch().await.and_then(|b| parse_jwks(&b));
        *self.last_load.lock() = Instant::now();
        match res {
            Ok(set) => {
                self.keys.store(Arc::new(set));
                self.loads_ok.fetch_add(1, Ordering::Relaxed);
                self.stale.store(false, Ordering::Relaxed);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                let now = now.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                self.last_ok_unix.store(now, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.loads_failed.fetch_add(1, Ordering::Relaxed);
                self.stale.store(true, Ordering::Relaxed);
                let issuer = self
                    .settings
                    .as_ref()
                    .map(|s| s.issuer.as_str())
                    .unwrap_or("");
                tracing::warn!(error = %e, issuer, "jwks load failed");
                Err(e)
            }
        }
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Finds the key for a token; an unknown `kid` triggers one bounded reload.
    pub async fn find(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: JwtAlgorithm,
    ) -> Option<Arc<VerifyKey>> {
        let Some(s) = &self.settings else {
            return self.keys.load().find(kid, alg);
        };
        if self.last_load.lock().elapsed() >= Duration::from_secs(s.jwks_refresh_secs)
            && !self.refreshing.swap(true, Ordering::AcqRel)
        {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.reload().await;
                me.refreshing.store(false, Ordering::Release);
            });
        }
        if let Some(k) = self.keys.load().find(kid, alg) {
            return Some(k);
        }
        kid?;
        let may = {
            let mut last = self.last_forced.lock();
            let min = Duration::from_secs(s.jwks_min_refresh_secs);
            if last.is_none_or(|t| t.elapsed() >= min) {
                *last = Some(Instant::now());
                true
            } else {
                false
            }
        };
        if !may {
            return None;
        }
        let _ = self.reload().await;
        self.keys.load().find(kid, alg)
    }
}

fn https_client(ca_file: Option<&PathBuf>) -> Result<HttpsClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject as _;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(cfg)
        }
        None => builder
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("system roots: {e}"))?,
    };
    let conn = builder.https_only().enable_http1().build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(conn),
    )
}

fn str_member<'a>(
    o: &'a serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<&'a str>, String> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{k} is not a string")),
    }
}

/// Parses a JWKS document strictly. Keys that cannot verify a JWS of an allowed algorithm
/// (symmetric `oct`, encryption keys, unknown curves) are skipped.
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    let v = strict_json::parse(bytes, 4).map_err(|e| format!("json: {e}"))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no keys array")?;
    let mut set = KeySet::default();
    for (i, k) in keys.iter().enumerate() {
        let o = k.as_object().ok_or(format!("keys[{i}] is not an object"))?;
        match parse_key(o) {
            Ok(Some(vk)) => match str_member(o, "kid")? {
                Some(kid) => {
                    if set.by_kid.insert(kid.to_owned(), Arc::new(vk)).is_some() {
                        return Err(format!("duplicate kid {kid:?}"));
                    }
                }
                None => set.unnamed.push(Arc::new(vk)),
            },
            Ok(None) => {}
            Err(e) => return Err(format!("keys[{i}]: {e}")),
        }
    }
    Ok(set)
}

fn b64_len(s: &str) -> Result<usize, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map(|v| v.len())
        .map_err(|_| "bad base64url".to_string())
}

fn parse_key(o: &serde_json::Map<String, Value>) -> Result<Option<VerifyKey>, String> {
    use JwtAlgorithm::*;
    if let Some(u) = str_member(o, "use")? {
        if u != "sig" {
            return Ok(None);
        }
    }
    let need = |k: &str| str_member(o, k)?.ok_or(format!("missing {k}"));
    let (mut algs, key) = match need("kty")? {
        "RSA" => {
            let (n, e) = (need("n")?, need("e")?);
            if b64_len(n)? < 256 {
                return Err("RSA modulus shorter than 2048 bits".into());
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|e| e.to_string())?;
            (vec![RS256, RS384, RS512, PS256, PS384, PS512], key)
        }
        "EC" => {
            let (x, y) = (need("x")?, need("y")?);
            let (alg, len) = match need("crv")? {
                "P-256" => (ES256, 32),
                "P-384" => (ES384, 48),
                _ => return Ok(None),
            };
            if b64_len(x)? != len || b64_len(y)? != len {
                return Err("bad EC coordinate length".into());
            }
            let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
            (vec![alg], key)
        }
        "OKP" => {
            if need("crv")? != "Ed25519" {
                return Ok(None);
            }
            let x = need("x")?;
            if b64_len(x)? != 32 {
                return Err("bad Ed25519 key length".into());
            }
            let key = DecodingKey::from_ed_components(x).map_err(|e| e.to_string())?;
            (vec![EdDSA], key)
        }
        _ => return Ok(None),
    };
    if let Some(a) = str_member(o, "alg")? {
        match JwtAlgorithm::from_name(a) {
            Some(a) if algs.contains(&a) => algs = vec![a],
            _ => return Ok(None),
        }
    }
    Ok(Some(VerifyKey {
        algorithms: algs,
        key,
    }))
}
