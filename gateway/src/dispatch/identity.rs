//! What the upstream learns about the caller: only the gateway's own identity headers (clients'
//! copies were removed by admission), plus a gateway-signed assertion when the service asks for
//! one; the client's credential is dropped unless the service forwards it.

use http::header::{self, HeaderName, HeaderValue};

use crate::auth::settings::ServiceAuthSettings;
use crate::auth::{AuthRuntime, GrantRuntime, Principal};
use crate::error::GatewayError;
use crate::stage::Stage;

const APIKEY: HeaderName = HeaderName::from_static("apikey");
const CONSUMER_OPD: HeaderName = HeaderName::from_static("x-penghubung-consumer-opd");
const CONSUMER_APPLICATION: HeaderName =
    HeaderName::from_static("x-penghubung-consumer-application");
const CREDENTIAL_KIND: HeaderName = HeaderName::from_static("x-penghubung-credential-kind");
const GRANT_ID: HeaderName = HeaderName::from_static("x-penghubung-grant-id");
const ASSERTION: HeaderName = HeaderName::from_static("x-penghubung-assertion");

/// The identity headers for the upstream, in the gateway's namespace.
pub fn identity_headers(
    auth: &AuthRuntime,
    settings: &ServiceAuthSettings,
    principal: &Principal,
    grant: &GrantRuntime,
    service_id: &str,
    exchange_id: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let mut out = Vec::with_capacity(5);
    let mut push = |name: HeaderName, value: &str| {
        if value.is_empty() {
            return;
        }
        if let Ok(v) = HeaderValue::from_str(value) {
            out.push((name, v));
        }
    };
    push(CONSUMER_OPD, &principal.opd);
    push(CONSUMER_APPLICATION, &principal.application);
    push(CREDENTIAL_KIND, principal.credential_kind.as_str());
    push(GRANT_ID, &grant.id);
    if settings.assertion {
        // A signing failure is the gateway's, while dispatching; not the caller's.
        let jwt = auth
            .assertion(principal, grant, service_id, exchange_id)
            .map_err(|e| GatewayError::Internal {
                stage: Stage::Dispatch,
                reason: e.reason(),
            })?;
        push(ASSERTION, &jwt);
    }
    Ok(out)
}

/// Removes the client's credential from the request head unless the service forwards it.
pub fn drop_credential(settings: &ServiceAuthSettings, headers: &mut http::HeaderMap) {
    if !settings.forward_credential {
        headers.remove(header::AUTHORIZATION);
        headers.remove(APIKEY);
    }
}
