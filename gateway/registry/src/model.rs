//! The registry's model: OPDs, Layanan with their lifecycle and kelaikan approval, applications
//! (*Aplikasi*) with hashed credentials, grants with the owner's consent, and operator accounts
//! with their roles per OPD.
//!
//! The service and upstream tables of a Layanan are kept as the JSON of the gateway's catalogue
//! tables (`[[service]]` without the fields the registry owns, `[[upstream]]`): this crate knows
//! nothing of the gateway, and the gateway validates them when it compiles the registry.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One regional agency (*Organisasi Perangkat Daerah*), a tenant of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opd {
    /// Stable code, e.g. `dukcapil` (a-z 0-9 - _ .).
    pub code: String,
    /// Official name.
    pub name: String,
    /// Official domain, under `.go.id`, e.g. `dukcapil.contoh.go.id`.
    pub domain: String,
}

/// Where a Layanan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayananState {
    /// Being written by its OPD.
    Draf,
    /// Submitted for the kelaikan review.
    Diajukan,
    /// Under test by the kelaikan officers.
    Uji,
    /// Passed the kelaikan review (an approval is attached); not yet live.
    Laik,
    /// Live: routed, and its consented grants authorise.
    Aktif,
    /// Suspended: routed, but no grant authorises (callers get 403).
    Ditangguhkan,
    /// Withdrawn for good.
    Dicabut,
}

impl LayananState {
    /// Every state, in lifecycle order.
    pub const ALL: [LayananState; 7] = [
        Self::Draf,
        Self::Diajukan,
        Self::Uji,
        Self::Laik,
        Self::Aktif,
        Self::Ditangguhkan,
        Self::Dicabut,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draf => "draf",
            Self::Diajukan => "diajukan",
            Self::Uji => "uji",
            Self::Laik => "laik",
            Self::Aktif => "aktif",
            Self::Ditangguhkan => "ditangguhkan",
            Self::Dicabut => "dicabut",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the lifecycle allows moving from `self` to `to`: forward one step
    /// (draf → diajukan → uji → laik → aktif), back to draf from review (returned), suspension
    /// and resumption (aktif ⇄ ditangguhkan), and withdrawal (→ dicabut) from any state but
    /// dicabut. `uji → laik` happens only with an approval ([`Layanan::approval`]).
    pub fn can_move(self, to: LayananState) -> bool {
        use LayananState::*;
        matches!(
            (self, to),
            (Draf, Diajukan)
                | (Diajukan, Uji)
                | (Uji, Laik)
                | (Laik, Aktif)
                | (Aktif, Ditangguhkan)
                | (Ditangguhkan, Aktif)
                | (Diajukan | Uji, Draf)
        ) || (self != Dicabut && to == Dicabut)
    }
}

/// The *kelaikan operasi dan keamanan* approval of a Layanan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Identifier, recorded in every request record of the Layanan (`approval_id`).
    pub id: String,
    /// The approving account.
    pub approver: String,
    /// When it was given.
    #[serde(with = "time::serde::rfc3339")]
    pub date: OffsetDateTime,
    /// The approval letter's number (*nomor surat*).
    pub letter_number: String,
    /// Conditions attached to it.
    #[serde(default)]
    pub conditions: String,
    /// When it stops being valid; past it the Layanan stops like a suspension.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl Approval {
    /// Whether the approval is in force at `now`.
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }
}

/// A service (*Layanan*) of an OPD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layanan {
    /// Stable identifier (the gateway's service id).
    pub id: String,
    /// The owning OPD's code.
    pub owner_opd: String,
    /// Display name.
    pub name: String,
    /// Version of the interface.
    pub version: String,
    /// `terbuka`, `terbatas` or `rahasia`.
    pub classification: String,
    /// `internal`, `provinsi`, `pusat` or `eksternal`.
    pub exposure: String,
    /// Lifecycle state.
    pub state: LayananState,
    /// The account that registered it (the requester of its approval).
    pub submitted_by: String,
    /// The gateway's `[[service]]` table without `id`, `owner_opd`, `version`,
    /// `classification`, `exposure` (hosts, routes, auth, personal data, response headers).
    pub spec: serde_json::Value,
    /// The gateway's `[[upstream]]` table of the Layanan's backend, without `name` (the
    /// upstream group is named after the Layanan).
    pub upstream: serde_json::Value,
    /// The kelaikan approval, once given.
    #[serde(default)]
    pub approval: Option<Approval>,
}

/// What kind of application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// A general application (*aplikasi umum*).
    Umum,
    /// A special-purpose application (*aplikasi khusus*).
    Khusus,
}

impl AppKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Umum => "umum",
            Self::Khusus => "khusus",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "umum" => Some(Self::Umum),
            "khusus" => Some(Self::Khusus),
            _ => None,
        }
    }
}

/// An issued API key: only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Key identifier (shown in listings; not secret).
    pub id: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

/// A JWT subject of an external issuer that identifies the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSubject {
    /// Issuer (`iss`).
    pub issuer: String,
    /// Subject (`sub`).
    pub sub: String,
}

/// An application's credentials; secrets only as hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// OAuth2 client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Argon2 PHC string of the client secret.
    #[serde(default)]
    pub client_secret_hash: Option<String>,
    /// Issued API keys.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// Hex SHA-256 fingerprints of client certificates.
    #[serde(default)]
    pub certificate_sha256: Vec<String>,
    /// JWT subjects.
    #[serde(default)]
    pub jwt: Vec<JwtSubject>,
}

/// A consumer application (*Aplikasi*) of an OPD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aplikasi {
    /// Stable identifier.
    pub id: String,
    /// The owning OPD's code.
    pub owner_opd: String,
    /// Display name.
    pub name: String,
    /// `umum` or `khusus`.
    pub kind: AppKind,
    /// Credentials.
    #[serde(default)]
    pub credentials: Credentials,
}

/// The owner OPD's consent to a grant, given by a Pemilik Layanan account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// Identifier, recorded in every request record the grant authorises.
    pub id: String,
    /// The consenting account.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A grant (*izin akses*): an application may call a Layanan for a purpose within a scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Stable identifier.
    pub id: String,
    /// The consuming application.
    pub application: String,
    /// The Layanan.
    pub layanan: String,
    /// Purpose (*tujuan*).
    pub tujuan: String,
    /// Scope (*cakupan*): the gateway's `cakupan` list (`[{methods, paths}]`).
    pub cakupan: serde_json::Value,
    /// Start of validity.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_from: Option<OffsetDateTime>,
    /// End of validity (exclusive).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    /// The gateway's `limits` table of the grant, if any.
    #[serde(default)]
    pub limits: Option<serde_json::Value>,
    /// The account that requested it (it can never consent to it).
    pub requested_by: String,
    /// The owner OPD's consent.
    #[serde(default)]
    pub consent: Option<Consent>,
    /// Revoked grants stay for the history and never authorise.
    #[serde(default)]
    pub revoked: bool,
}

/// The catalogue part of the registry, as one value: what a revision holds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// OPDs, sorted by code.
    #[serde(default)]
    pub opd: Vec<Opd>,
    /// Layanan, sorted by id.
    #[serde(default)]
    pub layanan: Vec<Layanan>,
    /// Applications, sorted by id.
    #[serde(default)]
    pub aplikasi: Vec<Aplikasi>,
    /// Grants, sorted by id.
    #[serde(default)]
    pub grant: Vec<Grant>,
}

impl Catalogue {
    /// Sorts every list by its key, so equal catalogues serialise equally.
    pub fn normalise(&mut self) {
        self.opd.sort_by(|a, b| a.code.cmp(&b.code));
        self.layanan.sort_by(|a, b| a.id.cmp(&b.id));
        self.aplikasi.sort_by(|a, b| a.id.cmp(&b.id));
        self.grant.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// The Layanan `id`.
    pub fn layanan(&self, id: &str) -> Option<&Layanan> {
        self.layanan.iter().find(|l| l.id == id)
    }

    /// The Layanan `id`, to change.
    pub fn layanan_mut(&mut self, id: &str) -> Option<&mut Layanan> {
        self.layanan.iter_mut().find(|l| l.id == id)
    }

    /// The application `id`.
    pub fn aplikasi(&self, id: &str) -> Option<&Aplikasi> {
        self.aplikasi.iter().find(|a| a.id == id)
    }

    /// The grant `id`.
    pub fn grant(&self, id: &str) -> Option<&Grant> {
        self.grant.iter().find(|g| g.id == id)
    }

    /// The OPD `code`.
    pub fn opd(&self, code: &str) -> Option<&Opd> {
        self.opd.iter().find(|o| o.code == code)
    }

    /// Problems of the registry's own rules (references, ids, domains, approval presence);
    /// each as `(field path, message)`. The gateway checks the service and upstream tables.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, o) in self.opd.iter().enumerate() {
            if !valid_id(&o.code) {
                e.push((
                    format!("opd[{i}].code"),
                    "invalid code (a-z 0-9 - _ .)".into(),
                ));
            }
            if !seen.insert(("opd", o.code.clone())) {
                e.push((format!("opd[{i}].code"), format!("duplicate {:?}", o.code)));
            }
            if o.name.trim().is_empty() {
                e.push((format!("opd[{i}].name"), "must not be empty".into()));
            }
            if !valid_domain(&o.domain) {
                e.push((
                    format!("opd[{i}].domain"),
                    format!("{:?} is not an official domain (…go.id)", o.domain),
                ));
            }
        }
        for (i, l) in self.layanan.iter().enumerate() {
            let at = |f: &str| format!("layanan[{i}].{f}");
            if !valid_id(&l.id) {
                e.push((at("id"), "invalid id (a-z 0-9 - _ .)".into()));
            }
            if !seen.insert(("layanan", l.id.clone())) {
                e.push((at("id"), format!("duplicate {:?}", l.id)));
            }
            if self.opd(&l.owner_opd).is_none() {
                e.push((at("owner_opd"), format!("unknown OPD {:?}", l.owner_opd)));
            }
            if l.name.trim().is_empty() {
                e.push((at("name"), "must not be empty".into()));
            }
            if !["terbuka", "terbatas", "rahasia"].contains(&l.classification.as_str()) {
                e.push((at("classification"), "terbuka, terbatas or rahasia".into()));
            }
            if !["internal", "provinsi", "pusat", "eksternal"].contains(&l.exposure.as_str()) {
                e.push((
                    at("exposure"),
                    "internal, provinsi, pusat or eksternal".into(),
                ));
            }
            let needs_approval = matches!(
                l.state,
                LayananState::Laik | LayananState::Aktif | LayananState::Ditangguhkan
            );
            if needs_approval && l.approval.is_none() {
                e.push((
                    at("approval"),
                    format!(
                        "a Layanan in state {} needs a kelaikan approval",
                        l.state.as_str()
                    ),
                ));
            }
            if let Some(a) = &l.approval {
                if a.id.is_empty() || a.letter_number.trim().is_empty() {
                    e.push((at("approval"), "id and letter_number are required".into()));
                }
                if a.expires_at <= a.date {
                    e.push((at("approval.expires_at"), "must be after its date".into()));
                }
            }
        }
        for (i, a) in self.aplikasi.iter().enumerate() {
            if !valid_id(&a.id) {
                e.push((
                    format!("aplikasi[{i}].id"),
                    "invalid id (a-z 0-9 - _ .)".into(),
                ));
            }
            if !seen.insert(("aplikasi", a.id.clone())) {
                e.push((format!("aplikasi[{i}].id"), format!("duplicate {:?}", a.id)));
            }
            if self.opd(&a.owner_opd).is_none() {
                e.push((
                    format!("aplikasi[{i}].owner_opd"),
                    format!("unknown OPD {:?}", a.owner_opd),
                ));
            }
        }
        for (i, g) in self.grant.iter().enumerate() {
            let at = |f: &str| format!("grant[{i}].{f}");
            if !valid_id(&g.id) {
                e.push((at("id"), "invalid id (a-z 0-9 - _ .)".into()));
            }
            if !seen.insert(("grant", g.id.clone())) {
                e.push((at("id"), format!("duplicate {:?}", g.id)));
            }
            if self.aplikasi(&g.application).is_none() {
                e.push((
                    at("application"),
                    format!("unknown application {:?}", g.application),
                ));
            }
            if self.layanan(&g.layanan).is_none() {
                e.push((at("layanan"), format!("unknown Layanan {:?}", g.layanan)));
            }
            if g.tujuan.trim().is_empty() {
                e.push((at("tujuan"), "a grant needs its purpose".into()));
            }
            if let Some(c) = &g.consent {
                if c.by == g.requested_by {
                    e.push((at("consent.by"), "the requester cannot consent".into()));
                }
            }
        }
        e
    }
}

/// An identifier: 1–64 of a-z 0-9 - _ .
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// An official domain: DNS labels ending in `go.id`.
pub fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    (domain == "go.id" || domain.ends_with(".go.id"))
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The roles of an operator (REQUIREMENTS §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Admin Platform (Diskominfo): the platform's settings, OPDs, operator accounts.
    AdminPlatform,
    /// Petugas Kelaikan & Keamanan: kelaikan review and approval, security settings.
    PetugasKelaikan,
    /// Admin OPD: its OPD's Layanan and applications, grant requests.
    AdminOpd,
    /// Pemilik Layanan: consents to grants of its OPD's Layanan, suspends them.
    PemilikLayanan,
    /// Internal auditor: reads everything, changes nothing.
    Auditor,
    /// External auditor: reads everything within one engagement's window.
    AuditorEksternal,
    /// Service desk (tier 1/2): metadata only.
    ServiceDesk,
    /// Pimpinan: reports only.
    Pimpinan,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 8] = [
        Self::AdminPlatform,
        Self::PetugasKelaikan,
        Self::AdminOpd,
        Self::PemilikLayanan,
        Self::Auditor,
        Self::AuditorEksternal,
        Self::ServiceDesk,
        Self::Pimpinan,
    ];

    /// The role's name as stored and recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminPlatform => "admin_platform",
            Self::PetugasKelaikan => "petugas_kelaikan",
            Self::AdminOpd => "admin_opd",
            Self::PemilikLayanan => "pemilik_layanan",
            Self::Auditor => "auditor",
            Self::AuditorEksternal => "auditor_eksternal",
            Self::ServiceDesk => "service_desk",
            Self::Pimpinan => "pimpinan",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role is bound to one OPD (Admin OPD, Pemilik Layanan).
    pub fn per_opd(self) -> bool {
        matches!(self, Self::AdminOpd | Self::PemilikLayanan)
    }
}

/// One role of an operator: for one OPD (per-OPD roles) and within a window (external
/// auditors: the engagement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBinding {
    /// The role.
    pub role: Role,
    /// The OPD code for per-OPD roles; empty for platform-wide roles.
    #[serde(default)]
    pub opd: String,
    /// Start of the window.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_from: Option<OffsetDateTime>,
    /// End of the window (exclusive).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
}

impl RoleBinding {
    /// Whether the binding holds at `now`.
    pub fn holds_at(&self, now: OffsetDateTime) -> bool {
        self.valid_from.is_none_or(|f| now >= f) && self.valid_until.is_none_or(|u| now < u)
    }
}

/// An operator account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Sign-in name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Argon2 PHC string of the password.
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
    /// When the account was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Its roles.
    pub roles: Vec<RoleBinding>,
}

/// One stored catalogue revision: the canonical serialisation of a [`Catalogue`] and its
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, 3, …
    pub id: i64,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The account whose change made it.
    pub actor: String,
    /// The change (`layanan.approve`, `catalog.apply`, `catalog.rollback`, …).
    pub action: String,
    /// The canonical JSON of the catalogue ([`crate::canonical_json`]).
    pub body: String,
    /// Lower-case hex SHA-256 of `body`.
    pub sha256: String,
    /// Signature over the revision's signing input ([`crate::signing_input`]).
    pub signature: Vec<u8>,
    /// Its algorithm; empty when unsigned (no signer configured).
    pub signature_algorithm: String,
    /// The signer's certificate (DER); empty when unsigned.
    pub signer_certificate: Vec<u8>,
}

/// An API token of an operator account, for automation: only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
    /// The account it acts as.
    pub username: String,
    /// A name for it (what uses it).
    pub name: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_moves_only_along_its_edges() {
        use LayananState::*;
        assert!(Draf.can_move(Diajukan));
        assert!(Uji.can_move(Laik));
        assert!(Aktif.can_move(Ditangguhkan));
        assert!(Ditangguhkan.can_move(Aktif));
        assert!(Laik.can_move(Dicabut));
        assert!(!Draf.can_move(Aktif), "no kelaikan skipped");
        assert!(!Diajukan.can_move(Laik), "no test skipped");
        assert!(!Dicabut.can_move(Draf), "withdrawal is final");
        assert!(!Dicabut.can_move(Dicabut));
        for s in LayananState::ALL {
            assert_eq!(LayananState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn official_domains_end_in_go_id() {
        assert!(valid_domain("dukcapil.contoh.go.id"));
        assert!(!valid_domain("dukcapil.example.com"));
        assert!(!valid_domain("evilgo.id"));
        assert!(!valid_domain("a..go.id"));
    }

    #[test]
    fn roles_round_trip_and_external_windows_end() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        let now = OffsetDateTime::now_utc();
        let b = RoleBinding {
            role: Role::AuditorEksternal,
            opd: String::new(),
            valid_from: Some(now - time::Duration::days(2)),
            valid_until: Some(now - time::Duration::days(1)),
        };
        assert!(!b.holds_at(now));
        assert!(b.holds_at(now - time::Duration::hours(36)));
    }
}
