//! Errors of stages 3–5 (`authenticate`, `authorize`, `throttle`) and of building the runtime.

use http::StatusCode;

use crate::stage::Stage;

/// Why a request was refused by stages 3–5. `error::rescue` turns it into a response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No credential and the service is not anonymous.
    #[error("missing credentials")]
    MissingCredentials,
    /// More than one credential, or one credential in more than one place.
    #[error("more than one credential")]
    AmbiguousCredentials,
    /// A credential in the query string.
    #[error("credential in query string")]
    CredentialInQuery,
    /// A credential in a cookie.
    #[error("credential in cookie")]
    CredentialInCookie,
    /// The `Authorization` header is not a well-formed `Bearer` credential.
    #[error("malformed credential")]
    MalformedCredential,
    /// The credential is larger than the gateway accepts.
    #[error("credential too large")]
    CredentialTooLarge,
    /// The service does not accept this kind of credential.
    #[error("credential kind not accepted by the service")]
    CredentialNotAccepted,
    /// The bearer token failed validation; the field is its stable class.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// No application has this API key.
    #[error("unknown api key")]
    UnknownApiKey,
    /// No application has this client certificate.
    #[error("unknown client certificate")]
    UnknownCertificate,
    /// A valid token whose subject is no application.
    #[error("token subject is not a known application")]
    UnknownSubject,
    /// The application has no grant for the service.
    #[error("no grant")]
    NoGrant,
    /// The grant's validity has not begun.
    #[error("grant not yet valid")]
    GrantNotYetValid,
    /// The grant's validity has ended.
    #[error("grant expired")]
    GrantExpired,
    /// The grant lacks the owner OPD's consent.
    #[error("grant without consent")]
    NoConsent,
    /// Method or path outside the grant's *cakupan*.
    #[error("outside the grant's scope")]
    OutsideCakupan,
    /// A *rahasia* service called without an mTLS-authenticated application.
    #[error("service requires mTLS")]
    MtlsRequired,
    /// A gateway-side failure (e.g. signing); no detail reaches the client.
    #[error("internal: {0}")]
    Internal(&'static str),
    /// A peer SPL called a service whose `exposure` does not include the peer's tier.
    #[error("service not exposed to this peer's tier")]
    NotExposedToPeer,
}

const BEARER: &str = "Bearer realm=\"penghubung\"";
const BEARER_INVALID: &str = "Bearer realm=\"penghubung\", error=\"invalid_token\"";
const BEARER_REQUEST: &str = "Bearer realm=\"penghubung\", error=\"invalid_request\"";

impl AuthError {
    /// The stage that refused: 3 `authenticate` (credentials) or 4 `authorize` (grant).
    pub fn stage(&self) -> Stage {
        match self {
            Self::MissingCredentials
            | Self::AmbiguousCredentials
            | Self::CredentialInQuery
            | Self::CredentialInCookie
            | Self::MalformedCredential
            | Self::CredentialTooLarge
            | Self::CredentialNotAccepted
            | Self::InvalidToken(_)
            | Self::UnknownApiKey
            | Self::UnknownCertificate
            | Self::UnknownSubject
            | Self::Internal(_) => Stage::Authenticate,
            Self::NoGrant
            | Self::GrantNotYetValid
            | Self::GrantExpired
            | Self::NoConsent
            | Self::OutsideCakupan
            | Self::MtlsRequired
            | Self::NotExposedToPeer => Stage::Authorize,
        }
    }

    /// HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials
            | Self::CredentialNotAccepted
            | Self::InvalidToken(_)
            | Self::UnknownApiKey
            | Self::UnknownCertificate
            | Self::UnknownSubject => StatusCode::UNAUTHORIZED,
            Self::AmbiguousCredentials
            | Self::CredentialInQuery
            | Self::CredentialInCookie
            | Self::MalformedCredential => StatusCode::BAD_REQUEST,
            Self::CredentialTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NoGrant
            | Self::GrantNotYetValid
            | Self::GrantExpired
            | Self::NoConsent
            | Self::OutsideCakupan
            | Self::MtlsRequired
            | Self::NotExposedToPeer => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable reason class for the evidence record and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "credential_missing",
            Self::AmbiguousCredentials => "credential_ambiguous",
            Self::CredentialInQuery => "credential_in_query",
            Self::CredentialInCookie => "credential_in_cookie",
            Self::MalformedCredential => "credential_malformed",
            Self::CredentialTooLarge => "credential_too_large",
            Self::CredentialNotAccepted => "credential_kind_not_accepted",
            Self::InvalidToken(class) => class,
            Self::UnknownApiKey => "apikey_unknown",
            Self::UnknownCertificate => "certificate_unknown",
            Self::UnknownSubject => "subject_unknown",
            Self::NoGrant => "grant_missing",
            Self::GrantNotYetValid => "grant_not_yet_valid",
            Self::GrantExpired => "grant_expired",
            Self::NoConsent => "grant_without_consent",
            Self::OutsideCakupan => "grant_outside_cakupan",
            Self::MtlsRequired => "mtls_required",
            Self::NotExposedToPeer => "not_exposed_to_peer",
            Self::Internal(class) => class,
        }
    }

    /// WSO2 API Manager fault code and message, for `fault_style = "wso2"` services.
    pub fn wso2_code(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::MissingCredentials => Some(("900902", "Missing Credentials")),
            Self::AmbiguousCredentials
            | Self::CredentialInQuery
            | Self::CredentialInCookie
            | Self::MalformedCredential
            | Self::CredentialTooLarge
            | Self::CredentialNotAccepted
            | Self::InvalidToken(_)
            | Self::UnknownApiKey
            | Self::UnknownCertificate
            | Self::UnknownSubject => Some(("900901", "Invalid Credentials")),
            Self::NoGrant
            | Self::GrantNotYetValid
            | Self::GrantExpired
            | Self::NoConsent
            | Self::MtlsRequired
            | Self::NotExposedToPeer => Some(("900908", "Resource forbidden")),
            Self::OutsideCakupan => Some(("900906", "No matching resource found in the API")),
            Self::Internal(_) => None,
        }
    }

    /// `WWW-Authenticate` value for 401 (and 400 credential errors), per RFC 6750.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self.status() {
            StatusCode::UNAUTHORIZED if *self == Self::MissingCredentials => Some(BEARER),
            StatusCode::UNAUTHORIZED => Some(BEARER_INVALID),
            StatusCode::BAD_REQUEST => Some(BEARER_REQUEST),
            _ => None,
        }
    }
}

/// Why an [`AuthRuntime`](super::AuthRuntime) could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum AuthBuildError {
    /// A JWKS could not be loaded or parsed.
    #[error("issuer {issuer:?}: jwks: {message}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// What went wrong.
        message: String,
    },
    /// The token signing key could not be loaded.
    #[error("token signing key: {0}")]
    SigningKey(String),
    /// The Redis settings could not be used.
    #[error("redis: {0}")]
    Redis(String),
    /// A grant or application could not be compiled.
    #[error("{path}: {message}")]
    Catalog {
        /// Config path of the entry.
        path: String,
        /// What went wrong.
        message: String,
    },
}
