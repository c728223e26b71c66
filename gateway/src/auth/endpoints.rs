//! The gateway's own OAuth2 endpoints, `POST /oauth2/token` and `GET /.well-known/jwks.json`:
//! answered on every virtual host once admission has computed the canonical path, before
//! routing. Recording the answer is the pipeline's (`pipeline/record.rs`), from the
//! [`TokenFacts`](super::TokenFacts) the answer carries.

use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response};

use super::AuthRuntime;

/// One of the gateway's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /oauth2/token`.
    Token,
    /// `GET /.well-known/jwks.json`.
    Jwks,
}

impl Endpoint {
    /// The endpoint at canonical `path`, when the token endpoint is `enabled`.
    pub fn at(enabled: bool, path: &str) -> Option<Endpoint> {
        match path {
            "/oauth2/token" if enabled => Some(Endpoint::Token),
            "/.well-known/jwks.json" if enabled => Some(Endpoint::Jwks),
            _ => None,
        }
    }
}

/// Why an endpoint gave no answer of its own.
#[derive(Debug)]
pub enum NotAnswered<E> {
    /// The method is not allowed; the value is for `Allow`.
    MethodNotAllowed(&'static str),
    /// The request body could not be read.
    Body(E),
}

/// Answers `endpoint`. `read_body` reads the request body (bounded by the caller); it is only
/// called for a token request that passed the per-source limit.
pub async fn answer<E, F>(
    auth: &AuthRuntime,
    endpoint: Endpoint,
    method: &Method,
    headers: &http::HeaderMap,
    source: IpAddr,
    read_body: F,
) -> Result<Response<Bytes>, NotAnswered<E>>
where
    F: Future<Output = Result<Bytes, E>>,
{
    match endpoint {
        Endpoint::Token => {
            if method != Method::POST {
                return Err(NotAnswered::MethodNotAllowed("POST"));
            }
            Ok(match auth.token_source_check(source).await {
                Err(limited) => limited,
                Ok(()) => {
                    let body = read_body.await.map_err(NotAnswered::Body)?;
                    auth.token_endpoint(headers, &body).await
                }
            })
        }
        Endpoint::Jwks => {
            let mut r = Response::new(auth.jwks_json());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            );
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoints_exist_only_when_enabled() {
        assert_eq!(Endpoint::at(true, "/oauth2/token"), Some(Endpoint::Token));
        assert_eq!(
            Endpoint::at(true, "/.well-known/jwks.json"),
            Some(Endpoint::Jwks)
        );
        assert_eq!(Endpoint::at(false, "/oauth2/token"), None);
        assert_eq!(Endpoint::at(true, "/oauth2/token/"), None);
    }
}
