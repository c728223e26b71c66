//! SOAP upstreams for Penghubung (upstream `kind = "soap"`).
//!
//! The gateway calls [`Soap::prepare`] once the request body is read and before the request
//! record is written: it reads the envelope with the hardened reader ([`xml`]), names the
//! operation ([`envelope`]), or builds the envelope of a mediated JSON call ([`mediation`]).
//! The operation is then authorised against the grant's *cakupan* and recorded, and the
//! [`Prepared`] call travels to [`SoapAdapter`] in the request's extensions. The adapter adds
//! the WS-Security UsernameToken ([`wsse`]), serves the rewritten WSDL ([`wsdl`]) and maps
//! mediated answers back to JSON. Refusals on SOAP routes are SOAP faults of the request's
//! version ([`envelope::fault`]).

pub mod adapter;
pub mod envelope;
pub mod mediation;
pub mod wsdl;
pub mod wsse;
pub mod xml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use adapter::{SoapAdapter, SoapOutcome};
pub use envelope::{Envelope, SoapError, Version};
use mediation::{ElementPath, Template};

/// The `soap` table of an upstream of kind `soap`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SoapSettings {
    /// The URL clients use for this service through the gateway. `?wsdl` is served (the back
    /// end's WSDL with its endpoint addresses rewritten to this URL) only when it is set.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest envelope or WSDL in bytes (default 1 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Deepest element nesting (default 32).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Most attributes on one element (default 32).
    #[serde(default = "default_max_attributes")]
    pub max_attributes: usize,
    /// WS-Security UsernameToken added to every request toward the back end.
    #[serde(default)]
    pub username_token: Option<UsernameTokenSettings>,
    /// Operations offered to REST clients as JSON (see [`mediation`]).
    #[serde(default)]
    pub mediate: Vec<MediationSettings>,
}

impl Default for SoapSettings {
    /// The same defaults as an empty `soap` table.
    fn default() -> SoapSettings {
        SoapSettings {
            public_url: None,
            max_bytes: default_max_bytes(),
            max_depth: default_max_depth(),
            max_attributes: default_max_attributes(),
            username_token: None,
            mediate: Vec::new(),
        }
    }
}

fn default_max_bytes() -> usize {
    1024 * 1024
}
fn default_max_depth() -> usize {
    32
}
fn default_max_attributes() -> usize {
    32
}

/// Where the UsernameToken comes from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsernameTokenSettings {
    /// User name sent to the back end.
    pub username: String,
    /// File holding the password (one trailing newline is removed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// One mediated operation: `POST <path>` with a JSON object becomes a SOAP call.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MediationSettings {
    /// The gateway path (canonical, exact) REST clients post JSON to.
    pub path: String,
    /// The operation called (the local name of the template's element).
    pub operation: String,
    /// `1.1` (default) or `1.2`.
    #[serde(default = "default_version")]
    pub version: String,
    /// The back end's path for SOAP calls.
    pub endpoint: String,
    /// The action sent (`SOAPAction` for 1.1, the `action` parameter for 1.2); empty for none.
    #[serde(default)]
    pub action: String,
    /// The body element, with `{{field}}` placeholders.
    pub request: String,
    /// Response mapping: JSON field → element path below `Body`.
    #[serde(default)]
    pub response: BTreeMap<String, String>,
}

fn default_version() -> String {
    "1.1".into()
}

/// A compiled mediated operation.
#[derive(Debug)]
pub struct Mediation {
    /// The gateway path.
    pub path: String,
    /// Operation name.
    pub operation: String,
    /// SOAP version toward the back end.
    pub version: Version,
    /// Back-end path.
    pub endpoint: String,
    /// Declared action.
    pub action: String,
    template: Template,
    response: Vec<(String, ElementPath)>,
}

/// A SOAP service's compiled settings: what the pipeline needs to prepare calls.
#[derive(Debug)]
pub struct Soap {
    /// Limits of the hardened reader.
    pub limits: xml::Limits,
    /// Public URL for the WSDL.
    pub public_url: Option<String>,
    /// Whether the gateway adds a UsernameToken (so clients may not send their own).
    pub injects_security: bool,
    /// Mediated operations.
    pub mediations: Vec<Arc<Mediation>>,
}

/// What [`Soap::prepare`] found: recorded in evidence, authorised, and handed to the adapter in
/// the request's extensions.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// SOAP version of the call (none for WSDL requests).
    pub version: Option<Version>,
    /// Operation name (empty for WSDL requests).
    pub operation: String,
    /// The action the client declared, or the mediation's.
    pub action: String,
    /// What the adapter does.
    pub kind: PreparedKind,
}

/// The three kinds of request a SOAP service answers.
#[derive(Debug, Clone)]
pub enum PreparedKind {
    /// A SOAP envelope passed on.
    Call,
    /// `GET ?wsdl` (the query exactly `wsdl`, any case).
    Wsdl,
    /// A JSON call turned into this envelope (before WS-Security is added).
    Mediated {
        /// The operation's settings.
        mediation: Arc<Mediation>,
        /// The envelope the gateway built.
        envelope: Bytes,
    },
}

impl Soap {
    /// Compiles and checks the settings; every problem as `(key path, message)`.
    pub fn compile(settings: &SoapSettings) -> Result<Soap, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let limits = xml::Limits {
            max_bytes: settings.max_bytes,
            max_depth: settings.max_depth,
            max_attributes: settings.max_attributes,
            ..xml::Limits::default()
        };
        if settings.max_bytes == 0 || settings.max_depth < 4 {
            problems.push((
                "max_bytes".into(),
                "max_bytes must be positive and max_depth at least 4".into(),
            ));
        }
        if let Some(url) = &settings.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(("public_url".into(), "must be an http(s) URL".into()));
            }
        }
        if let Some(t) = &settings.username_token {
            if t.password_file.is_some() == t.password_env.is_some() {
                problems.push((
                    "username_token".into(),
                    "give exactly one of password_file and password_env".into(),
                ));
            }
        }
        let mut mediations = Vec::new();
        for (i, m) in settings.mediate.iter().enumerate() {
            let at = |k: &str| format!("mediate[{i}].{k}");
            let version = match m.version.as_str() {
                "1.1" => Version::V11,
                "1.2" => Version::V12,
                _ => {
                    problems.push((at("version"), "must be \"1.1\" or \"1.2\"".into()));
                    Version::V11
                }
            };
            if !m.path.starts_with('/') || !m.endpoint.starts_with('/') {
                problems.push((at("path"), "path and endpoint must start with `/`".into()));
            }
            if settings.mediate[..i].iter().any(|o| o.path == m.path) {
                problems.push((at("path"), format!("{:?} is mediated twice", m.path)));
            }
            if m.action.chars().any(|c| c.is_control() || c == '"') {
                problems.push((at("action"), "no quotes or control characters".into()));
            }
            let template = match Template::parse(&m.request, &m.operation, &limits) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push((at("request"), e));
                    None
                }
            };
            let mut response = Vec::new();
            for (field, path) in &m.response {
                match ElementPath::parse(path) {
                    Ok(p) => response.push((field.clone(), p)),
                    Err(e) => problems.push((at(&format!("response.{field}")), e)),
                }
            }
            if let Some(template) = template {
                mediations.push(Arc::new(Mediation {
                    path: m.path.clone(),
                    operation: m.operation.clone(),
                    version,
                    endpoint: m.endpoint.clone(),
                    action: m.action.clone(),
                    template,
                    response,
                }));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Soap {
            limits,
            public_url: settings.public_url.clone(),
            injects_security: settings.username_token.is_some(),
            mediations,
        })
    }

    /// Reads a request (method, canonical gateway path, query, head and buffered body) into
    /// the call it makes, or refuses it. `body` is `None` when the route streams bodies (which
    /// a SOAP service refuses: an envelope must be checked whole before it is forwarded).
    pub fn prepare(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<Prepared, SoapError> {
        if let Some(m) = self.mediations.iter().find(|m| m.path == path) {
            if method != http::Method::POST {
                return Err(SoapError::NotACall);
            }
            let body = body.ok_or(SoapError::NotACall)?;
            let input: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| SoapError::Mediation(format!("the body is not JSON: {e}")))?;
            if !input.is_object() {
                return Err(SoapError::Mediation(
                    "the body must be a JSON object".into(),
                ));
            }
            let element = m.template.render(&input).map_err(SoapError::Mediation)?;
            let envelope = mediation::envelope(m.version, &element);
            // The filled envelope goes through the same reader as a client's would.
            let read = Envelope::read(envelope.as_bytes(), m.version, &self.limits)?;
            if read.operation != m.operation {
                return Err(SoapError::BodyAmbiguous);
            }
            return Ok(Prepared {
                version: Some(m.version),
                operation: m.operation.clone(),
                action: m.action.clone(),
                kind: PreparedKind::Mediated {
                    mediation: m.clone(),
                    envelope: Bytes::from(envelope),
                },
            });
        }
        if method == http::Method::GET && query.is_some_and(|q| q.eq_ignore_ascii_case("wsdl")) {
            if self.public_url.is_none() {
                return Err(SoapError::NoWsdl);
            }
            return Ok(Prepared {
                version: None,
                operation: String::new(),
                action: String::new(),
                kind: PreparedKind::Wsdl,
            });
        }
        if method != http::Method::POST {
            return Err(SoapError::NotACall);
        }
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .ok_or(SoapError::ContentType)?;
        let (version, param_action) =
            Version::from_content_type(content_type).ok_or(SoapError::ContentType)?;
        let body = body.ok_or(SoapError::NotACall)?;
        let envelope = Envelope::read(body, version, &self.limits)?;
        let header_action = match headers.get("soapaction") {
            Some(v) => Some(
                v.to_str()
                    .map(|s| s.trim().trim_matches('"').to_owned())
                    .map_err(|_| SoapError::ActionMismatch {
                        action: String::new(),
                        operation: envelope.operation.clone(),
                    })?,
            ),
            None => None,
        };
        // Both declarations are checked whatever the version: a back end may dispatch on
        // either, so neither may name another operation than the body.
        for declared in [&header_action, &param_action].into_iter().flatten() {
            envelope::check_action(declared, &envelope.operation)?;
        }
        let action = match version {
            Version::V11 => header_action.or(param_action),
            Version::V12 => param_action.or(header_action),
        }
        .unwrap_or_default();
        if self.injects_security && envelope.has_security_header() {
            return Err(SoapError::ClientSecurity);
        }
        Ok(Prepared {
            version: Some(version),
            operation: envelope.operation,
            action,
            kind: PreparedKind::Call,
        })
    }
}

/// The version of the fault a refusal on a SOAP route is written in, from the request's
/// `Content-Type` (none for requests that are not SOAP envelopes: those get problem+json).
pub fn fault_version(headers: &http::HeaderMap) -> Option<Version> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Version::from_content_type)
        .map(|(v, _)| v)
}
