//! Finds the request's one credential (stage 3): exactly one credential in exactly one place.

use http::{HeaderMap, Uri};

use super::jwt::MAX_TOKEN_BYTES;
use super::AuthError;

/// Query parameters and cookie names that would carry a credential outside a header.
const CREDENTIAL_NAMES: &[&str] = &[
    "access_token",
    "apikey",
    "api_key",
    "api-key",
    "token",
    "id_token",
    "jwt",
    "client_secret",
    "authorization",
    "bearer",
    "key",
];

/// The credential a request presents in its headers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `apikey: <key>` (WSO2).
    ApiKey(&'a str),
    /// No header credential.
    Nothing,
}

fn percent_decode_lower(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).trim().to_ascii_lowercase()
}

/// Extracts the credential, refusing ambiguity and credentials in the query or cookies.
pub(crate) fn presented<'a>(headers: &'a HeaderMap, uri: &Uri) -> Result<Presented<'a>, AuthError> {
    if let Some(q) = uri.query() {
        for pair in q.split('&') {
            let name = pair.split('=').next().unwrap_or("");
            if CREDENTIAL_NAMES.contains(&percent_decode_lower(name).as_str()) {
                return Err(AuthError::CredentialInQuery);
            }
        }
    }
    for c in headers.get_all(http::header::COOKIE) {
        let Ok(c) = c.to_str() else { continue };
        for kv in c.split(';') {
            let name = kv
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if CREDENTIAL_NAMES.contains(&name.as_str()) {
                return Err(AuthError::CredentialInCookie);
            }
        }
    }
    let mut auth = headers.get_all(http::header::AUTHORIZATION).iter();
    let mut keys = headers.get_all("apikey").iter();
    let (a1, a2, k1, k2) = (auth.next(), auth.next(), keys.next(), keys.next());
    if a2.is_some() || k2.is_some() || (a1.is_some() && k1.is_some()) {
        return Err(AuthError::AmbiguousCredentials);
    }
    if let Some(a) = a1 {
        if a.len() > MAX_TOKEN_BYTES + 7 {
            return Err(AuthError::CredentialTooLarge);
        }
        let a = a.to_str().map_err(|_| AuthError::MalformedCredential)?;
        let (scheme, token) = a.split_once(' ').ok_or(AuthError::MalformedCredential)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::MalformedCredential);
        }
        // RFC 6750 b64token, and no second token after a space.
        let ok = !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
        if !ok {
            return Err(AuthError::MalformedCredential);
        }
        return Ok(Presented::Bearer(token));
    }
    if let Some(k) = k1 {
        if k.len() > 512 {
            return Err(AuthError::CredentialTooLarge);
        }
        let k = k.to_str().map_err(|_| AuthError::MalformedCredential)?;
        if k.is_empty() || k.contains(' ') {
            return Err(AuthError::MalformedCredential);
        }
        return Ok(Presented::ApiKey(k));
    }
    Ok(Presented::Nothing)
}

/// Constant-time equality of two digests.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}
