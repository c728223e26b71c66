//! SOAP 1.1 and 1.2 envelopes: the version a request speaks, the operation it calls, and the
//! faults the gateway answers with.
//!
//! **Which operation a request calls.** The operation is the local name of the first (and only)
//! element inside `Body`, read with the hardened reader ([`crate::xml`]): that is what every
//! document/literal and RPC stack dispatches on. The action a client declares — the
//! `SOAPAction` header (1.1) or the `action` parameter of `application/soap+xml` (1.2) — is not
//! trusted on its own: some stacks (ASP.NET ASMX, for one) dispatch on it instead of the body,
//! so a request whose action names another operation than its body would be authorised for one
//! and executed as the other. Whenever an action is declared (either way, whatever the version)
//! and not empty, its last segment (after the last `/`, `#` or `:`) must therefore equal the
//! body's operation, or the request is refused (`soap_action_mismatch`). A body with more than one element is refused too
//! (`soap_body_ambiguous`).

use crate::xml::{self, Element, Limits, XmlError};

/// SOAP 1.1 envelope namespace.
pub const NS_11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const NS_12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Security (OASIS 2004) namespace.
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

/// A SOAP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// SOAP 1.1: `text/xml`, `SOAPAction` header.
    V11,
    /// SOAP 1.2: `application/soap+xml`, `action` parameter.
    V12,
}

impl Version {
    /// The envelope namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            Version::V11 => NS_11,
            Version::V12 => NS_12,
        }
    }

    /// The media type of envelopes of this version.
    pub fn media_type(self) -> &'static str {
        match self {
            Version::V11 => "text/xml",
            Version::V12 => "application/soap+xml",
        }
    }

    /// `11` or `12`, as recorded in evidence.
    pub fn number(self) -> u32 {
        match self {
            Version::V11 => 11,
            Version::V12 => 12,
        }
    }

    /// The version a request's `Content-Type` names, with the 1.2 `action` parameter.
    pub fn from_content_type(value: &str) -> Option<(Version, Option<String>)> {
        let mut parts = value.split(';');
        let media = parts.next()?.trim().to_ascii_lowercase();
        let version = match media.as_str() {
            "text/xml" => Version::V11,
            "application/soap+xml" => Version::V12,
            _ => return None,
        };
        let action = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("action")
                .then(|| v.trim().trim_matches('"').to_owned())
        });
        Some((version, action))
    }
}

/// Why a SOAP request is refused before anything is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// Hostile or malformed XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Neither `text/xml` nor `application/soap+xml`.
    #[error("not a SOAP media type")]
    ContentType,
    /// The root is not a SOAP `Envelope` of the version the media type names.
    #[error("not a SOAP {0:?} envelope")]
    NotEnvelope(Version),
    /// No `Body`, or something else than `Header` and `Body` in the envelope.
    #[error("envelope structure: {0}")]
    Structure(&'static str),
    /// No element, or more than one, inside `Body`.
    #[error("the body must hold exactly one element")]
    BodyAmbiguous,
    /// The declared action names another operation than the body.
    #[error("the declared action {action:?} does not name the operation {operation:?}")]
    ActionMismatch {
        /// Declared action.
        action: String,
        /// The body's operation.
        operation: String,
    },
    /// The client sent its own `wsse:Security` header to a back end that gets the gateway's.
    #[error("the client may not send a WS-Security header to this service")]
    ClientSecurity,
    /// A request that is no SOAP call, WSDL request or mediated call.
    #[error("not a SOAP call")]
    NotACall,
    /// WSDL asked for, but no `public_url` is configured.
    #[error("no WSDL is served for this service")]
    NoWsdl,
    /// The JSON of a mediated call could not fill the request template.
    #[error("mediation: {0}")]
    Mediation(String),
}

impl SoapError {
    /// Stable reason class.
    pub fn reason(&self) -> &'static str {
        match self {
            SoapError::Xml(e) => e.reason(),
            SoapError::ContentType => "soap_content_type",
            SoapError::NotEnvelope(_) => "soap_not_envelope",
            SoapError::Structure(_) => "soap_envelope_structure",
            SoapError::BodyAmbiguous => "soap_body_ambiguous",
            SoapError::ActionMismatch { .. } => "soap_action_mismatch",
            SoapError::ClientSecurity => "soap_client_security",
            SoapError::NotACall => "soap_not_a_call",
            SoapError::NoWsdl => "soap_no_wsdl",
            SoapError::Mediation(_) => "soap_mediation_input",
        }
    }

    /// HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            SoapError::Xml(XmlError::TooLarge(_)) => 413,
            SoapError::ContentType => 415,
            SoapError::NoWsdl => 404,
            SoapError::NotACall => 405,
            SoapError::Mediation(_) => 422,
            _ => 400,
        }
    }
}

/// What a SOAP envelope says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Version (from the envelope's namespace).
    pub version: Version,
    /// Local name of the body's element.
    pub operation: String,
    /// Its namespace.
    pub operation_namespace: String,
    /// The parsed document.
    pub root: Element,
}

impl Envelope {
    /// Reads an envelope of `version` under `limits`.
    pub fn read(bytes: &[u8], version: Version, limits: &Limits) -> Result<Envelope, SoapError> {
        let root = xml::parse(bytes, limits)?;
        if root.local != "Envelope" || root.namespace != version.namespace() {
            return Err(SoapError::NotEnvelope(version));
        }
        let mut body = None;
        for (i, child) in root.children.iter().enumerate() {
            if child.namespace != version.namespace() {
                return Err(SoapError::Structure("unknown element in the envelope"));
            }
            match (child.local.as_str(), i, body.is_some()) {
                ("Header", 0, false) => {}
                ("Body", _, false) => body = Some(child),
                _ => return Err(SoapError::Structure("only Header then Body")),
            }
        }
        let body = body.ok_or(SoapError::Structure("no Body"))?;
        let [operation] = body.children.as_slice() else {
            return Err(SoapError::BodyAmbiguous);
        };
        let (operation, operation_namespace) =
            (operation.local.clone(), operation.namespace.clone());
        Ok(Envelope {
            version,
            operation,
            operation_namespace,
            root,
        })
    }

    /// The `Header` element, when there is one.
    pub fn header(&self) -> Option<&Element> {
        self.root.children.iter().find(|c| c.local == "Header")
    }

    /// The `Body` element.
    pub fn body(&self) -> Option<&Element> {
        self.root.children.iter().find(|c| c.local == "Body")
    }

    /// Whether the header holds a `wsse:Security` element.
    pub fn has_security_header(&self) -> bool {
        self.header().is_some_and(|h| {
            h.children
                .iter()
                .any(|c| c.local == "Security" && c.namespace.contains("wss"))
        })
    }

    /// The fault in the body, when the envelope is one: `(code, reason)`.
    pub fn fault(&self) -> Option<(String, String)> {
        let fault = self.body()?.children.first()?;
        if fault.local != "Fault" || fault.namespace != self.version.namespace() {
            return None;
        }
        match self.version {
            Version::V11 => Some((
                fault.child("faultcode").map(|c| c.text.trim().to_owned())?,
                fault
                    .child("faultstring")
                    .map(|c| c.text.trim().to_owned())
                    .unwrap_or_default(),
            )),
            Version::V12 => Some((
                fault
                    .child("Code")
                    .and_then(|c| c.child("Value"))
                    .map(|c| c.text.trim().to_owned())?,
                fault
                    .child("Reason")
                    .and_then(|r| r.child("Text"))
                    .map(|c| c.text.trim().to_owned())
                    .unwrap_or_default(),
            )),
        }
    }
}

/// Checks a declared action (the `SOAPAction` header or the 1.2 `action` parameter) against the
/// body's operation: its last segment must be the operation's name.
pub fn check_action(action: &str, operation: &str) -> Result<(), SoapError> {
    let action = action.trim().trim_matches('"');
    if action.is_empty() {
        return Ok(());
    }
    let last = action.rsplit(['/', '#', ':']).next().unwrap_or(action);
    if last == operation {
        Ok(())
    } else {
        Err(SoapError::ActionMismatch {
            action: action.chars().take(256).collect(),
            operation: operation.to_owned(),
        })
    }
}

/// Whose fault a refusal is (SOAP 1.1 `Client`/`Server`, 1.2 `Sender`/`Receiver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// The request was wrong (or not allowed).
    Sender,
    /// The gateway or the back end failed.
    Receiver,
}

/// A SOAP fault envelope of `version`: the code, a reason text and the gateway's reason class
/// and exchange id in the detail. Returns `(content type, body)`.
pub fn fault(
    version: Version,
    code: FaultCode,
    reason_text: &str,
    reason_class: &str,
    exchange_id: &str,
) -> (&'static str, String) {
    let detail = format!(
        "<pg:reason xmlns:pg=\"urn:penghubung:fault\">{}</pg:reason><pg:exchange_id xmlns:pg=\"urn:penghubung:fault\">{}</pg:exchange_id>",
        xml::escape(reason_class),
        xml::escape(exchange_id)
    );
    let text = xml::escape(reason_text);
    match version {
        Version::V11 => {
            let code = match code {
                FaultCode::Sender => "soap:Client",
                FaultCode::Receiver => "soap:Server",
            };
            (
                "text/xml; charset=utf-8",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{NS_11}\"><soap:Body><soap:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring><detail>{detail}</detail></soap:Fault></soap:Body></soap:Envelope>"
                ),
            )
        }
        Version::V12 => {
            let code = match code {
                FaultCode::Sender => "env:Sender",
                FaultCode::Receiver => "env:Receiver",
            };
            (
                "application/soap+xml; charset=utf-8",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><env:Envelope xmlns:env=\"{NS_12}\"><env:Body><env:Fault><env:Code><env:Value>{code}</env:Value></env:Code><env:Reason><env:Text xml:lang=\"en\">{text}</env:Text></env:Reason><env:Detail>{detail}</env:Detail></env:Fault></env:Body></env:Envelope>"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(version: Version, header: &str, body: &str) -> String {
        format!(
            "<e:Envelope xmlns:e=\"{}\">{header}<e:Body>{body}</e:Body></e:Envelope>",
            version.namespace()
        )
    }

    #[test]
    fn operation_and_version() {
        let doc = env(
            Version::V12,
            "<e:Header/>",
            "<m:GetPegawai xmlns:m=\"urn:simpeg\"><nip>1</nip></m:GetPegawai>",
        );
        let e = Envelope::read(doc.as_bytes(), Version::V12, &Limits::default()).expect("reads");
        assert_eq!(
            (e.operation.as_str(), e.operation_namespace.as_str()),
            ("GetPegawai", "urn:simpeg")
        );
        let wrong = Envelope::read(doc.as_bytes(), Version::V11, &Limits::default());
        assert_eq!(wrong, Err(SoapError::NotEnvelope(Version::V11)));
        let two = env(Version::V11, "", "<a/><b/>");
        assert_eq!(
            Envelope::read(two.as_bytes(), Version::V11, &Limits::default()),
            Err(SoapError::BodyAmbiguous)
        );
        let none = format!("<e:Envelope xmlns:e=\"{NS_11}\"><e:Header/></e:Envelope>");
        assert!(matches!(
            Envelope::read(none.as_bytes(), Version::V11, &Limits::default()),
            Err(SoapError::Structure(_))
        ));
    }

    #[test]
    fn content_type_and_action() {
        assert_eq!(
            Version::from_content_type("text/xml; charset=utf-8"),
            Some((Version::V11, None))
        );
        assert_eq!(
            Version::from_content_type("application/soap+xml;charset=utf-8;action=\"urn:x#Get\""),
            Some((Version::V12, Some("urn:x#Get".into())))
        );
        assert_eq!(Version::from_content_type("application/json"), None);
        assert!(check_action("\"http://tempuri.org/GetPegawai\"", "GetPegawai").is_ok());
        assert!(check_action("urn:simpeg:GetPegawai", "GetPegawai").is_ok());
        assert!(check_action("\"\"", "GetPegawai").is_ok());
        assert!(check_action("http://tempuri.org/DeletePegawai", "GetPegawai").is_err());
    }

    #[test]
    fn faults_are_envelopes_of_their_version() {
        for version in [Version::V11, Version::V12] {
            let (ct, body) = fault(
                version,
                FaultCode::Sender,
                "Forbidden <x>",
                "grant_outside_cakupan",
                "ex-1",
            );
            assert!(ct.starts_with(version.media_type()));
            let e = Envelope::read(body.as_bytes(), version, &Limits::default())
                .expect("a fault is an envelope");
            let (code, text) = e.fault().expect("is a fault");
            assert!(
                code.ends_with("Client") || code.ends_with("Sender"),
                "{code}"
            );
            assert_eq!(text, "Forbidden <x>");
        }
    }
}
