//! The admin API over gRPC (`penghubung.admin.v1.Admin`, `proto/penghubung/admin/v1/admin.proto`),
//! served by tonic on the admin listener beside the JSON transport ([`super::api`]). Every
//! method calls the same service layer ([`super::service::Control`]) as its JSON route, after
//! the same authentication (`authorization: Bearer …` metadata; `SignIn` is the one call
//! without), so roles, segregation, the change trail and the evidence records are one code
//! path for both transports. [`ApiError`]s map to gRPC status codes ([`status`]).
//!
//! Unlike the JSON routes there is no `Origin` check: a browser cannot send a cross-site
//! `application/grpc` request (not a CORS-safelisted content-type, and the preflight is never
//! granted), and gRPC-Web is not served.
//!
//! Free-form registry tables (a Layanan's `spec`/`upstream`, a grant's `cakupan`/`limits`, a
//! catalogue) travel as JSON text; a bad one is `INVALID_ARGUMENT` naming the field.

use std::net::SocketAddr;
use std::sync::Arc;

use penghubung_proto::admin::v1 as pb;
use penghubung_registry::Catalogue;
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tonic::{Code, Request, Response, Status};

use super::api::{no_accounts, not_registry, parse_revision};
use super::registry::revision_name;
use super::service::{self, ApiError, Principal};
use super::Gateway;

pub use pb::admin_server::AdminServer;

/// The caller's address, put into each request's extensions by the admin listener.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The gRPC status of a refused call: the code from the HTTP status, the message
/// `field: detail` (or `code: detail` without a field), and the stable code and field as
/// `x-penghubung-problem` / `x-penghubung-field` metadata.
pub fn status(e: ApiError) -> Status {
    let code = match e.status {
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::FailedPrecondition,
        400 | 413 | 415 | 422 => Code::InvalidArgument,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    let message = if e.field.is_empty() {
        format!("{}: {}", e.code, e.detail)
    } else {
        format!("{}: {}", e.field, e.detail)
    };
    let mut s = Status::new(code, message);
    if let Ok(v) = e.code.parse() {
        s.metadata_mut().insert("x-penghubung-problem", v);
    }
    if let Ok(v) = e.field.parse() {
        if !e.field.is_empty() {
            s.metadata_mut().insert("x-penghubung-field", v);
        }
    }
    s
}

fn invalid(field: &str, detail: impl std::fmt::Display) -> Status {
    status(ApiError {
        status: 422,
        code: "invalid",
        field: field.to_owned(),
        detail: detail.to_string(),
    })
}

/// An optional RFC 3339 time (empty: none).
fn when(field: &str, s: &str) -> Result<Option<OffsetDateTime>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .map(Some)
        .map_err(|e| invalid(field, format!("{s:?} is not an RFC 3339 time: {e}")))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A JSON document (a free-form table).
fn json<T: DeserializeOwned>(field: &str, s: &str) -> Result<T, Status> {
    serde_json::from_str(s).map_err(|e| invalid(field, e))
}

/// A lower-case word of the registry's vocabulary (role, state, kind).
fn word<T: DeserializeOwned>(field: &str, s: &str) -> Result<T, Status> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| invalid(field, format!("{s:?} is not a known value")))
}

fn or(s: String, default: &str) -> String {
    if s.is_empty() {
        default.to_owned()
    } else {
        s
    }
}

fn applied(a: service::Applied) -> Response<pb::Applied> {
    Response::new(pb::Applied {
        revision: a.revision,
        secret: a.secret.unwrap_or_default(),
    })
}

fn bearer<T>(r: &Request<T>) -> Option<&str> {
    r.metadata()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn ticket<T>(r: &Request<T>) -> String {
    r.metadata()
        .get("x-penghubung-ticket")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// The admin API's gRPC service over a gateway.
#[derive(Debug, Clone)]
pub struct GrpcAdmin {
    gw: Arc<Gateway>,
}

impl GrpcAdmin {
    /// The service of `gw`.
    pub fn new(gw: Arc<Gateway>) -> GrpcAdmin {
        GrpcAdmin { gw }
    }

    fn control(&self) -> Result<&service::Control, Status> {
        self.gw
            .registry
            .as_deref()
            .ok_or_else(|| status(no_accounts()))
    }

    /// The caller, authenticated as the JSON API does.
    async fn principal<T>(&self, r: &Request<T>) -> Result<(&service::Control, Principal), Status> {
        let control = self.control()?;
        let token = bearer(r).ok_or_else(|| {
            status(ApiError::unauthenticated(
                "an authorization: Bearer token is required",
            ))
        })?;
        let p = control.authenticate(token).await.map_err(status)?;
        Ok((control, p))
    }

    /// Changes to the catalogue need the registry as its source.
    fn writable(&self) -> Result<(), Status> {
        if self.gw.config().settings().admin.catalogue == "registry" {
            Ok(())
        } else {
            Err(status(not_registry()))
        }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for GrpcAdmin {
    async fn sign_in(
        &self,
        r: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let control = self.control()?;
        let peer = r
            .extensions()
            .get::<Peer>()
            .map(|p| p.0.to_string())
            .unwrap_or_default();
        let s = r.into_inner();
        let (token, expires) = control
            .sign_in(&self.gw, &s.username, &s.password, &peer)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::TokenResponse {
            token,
            expires_at: rfc3339(expires),
        }))
    }

    async fn sign_out(
        &self,
        r: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let (control, _) = self.principal(&r).await?;
        if let Some(token) = bearer(&r) {
            control.sign_out(token);
        }
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn issue_token(
        &self,
        r: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let (control, p) = self.principal(&r).await?;
        let t = r.into_inner();
        let days = if t.days == 0 { 30 } else { t.days };
        let (token, expires) = control
            .issue_token(&self.gw, &p, &t.name, days)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::TokenResponse {
            token,
            expires_at: rfc3339(expires),
        }))
    }

    async fn get_catalogue(
        &self,
        r: Request<pb::GetCatalogueRequest>,
    ) -> Result<Response<pb::CatalogueResponse>, Status> {
        let (control, p) = self.principal(&r).await?;
        if self.writable().is_err() {
            // Read-only view of the file's catalogue (the role check as the JSON API's).
            control.catalogue(&p).await.ok();
            let config = self.gw.config();
            return Ok(Response::new(pb::CatalogueResponse {
                source: "file".into(),
                revision: config.version_id(),
                catalogue_json: serde_json::to_string(&config.catalog()).unwrap_or_default(),
            }));
        }
        let (mut c, rev) = control.catalogue(&p).await.map_err(status)?;
        let opd = r.into_inner().opd;
        if !opd.is_empty() {
            c.layanan.retain(|l| l.owner_opd == opd);
            c.aplikasi.retain(|a| a.owner_opd == opd);
            c.opd.retain(|o| o.code == opd);
        }
        Ok(Response::new(pb::CatalogueResponse {
            source: "registry".into(),
            revision: revision_name(rev),
            catalogue_json: serde_json::to_string(&c).unwrap_or_default(),
        }))
    }

    async fn list_revisions(
        &self,
        r: Request<pb::ListRevisionsRequest>,
    ) -> Result<Response<pb::ListRevisionsResponse>, Status> {
        let (control, p) = self.principal(&r).await?;
        let revisions = control
            .history(&p)
            .await
            .map_err(status)?
            .iter()
            .map(|r| pb::Revision {
                id: revision_name(r.id),
                created_at: rfc3339(r.created_at),
                actor: r.actor.clone(),
                action: r.action.clone(),
                sha256: r.sha256.clone(),
                signed: !r.signature.is_empty(),
            })
            .collect();
        Ok(Response::new(pb::ListRevisionsResponse { revisions }))
    }

    async fn get_revision(
        &self,
        r: Request<pb::GetRevisionRequest>,
    ) -> Result<Response<pb::CatalogueResponse>, Status> {
        let (control, p) = self.principal(&r).await?;
        let id = parse_revision(&r.into_inner().revision).map_err(status)?;
        let c = control.revision(&p, id).await.map_err(status)?;
        Ok(Response::new(pb::CatalogueResponse {
            source: "registry".into(),
            revision: revision_name(id),
            catalogue_json: serde_json::to_string(&c).unwrap_or_default(),
        }))
    }

    async fn list_operators(
        &self,
        r: Request<pb::ListOperatorsRequest>,
    ) -> Result<Response<pb::ListOperatorsResponse>, Status> {
        let (control, p) = self.principal(&r).await?;
        let list = control.operators(&p).await.map_err(status)?;
        Ok(Response::new(pb::ListOperatorsResponse {
            operators_json: serde_json::to_string(&list).unwrap_or_default(),
        }))
    }

    async fn put_operator(
        &self,
        r: Request<pb::PutOperatorRequest>,
    ) -> Result<Response<pb::PutOperatorResponse>, Status> {
        let (control, p) = self.principal(&r).await?;
        let t = ticket(&r);
        let o = r.into_inner();
        let mut roles = Vec::with_capacity(o.roles.len());
        for (i, b) in o.roles.into_iter().enumerate() {
            roles.push(penghubung_registry::RoleBinding {
                role: word(&format!("roles[{i}].role"), &b.role)?,
                opd: b.opd,
                valid_from: when(&format!("roles[{i}].valid_from"), &b.valid_from)?,
                valid_until: when(&format!("roles[{i}].valid_until"), &b.valid_until)?,
            });
        }
        let new = service::NewOperator {
            username: o.username,
            display_name: o.display_name,
            password: o.password,
            roles,
        };
        control
            .put_operator(&self.gw, &p, new, &t)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutOperatorResponse {}))
    }

    async fn apply_catalogue(
        &self,
        r: Request<pb::ApplyCatalogueRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let c: Catalogue = json("catalogue_json", &r.into_inner().catalogue_json)?;
        control
            .apply(&self.gw, &p, c, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn rollback(
        &self,
        r: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let id = parse_revision(&r.into_inner().revision).map_err(status)?;
        control
            .rollback(&self.gw, &p, id, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn put_opd(&self, r: Request<pb::Opd>) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let o = r.into_inner();
        let opd = penghubung_registry::Opd {
            code: o.code,
            name: o.name,
            domain: o.domain,
        };
        control
            .put_opd(&self.gw, &p, opd, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn register_layanan(
        &self,
        r: Request<pb::RegisterLayananRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let l = r.into_inner();
        let new = service::NewLayanan {
            spec: json("spec_json", &l.spec_json)?,
            upstream: json("upstream_json", &l.upstream_json)?,
            id: l.id,
            owner_opd: l.owner_opd,
            name: l.name,
            version: or(l.version, "v1"),
            classification: or(l.classification, "terbatas"),
            exposure: or(l.exposure, "internal"),
        };
        control
            .register_layanan(&self.gw, &p, new, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn transition_layanan(
        &self,
        r: Request<pb::TransitionLayananRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let m = r.into_inner();
        let approval = match m.approval {
            None => None,
            Some(a) => Some(service::NewApproval {
                letter_number: a.letter_number,
                conditions: a.conditions,
                expires_at: when("approval.expires_at", &a.expires_at)?
                    .ok_or_else(|| invalid("approval.expires_at", "required"))?,
            }),
        };
        let transition = service::Transition {
            to: word("to", &m.to)?,
            approval,
        };
        control
            .transition(&self.gw, &p, &m.id, transition, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn register_aplikasi(
        &self,
        r: Request<pb::RegisterAplikasiRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let a = r.into_inner();
        let new = service::NewAplikasi {
            kind: word("kind", &or(a.kind, "umum"))?,
            id: a.id,
            owner_opd: a.owner_opd,
            name: a.name,
            certificate_sha256: a.certificate_sha256,
            jwt: a
                .jwt
                .into_iter()
                .map(|j| penghubung_registry::JwtSubject {
                    issuer: j.issuer,
                    sub: j.sub,
                })
                .collect(),
        };
        control
            .register_aplikasi(&self.gw, &p, new, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn issue_api_key(
        &self,
        r: Request<pb::IssueApiKeyRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let app = r.into_inner().aplikasi;
        control
            .issue_api_key(&self.gw, &p, &app, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn revoke_api_key(
        &self,
        r: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let k = r.into_inner();
        control
            .revoke_api_key(&self.gw, &p, &k.aplikasi, &k.key_id, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn request_grant(
        &self,
        r: Request<pb::RequestGrantRequest>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let g = r.into_inner();
        let new = service::NewGrant {
            cakupan: json("cakupan_json", &g.cakupan_json)?,
            valid_from: when("valid_from", &g.valid_from)?,
            valid_until: when("valid_until", &g.valid_until)?,
            limits: if g.limits_json.is_empty() {
                None
            } else {
                Some(json("limits_json", &g.limits_json)?)
            },
            id: g.id,
            application: g.application,
            layanan: g.layanan,
            tujuan: g.tujuan,
        };
        control
            .request_grant(&self.gw, &p, new, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn consent_grant(
        &self,
        r: Request<pb::GrantRef>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let id = r.into_inner().id;
        control
            .consent_grant(&self.gw, &p, &id, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn revoke_grant(
        &self,
        r: Request<pb::GrantRef>,
    ) -> Result<Response<pb::Applied>, Status> {
        let (control, p) = self.principal(&r).await?;
        self.writable()?;
        let t = ticket(&r);
        let id = r.into_inner().id;
        control
            .revoke_grant(&self.gw, &p, &id, &t)
            .await
            .map(applied)
            .map_err(status)
    }

    async fn reload(
        &self,
        r: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let (control, p) = self.principal(&r).await?;
        control.reload(&self.gw, &p).await.map_err(status)?;
        Ok(Response::new(pb::ReloadResponse {}))
    }
}
