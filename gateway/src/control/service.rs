//! The control plane's service layer: every registry operation, who may do it (roles per OPD
//! and segregation of duties), operator sign-in, and the change trail. The admin API's JSON
//! transport (and the `catalog` commands) call this layer and nothing else.
//!
//! A change is: read the registry (checked against its latest signed revision), apply the
//! change to a copy, check who may make it, compile and validate the result as a reload would,
//! build the next snapshot, sign the new revision through the evidence signer, make its `admin`
//! record durable, commit the registry (tables and revision in one transaction), and only then
//! swap the snapshot in. When the record cannot be made durable, nothing is committed or
//! swapped (503). A refused change is recorded as such (`refused = true`) and changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use penghubung_registry::{
    self as registry, secret, ApiToken, Aplikasi, AppKind, Approval, Catalogue, Consent,
    Credentials, Grant, JwtSubject, Layanan, LayananState, Operator, Revision, Role, RoleBinding,
    Store,
};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::registry::{compile, current, revision_name, Policy, RegistrySource, Trust};
use super::{Actor, Gateway};
use crate::config;

/// A refused call: HTTP status, a stable code, the field it concerns and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// HTTP status (401, 403, 404, 409, 422, 429, 503, …).
    pub status: u16,
    /// Stable code, e.g. `forbidden`, `segregation`, `invalid`, `lifecycle`.
    pub code: &'static str,
    /// Path of the offending field (`layanan[0].spec.route`), or empty.
    pub field: String,
    /// What is wrong.
    pub detail: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, field: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            field: field.to_owned(),
            detail: detail.into(),
        }
    }

    /// 401: no or bad credentials.
    pub fn unauthenticated(detail: impl Into<String>) -> ApiError {
        Self::new(401, "unauthenticated", "", detail)
    }

    fn forbidden(detail: impl Into<String>) -> ApiError {
        Self::new(403, "forbidden", "", detail)
    }

    fn not_found(field: &str, detail: impl Into<String>) -> ApiError {
        Self::new(404, "not_found", field, detail)
    }

    fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
        Self::new(422, "invalid", field, detail)
    }

    fn unavailable(detail: impl Into<String>) -> ApiError {
        Self::new(503, "unavailable", "", detail)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{} ({}): {}", self.status, self.code, self.detail)
        } else {
            write!(
                f,
                "{} ({}): {}: {}",
                self.status, self.code, self.field, self.detail
            )
        }
    }
}

/// A signed-in operator: the account and the roles it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account.
    pub username: String,
    /// Its roles.
    pub roles: Vec<RoleBinding>,
}

impl Principal {
    /// The first of `roles` this principal holds now (for `opd` when the role is per OPD).
    fn acting(&self, roles: &[Role], opd: &str, now: OffsetDateTime) -> Option<Actor> {
        roles.iter().find_map(|wanted| {
            self.roles
                .iter()
                .find(|b| {
                    b.role == *wanted && b.holds_at(now) && (!wanted.per_opd() || b.opd == opd)
                })
                .map(|b| Actor {
                    account: self.username.clone(),
                    role: b.role.as_str().into(),
                    opd: b.opd.clone(),
                })
        })
    }

    /// The actor a refused change is recorded under.
    fn as_refused(&self) -> Actor {
        Actor {
            account: self.username.clone(),
            role: self
                .roles
                .iter()
                .map(|b| b.role.as_str())
                .collect::<Vec<_>>()
                .join(","),
            opd: String::new(),
        }
    }

    fn require(&self, roles: &[Role], opd: &str, what: &str) -> Result<Actor, ApiError> {
        self.acting(roles, opd, OffsetDateTime::now_utc())
            .ok_or_else(|| {
                ApiError::forbidden(format!(
                    "{what} needs the role {}{}",
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    if roles.iter().any(|r| r.per_opd()) && !opd.is_empty() {
                        format!(" for OPD {opd:?}")
                    } else {
                        String::new()
                    }
                ))
            })
    }
}

/// Roles that may read the registry (metadata): everyone but Pimpinan (reports only);
/// external auditors only within their engagement window.
const READERS: &[Role] = &[
    Role::AdminPlatform,
    Role::PetugasKelaikan,
    Role::Auditor,
    Role::AuditorEksternal,
    Role::ServiceDesk,
];

/// After this many failed sign-ins in a row, an account is locked for a while (doubling).
const FREE_FAILURES: u32 = 5;

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    locked_until: Option<OffsetDateTime>,
}

#[derive(Debug)]
struct Session {
    username: String,
    expires: OffsetDateTime,
}

/// A Layanan as its OPD registers it (state `draf`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewLayanan {
    /// Identifier.
    pub id: String,
    /// Owner OPD code.
    pub owner_opd: String,
    /// Name.
    pub name: String,
    /// Version.
    #[serde(default = "v1")]
    pub version: String,
    /// Classification.
    #[serde(default = "terbatas")]
    pub classification: String,
    /// Exposure.
    #[serde(default = "internal")]
    pub exposure: String,
    /// The service table (hosts, route, auth, …).
    pub spec: serde_json::Value,
    /// The upstream table (targets, timeouts, …).
    pub upstream: serde_json::Value,
}

fn v1() -> String {
    "v1".into()
}
fn terbatas() -> String {
    "terbatas".into()
}
fn internal() -> String {
    "internal".into()
}

/// A lifecycle move of a Layanan; `approval` for `uji → laik`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The target state.
    pub to: LayananState,
    /// The kelaikan approval (for `laik`).
    #[serde(default)]
    pub approval: Option<NewApproval>,
}

/// A kelaikan approval as the approver gives it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewApproval {
    /// The letter's number.
    pub letter_number: String,
    /// Conditions.
    #[serde(default)]
    pub conditions: String,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// An application as its OPD registers it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewAplikasi {
    /// Identifier.
    pub id: String,
    /// Owner OPD code.
    pub owner_opd: String,
    /// Name.
    pub name: String,
    /// `umum` or `khusus`.
    #[serde(default = "umum")]
    pub kind: AppKind,
    /// Client certificate fingerprints.
    #[serde(default)]
    pub certificate_sha256: Vec<String>,
    /// JWT subjects.
    #[serde(default)]
    pub jwt: Vec<JwtSubject>,
}

fn umum() -> AppKind {
    AppKind::Umum
}

/// A grant as the consuming OPD requests it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// Identifier.
    pub id: String,
    /// The application.
    pub application: String,
    /// The Layanan.
    pub layanan: String,
    /// Purpose.
    pub tujuan: String,
    /// Scope: `[{methods, paths}]`.
    pub cakupan: serde_json::Value,
    /// Start of validity.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_from: Option<OffsetDateTime>,
    /// End of validity.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    /// Limits table.
    #[serde(default)]
    pub limits: Option<serde_json::Value>,
}

/// An operator account as an Admin Platform creates it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    /// Sign-in name.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Initial password (stored as argon2).
    pub password: String,
    /// Roles.
    pub roles: Vec<RoleBinding>,
}

/// What a change produced.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The revision it made (`rev-N`).
    pub revision: String,
    /// A secret shown once (an issued API key), if the change issued one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The control service of a registry-backed gateway.
#[derive(Debug)]
pub struct Control {
    store: Arc<dyn Store>,
    /// The registry as the catalogue source.
    pub source: Arc<RegistrySource>,
    policy: Policy,
    trust: Trust,
    session_ttl: time::Duration,
    sessions: parking_lot::Mutex<HashMap<String, Session>>,
    failures: parking_lot::Mutex<HashMap<String, Failures>>,
}

/// Lower-case hex SHA-256 of the canonical JSON of `c`.
fn catalogue_digest(c: &Catalogue) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(registry::canonical_json(c).unwrap_or_default().as_bytes()).into()
}

impl Control {
    /// Opens the registry at `path` for a gateway with `admin` settings; `signer_certificate`
    /// is the evidence signer's certificate (revisions must be signed by it), `None` without
    /// a signer.
    pub async fn open(
        admin: &crate::config::file::AdminSettings,
        path: &std::path::Path,
        signer_certificate: Option<Vec<u8>>,
    ) -> Result<Control, String> {
        let store: Arc<dyn Store> = Arc::new(
            registry::SqliteStore::open(path)
                .await
                .map_err(|e| e.to_string())?,
        );
        Ok(Self::with_store(
            admin,
            store,
            path.display().to_string(),
            signer_certificate,
        ))
    }

    /// A control service over `store`.
    pub fn with_store(
        admin: &crate::config::file::AdminSettings,
        store: Arc<dyn Store>,
        origin: String,
        signer_certificate: Option<Vec<u8>>,
    ) -> Control {
        let policy = Policy::of(admin);
        let trust = Trust { signer_certificate };
        Control {
            source: Arc::new(RegistrySource {
                store: store.clone(),
                origin,
                trust: trust.clone(),
                policy: policy.clone(),
            }),
            store,
            policy,
            trust,
            session_ttl: time::Duration::minutes(
                i64::try_from(admin.session_minutes).unwrap_or(480),
            ),
            sessions: Default::default(),
            failures: Default::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates the first Admin Platform account when the registry has no operator yet; returns
    /// whether it did. (How a fresh installation gets its first operator.)
    pub async fn bootstrap(&self, username: &str, password: &str) -> Result<bool, String> {
        if !self
            .store
            .operators()
            .await
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            return Ok(false);
        }
        if !registry::valid_id(username) || password.len() < 12 {
            return Err(
                "the first operator needs a valid name and a password of 12+ characters".into(),
            );
        }
        self.store
            .put_operator(&Operator {
                username: username.into(),
                display_name: username.into(),
                password_hash: secret::hash_password(password)?,
                disabled: false,
                created_at: OffsetDateTime::now_utc(),
                roles: vec![RoleBinding {
                    role: Role::AdminPlatform,
                    opd: String::new(),
                    valid_from: None,
                    valid_until: None,
                }],
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    // ---- authentication ------------------------------------------------------------------

    /// Signs `username` in with `password`; returns a session token (shown once) and its
    /// expiry. Failures are throttled per account (after 5 in a row, locked for a minute,
    /// doubling up to 15 minutes) and every attempt is an `admin` record (`session.sign_in`,
    /// `session.sign_in_refused`); a sign-in whose record cannot be made durable fails.
    pub async fn sign_in(
        &self,
        gw: &Gateway,
        username: &str,
        password: &str,
        peer: &str,
    ) -> Result<(String, OffsetDateTime), ApiError> {
        let now = OffsetDateTime::now_utc();
        let locked = self
            .failures
            .lock()
            .get(username)
            .and_then(|f| f.locked_until)
            .filter(|u| *u > now);
        let operator = self
            .store
            .operator(username)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let verdict = match (&locked, &operator) {
            (Some(until), _) => Err(ApiError::new(
                429,
                "throttled",
                "",
                format!(
                    "too many failed sign-ins; try again after {}",
                    until.format(&Rfc3339).unwrap_or_default()
                ),
            )),
            (None, Some(o))
                if !o.disabled && secret::verify_password(password, &o.password_hash) =>
            {
                Ok(o.clone())
            }
            (None, _) => {
                // The same work for unknown accounts, so timing does not tell them apart.
                if operator.is_none() {
                    let _ = secret::verify_password(password, DUMMY_HASH);
                }
                let mut failures = self.failures.lock();
                let f = failures.entry(username.to_owned()).or_default();
                f.count += 1;
                if f.count >= FREE_FAILURES {
                    let minutes = 1i64 << (f.count - FREE_FAILURES).min(4);
                    f.locked_until = Some(now + time::Duration::minutes(minutes.min(15)));
                }
                Err(ApiError::unauthenticated("wrong account or password"))
            }
        };
        let actor = Actor {
            account: username.chars().take(64).collect(),
            role: operator
                .as_ref()
                .map(|o| {
                    o.roles
                        .iter()
                        .map(|b| b.role.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            opd: String::new(),
        };
        let action = if verdict.is_ok() {
            "session.sign_in"
        } else {
            "session.sign_in_refused"
        };
        let digest = gw.snapshot.load().source_sha256;
        let mut record = actor.record(
            action,
            format!("peer {peer}"),
            digest,
            verdict.is_ok().then_some(digest),
            verdict
                .as_ref()
                .err()
                .map(|e| e.detail.clone())
                .unwrap_or_default(),
        );
        if let Some(penghubung_evidence::schema::record::Kind::Admin(a)) = &mut record.kind {
            a.refused = verdict.is_err();
        }
        let durable = gw.evidence.append(record).await;
        let operator = verdict?;
        durable
            .map_err(|e| ApiError::unavailable(format!("sign-in not recorded, so refused: {e}")))?;
        self.failures.lock().remove(username);
        let token = secret::generate("phs");
        let expires = now + self.session_ttl;
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            registry::sha256_hex(token.as_bytes()),
            Session {
                username: operator.username,
                expires,
            },
        );
        Ok((token, expires))
    }

    /// Ends the session of `token`.
    pub fn sign_out(&self, token: &str) {
        self.sessions
            .lock()
            .remove(&registry::sha256_hex(token.as_bytes()));
    }

    /// The principal a bearer token (session or API token) stands for.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let now = OffsetDateTime::now_utc();
        let sha = registry::sha256_hex(token.as_bytes());
        let from_session = {
            let sessions = self.sessions.lock();
            sessions
                .get(&sha)
                .filter(|s| s.expires > now)
                .map(|s| s.username.clone())
        };
        let username = match from_session {
            Some(u) => u,
            None => match self
                .store
                .token(&sha)
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?
            {
                Some(t) if t.expires_at > now => t.username,
                _ => return Err(ApiError::unauthenticated("unknown or expired token")),
            },
        };
        match self
            .store
            .operator(&username)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
        {
            Some(o) if !o.disabled => Ok(Principal {
                username: o.username,
                roles: o.roles,
            }),
            _ => Err(ApiError::unauthenticated("the account is disabled or gone")),
        }
    }

    /// Issues an API token for the principal's own account (automation), valid `days` days;
    /// the token is returned once, only its SHA-256 is kept.
    pub async fn issue_token(
        &self,
        gw: &Gateway,
        p: &Principal,
        name: &str,
        days: u32,
    ) -> Result<(String, OffsetDateTime), ApiError> {
        if name.trim().is_empty() || days == 0 || days > 366 {
            return Err(ApiError::invalid("days", "a name, and 1 to 366 days"));
        }
        let token = secret::generate("pht");
        let now = OffsetDateTime::now_utc();
        let t = ApiToken {
            sha256: registry::sha256_hex(token.as_bytes()),
            username: p.username.clone(),
            name: name.into(),
            created_at: now,
            expires_at: now + time::Duration::days(days.into()),
        };
        let digest = gw.snapshot.load().source_sha256;
        let actor = p.as_refused();
        gw.evidence
            .append(actor.record(
                "token.issue",
                format!("{}:{name}", p.username),
                digest,
                Some(digest),
                String::new(),
            ))
            .await
            .map_err(|e| {
                ApiError::unavailable(format!(
                    "not issued: its record could not be made durable ({e})"
                ))
            })?;
        self.store
            .put_token(&t)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        Ok((token, t.expires_at))
    }

    // ---- reading -------------------------------------------------------------------------

    /// Who may read: the roles in [`READERS`], and Admin OPD / Pemilik Layanan (their OPD's
    /// and the shared metadata).
    fn reader(&self, p: &Principal) -> Result<Actor, ApiError> {
        let now = OffsetDateTime::now_utc();
        p.acting(READERS, "", now)
            .or_else(|| {
                p.roles
                    .iter()
                    .find(|b| b.role.per_opd() && b.holds_at(now))
                    .map(|b| Actor {
                        account: p.username.clone(),
                        role: b.role.as_str().into(),
                        opd: b.opd.clone(),
                    })
            })
            .ok_or_else(|| {
                ApiError::forbidden("reading the registry needs a role other than pimpinan (reports only), within its window")
            })
    }

    /// The catalogue now (credentials only as hashes) and its revision.
    pub async fn catalogue(&self, p: &Principal) -> Result<(Catalogue, i64), ApiError> {
        self.reader(p)?;
        current(&*self.store, &self.trust)
            .await
            .map_err(ApiError::unavailable)
    }

    /// The revision history (id, time, actor, action, digest, signed or not).
    pub async fn history(&self, p: &Principal) -> Result<Vec<Revision>, ApiError> {
        self.reader(p)?;
        self.store
            .revisions()
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }

    /// One revision's catalogue, verified.
    pub async fn revision(&self, p: &Principal, id: i64) -> Result<Catalogue, ApiError> {
        self.reader(p)?;
        let r = self
            .store
            .revision(id)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .ok_or_else(|| ApiError::not_found("revision", format!("no {}", revision_name(id))))?;
        self.trust
            .verify(&r)
            .map_err(|e| ApiError::new(422, "tampered", "revision", e))
    }

    /// The operator accounts (without password hashes).
    pub async fn operators(&self, p: &Principal) -> Result<Vec<Operator>, ApiError> {
        p.require(
            &[Role::AdminPlatform, Role::Auditor, Role::AuditorEksternal],
            "",
            "listing operators",
        )?;
        self.store
            .operators()
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }

    // ---- changes -------------------------------------------------------------------------

    /// Runs one catalogue change (see the module docs). `mutate` checks who may make it
    /// against the catalogue it changes and returns the actor and the approval it rests on.
    async fn change(
        &self,
        gw: &Gateway,
        p: &Principal,
        action: &str,
        target: &str,
        ticket: &str,
        mutate: impl FnOnce(&mut Catalogue) -> Result<(Actor, String), ApiError>,
    ) -> Result<Applied, ApiError> {
        let _guard = gw.reload_lock.lock().await;
        let result = self.change_locked(gw, action, target, ticket, mutate).await;
        if let Err(error) = &result {
            if error.status != 503 || error.code != "not_recorded" {
                let before = gw.snapshot.load().source_sha256;
                let mut record = p.as_refused().record(
                    action,
                    target.to_owned(),
                    before,
                    None,
                    error.to_string(),
                );
                if let Some(penghubung_evidence::schema::record::Kind::Admin(a)) = &mut record.kind
                {
                    a.ticket = ticket.to_owned();
                }
                if let Err(e) = gw.evidence.append(record).await {
                    tracing::error!(error = %e, "a refused change could not be recorded");
                }
            }
        }
        result
    }

    async fn change_locked(
        &self,
        gw: &Gateway,
        action: &str,
        target: &str,
        ticket: &str,
        mutate: impl FnOnce(&mut Catalogue) -> Result<(Actor, String), ApiError>,
    ) -> Result<Applied, ApiError> {
        let (now_catalogue, latest) = current(&*self.store, &self.trust)
            .await
            .map_err(ApiError::unavailable)?;
        let mut next = now_catalogue.clone();
        let (actor, approval) = mutate(&mut next)?;
        next.normalise();
        let id = latest + 1;
        let catalog = compile(&next, id, &self.policy).map_err(|errors| {
            let (field, detail) = errors.into_iter().next().unwrap_or_default();
            ApiError::invalid(&field, detail)
        })?;
        let settings = gw.config().settings().clone();
        let compiled = config::validate(&settings, &catalog).map_err(|issues| {
            let first = issues.first().cloned();
            ApiError::invalid(
                &first.as_ref().map(|i| i.path.clone()).unwrap_or_default(),
                issues
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let (runtime, compiled) = gw
            .build_new(Some(compiled))
            .await
            .map_err(|e| ApiError::invalid("", e.to_string()))?;
        let revision = self
            .make_revision(gw, id, &actor.account, action, &next)
            .await?;
        let mut record = actor.record(
            action,
            target.to_owned(),
            catalogue_digest(&now_catalogue),
            Some(catalogue_digest(&next)),
            String::new(),
        );
        if let Some(penghubung_evidence::schema::record::Kind::Admin(a)) = &mut record.kind {
            a.revision_id = revision_name(id);
            a.ticket = ticket.to_owned();
            a.approval_id = approval;
            a.tenant = actor.opd.clone();
        }
        gw.evidence.append(record).await.map_err(|e| ApiError {
            status: 503,
            code: "not_recorded",
            field: String::new(),
            detail: format!("not applied: its evidence record could not be made durable ({e})"),
        })?;
        self.store
            .commit(latest, &next, &revision)
            .await
            .map_err(|e| ApiError::unavailable(format!("recorded but not committed: {e}")))?;
        gw.snapshot.store(Arc::new(runtime));
        gw.set_config(Arc::new(compiled));
        Ok(Applied {
            revision: revision_name(id),
            secret: None,
        })
    }

    async fn make_revision(
        &self,
        gw: &Gateway,
        id: i64,
        actor: &str,
        action: &str,
        c: &Catalogue,
    ) -> Result<Revision, ApiError> {
        let body = registry::canonical_json(c).map_err(|e| ApiError::invalid("", e.to_string()))?;
        let sha256 = registry::sha256_hex(body.as_bytes());
        // Whole seconds, so the RFC 3339 text signed is the text stored.
        let created_at = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let created_text = created_at
            .format(&Rfc3339)
            .map_err(|e| ApiError::invalid("", e.to_string()))?;
        let digest: [u8; 32] = hex::decode(&sha256)
            .ok()
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32]);
        let input = registry::signing_input(id, &created_text, &digest);
        let signed =
            gw.evidence.sign_revision(&input).await.map_err(|e| {
                ApiError::unavailable(format!("the revision could not be signed: {e}"))
            })?;
        if self.trust.signer_certificate.is_some() && signed.is_none() {
            return Err(ApiError::unavailable("the revision could not be signed"));
        }
        let (signature, signature_algorithm, signer_certificate) = match signed {
            Some(s) => (
                s.signature,
                s.algorithm,
                s.chain.into_iter().next().unwrap_or_default(),
            ),
            None => (Vec::new(), String::new(), Vec::new()),
        };
        Ok(Revision {
            id,
            created_at,
            actor: actor.into(),
            action: action.into(),
            body,
            sha256,
            signature,
            signature_algorithm,
            signer_certificate,
        })
    }

    /// Creates or replaces an OPD (Admin Platform).
    pub async fn put_opd(
        &self,
        gw: &Gateway,
        p: &Principal,
        opd: registry::Opd,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let target = format!("opd/{}", opd.code);
        self.change(gw, p, "opd.put", &target, ticket, |c| {
            let actor = p.require(&[Role::AdminPlatform], "", "managing OPDs")?;
            c.opd.retain(|o| o.code != opd.code);
            c.opd.push(opd);
            Ok((actor, String::new()))
        })
        .await
    }

    /// Registers a Layanan in state `draf` (Admin OPD of its owner).
    pub async fn register_layanan(
        &self,
        gw: &Gateway,
        p: &Principal,
        l: NewLayanan,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let target = format!("layanan/{}", l.id);
        self.change(gw, p, "layanan.register", &target, ticket, |c| {
            let actor = p.require(&[Role::AdminOpd], &l.owner_opd, "registering a Layanan")?;
            if let Some(existing) = c.layanan(&l.id) {
                if existing.state != LayananState::Draf || existing.owner_opd != l.owner_opd {
                    return Err(ApiError::new(
                        409,
                        "lifecycle",
                        "id",
                        "only a draf Layanan of the same OPD can be replaced",
                    ));
                }
            }
            c.layanan.retain(|x| x.id != l.id);
            c.layanan.push(Layanan {
                id: l.id,
                owner_opd: l.owner_opd,
                name: l.name,
                version: l.version,
                classification: l.classification,
                exposure: l.exposure,
                state: LayananState::Draf,
                submitted_by: p.username.clone(),
                spec: l.spec,
                upstream: l.upstream,
                approval: None,
            });
            Ok((actor, String::new()))
        })
        .await
    }

    /// Moves a Layanan along its lifecycle. Who may: submit and withdraw (Admin OPD of the
    /// owner), test, return and approve (the kelaikan approver role, never the account that
    /// submitted it), activate (Admin OPD of the owner or Admin Platform), suspend and resume
    /// (Pemilik Layanan or Admin OPD of the owner, the kelaikan officers, Admin Platform;
    /// resuming needs an unexpired approval).
    pub async fn transition(
        &self,
        gw: &Gateway,
        p: &Principal,
        id: &str,
        t: Transition,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let action = match t.to {
            LayananState::Laik => "layanan.approve",
            _ => "layanan.transition",
        };
        let target = format!("layanan/{id}:{}", t.to.as_str());
        let approver = self.policy.kelaikan_approver;
        self.change(gw, p, action, &target, ticket, |c| {
            let l = c
                .layanan_mut(id)
                .ok_or_else(|| ApiError::not_found("layanan", format!("no Layanan {id:?}")))?;
            if !l.state.can_move(t.to) {
                return Err(ApiError::new(
                    409,
                    "lifecycle",
                    "to",
                    format!("{} cannot move to {}", l.state.as_str(), t.to.as_str()),
                ));
            }
            use LayananState::*;
            let owner = l.owner_opd.clone();
            let actor = match (l.state, t.to) {
                (Draf, Diajukan) | (_, Dicabut) => {
                    p.require(&[Role::AdminOpd, Role::AdminPlatform], &owner, "this move")?
                }
                (Diajukan, Uji) | (Diajukan | Uji, Draf) | (Uji, Laik) => {
                    let actor = p.require(&[approver], &owner, "the kelaikan review")?;
                    if l.submitted_by == p.username {
                        return Err(ApiError::new(
                            403,
                            "segregation",
                            "",
                            "the account that registered a Layanan cannot review or approve it",
                        ));
                    }
                    actor
                }
                (Laik, Aktif) => p.require(
                    &[Role::AdminOpd, Role::AdminPlatform],
                    &owner,
                    "activating a Layanan",
                )?,
                (Aktif, Ditangguhkan) | (Ditangguhkan, Aktif) => p.require(
                    &[
                        Role::PemilikLayanan,
                        Role::AdminOpd,
                        Role::PetugasKelaikan,
                        Role::AdminPlatform,
                    ],
                    &owner,
                    "suspending or resuming a Layanan",
                )?,
                _ => {
                    return Err(ApiError::new(
                        409,
                        "lifecycle",
                        "to",
                        "not a lifecycle move",
                    ))
                }
            };
            let now = OffsetDateTime::now_utc();
            if t.to == Laik {
                let a = t.approval.ok_or_else(|| {
                    ApiError::invalid(
                        "approval",
                        "approving needs the approval (letter_number, expires_at)",
                    )
                })?;
                if a.expires_at <= now {
                    return Err(ApiError::invalid(
                        "approval.expires_at",
                        "must be in the future",
                    ));
                }
                l.approval = Some(Approval {
                    id: format!("kl-{}", uuid::Uuid::now_v7()),
                    approver: p.username.clone(),
                    date: now.replace_nanosecond(0).unwrap_or(now),
                    letter_number: a.letter_number,
                    conditions: a.conditions,
                    expires_at: a.expires_at,
                });
            } else if t.approval.is_some() {
                return Err(ApiError::invalid(
                    "approval",
                    "only approving takes an approval",
                ));
            }
            if t.to == Aktif && !l.approval.as_ref().is_some_and(|a| a.valid_at(now)) {
                return Err(ApiError::new(
                    409,
                    "lifecycle",
                    "approval",
                    "the kelaikan approval has expired: a new review is needed",
                ));
            }
            if t.to == Draf {
                l.approval = None;
            }
            l.state = t.to;
            let approval = l
                .approval
                .as_ref()
                .map(|a| a.id.clone())
                .unwrap_or_default();
            Ok((actor, approval))
        })
        .await
    }

    /// Registers an application (Admin OPD of its owner).
    pub async fn register_aplikasi(
        &self,
        gw: &Gateway,
        p: &Principal,
        a: NewAplikasi,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let target = format!("aplikasi/{}", a.id);
        self.change(gw, p, "aplikasi.register", &target, ticket, |c| {
            let actor = p.require(
                &[Role::AdminOpd],
                &a.owner_opd,
                "registering an application",
            )?;
            if c.aplikasi(&a.id).is_some() {
                return Err(ApiError::new(
                    409,
                    "exists",
                    "id",
                    format!("application {:?} exists", a.id),
                ));
            }
            c.aplikasi.push(Aplikasi {
                id: a.id,
                owner_opd: a.owner_opd,
                name: a.name,
                kind: a.kind,
                credentials: Credentials {
                    certificate_sha256: a.certificate_sha256,
                    jwt: a.jwt,
                    ..Credentials::default()
                },
            });
            Ok((actor, String::new()))
        })
        .await
    }

    /// Issues an API key to an application (Admin OPD of its owner): the key is in the
    /// answer once; the registry keeps its SHA-256.
    pub async fn issue_api_key(
        &self,
        gw: &Gateway,
        p: &Principal,
        app: &str,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let key = secret::generate("pk");
        let sha = registry::sha256_hex(key.as_bytes());
        let key_id = format!("key-{}", &sha[..12]);
        let target = format!("aplikasi/{app}/{key_id}");
        let mut applied = self
            .change(gw, p, "aplikasi.issue_key", &target, ticket, |c| {
                let a = c.aplikasi.iter_mut().find(|a| a.id == app).ok_or_else(|| {
                    ApiError::not_found("application", format!("no application {app:?}"))
                })?;
                let actor = p.require(&[Role::AdminOpd], &a.owner_opd, "issuing credentials")?;
                a.credentials.api_keys.push(registry::ApiKey {
                    id: key_id.clone(),
                    sha256: sha,
                    issued_at: OffsetDateTime::now_utc()
                        .replace_nanosecond(0)
                        .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                });
                Ok((actor, String::new()))
            })
            .await?;
        applied.secret = Some(key);
        Ok(applied)
    }

    /// Revokes an API key of an application (Admin OPD of its owner).
    pub async fn revoke_api_key(
        &self,
        gw: &Gateway,
        p: &Principal,
        app: &str,
        key_id: &str,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let target = format!("aplikasi/{app}/{key_id}");
        self.change(gw, p, "aplikasi.revoke_key", &target, ticket, |c| {
            let a = c.aplikasi.iter_mut().find(|a| a.id == app).ok_or_else(|| {
                ApiError::not_found("application", format!("no application {app:?}"))
            })?;
            let actor = p.require(&[Role::AdminOpd], &a.owner_opd, "revoking credentials")?;
            let before = a.credentials.api_keys.len();
            a.credentials.api_keys.retain(|k| k.id != key_id);
            if a.credentials.api_keys.len() == before {
                return Err(ApiError::not_found("key", format!("no key {key_id:?}")));
            }
            Ok((actor, String::new()))
        })
        .await
    }

    /// Requests a grant (Admin OPD of the application's owner); it authorises nothing until
    /// the Layanan's owner consents (with `consent_required`).
    pub async fn request_grant(
        &self,
        gw: &Gateway,
        p: &Principal,
        g: NewGrant,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let target = format!("grant/{}", g.id);
        self.change(gw, p, "grant.request", &target, ticket, |c| {
            let app = c.aplikasi(&g.application).ok_or_else(|| {
                ApiError::not_found("application", format!("no application {:?}", g.application))
            })?;
            let actor = p.require(&[Role::AdminOpd], &app.owner_opd, "requesting a grant")?;
            if c.grant(&g.id).is_some() {
                return Err(ApiError::new(
                    409,
                    "exists",
                    "id",
                    format!("grant {:?} exists", g.id),
                ));
            }
            c.grant.push(Grant {
                id: g.id,
                application: g.application,
                layanan: g.layanan,
                tujuan: g.tujuan,
                cakupan: g.cakupan,
                valid_from: g.valid_from,
                valid_until: g.valid_until,
                limits: g.limits,
                requested_by: p.username.clone(),
                consent: None,
                revoked: false,
            });
            Ok((actor, String::new()))
        })
        .await
    }

    /// The owner OPD's consent to a grant (Pemilik Layanan of the Layanan's OPD; never the
    /// account that requested it).
    pub async fn consent_grant(
        &self,
        gw: &Gateway,
        p: &Principal,
        id: &str,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let target = format!("grant/{id}");
        self.change(gw, p, "grant.consent", &target, ticket, |c| {
            let owner = c
                .grant(id)
                .and_then(|g| c.layanan(&g.layanan))
                .map(|l| l.owner_opd.clone())
                .ok_or_else(|| ApiError::not_found("grant", format!("no grant {id:?}")))?;
            let actor = p.require(&[Role::PemilikLayanan], &owner, "consenting to a grant")?;
            let g = c
                .grant
                .iter_mut()
                .find(|g| g.id == id)
                .ok_or_else(|| ApiError::not_found("grant", format!("no grant {id:?}")))?;
            if g.requested_by == p.username {
                return Err(ApiError::new(
                    403,
                    "segregation",
                    "",
                    "the requester of a grant cannot consent to it",
                ));
            }
            if g.revoked || g.consent.is_some() {
                return Err(ApiError::new(
                    409,
                    "lifecycle",
                    "",
                    "the grant is revoked or consented already",
                ));
            }
            let consent_id = format!("ct-{}", uuid::Uuid::now_v7());
            g.consent = Some(Consent {
                id: consent_id.clone(),
                by: p.username.clone(),
                at: OffsetDateTime::now_utc()
                    .replace_nanosecond(0)
                    .unwrap_or_else(|_| OffsetDateTime::now_utc()),
            });
            Ok((actor, consent_id))
        })
        .await
    }

    /// Revokes a grant (Pemilik Layanan or Admin OPD of either side, or Admin Platform).
    pub async fn revoke_grant(
        &self,
        gw: &Gateway,
        p: &Principal,
        id: &str,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let target = format!("grant/{id}");
        self.change(gw, p, "grant.revoke", &target, ticket, |c| {
            let g = c
                .grant(id)
                .ok_or_else(|| ApiError::not_found("grant", format!("no grant {id:?}")))?;
            let owner = c
                .layanan(&g.layanan)
                .map(|l| l.owner_opd.clone())
                .unwrap_or_default();
            let consumer = c
                .aplikasi(&g.application)
                .map(|a| a.owner_opd.clone())
                .unwrap_or_default();
            let actor = p
                .require(
                    &[Role::PemilikLayanan, Role::AdminOpd],
                    &owner,
                    "revoking a grant",
                )
                .or_else(|_| {
                    p.require(
                        &[Role::AdminOpd, Role::AdminPlatform],
                        &consumer,
                        "revoking a grant",
                    )
                })?;
            if let Some(g) = c.grant.iter_mut().find(|g| g.id == id) {
                g.revoked = true;
            }
            Ok((actor, String::new()))
        })
        .await
    }

    /// Replaces the whole catalogue (`catalog apply`, Admin Platform). Credentials stay
    /// hashes; lifecycle states and approvals are taken as given, so this is for restoring
    /// and GitOps by the platform's administrators only.
    pub async fn apply(
        &self,
        gw: &Gateway,
        p: &Principal,
        c: Catalogue,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        self.change(gw, p, "catalog.apply", "catalog", ticket, |now| {
            let actor = p.require(&[Role::AdminPlatform], "", "applying a catalogue")?;
            *now = c;
            Ok((actor, String::new()))
        })
        .await
    }

    /// Restores the catalogue of a signed revision as a new revision (Admin Platform); a
    /// revision that does not verify is refused.
    pub async fn rollback(
        &self,
        gw: &Gateway,
        p: &Principal,
        id: i64,
        ticket: &str,
    ) -> Result<Applied, ApiError> {
        let old = self
            .store
            .revision(id)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .ok_or_else(|| ApiError::not_found("revision", format!("no {}", revision_name(id))))
            .and_then(|r| {
                self.trust
                    .verify(&r)
                    .map_err(|e| ApiError::new(422, "tampered", "revision", e))
            });
        let target = revision_name(id);
        self.change(gw, p, "catalog.rollback", &target, ticket, |now| {
            let actor = p.require(&[Role::AdminPlatform], "", "rolling back")?;
            *now = old?;
            Ok((actor, String::new()))
        })
        .await
    }

    /// Creates or replaces an operator account (Admin Platform; it cannot give itself roles).
    pub async fn put_operator(
        &self,
        gw: &Gateway,
        p: &Principal,
        o: NewOperator,
        ticket: &str,
    ) -> Result<(), ApiError> {
        let digest = gw.snapshot.load().source_sha256;
        let target = format!("operator/{}", o.username);
        let checked = (|| {
            let actor = p.require(&[Role::AdminPlatform], "", "managing operator accounts")?;
            if o.username == p.username {
                return Err(ApiError::new(
                    403,
                    "segregation",
                    "username",
                    "nobody changes their own account's roles",
                ));
            }
            if !registry::valid_id(&o.username) {
                return Err(ApiError::invalid("username", "a-z 0-9 - _ ."));
            }
            if o.password.len() < 12 {
                return Err(ApiError::invalid("password", "at least 12 characters"));
            }
            for (i, b) in o.roles.iter().enumerate() {
                if b.role.per_opd() == b.opd.is_empty() {
                    return Err(ApiError::invalid(
                        &format!("roles[{i}].opd"),
                        "required for admin_opd and pemilik_layanan, empty otherwise",
                    ));
                }
                if b.role == Role::AuditorEksternal && b.valid_until.is_none() {
                    return Err(ApiError::invalid(
                        &format!("roles[{i}].valid_until"),
                        "an external auditor's engagement window needs an end",
                    ));
                }
            }
            Ok(actor)
        })();
        let actor = match checked {
            Ok(a) => a,
            Err(e) => {
                let mut r =
                    p.as_refused()
                        .record("operator.put", target, digest, None, e.to_string());
                if let Some(penghubung_evidence::schema::record::Kind::Admin(a)) = &mut r.kind {
                    a.ticket = ticket.into();
                }
                let _ = gw.evidence.append(r).await;
                return Err(e);
            }
        };
        let hash =
            secret::hash_password(&o.password).map_err(|e| ApiError::invalid("password", e))?;
        let mut record = actor.record(
            "operator.put",
            target,
            digest,
            Some(digest),
            format!(
                "roles {}",
                o.roles
                    .iter()
                    .map(|b| format!("{}@{}", b.role.as_str(), b.opd))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
        if let Some(penghubung_evidence::schema::record::Kind::Admin(a)) = &mut record.kind {
            a.ticket = ticket.into();
        }
        gw.evidence.append(record).await.map_err(|e| {
            ApiError::unavailable(format!(
                "not applied: its evidence record could not be made durable ({e})"
            ))
        })?;
        self.store
            .put_operator(&Operator {
                display_name: if o.display_name.is_empty() {
                    o.username.clone()
                } else {
                    o.display_name
                },
                username: o.username,
                password_hash: hash,
                disabled: false,
                created_at: OffsetDateTime::now_utc()
                    .replace_nanosecond(0)
                    .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                roles: o.roles,
            })
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }

    /// Reloads (settings from the file, catalogue from the registry) as `p` (Admin Platform).
    pub async fn reload(&self, gw: &Gateway, p: &Principal) -> Result<(), ApiError> {
        let actor = match p.require(&[Role::AdminPlatform], "", "reloading") {
            Ok(a) => a,
            Err(e) => {
                let digest = gw.snapshot.load().source_sha256;
                let _ = gw
                    .evidence
                    .append(p.as_refused().record(
                        "config.reload",
                        "reload".into(),
                        digest,
                        None,
                        e.to_string(),
                    ))
                    .await;
                return Err(e);
            }
        };
        gw.reload_as(&actor, None).await.map_err(|e| ApiError {
            status: 422,
            code: "reload_refused",
            field: String::new(),
            detail: e.to_string(),
        })
    }
}

/// An argon2 hash of nothing anyone knows, verified for unknown accounts (equal timing).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Qf0mX5m3wCN1oI9pJ4B0Hq0Wc7R8Jb1c0kq7bHh0oA";
