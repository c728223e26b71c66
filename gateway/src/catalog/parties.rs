//! The parties of the catalogue: OPDs, their applications and the grants (*izin akses*) that
//! let an application call a service. Operator-written config types; the compiled form lives in
//! `auth::grants` (stage 4, `authorize`).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::pattern::PathPattern;
use super::rate::parse_rate;

/// One regional agency (*Organisasi Perangkat Daerah*), the owner of applications and services.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpdSpec {
    /// Stable identifier, e.g. `bkpsdm`.
    pub id: String,
    /// Display name, e.g. `Badan Kepegawaian dan Pengembangan SDM`.
    pub name: String,
}

/// An application of an OPD that calls services through the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    /// Stable identifier, e.g. `simpeg`.
    pub id: String,
    /// The owning OPD (`[[opd]].id`).
    pub opd: String,
    /// Display name.
    pub name: String,
    /// How the application proves who it is.
    #[serde(default)]
    pub credentials: CredentialsSpec,
    /// Limits applied to the application across all its grants.
    #[serde(default)]
    pub limits: Option<LimitSpec>,
}

/// Credentials of an application; secrets are stored only as hashes.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSpec {
    /// OAuth2 client id for the gateway token endpoint.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Argon2 PHC string of the client secret (`$argon2id$v=19$…`).
    #[serde(default)]
    pub client_secret_hash: Option<String>,
    /// Lower-case hex SHA-256 of each API key accepted in the `apikey` header.
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
    /// Hex SHA-256 fingerprints of client certificates (colons allowed).
    #[serde(default)]
    pub certificate_sha256: Vec<String>,
    /// Exact RFC 4514 subjects of client certificates, e.g. `CN=simpeg,O=BKD,C=ID`.
    #[serde(default)]
    pub certificate_subjects: Vec<String>,
    /// JWT subjects from external issuers that identify this application.
    #[serde(default)]
    pub jwt: Vec<JwtSubjectSpec>,
}

/// An (issuer, subject) pair from an external identity provider.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSubjectSpec {
    /// Issuer (`iss`), exactly as configured in `[auth].issuers`.
    pub issuer: String,
    /// Subject (`sub`) the issuer puts in the application's tokens.
    pub sub: String,
}

/// A grant (*izin akses*): application X may call service Y for purpose Z within a scope.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Stable identifier, e.g. `simpeg-dukcapil-nik`.
    pub id: String,
    /// The consuming application (`[[application]].id`).
    pub application: String,
    /// The service (Layanan) id.
    pub service: String,
    /// Purpose of the data exchange (*tujuan*), required for the evidence log.
    pub tujuan: String,
    /// Scope (*cakupan*): methods and paths the grant covers. Empty covers nothing.
    #[serde(default)]
    pub cakupan: Vec<CakupanSpec>,
    /// Start of validity (RFC 3339); absent means immediately.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_from: Option<OffsetDateTime>,
    /// End of validity, exclusive (RFC 3339); absent means no end.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    /// Rate and quota for this grant.
    #[serde(default)]
    pub limits: Option<LimitSpec>,
    /// Consent of the service owner's OPD; a grant without it is never usable.
    #[serde(default)]
    pub consent: Option<ConsentSpec>,
}

/// One entry of a grant's scope.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CakupanSpec {
    /// HTTP methods (upper case), or `["*"]` for any.
    pub methods: Vec<String>,
    /// Path patterns on the canonical path: exact `/a/b`, prefix `/a/*`, segment `/a/{id}`.
    pub paths: Vec<String>,
    /// SOAP operations (local names of the body's element, or `*`) this entry covers on a
    /// service whose upstream is of kind `soap`. There an entry without operations covers no
    /// SOAP call (only the WSDL); on other services it is not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
}

/// Consent of the owner OPD.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSpec {
    /// The consent's reference, recorded in the `consent_id` of every request record the grant
    /// authorises (the registry fills it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Who consented (official or role at the owner OPD).
    pub by: String,
    /// When consent was given (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Rate and quota limits.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Rate like `100/s`, `600/min`, `1000/h`; exclusive with `per_second`.
    #[serde(default)]
    pub rate: Option<String>,
    /// Sustained requests per second; exclusive with `rate`.
    #[serde(default)]
    pub per_second: Option<f64>,
    /// Requests allowed at once above the sustained rate (default: one second's worth, min 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Count per calendar period.
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
}

/// A quota: at most `count` requests per calendar period.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// Requests per period.
    pub count: u64,
    /// The calendar period.
    pub period: QuotaPeriod,
}

/// Calendar period of a quota (in the configured quota time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    /// Clock hour.
    Hour,
    /// Calendar day.
    Day,
    /// Calendar month.
    Month,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The most memory (KiB), passes and lanes a stored client-secret hash may ask for. Every token
/// request for that client runs one verification at this cost (and unknown client ids run one
/// at the default cost), with at most `token_endpoint.max_concurrent_verifications` at once:
/// 64 MiB × 4 slots bounds the endpoint's memory at 256 MiB. The argon2 default (and what
/// `penghubung secret client-secret` writes) is m=19456, t=2, p=1.
pub const ARGON2_MAX_M_KIB: u32 = 65_536;
/// See [`ARGON2_MAX_M_KIB`].
pub const ARGON2_MAX_T: u32 = 8;
/// See [`ARGON2_MAX_M_KIB`].
pub const ARGON2_MAX_P: u32 = 4;

/// An argon2 PHC string whose cost a token request can afford (a huge `m` or `t` would let
/// each request pin a core and memory).
fn check_phc(h: &str) -> Result<(), String> {
    let hash = argon2::PasswordHash::new(h).map_err(|_| "not an argon2 PHC string".to_string())?;
    if !h.starts_with("$argon2") || hash.hash.is_none() || hash.salt.is_none() {
        return Err("not an argon2 PHC string".into());
    }
    let p = argon2::Params::try_from(&hash).map_err(|e| format!("argon2 parameters: {e}"))?;
    if p.m_cost() > ARGON2_MAX_M_KIB || p.t_cost() > ARGON2_MAX_T || p.p_cost() > ARGON2_MAX_P {
        return Err(format!(
            "argon2 cost m={} KiB, t={}, p={} is above the cap m={ARGON2_MAX_M_KIB} KiB, t={ARGON2_MAX_T}, p={ARGON2_MAX_P}",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        ));
    }
    Ok(())
}

/// Normalises a certificate fingerprint: lower case, colons removed.
pub fn normalize_fingerprint(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

const METHODS: &[&str] = &[
    "*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
];

impl OpdSpec {
    /// Validates the table; returns `(field path, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !valid_id(&self.id) {
            e.push((
                "id".into(),
                format!("invalid id {:?} (a-z 0-9 - _ .)", self.id),
            ));
        }
        if self.name.trim().is_empty() {
            e.push(("name".into(), "must not be empty".into()));
        }
        e
    }
}

impl ApplicationSpec {
    /// Validates the table; returns `(field path, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !valid_id(&self.id) {
            e.push((
                "id".into(),
                format!("invalid id {:?} (a-z 0-9 - _ .)", self.id),
            ));
        }
        if self.name.trim().is_empty() {
            e.push(("name".into(), "must not be empty".into()));
        }
        let c = &self.credentials;
        match (&c.client_id, &c.client_secret_hash) {
            (Some(id), Some(h)) => {
                if id.is_empty() || id.contains(':') || id.len() > 128 {
                    e.push((
                        "credentials.client_id".into(),
                        "must be 1-128 chars without ':'".into(),
                    ));
                }
                if let Err(m) = check_phc(h) {
                    e.push(("credentials.client_secret_hash".into(), m));
                }
            }
            (None, None) => {}
            _ => e.push((
                "credentials".into(),
                "client_id and client_secret_hash go together".into(),
            )),
        }
        for (i, h) in c.api_key_sha256.iter().enumerate() {
            if !is_hex64(h) {
                e.push((
                    format!("credentials.api_key_sha256[{i}]"),
                    "not a hex SHA-256".into(),
                ));
            }
        }
        for (i, h) in c.certificate_sha256.iter().enumerate() {
            if !is_hex64(&normalize_fingerprint(h)) {
                e.push((
                    format!("credentials.certificate_sha256[{i}]"),
                    "not a hex SHA-256".into(),
                ));
            }
        }
        for (i, s) in c.certificate_subjects.iter().enumerate() {
            if s.trim().is_empty() {
                e.push((
                    format!("credentials.certificate_subjects[{i}]"),
                    "must not be empty".into(),
                ));
            }
        }
        for (i, j) in c.jwt.iter().enumerate() {
            if j.issuer.is_empty() || j.sub.is_empty() {
                e.push((
                    format!("credentials.jwt[{i}]"),
                    "issuer and sub must not be empty".into(),
                ));
            }
        }
        if let Some(l) = &self.limits {
            e.extend(
                l.validate()
                    .into_iter()
                    .map(|(p, m)| (format!("limits.{p}"), m)),
            );
        }
        e
    }
}

impl LimitSpec {
    /// Validates the table; returns `(field path, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        match (&self.rate, self.per_second) {
            (Some(_), Some(_)) => e.push((
                "rate".into(),
                "rate and per_second exclude each other".into(),
            )),
            (Some(r), None) => {
                if let Err(m) = parse_rate(r) {
                    e.push(("rate".into(), m));
                }
            }
            (None, Some(p)) if !(p.is_finite() && p > 0.0 && p <= 1e6) => {
                e.push(("per_second".into(), "must be in (0, 1e6]".into()));
            }
            _ => {}
        }
        if self.burst == Some(0) {
            e.push(("burst".into(), "must be at least 1".into()));
        }
        if self.burst.is_some() && self.rate.is_none() && self.per_second.is_none() {
            e.push(("burst".into(), "needs rate or per_second".into()));
        }
        if let Some(q) = &self.quota {
            if q.count == 0 || q.count > u64::from(u32::MAX) {
                e.push(("quota.count".into(), "must be in 1..=4294967295".into()));
            }
        }
        e
    }
}

impl GrantSpec {
    /// Validates the table; returns `(field path, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !valid_id(&self.id) {
            e.push((
                "id".into(),
                format!("invalid id {:?} (a-z 0-9 - _ .)", self.id),
            ));
        }
        if self.tujuan.trim().is_empty() {
            e.push(("tujuan".into(), "the purpose is required".into()));
        }
        if self.cakupan.is_empty() {
            e.push((
                "cakupan".into(),
                "a grant must cover at least one path".into(),
            ));
        }
        for (i, c) in self.cakupan.iter().enumerate() {
            if c.methods.is_empty() {
                e.push((format!("cakupan[{i}].methods"), "must not be empty".into()));
            }
            for (j, m) in c.methods.iter().enumerate() {
                if !METHODS.contains(&m.as_str()) {
                    e.push((
                        format!("cakupan[{i}].methods[{j}]"),
                        format!("unknown method {m:?}"),
                    ));
                }
            }
            if c.paths.is_empty() {
                e.push((format!("cakupan[{i}].paths"), "must not be empty".into()));
            }
            for (j, p) in c.paths.iter().enumerate() {
                if let Err(m) = PathPattern::parse(p) {
                    e.push((format!("cakupan[{i}].paths[{j}]"), m));
                }
            }
            for (j, o) in c.operations.iter().enumerate() {
                let name_ok = o == "*"
                    || (!o.is_empty()
                        && o.chars()
                            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')));
                if !name_ok {
                    e.push((
                        format!("cakupan[{i}].operations[{j}]"),
                        format!("{o:?} is not an operation name or `*`"),
                    ));
                }
            }
        }
        if let (Some(f), Some(u)) = (self.valid_from, self.valid_until) {
            if f >= u {
                e.push(("valid_until".into(), "must be after valid_from".into()));
            }
        }
        if let Some(c) = &self.consent {
            if c.by.trim().is_empty() {
                e.push(("consent.by".into(), "must not be empty".into()));
            }
        }
        if let Some(l) = &self.limits {
            e.extend(
                l.validate()
                    .into_iter()
                    .map(|(p, m)| (format!("limits.{p}"), m)),
            );
        }
        e
    }
}

/// Cross-reference validation of the parties: unique ids and credentials, existing references.
/// Also runs each table's own `validate`. Paths look like `grant[2].application`.
pub fn validate_parties(
    opds: &[OpdSpec],
    apps: &[ApplicationSpec],
    grants: &[GrantSpec],
    known_service_ids: &[&str],
) -> Vec<(String, String)> {
    let mut e = Vec::new();
    let mut opd_ids = HashSet::new();
    for (i, o) in opds.iter().enumerate() {
        e.extend(
            o.validate()
                .into_iter()
                .map(|(p, m)| (format!("opd[{i}].{p}"), m)),
        );
        if !opd_ids.insert(o.id.as_str()) {
            e.push((format!("opd[{i}].id"), format!("duplicate opd {:?}", o.id)));
        }
    }
    let mut app_ids = HashSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut unique = |e: &mut Vec<(String, String)>, key: String, path: String, i: usize| {
        if let Some(prev) = seen.insert(key, i) {
            if prev != i {
                e.push((
                    path,
                    format!("credential already used by application[{prev}]"),
                ));
            }
        }
    };
    for (i, a) in apps.iter().enumerate() {
        e.extend(
            a.validate()
                .into_iter()
                .map(|(p, m)| (format!("application[{i}].{p}"), m)),
        );
        if !app_ids.insert(a.id.as_str()) {
            e.push((
                format!("application[{i}].id"),
                format!("duplicate application {:?}", a.id),
            ));
        }
        if !opd_ids.contains(a.opd.as_str()) {
            e.push((
                format!("application[{i}].opd"),
                format!("unknown opd {:?}", a.opd),
            ));
        }
        let c = &a.credentials;
        if let Some(id) = &c.client_id {
            unique(
                &mut e,
                format!("cid:{id}"),
                format!("application[{i}].credentials.client_id"),
                i,
            );
        }
        for (j, h) in c.api_key_sha256.iter().enumerate() {
            let k = format!("key:{}", h.to_ascii_lowercase());
            unique(
                &mut e,
                k,
                format!("application[{i}].credentials.api_key_sha256[{j}]"),
                i,
            );
        }
        for (j, h) in c.certificate_sha256.iter().enumerate() {
            let k = format!("crt:{}", normalize_fingerprint(h));
            unique(
                &mut e,
                k,
                format!("application[{i}].credentials.certificate_sha256[{j}]"),
                i,
            );
        }
        for (j, s) in c.certificate_subjects.iter().enumerate() {
            let k = format!("subj:{s}");
            unique(
                &mut e,
                k,
                format!("application[{i}].credentials.certificate_subjects[{j}]"),
                i,
            );
        }
        for (j, s) in c.jwt.iter().enumerate() {
            let k = format!("jwt:{}\u{0}{}", s.issuer, s.sub);
            unique(
                &mut e,
                k,
                format!("application[{i}].credentials.jwt[{j}]"),
                i,
            );
        }
    }
    let mut grant_ids = HashSet::new();
    for (i, g) in grants.iter().enumerate() {
        e.extend(
            g.validate()
                .into_iter()
                .map(|(p, m)| (format!("grant[{i}].{p}"), m)),
        );
        if !grant_ids.insert(g.id.as_str()) {
            e.push((
                format!("grant[{i}].id"),
                format!("duplicate grant {:?}", g.id),
            ));
        }
        if !app_ids.contains(g.application.as_str()) {
            e.push((
                format!("grant[{i}].application"),
                format!("unknown application {:?}", g.application),
            ));
        }
        if !known_service_ids.contains(&g.service.as_str()) {
            e.push((
                format!("grant[{i}].service"),
                format!("unknown service {:?}", g.service),
            ));
        }
    }
    e
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn auth_parties_cross_references_are_checked() {
        let toml = r#"
            [[opd]]
            id = "bkd"
            name = "BKD"
            [[application]]
            id = "simpeg"
            opd = "bkd"
            name = "SIMPEG"
            credentials = { api_key_sha256 = ["zz"] }
            [[application]]
            id = "simpeg"
            opd = "nope"
            name = "x"
            [[grant]]
            id = "g1"
            application = "ghost"
            service = "svc"
            tujuan = ""
            cakupan = [{ methods = ["GET"], paths = ["/a/*/b"] }]
            limits = { rate = "10/fortnight" }
        "#;
        #[derive(Deserialize, Serialize)]
        struct F {
            opd: Vec<OpdSpec>,
            application: Vec<ApplicationSpec>,
            grant: Vec<GrantSpec>,
        }
        let f: F = toml::from_str(toml).unwrap();
        let errs = validate_parties(&f.opd, &f.application, &f.grant, &["other"]);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "application[0].credentials.api_key_sha256[0]",
            "application[1].id",
            "application[1].opd",
            "grant[0].application",
            "grant[0].service",
            "grant[0].tujuan",
            "grant[0].cakupan[0].paths[0]",
            "grant[0].limits.rate",
        ] {
            assert!(paths.contains(&want), "missing {want} in {errs:?}");
        }
    }

    #[test]
    fn auth_parties_unknown_fields_are_rejected() {
        let r: Result<GrantSpec, _> =
            toml::from_str("id='g'\napplication='a'\nservice='s'\ntujuan='t'\nscope='x'\n");
        assert!(r.is_err());
    }

    #[test]
    fn argon2_cost_is_capped() {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let hash = |m: u32, t: u32, p: u32| {
            let params = argon2::Params::new(m, t, p, None).expect("params");
            let argon =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").expect("salt");
            argon.hash_password(b"x", &salt).expect("hash").to_string()
        };
        assert!(check_phc(&hash(19_456, 2, 1)).is_ok());
        assert!(check_phc(&hash(ARGON2_MAX_M_KIB, ARGON2_MAX_T, 1)).is_ok());
        let err = check_phc(&hash(ARGON2_MAX_M_KIB * 2, 1, 1)).unwrap_err();
        assert!(err.contains("above the cap"), "{err}");
        assert!(check_phc(&hash(8, ARGON2_MAX_T + 1, 1)).is_err());
        assert!(check_phc(&hash(64, 1, ARGON2_MAX_P + 1)).is_err());
        assert!(check_phc("$argon2id$nonsense").is_err());
    }
}
