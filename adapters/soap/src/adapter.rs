//! [`SoapAdapter`]: stage 7 for upstreams of kind `soap`, on top of the group's HTTP transport.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use penghubung_adapter::{
    full, Adapter, AdapterError, AdapterFuture, Body, GatewayRequest, GatewayResponse, RequestBody,
};
use sha2::{Digest, Sha256};

use crate::envelope::{Envelope, Version};
use crate::mediation;
use crate::wsse::UsernameToken;
use crate::{wsdl, Prepared, PreparedKind, Soap};

/// What a SOAP exchange adds to its `outcome` evidence record; the adapter puts it in the
/// response's extensions when it read the back end's answer (mediated calls, WSDL, and calls
/// with a UsernameToken, whose answers are checked for the password).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoapOutcome {
    /// The fault code of a fault answer (`soap:Client`, `env:Receiver`…), empty otherwise.
    pub fault_code: String,
    /// SHA-256 of the back end's body as received, when the client got another one (mediated
    /// JSON, rewritten WSDL).
    pub upstream_sha256: Vec<u8>,
}

/// Serves one upstream group of kind `soap`.
pub struct SoapAdapter {
    inner: Arc<dyn Adapter>,
    soap: Arc<Soap>,
    token: Option<UsernameToken>,
    name: String,
}

impl SoapAdapter {
    /// An adapter over `inner` (the group's HTTP transport).
    pub fn new(
        name: &str,
        inner: Arc<dyn Adapter>,
        soap: Arc<Soap>,
        token: Option<UsernameToken>,
    ) -> SoapAdapter {
        SoapAdapter {
            inner,
            soap,
            token,
            name: name.to_owned(),
        }
    }

    async fn read(&self, body: Body) -> Result<Bytes, AdapterError> {
        let mut body = body;
        let mut out = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| AdapterError::BadResponse(format!("SOAP answer: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > self.soap.limits.max_bytes {
                    return Err(AdapterError::BadResponse(format!(
                        "SOAP answer larger than {} bytes",
                        self.soap.limits.max_bytes
                    )));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out.freeze())
    }

    fn secure(&self, envelope: &[u8], version: Version) -> Result<Bytes, AdapterError> {
        let Some(token) = &self.token else {
            return Ok(Bytes::copy_from_slice(envelope));
        };
        let read = Envelope::read(envelope, version, &self.soap.limits)
            .map_err(|e| AdapterError::Request(e.to_string()))?;
        Ok(Bytes::from(token.inject(envelope, &read)))
    }

    fn leaks(&self, body: &[u8]) -> Result<(), AdapterError> {
        match &self.token {
            Some(t) if t.appears_in(body) => Err(AdapterError::BadResponse(
                "the back end's answer contains the UsernameToken password".into(),
            )),
            _ => Ok(()),
        }
    }

    async fn call_prepared(
        &self,
        mut request: GatewayRequest,
        prepared: Prepared,
    ) -> Result<GatewayResponse, AdapterError> {
        match prepared.kind {
            PreparedKind::Call => {
                let version = prepared.version.unwrap_or(Version::V11);
                if let (Some(_), RequestBody::Buffered(b)) = (&self.token, &request.body) {
                    let secured = self.secure(b, version)?;
                    set_body(&mut request, secured);
                }
                let mut answered = self.inner.call(request).await?;
                if self.token.is_some() {
                    // The answer is read whole so the password can never reach the client.
                    let (parts, body) = answered.response.into_parts();
                    let bytes = self.read(body).await?;
                    self.leaks(&bytes)?;
                    let mut outcome = SoapOutcome::default();
                    if let Ok(e) = Envelope::read(&bytes, version, &self.soap.limits) {
                        outcome.fault_code = e.fault().map(|f| f.0).unwrap_or_default();
                    }
                    let mut response = http::Response::from_parts(parts, full(bytes));
                    response.extensions_mut().insert(outcome);
                    answered.response = response;
                }
                Ok(answered)
            }
            PreparedKind::Wsdl => {
                let public = self.soap.public_url.clone().unwrap_or_default();
                let mut answered = self.inner.call(request).await?;
                let (parts, body) = answered.response.into_parts();
                if parts.status != StatusCode::OK {
                    return Err(AdapterError::BadResponse(format!(
                        "WSDL request answered {}",
                        parts.status
                    )));
                }
                let bytes = self.read(body).await?;
                self.leaks(&bytes)?;
                let limits = crate::xml::Limits {
                    max_depth: self.soap.limits.max_depth.max(64),
                    max_elements: 200_000,
                    ..self.soap.limits
                };
                let (rewritten, _) = wsdl::rewrite(&bytes, &public, &limits)
                    .map_err(|e| AdapterError::BadResponse(format!("WSDL: {e}")))?;
                let mut response = http::Response::new(full(rewritten));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/xml; charset=utf-8"),
                );
                response.extensions_mut().insert(SoapOutcome {
                    fault_code: String::new(),
                    upstream_sha256: Sha256::digest(&bytes).to_vec(),
                });
                answered.response = response;
                Ok(answered)
            }
            PreparedKind::Mediated {
                mediation,
                envelope,
            } => {
                let version = mediation.version;
                let body = self.secure(&envelope, version)?;
                let head = &mut request.head;
                head.method = http::Method::POST;
                head.uri = mediation
                    .endpoint
                    .parse()
                    .map_err(|e| AdapterError::Request(format!("endpoint: {e}")))?;
                let content_type = match version {
                    Version::V11 => "text/xml; charset=utf-8".to_owned(),
                    Version::V12 if mediation.action.is_empty() => {
                        "application/soap+xml; charset=utf-8".to_owned()
                    }
                    Version::V12 => format!(
                        "application/soap+xml; charset=utf-8; action=\"{}\"",
                        mediation.action
                    ),
                };
                let content_type = HeaderValue::from_str(&content_type)
                    .map_err(|e| AdapterError::Request(e.to_string()))?;
                head.headers.insert(header::CONTENT_TYPE, content_type);
                head.headers.remove(header::ACCEPT);
                if version == Version::V11 {
                    let action = HeaderValue::from_str(&format!("\"{}\"", mediation.action))
                        .map_err(|e| AdapterError::Request(e.to_string()))?;
                    head.headers.insert("soapaction", action);
                }
                set_body(&mut request, body);
                let mut answered = self.inner.call(request).await?;
                let (parts, body) = answered.response.into_parts();
                let bytes = self.read(body).await?;
                self.leaks(&bytes)?;
                let read = Envelope::read(&bytes, version, &self.soap.limits).map_err(|e| {
                    AdapterError::BadResponse(format!(
                        "answer {} is not a SOAP envelope: {e}",
                        parts.status
                    ))
                })?;
                let mut outcome = SoapOutcome {
                    fault_code: String::new(),
                    upstream_sha256: Sha256::digest(&bytes).to_vec(),
                };
                let (status, json, content_type) = match read.fault() {
                    Some((code, text)) => {
                        let sender = code.ends_with("Client") || code.ends_with("Sender");
                        let status = if sender {
                            StatusCode::BAD_REQUEST
                        } else {
                            StatusCode::BAD_GATEWAY
                        };
                        let problem = serde_json::json!({
                            "type": "about:blank",
                            "title": status.canonical_reason().unwrap_or("Error"),
                            "status": status.as_u16(),
                            "reason": "soap_fault",
                            "fault_code": code,
                            "detail": text,
                        });
                        outcome.fault_code = code;
                        (status, problem, "application/problem+json")
                    }
                    None if parts.status.is_success() => (
                        StatusCode::OK,
                        mediation::map_response(&read, &mediation.response),
                        "application/json",
                    ),
                    None => {
                        return Err(AdapterError::BadResponse(format!(
                            "answer {} without a fault",
                            parts.status
                        )))
                    }
                };
                let mut response = http::Response::new(full(json.to_string()));
                *response.status_mut() = status;
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                response.extensions_mut().insert(outcome);
                answered.response = response;
                Ok(answered)
            }
        }
    }
}

/// Replaces the buffered body, and the `Content-Length` the pipeline framed it with.
fn set_body(request: &mut GatewayRequest, body: Bytes) {
    request
        .head
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    request.body = RequestBody::Buffered(body);
}

impl Adapter for SoapAdapter {
    fn call(&self, request: GatewayRequest) -> AdapterFuture<'_> {
        Box::pin(async move {
            let prepared = request
                .head
                .extensions
                .get::<Arc<Prepared>>()
                .map(|p| (**p).clone())
                .ok_or_else(|| {
                    AdapterError::Request("the SOAP call was not prepared by the pipeline".into())
                })?;
            self.call_prepared(request, prepared).await
        })
    }

    fn describe(&self) -> String {
        format!("soap upstream {:?}", self.name)
    }

    fn is_healthy(&self) -> bool {
        self.inner.is_healthy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MediationSettings, Soap, SoapSettings};
    use penghubung_adapter::mock::MockAdapter;

    fn soap() -> Arc<Soap> {
        let settings = SoapSettings {
            mediate: vec![MediationSettings {
                path: "/rest/a".into(),
                operation: "GetA".into(),
                version: "1.2".into(),
                endpoint: "/ws".into(),
                action: "urn:a#GetA".into(),
                request: "<GetA xmlns=\"urn:a\"><id>{{id}}</id></GetA>".into(),
                response: [("nama".to_owned(), "GetAResponse/nama".to_owned())].into(),
            }],
            ..SoapSettings::default()
        };
        Arc::new(Soap::compile(&settings).expect("compiles"))
    }

    fn request(soap: &Soap, body: &'static [u8]) -> GatewayRequest {
        let (mut head, ()) = http::Request::post("/rest/a")
            .header(header::CONTENT_LENGTH, body.len())
            .body(())
            .expect("request")
            .into_parts();
        let prepared = soap
            .prepare(
                &head.method,
                "/rest/a",
                None,
                &head.headers,
                Some(&Bytes::from_static(body)),
            )
            .expect("prepares");
        head.extensions.insert(Arc::new(prepared));
        GatewayRequest {
            head,
            body: RequestBody::Buffered(Bytes::from_static(body)),
            retryable: false,
        }
    }

    #[tokio::test]
    async fn a_mediated_call_is_framed_secured_and_mapped() {
        let soap = soap();
        let answer = format!(
            "<e:Envelope xmlns:e=\"{}\"><e:Body><GetAResponse xmlns=\"urn:a\"><nama>Siti</nama></GetAResponse></e:Body></e:Envelope>",
            crate::envelope::NS_12
        );
        let inner = MockAdapter {
            body: Bytes::from(answer),
            ..MockAdapter::default()
        };
        let token = UsernameToken::new("gw", "rahasia");
        let adapter = SoapAdapter::new("a", Arc::new(inner.clone()), soap.clone(), Some(token));
        let answered = adapter
            .call(request(&soap, br#"{"id": 7}"#))
            .await
            .expect("answers");
        let seen = inner.seen();
        let sent = seen[0].body.clone().expect("buffered");
        assert_eq!(seen[0].uri, "/ws");
        assert_eq!(
            seen[0].headers[header::CONTENT_LENGTH],
            HeaderValue::from(sent.len()),
            "the length of what is sent, not of the client's JSON"
        );
        assert_eq!(
            seen[0].headers[header::CONTENT_TYPE],
            "application/soap+xml; charset=utf-8; action=\"urn:a#GetA\""
        );
        let text = String::from_utf8_lossy(&sent);
        assert!(
            text.contains("<id>7</id>") && text.contains("rahasia"),
            "{text}"
        );
        assert_eq!(answered.response.status(), StatusCode::OK);
        let outcome = answered.response.extensions().get::<SoapOutcome>().cloned();
        assert_eq!(outcome.map(|o| o.upstream_sha256.len()), Some(32));
        let body = answered
            .response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, r#"{"nama":"Siti"}"#);
    }

    #[tokio::test]
    async fn an_unprepared_request_is_not_sent() {
        let inner = MockAdapter::default();
        let adapter = SoapAdapter::new("a", Arc::new(inner.clone()), soap(), None);
        let (head, ()) = http::Request::post("/ws")
            .body(())
            .expect("request")
            .into_parts();
        let request = GatewayRequest {
            head,
            body: RequestBody::Buffered(Bytes::new()),
            retryable: false,
        };
        assert!(matches!(
            adapter.call(request).await,
            Err(AdapterError::Request(_))
        ));
        assert!(inner.seen().is_empty());
    }
}
