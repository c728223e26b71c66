//! SOAP services (upstream kind `soap`) in the pipeline: the step between reading the body and
//! `record(request)` that reads the envelope with the hardened reader, names the operation,
//! authorises it against the grant's *cakupan* and hands the prepared call to the adapter; and
//! the SOAP fields of the evidence records (proto/README.md §15).
//!
//! Order: stages 3–5 ran on the head (so `100 Continue` goes only to a caller that may
//! proceed); the operation is known only once the body is read, so its authorisation comes
//! after the throttle. When the grant that names the operation is another one than the grant
//! the path matched first, that grant's limits are applied too, and it is the one recorded.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use penghubung_adapter::RequestBody;
use penghubung_adapter_soap::{Prepared, PreparedKind, SoapOutcome};
use penghubung_evidence::schema::{self, record::Kind};

use super::{record, Exchange};
use crate::admit::Admitted;
use crate::auth::{GrantRuntime, Principal};
use crate::error::{FaultStyle, GatewayError};
use crate::routing::{Matched, Service};

/// At routing: refusals on a SOAP route are SOAP faults of the request's version (requests
/// that are no SOAP envelopes, such as mediated JSON calls, keep the service's style).
pub(super) fn fault_style(service: &Service, headers: &http::HeaderMap) -> Option<FaultStyle> {
    service.soap.as_ref()?;
    match penghubung_adapter_soap::fault_version(headers)? {
        penghubung_adapter_soap::Version::V11 => Some(FaultStyle::Soap11),
        penghubung_adapter_soap::Version::V12 => Some(FaultStyle::Soap12),
    }
}

/// Prepares a SOAP call (nothing for other services) and authorises its operation; returns the
/// grant the exchange runs under. Only the buffered bytes of the body are held across the
/// throttle's await (a streaming body is not `Sync`).
pub(super) fn prepare<'a>(
    runtime: &'a crate::snapshot::Snapshot,
    exchange: &'a mut Exchange,
    head: &'a mut http::request::Parts,
    (matched, admitted, principal): (&'a Matched, &'a Admitted, &'a Arc<Principal>),
    grant: Arc<GrantRuntime>,
    body: &'a RequestBody,
) -> impl Future<Output = Result<Arc<GrantRuntime>, GatewayError>> + Send + 'a {
    let body = record::buffered(body);
    async move {
        prepare_buffered(
            runtime,
            exchange,
            head,
            (matched, admitted, principal),
            grant,
            body,
        )
        .await
    }
}

async fn prepare_buffered(
    runtime: &crate::snapshot::Snapshot,
    exchange: &mut Exchange,
    head: &mut http::request::Parts,
    (matched, admitted, principal): (&Matched, &Admitted, &Arc<Principal>),
    grant: Arc<GrantRuntime>,
    body: Option<&Bytes>,
) -> Result<Arc<GrantRuntime>, GatewayError> {
    let service = &matched.route.service;
    let Some(soap) = &service.soap else {
        return Ok(grant);
    };
    let prepared = soap.prepare(
        &head.method,
        &matched.path,
        admitted.query.as_deref(),
        &head.headers,
        body,
    )?;
    let prepared = Arc::new(prepared);
    exchange.soap = Some(prepared.clone());
    let grant = if prepared.operation.is_empty() {
        grant
    } else {
        let chosen = runtime.auth.authorize_operation(
            principal,
            &service.id,
            (&head.method, &matched.path),
            &prepared.operation,
            SystemTime::now(),
        )?;
        if chosen.id != grant.id {
            runtime.auth.throttle(principal, &chosen).await?;
        }
        exchange.grant = Some(chosen.clone());
        chosen
    };
    head.extensions.insert(prepared);
    Ok(grant)
}

fn mode(prepared: &Prepared) -> &'static str {
    match prepared.kind {
        PreparedKind::Call => "call",
        PreparedKind::Wsdl => "wsdl",
        PreparedKind::Mediated { .. } => "mediated",
    }
}

/// Fills a `request` record's SOAP fields (40–44).
pub(super) fn fill_request(record: &mut schema::Record, prepared: Option<&Arc<Prepared>>) {
    let (Some(p), Some(Kind::Request(r))) = (prepared, record.kind.as_mut()) else {
        return;
    };
    r.soap_operation = p.operation.clone();
    r.soap_version = p.version.map_or(0, |v| v.number());
    r.soap_action = p.action.chars().take(512).collect();
    if let PreparedKind::Mediated { envelope, .. } = &p.kind {
        r.soap_envelope_sha256 = record::sha256(envelope);
    }
    r.soap_mode = mode(p).into();
}

/// Fills a `refused` record's SOAP fields (30–31).
pub(super) fn fill_refused(record: &mut schema::Record, prepared: Option<&Arc<Prepared>>) {
    let (Some(p), Some(Kind::Refused(r))) = (prepared, record.kind.as_mut()) else {
        return;
    };
    r.soap_operation = p.operation.clone();
    r.soap_version = p.version.map_or(0, |v| v.number());
}

/// Fills an `outcome` record's SOAP fields (25–26) from what the adapter read.
pub(crate) fn fill_outcome(outcome: &mut schema::Outcome, soap: Option<&SoapOutcome>) {
    if let Some(s) = soap {
        outcome.soap_fault_code = s.fault_code.clone();
        outcome.soap_upstream_sha256 = Bytes::from(s.upstream_sha256.clone());
    }
}
