//! Strict JWT validation (stage 3). The header and payload are parsed here with a
//! duplicate-rejecting, depth-limited parser and every claim is checked before and besides the
//! signature check, which `jsonwebtoken` does with the key from the issuer's JWKS.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwks::IssuerKeys;
use super::settings::JwtAlgorithm;
use super::strict_json;

/// Largest token accepted (bytes); larger ones are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_HEADER_DEPTH: usize = 2;
const MAX_PAYLOAD_DEPTH: usize = 5;
const EMBEDDED_KEY_MEMBERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// A trusted issuer, compiled.
pub(crate) struct Issuer {
    pub name: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwtAlgorithm>,
    pub max_lifetime_secs: u64,
    pub leeway_secs: u64,
    pub typ: Option<String>,
    pub keys: Arc<IssuerKeys>,
    /// Whether this is the gateway's own token endpoint.
    pub gateway: bool,
}

/// The facts of a verified token the gateway uses.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub issuer: String,
    pub sub: String,
    pub exp: u64,
    pub kid: Option<String>,
    pub gateway: bool,
    /// Hex SHA-256 of `iss|sub|jti`, the credential fingerprint in evidence records (computed
    /// once per token, not once per request).
    pub fingerprint: String,
}

fn to_jwt_alg(a: JwtAlgorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as A;
    match a {
        JwtAlgorithm::RS256 => A::RS256,
        JwtAlgorithm::RS384 => A::RS384,
        JwtAlgorithm::RS512 => A::RS512,
        JwtAlgorithm::PS256 => A::PS256,
        JwtAlgorithm::PS384 => A::PS384,
        JwtAlgorithm::PS512 => A::PS512,
        JwtAlgorithm::ES256 => A::ES256,
        JwtAlgorithm::ES384 => A::ES384,
        JwtAlgorithm::EdDSA => A::EdDSA,
    }
}

fn b64_part(s: &str) -> Result<Vec<u8>, &'static str> {
    // The URL-safe alphabet without padding, and nothing else.
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("jwt_malformed");
    }
    URL_SAFE_NO_PAD.decode(s).map_err(|_| "jwt_malformed")
}

fn valid_kid(k: &str) -> bool {
    (1..=128).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(&b))
}

fn typ_ok(got: Option<&str>, want: Option<&str>) -> bool {
    let norm = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(l)
    };
    match (got.map(norm), want.map(norm)) {
        (Some(g), Some(w)) => g == w,
        (None, Some(_)) => false,
        (None, None) => true,
        (Some(g), None) => g == "jwt" || g == "at+jwt",
    }
}

/// A NumericDate claim: absent, or a finite non-negative number (fractions truncated).
fn numeric(o: &Map<String, Value>, k: &str) -> Result<Option<u64>, &'static str> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else {
                match n.as_f64() {
                    Some(f) if (0.0..1e15).contains(&f) => Ok(Some(f as u64)),
                    _ => Err("jwt_claim_invalid"),
                }
            }
        }
        Some(_) => Err("jwt_claim_invalid"),
    }
}

struct Parsed<'t> {
    alg: JwtAlgorithm,
    kid: Option<String>,
    typ: Option<String>,
    claims: Map<String, Value>,
    message: &'t str,
    signature: &'t str,
}

fn parse(token: &str) -> Result<Parsed<'_>, &'static str> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("jwt_too_large");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("jwt_malformed");
    };
    let header =
        strict_json::parse(&b64_part(h)?, MAX_HEADER_DEPTH).map_err(|_| "jwt_header_invalid")?;
    let Value::Object(header) = header else {
        return Err("jwt_header_invalid");
    };
    if EMBEDDED_KEY_MEMBERS.iter().any(|m| header.contains_key(*m)) {
        return Err("jwt_embedded_key_refused");
    }
    if header.contains_key("crit") {
        // No JWS extension is understood, so any critical one must be refused (RFC 7515 §4.1.11).
        return Err("jwt_crit_unsupported");
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => JwtAlgorithm::from_name(a).ok_or("jwt_alg_not_allowed")?,
        _ => return Err("jwt_header_invalid"),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if valid_kid(k) => Some(k.clone()),
        Some(_) => return Err("jwt_kid_invalid"),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err("jwt_header_invalid"),
    };
    let payload =
        strict_json::parse(&b64_part(p)?, MAX_PAYLOAD_DEPTH).map_err(|_| "jwt_payload_invalid")?;
    let Value::Object(claims) = payload else {
        return Err("jwt_payload_invalid");
    };
    if s.is_empty() {
        return Err("jwt_signature_invalid");
    }
    b64_part(s).map_err(|_| "jwt_signature_invalid")?;
    let message = token.get(..h.len() + 1 + p.len()).ok_or("jwt_malformed")?;
    Ok(Parsed {
        alg,
        kid,
        typ,
        claims,
        message,
        signature: s,
    })
}

fn check_claims(c: &Map<String, Value>, iss: &Issuer, now: u64) -> Result<Verified, &'static str> {
    let leeway = iss.leeway_secs;
    let exp = numeric(c, "exp")?.ok_or("jwt_claim_missing")?;
    let nbf = numeric(c, "nbf")?;
    let iat = numeric(c, "iat")?;
    if exp.saturating_add(leeway) <= now {
        return Err("jwt_expired");
    }
    if nbf.is_some_and(|n| n > now.saturating_add(leeway)) {
        return Err("jwt_not_yet_valid");
    }
    if iat.is_some_and(|i| i > now.saturating_add(leeway)) {
        return Err("jwt_issued_in_future");
    }
    let start = iat.or(nbf).unwrap_or(now);
    if exp < start || exp - start > iss.max_lifetime_secs {
        return Err("jwt_lifetime_too_long");
    }
    let aud_ok = match c.get("aud") {
        None => return Err("jwt_claim_missing"),
        Some(Value::String(a)) => iss.audiences.contains(a),
        Some(Value::Array(list)) if !list.is_empty() => {
            let mut ok = false;
            for a in list {
                let a = a.as_str().ok_or("jwt_claim_invalid")?;
                ok |= iss.audiences.iter().any(|w| w == a);
            }
            ok
        }
        Some(_) => return Err("jwt_claim_invalid"),
    };
    if !aud_ok {
        return Err("jwt_audience_mismatch");
    }
    let sub = match c.get("sub") {
        None => return Err("jwt_claim_missing"),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
        Some(_) => return Err("jwt_claim_invalid"),
    };
    // `jti`, when present, is part of the fingerprint.
    let jti = match c.get("jti") {
        None => None,
        Some(Value::String(j)) if j.len() <= 256 => Some(j.as_str()),
        Some(_) => return Err("jwt_claim_invalid"),
    };
    let fingerprint = {
        use sha2::Digest as _;
        let text = format!("{}|{}|{}", iss.name, sub, jti.unwrap_or(""));
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    };
    Ok(Verified {
        issuer: iss.name.clone(),
        sub,
        exp,
        kid: None,
        gateway: iss.gateway,
        fingerprint,
    })
}

/// Validates `token` against the trusted issuers at `now` (Unix seconds).
pub(crate) async fn verify(
    token: &str,
    issuers: &HashMap<String, Issuer>,
    now: u64,
) -> Result<Verified, &'static str> {
    let p = parse(token)?;
    let iss_name = match p.claims.get("iss") {
        None => return Err("jwt_claim_missing"),
        Some(Value::String(s)) => s,
        Some(_) => return Err("jwt_claim_invalid"),
    };
    let iss = issuers.get(iss_name).ok_or("jwt_issuer_unknown")?;
    if !iss.algorithms.contains(&p.alg) {
        return Err("jwt_alg_not_allowed");
    }
    if !typ_ok(p.typ.as_deref(), iss.typ.as_deref()) {
        return Err("jwt_typ_invalid");
    }
    let mut v = check_claims(&p.claims, iss, now)?;
    let key = iss
        .keys
        .find(p.kid.as_deref(), p.alg)
        .await
        .ok_or("jwt_key_unknown")?;
    if !key.algorithms.contains(&p.alg) {
        return Err("jwt_alg_not_allowed");
    }
    match jsonwebtoken::crypto::verify(
        p.signature,
        p.message.as_bytes(),
        &key.key,
        to_jwt_alg(p.alg),
    ) {
        Ok(true) => {}
        _ => return Err("jwt_signature_invalid"),
    }
    v.kid = p.kid;
    Ok(v)
}

type Shard = Mutex<HashMap<[u8; 32], (Arc<Verified>, u64)>>;

/// Verified tokens by SHA-256 of the token, until they expire; bounded, sharded.
pub(crate) struct TokenCache {
    shards: Vec<Shard>,
    per_shard: usize,
}

const SHARDS: usize = 16;

impl TokenCache {
    /// A cache of about `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    /// Digest under which `token` is cached.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn shard(&self, k: &[u8; 32]) -> Option<&Shard> {
        self.shards.get(usize::from(k[0]) % SHARDS)
    }

    /// A still-valid entry.
    pub fn get(&self, k: &[u8; 32], now: u64) -> Option<Arc<Verified>> {
        let shard = self.shard(k)?;
        let mut m = shard.lock();
        match m.get(k) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                m.remove(k);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token until `until` (Unix seconds).
    pub fn put(&self, k: [u8; 32], v: Arc<Verified>, until: u64, now: u64) {
        if self.per_shard == 0 {
            return;
        }
        let Some(shard) = self.shard(&k) else { return };
        let mut m = shard.lock();
        if m.len() >= self.per_shard {
            m.retain(|_, (_, u)| *u > now);
        }
        if m.len() < self.per_shard {
            m.insert(k, (v, until));
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::typ_ok;

    #[test]
    fn typ_rules() {
        assert!(typ_ok(None, None));
        assert!(typ_ok(Some("JWT"), None));
        assert!(typ_ok(Some("application/at+JWT"), Some("at+jwt")));
        assert!(!typ_ok(Some("dpop+jwt"), None));
        assert!(!typ_ok(None, Some("at+jwt")));
    }
}
