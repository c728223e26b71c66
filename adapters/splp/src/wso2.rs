//! What WSO2 API Manager answers, parsed: the OAuth2 token response of its `/oauth2/token`
//! endpoint and the fault bodies of its gateway. Both parsers take untrusted bytes, bound what
//! they keep, and never panic (`tests/fuzz` runs them on arbitrary input).
//!
//! Fault bodies come in the shapes WSO2 documents: JSON `{"fault":{"code":900902,"message":…,
//! "description":…}}` (code as a number or a string), the flat `{"code":"900901","message":…}`
//! seen from the national SPLP, and the XML `<ams:fault xmlns:ams="http://wso2.org/apimanager/security">`
//! with `<ams:code>`, `<ams:message>` and `<ams:description>` children.

use std::time::Duration;

/// The longest message or description kept from a fault (characters beyond are dropped).
const MAX_TEXT: usize = 200;
/// Fault bodies larger than this are not parsed.
pub const MAX_FAULT_BODY: usize = 16 * 1024;
/// Token responses larger than this are refused.
pub const MAX_TOKEN_BODY: usize = 64 * 1024;

/// A WSO2 fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The numeric WSO2 code (`900901`…).
    pub code: u32,
    /// Its message (`Invalid Credentials`), at most 200 characters.
    pub message: String,
}

/// The WSO2 codes the gateway tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultClass {
    /// `900901` Invalid Credentials: the peer refused the gateway's token or key.
    InvalidCredentials,
    /// `900902` Missing Credentials.
    MissingCredentials,
    /// `900900`, `900903`–`900905`, `900909`: another authentication failure at the peer.
    Authentication,
    /// `900906`–`900908`, `900910`: the peer forbids or does not know the resource.
    Forbidden,
    /// `900800`–`900807`: throttled by the peer.
    Throttled,
    /// `700700` API blocked, or any other code.
    Other,
}

impl Fault {
    /// The class of this fault's code.
    pub fn class(&self) -> FaultClass {
        match self.code {
            900901 => FaultClass::InvalidCredentials,
            900902 => FaultClass::MissingCredentials,
            900900 | 900903..=900905 | 900909 => FaultClass::Authentication,
            900906..=900908 | 900910 => FaultClass::Forbidden,
            900800..=900807 => FaultClass::Throttled,
            _ => FaultClass::Other,
        }
    }
}

fn clip(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect()
}

fn code_of(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses a WSO2 fault body (JSON or XML). `None` when the body is not one.
pub fn parse_fault(body: &[u8]) -> Option<Fault> {
    if body.len() > MAX_FAULT_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let fault = value.get("fault").unwrap_or(&value);
        let code = code_of(fault.get("code")?)?;
        let message = fault
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        return Some(Fault {
            code,
            message: clip(message),
        });
    }
    if text.starts_with('<') && text.contains("http://wso2.org/apimanager/security") {
        let code = xml_child(text, "code")?.trim().parse().ok()?;
        let message = xml_child(text, "message").unwrap_or_default();
        return Some(Fault {
            code,
            message: clip(message),
        });
    }
    None
}

/// The text of the first `<prefix:name>…</prefix:name>` (any prefix, or none).
fn xml_child<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let local = tag.rsplit(':').next().unwrap_or(tag);
        if local == name {
            let body = &rest[end + 1..];
            let close = body.find("</")?;
            return Some(&body[..close]);
        }
    }
    None
}

/// A token from the peer's token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Its lifetime (`expires_in`).
    pub expires_in: Duration,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why a token response was not usable. The messages never contain the body (it may hold a
/// token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not JSON, or larger than [`MAX_TOKEN_BODY`].
    NotJson,
    /// An OAuth2 error response (RFC 6749 §5.2): its `error` code.
    Refused(String),
    /// `access_token` is missing, empty, not a string, or not a visible ASCII string.
    NoToken,
    /// `token_type` is present and not `Bearer`.
    NotBearer,
    /// `expires_in` is missing, not a positive integer, or absurd (over a year).
    BadExpiry,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::NotJson => f.write_str("the token response is not a JSON object"),
            TokenError::Refused(code) => write!(f, "the token endpoint refused: {code}"),
            TokenError::NoToken => f.write_str("the token response has no usable access_token"),
            TokenError::NotBearer => f.write_str("the token response is not a Bearer token"),
            TokenError::BadExpiry => {
                f.write_str("the token response has no usable expires_in (1 s to 1 year)")
            }
        }
    }
}

/// Parses a token endpoint answer (RFC 6749 §5.1 and §5.2, as WSO2 sends it).
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, TokenError> {
    if body.len() > MAX_TOKEN_BODY {
        return Err(TokenError::NotJson);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| TokenError::NotJson)?;
    let object = value.as_object().ok_or(TokenError::NotJson)?;
    if let Some(error) = object.get("error") {
        let code = error.as_str().map(clip).unwrap_or_else(|| "error".into());
        return Err(TokenError::Refused(code));
    }
    let token = object
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(TokenError::NoToken)?;
    if let Some(kind) = object.get("token_type") {
        if !kind
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("bearer"))
        {
            return Err(TokenError::NotBearer);
        }
    }
    let seconds = object
        .get("expires_in")
        .and_then(code_like_u64)
        .filter(|s| (1..=365 * 24 * 3600).contains(s))
        .ok_or(TokenError::BadExpiry)?;
    Ok(TokenResponse {
        access_token: token.to_owned(),
        expires_in: Duration::from_secs(seconds),
    })
}

fn code_like_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `exp` claim (seconds since the epoch) of a JWT, read without verifying it: the gateway
/// holds its own API keys and only needs to know when they stop working.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_shapes() {
        let nested = br#"{"fault":{"code":900902,"message":"Missing Credentials","description":"Make sure your API invocation call has a header"}}"#;
        assert_eq!(
            parse_fault(nested),
            Some(Fault {
                code: 900902,
                message: "Missing Credentials".into()
            })
        );
        let flat = br#"{"code":"900901","message":"Invalid Credentials","description":"x"}"#;
        assert_eq!(
            parse_fault(flat).map(|f| f.class()),
            Some(FaultClass::InvalidCredentials)
        );
        let xml = br#"<ams:fault xmlns:ams="http://wso2.org/apimanager/security"><ams:code>900800</ams:code><ams:message>Message throttled out</ams:message></ams:fault>"#;
        assert_eq!(
            parse_fault(xml).map(|f| f.class()),
            Some(FaultClass::Throttled)
        );
        assert_eq!(parse_fault(b"{\"data\":1}"), None);
        assert_eq!(parse_fault(b"<html>no</html>"), None);
        assert_eq!(parse_fault(&[0xff, 0xfe]), None);
    }

    #[test]
    fn token_responses() {
        let ok = br#"{"access_token":"abc.def","scope":"default","token_type":"Bearer","expires_in":3600}"#;
        assert_eq!(
            parse_token_response(ok).map(|t| t.expires_in),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_token_response(br#"{"error":"invalid_client","error_description":"x"}"#),
            Err(TokenError::Refused("invalid_client".into()))
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"a","expires_in":0}"#),
            Err(TokenError::BadExpiry)
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"a b","expires_in":5}"#),
            Err(TokenError::NoToken)
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"a","token_type":"mac","expires_in":5}"#),
            Err(TokenError::NotBearer)
        );
        assert_eq!(parse_token_response(b"[]"), Err(TokenError::NotJson));
        // The debug form never shows the token.
        let token = parse_token_response(ok).expect("parses");
        assert!(!format!("{token:?}").contains("abc.def"));
    }

    #[test]
    fn api_key_expiry() {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwt = format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"RS256","kid":"gateway_certificate_alias"}"#),
            e.encode(br#"{"token_type":"apiKey","exp":1900000000}"#)
        );
        assert_eq!(jwt_expiry(&jwt), Some(1_900_000_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
    }
}
