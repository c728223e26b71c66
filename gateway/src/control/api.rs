//! The admin API's JSON transport over the service layer ([`super::service::Control`]), and
//! the authentication of the admin listener's other endpoints (`/health`, `/metrics`,
//! `POST /reload`). Routes are listed in README ("Admin API").
//!
//! Authentication is a bearer token only (`Authorization: Bearer …`: a session from
//! `POST /api/v1/sessions` or an API token), never a cookie, so a browser cannot attach it to
//! a cross-site request; state-changing calls with an `Origin` header other than the admin
//! listener's own are refused, and JSON bodies must say `content-type: application/json`
//! (which a cross-site form cannot send without a CORS preflight that is never granted).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::Full;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::service::{ApiError, Principal};
use super::Gateway;
use crate::admin::{Access, ApiRequest};

fn problem(e: &ApiError) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": format!("https://penghubung.invalid/problems/admin/{}", e.code),
        "title": e.code,
        "status": e.status,
        "detail": e.detail,
        "field": e.field,
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if e.status == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"penghubung-admin\""),
        );
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn ok(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn bearer(head: &http::request::Parts) -> Option<&str> {
    head.headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Refuses a state-changing call from another origin (an `Origin` header that is not this
/// listener's own `http(s)://host`).
fn same_origin(head: &http::request::Parts) -> Result<(), ApiError> {
    let Some(origin) = head.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = head
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default();
    let own = !host.is_empty()
        && (origin == format!("http://{host}") || origin == format!("https://{host}"));
    if own {
        Ok(())
    } else {
        Err(ApiError {
            status: 403,
            code: "cross_site",
            field: String::new(),
            detail: format!("cross-site request from origin {origin:?} refused"),
        })
    }
}

fn json_body<T: DeserializeOwned>(
    head: &http::request::Parts,
    body: &Bytes,
) -> Result<T, ApiError> {
    let json = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError {
            status: 415,
            code: "content_type",
            field: String::new(),
            detail: "the body must be application/json".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error(&mut de)
}

/// Deserialises with the path of the first bad field in the error.
fn serde_path_to_error<T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
) -> Result<T, ApiError> {
    T::deserialize(de).map_err(|e| ApiError {
        status: 422,
        code: "invalid",
        field: format!("line {} column {}", e.line(), e.column()),
        detail: e.to_string(),
    })
}

fn ticket(head: &http::request::Parts) -> String {
    head.headers
        .get("x-penghubung-ticket")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    name: String,
    #[serde(default = "thirty")]
    days: u32,
}

fn thirty() -> u32 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    revision: i64,
}

pub(super) fn not_registry() -> ApiError {
    ApiError {
        status: 409,
        code: "read_only",
        field: String::new(),
        detail:
            "the catalogue is the config file's (admin.catalogue = \"file\"): read-only in the API"
                .into(),
    }
}

pub(super) fn no_accounts() -> ApiError {
    ApiError::unauthenticated("no operator accounts: admin.registry is not configured")
}

impl Gateway {
    async fn principal(&self, head: &http::request::Parts) -> Result<Principal, ApiError> {
        let control = self.registry.as_ref().ok_or_else(no_accounts)?;
        let token = bearer(head).ok_or_else(|| {
            ApiError::unauthenticated("an Authorization: Bearer token is required")
        })?;
        control.authenticate(token).await
    }

    /// Whether the caller may use `access` (see [`crate::admin::Operations::admit`]).
    pub(crate) async fn admit_call(
        &self,
        head: &http::request::Parts,
        access: Access,
        loopback: bool,
    ) -> Result<(), Response<Full<Bytes>>> {
        match access {
            Access::Metrics => {
                if loopback {
                    return Ok(());
                }
                let expected = self.config().settings().admin.metrics_token_sha256.clone();
                let given = bearer(head).map(|t| penghubung_registry::sha256_hex(t.as_bytes()));
                match (expected, given) {
                    // Both are SHA-256 digests: comparing them leaks nothing about the token.
                    (Some(e), Some(g)) if e == g => Ok(()),
                    _ => Err(problem(&ApiError::unauthenticated(
                        "/metrics off loopback needs the scrape token (admin.metrics_token_sha256)",
                    ))),
                }
            }
            Access::HealthDetail | Access::Opdata => self
                .principal(head)
                .await
                .map(|_| ())
                .map_err(|e| problem(&e)),
        }
    }

    /// Answers an admin API call (`/api/v1/…` and `POST /reload`).
    pub(crate) async fn api_call(&self, request: ApiRequest) -> Response<Full<Bytes>> {
        match self
            .api_inner(&request.head, &request.body, request.peer)
            .await
        {
            Ok(r) => r,
            Err(e) => problem(&e),
        }
    }

    async fn api_inner(
        &self,
        head: &http::request::Parts,
        body: &Bytes,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let method = head.method.clone();
        let path = head.uri.path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if method != Method::GET && method != Method::HEAD {
            same_origin(head)?;
        }
        // Signing in is the one call without a token.
        if method == Method::POST && segments == ["api", "v1", "sessions"] {
            let control = self.registry.as_ref().ok_or_else(no_accounts)?;
            let s: SignIn = json_body(head, body)?;
            let (token, expires) = control
                .sign_in(self, &s.username, &s.password, &peer.to_string())
                .await?;
            return Ok(ok(
                StatusCode::CREATED,
                serde_json::json!({"token": token, "expires_at": expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()}),
            ));
        }
        let p = self.principal(head).await?;
        let control = self.registry.as_ref().ok_or_else(no_accounts)?;
        let in_registry = self.config().settings().admin.catalogue == "registry";
        let t = ticket(head);
        let applied = |a: super::service::Applied| {
            ok(StatusCode::OK, serde_json::to_value(a).unwrap_or_default())
        };
        match (&method, segments.as_slice()) {
            (&Method::POST, ["reload"]) => {
                control.reload(self, &p).await?;
                Ok(ok(
                    StatusCode::OK,
                    serde_json::json!({"result": "reloaded"}),
                ))
            }
            (&Method::DELETE, ["api", "v1", "sessions"]) => {
                if let Some(token) = bearer(head) {
                    control.sign_out(token);
                }
                Ok(ok(
                    StatusCode::OK,
                    serde_json::json!({"result": "signed out"}),
                ))
            }
            (&Method::POST, ["api", "v1", "tokens"]) => {
                let r: TokenRequest = json_body(head, body)?;
                let (token, expires) = control.issue_token(self, &p, &r.name, r.days).await?;
                Ok(ok(
                    StatusCode::CREATED,
                    serde_json::json!({"token": token, "expires_at": expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()}),
                ))
            }
            (&Method::GET, ["api", "v1", "catalogue"]) => {
                if !in_registry {
                    // Read-only view of the file's catalogue.
                    control.catalogue(&p).await.ok();
                    return Ok(ok(
                        StatusCode::OK,
                        serde_json::json!({"source": "file", "revision": self.config().version_id(), "catalogue": self.config().catalog()}),
                    ));
                }
                let (mut c, rev) = control.catalogue(&p).await?;
                if let Some(opd) = head
                    .uri
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("opd=")))
                {
                    c.layanan.retain(|l| l.owner_opd == opd);
                    c.aplikasi.retain(|a| a.owner_opd == opd);
                    c.opd.retain(|o| o.code == opd);
                }
                Ok(ok(
                    StatusCode::OK,
                    serde_json::json!({"source": "registry", "revision": super::registry::revision_name(rev), "catalogue": c}),
                ))
            }
            (&Method::GET, ["api", "v1", "revisions"]) => {
                let list: Vec<serde_json::Value> = control
                    .history(&p)
                    .await?
                    .iter()
                    .map(|r| serde_json::json!({
                        "id": super::registry::revision_name(r.id),
                        "created_at": r.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                        "actor": r.actor,
                        "action": r.action,
                        "sha256": r.sha256,
                        "signed": !r.signature.is_empty(),
                    }))
                    .collect();
                Ok(ok(StatusCode::OK, serde_json::json!({"revisions": list})))
            }
            (&Method::GET, ["api", "v1", "revisions", id]) => {
                let id = parse_revision(id)?;
                let c = control.revision(&p, id).await?;
                Ok(ok(
                    StatusCode::OK,
                    serde_json::json!({"revision": super::registry::revision_name(id), "catalogue": c}),
                ))
            }
            (&Method::GET, ["api", "v1", "operators"]) => {
                let list = control.operators(&p).await?;
                Ok(ok(StatusCode::OK, serde_json::json!({"operators": list})))
            }
            (&Method::POST, ["api", "v1", "operators"]) => {
                control
                    .put_operator(self, &p, json_body(head, body)?, &t)
                    .await?;
                Ok(ok(
                    StatusCode::CREATED,
                    serde_json::json!({"result": "stored"}),
                ))
            }
            _ if !in_registry && method != Method::GET => Err(not_registry()),
            (&Method::POST, ["api", "v1", "catalogue"]) => Ok(applied(
                control.apply(self, &p, json_body(head, body)?, &t).await?,
            )),
            (&Method::POST, ["api", "v1", "rollback"]) => {
                let r: Rollback = json_body(head, body)?;
                Ok(applied(control.rollback(self, &p, r.revision, &t).await?))
            }
            (&Method::POST, ["api", "v1", "opd"]) => Ok(applied(
                control
                    .put_opd(self, &p, json_body(head, body)?, &t)
                    .await?,
            )),
            (&Method::POST, ["api", "v1", "layanan"]) => Ok(applied(
                control
                    .register_layanan(self, &p, json_body(head, body)?, &t)
                    .await?,
            )),
            (&Method::POST, ["api", "v1", "layanan", id, "transition"]) => Ok(applied(
                control
                    .transition(self, &p, id, json_body(head, body)?, &t)
                    .await?,
            )),
            (&Method::POST, ["api", "v1", "aplikasi"]) => Ok(applied(
                control
                    .register_aplikasi(self, &p, json_body(head, body)?, &t)
                    .await?,
            )),
            (&Method::POST, ["api", "v1", "aplikasi", id, "keys"]) => {
                Ok(applied(control.issue_api_key(self, &p, id, &t).await?))
            }
            (&Method::DELETE, ["api", "v1", "aplikasi", id, "keys", key]) => Ok(applied(
                control.revoke_api_key(self, &p, id, key, &t).await?,
            )),
            (&Method::POST, ["api", "v1", "grants"]) => Ok(applied(
                control
                    .request_grant(self, &p, json_body(head, body)?, &t)
                    .await?,
            )),
            (&Method::POST, ["api", "v1", "grants", id, "consent"]) => {
                Ok(applied(control.consent_grant(self, &p, id, &t).await?))
            }
            (&Method::POST, ["api", "v1", "grants", id, "revoke"]) => {
                Ok(applied(control.revoke_grant(self, &p, id, &t).await?))
            }
            _ => Err(ApiError {
                status: 404,
                code: "not_found",
                field: String::new(),
                detail: format!("no admin operation {method} {path}"),
            }),
        }
    }
}

pub(super) fn parse_revision(s: &str) -> Result<i64, ApiError> {
    s.strip_prefix("rev-")
        .unwrap_or(s)
        .parse()
        .map_err(|_| ApiError {
            status: 422,
            code: "invalid",
            field: "revision".into(),
            detail: format!("{s:?} is not a revision (rev-N)"),
        })
}
