//! The registry as the catalogue's source: compiling the registry's [`Catalogue`] into the
//! gateway's [`Catalog`], verifying signed revisions, and [`RegistrySource`] (the
//! [`Source`] reloads read when `admin.registry` is set).
//!
//! What is routed and what authorises:
//! - a Layanan is in the compiled catalogue only in state `aktif` or `ditangguhkan`, with its
//!   kelaikan approval; its `approval_id` goes into every request record;
//! - a grant is compiled only when it is not revoked, its Layanan is `aktif`, and (with
//!   `admin.consent_required`, the default) the owner OPD consented; its validity ends at the
//!   earlier of its own end and the approval's expiry. So a suspended Layanan answers 403 (no
//!   grant), and an expired approval answers 403 (`grant_expired`) from the moment it
//!   expires, without a reload and without the data plane ever reading the database.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use penghubung_registry::{self as registry, Catalogue, LayananState, Revision, Store};
use time::format_description::well_known::Rfc3339;

use crate::catalog::parties::{
    ApplicationSpec, CredentialsSpec, GrantSpec, JwtSubjectSpec, OpdSpec,
};
use crate::catalog::services::{ServiceSpec, UpstreamSpec};
use crate::catalog::{Catalog, Source};

/// Registry rules the seeds leave open (from `[admin]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// A grant authorises only with the owner's consent.
    pub consent_required: bool,
    /// The role that approves kelaikan.
    pub kelaikan_approver: registry::Role,
}

impl Policy {
    /// The policy of `[admin]`.
    pub fn of(admin: &crate::config::file::AdminSettings) -> Policy {
        Policy {
            consent_required: admin.consent_required,
            kelaikan_approver: registry::Role::parse(&admin.kelaikan_approver)
                .unwrap_or(registry::Role::PetugasKelaikan),
        }
    }
}

/// The revision id as records name it.
pub fn revision_name(id: i64) -> String {
    format!("rev-{id}")
}

/// Compiles the registry's catalogue (at revision `revision`) into the gateway's catalogue.
/// Errors carry the registry field path.
pub fn compile(
    c: &Catalogue,
    revision: i64,
    policy: &Policy,
) -> Result<Catalog, Vec<(String, String)>> {
    let mut errors = c.check();
    let mut out = Catalog {
        revision: Some(revision_name(revision)),
        ..Catalog::default()
    };
    for o in &c.opd {
        out.opd.push(OpdSpec {
            id: o.code.clone(),
            name: o.name.clone(),
        });
    }
    for (i, l) in c.layanan.iter().enumerate() {
        let routed = matches!(l.state, LayananState::Aktif | LayananState::Ditangguhkan);
        let Some(approval) = l.approval.as_ref().filter(|_| routed) else {
            continue;
        };
        let mut spec = match &l.spec {
            serde_json::Value::Object(map) => map.clone(),
            _ => {
                errors.push((format!("layanan[{i}].spec"), "must be a table".into()));
                continue;
            }
        };
        for owned in [
            "id",
            "owner_opd",
            "version",
            "classification",
            "exposure",
            "upstream",
            "approval_id",
        ] {
            if spec.contains_key(owned) {
                errors.push((
                    format!("layanan[{i}].spec.{owned}"),
                    "is set by the registry".into(),
                ));
            }
        }
        spec.insert("id".into(), l.id.clone().into());
        spec.insert("owner_opd".into(), l.owner_opd.clone().into());
        spec.insert("version".into(), l.version.clone().into());
        spec.insert("classification".into(), l.classification.clone().into());
        spec.insert("exposure".into(), l.exposure.clone().into());
        spec.insert("upstream".into(), l.id.clone().into());
        spec.insert("approval_id".into(), approval.id.clone().into());
        match serde_json::from_value::<ServiceSpec>(spec.into()) {
            Ok(s) => out.service.push(s),
            Err(e) => errors.push((format!("layanan[{i}].spec"), e.to_string())),
        }
        let mut upstream = match &l.upstream {
            serde_json::Value::Object(map) => map.clone(),
            _ => {
                errors.push((format!("layanan[{i}].upstream"), "must be a table".into()));
                continue;
            }
        };
        upstream.insert("name".into(), l.id.clone().into());
        match serde_json::from_value::<UpstreamSpec>(upstream.into()) {
            Ok(u) => out.upstream.push(u),
            Err(e) => errors.push((format!("layanan[{i}].upstream"), e.to_string())),
        }
    }
    for a in &c.aplikasi {
        let cr = &a.credentials;
        out.application.push(ApplicationSpec {
            id: a.id.clone(),
            opd: a.owner_opd.clone(),
            name: a.name.clone(),
            credentials: CredentialsSpec {
                client_id: cr.client_id.clone(),
                client_secret_hash: cr.client_secret_hash.clone(),
                api_key_sha256: cr.api_keys.iter().map(|k| k.sha256.clone()).collect(),
                certificate_sha256: cr.certificate_sha256.clone(),
                certificate_subjects: Vec::new(),
                jwt: cr
                    .jwt
                    .iter()
                    .map(|j| JwtSubjectSpec {
                        issuer: j.issuer.clone(),
                        sub: j.sub.clone(),
                    })
                    .collect(),
            },
            limits: None,
        });
    }
    for (i, g) in c.grant.iter().enumerate() {
        let Some(layanan) = c.layanan(&g.layanan) else {
            continue;
        };
        let approval = match (&layanan.approval, layanan.state) {
            (Some(a), LayananState::Aktif) => a,
            _ => continue,
        };
        if g.revoked || (policy.consent_required && g.consent.is_none()) {
            continue;
        }
        let valid_until = Some(match g.valid_until {
            Some(u) if u < approval.expires_at => u,
            _ => approval.expires_at,
        });
        let spec = serde_json::json!({
            "id": g.id,
            "application": g.application,
            "service": g.layanan,
            "tujuan": g.tujuan,
            "cakupan": g.cakupan,
            "valid_from": g.valid_from.and_then(|t| t.format(&Rfc3339).ok()),
            "valid_until": valid_until.and_then(|t| t.format(&Rfc3339).ok()),
            "limits": g.limits,
            "consent": g.consent.as_ref().map(|c| serde_json::json!({
                "id": c.id,
                "by": c.by,
                "at": c.at.format(&Rfc3339).unwrap_or_default(),
            })).or_else(|| (!policy.consent_required).then(|| serde_json::json!({
                "by": "(consent not required)",
                "at": approval.date.format(&Rfc3339).unwrap_or_default(),
            }))),
        });
        match serde_json::from_value::<GrantSpec>(spec) {
            Ok(s) => out.grant.push(s),
            Err(e) => errors.push((format!("grant[{i}]"), e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// How revisions are checked: the signer's certificate they must carry (pinned from the
/// configured evidence signer at start), or none when no signer is configured (development:
/// revisions are unsigned and only their body digest is checked).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// DER of the signer's certificate; `None`: no signer, unsigned revisions.
    pub signer_certificate: Option<Vec<u8>>,
}

impl Trust {
    /// Checks `revision`: its body digest, and its signature by the pinned signer. A revision
    /// that fails is refused, whatever its content.
    pub fn verify(&self, revision: &Revision) -> Result<Catalogue, String> {
        let name = revision_name(revision.id);
        let digest = registry::sha256_hex(revision.body.as_bytes());
        if digest != revision.sha256 {
            return Err(format!(
                "{name}: its body does not match its digest (tampered)"
            ));
        }
        let created = revision
            .created_at
            .format(&Rfc3339)
            .map_err(|e| format!("{name}: {e}"))?;
        let sha: [u8; 32] = hex::decode(&revision.sha256)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{name}: bad digest"))?;
        match &self.signer_certificate {
            Some(cert) => {
                if revision.signature.is_empty() {
                    return Err(format!("{name}: unsigned, and a signer is configured"));
                }
                if &revision.signer_certificate != cert {
                    return Err(format!(
                        "{name}: signed by another certificate than the configured signer's"
                    ));
                }
                let input = registry::signing_input(revision.id, &created, &sha);
                let message = penghubung_evidence::checkpoint::signing_message(
                    penghubung_evidence::signer::PURPOSE_REVISION,
                    &input,
                )
                .ok_or_else(|| format!("{name}: bad purpose"))?;
                penghubung_evidence::signer::verify_signature(
                    &revision.signature_algorithm,
                    &message,
                    &revision.signature,
                    cert,
                )
                .map_err(|_| format!("{name}: its signature does not verify (tampered)"))?;
            }
            None if !revision.signature.is_empty() => {
                // Signed while a signer was configured: still check it against its own
                // certificate, so a tampered signature is noticed.
                let input = registry::signing_input(revision.id, &created, &sha);
                let message = penghubung_evidence::checkpoint::signing_message(
                    penghubung_evidence::signer::PURPOSE_REVISION,
                    &input,
                )
                .ok_or_else(|| format!("{name}: bad purpose"))?;
                penghubung_evidence::signer::verify_signature(
                    &revision.signature_algorithm,
                    &message,
                    &revision.signature,
                    &revision.signer_certificate,
                )
                .map_err(|_| format!("{name}: its signature does not verify (tampered)"))?;
            }
            None => {}
        }
        serde_json::from_str(&revision.body).map_err(|e| format!("{name}: {e}"))
    }
}

/// Reads the registry's current catalogue, checked against its latest signed revision (the
/// tables must hold exactly what that revision holds), with the latest revision id.
pub async fn current(store: &dyn Store, trust: &Trust) -> Result<(Catalogue, i64), String> {
    let (mut catalogue, latest) = store.catalogue().await.map_err(|e| e.to_string())?;
    catalogue.normalise();
    if latest == 0 {
        return if catalogue == Catalogue::default() {
            Ok((catalogue, 0))
        } else {
            Err("the registry holds a catalogue without any revision (tampered)".into())
        };
    }
    let revision = store
        .revision(latest)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} is missing", revision_name(latest)))?;
    let signed = trust.verify(&revision)?;
    if signed != catalogue {
        return Err(format!(
            "the registry tables differ from the signed {} (tampered)",
            revision_name(latest)
        ));
    }
    Ok((catalogue, latest))
}

/// The registry as the catalogue [`Source`] of reloads.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The registry file (for messages).
    pub origin: String,
    /// Revision checking.
    pub trust: Trust,
    /// The registry rules.
    pub policy: Policy,
}

impl Source for RegistrySource {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Catalog, String>> {
        Box::pin(async move {
            let (catalogue, latest) = current(&*self.store, &self.trust).await?;
            compile(&catalogue, latest, &self.policy).map_err(|errors| {
                errors
                    .iter()
                    .map(|(p, m)| format!("{p}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use penghubung_registry::{Aplikasi, AppKind, Approval, Consent, Grant, Layanan, Opd};
    use time::OffsetDateTime;

    fn catalogue(state: LayananState, consent: bool, expires_in: time::Duration) -> Catalogue {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
        Catalogue {
            opd: vec![Opd {
                code: "dukcapil".into(),
                name: "Dukcapil".into(),
                domain: "dukcapil.contoh.go.id".into(),
            }],
            layanan: vec![Layanan {
                id: "nik".into(),
                owner_opd: "dukcapil".into(),
                name: "NIK".into(),
                version: "v1".into(),
                classification: "terbatas".into(),
                exposure: "internal".into(),
                state,
                submitted_by: "b".into(),
                spec: serde_json::json!({"hosts": ["*"], "route": [{"path": "/nik/*"}]}),
                upstream: serde_json::json!({"targets": ["127.0.0.1:1"]}),
                approval: Some(Approval {
                    id: "kl-1".into(),
                    approver: "p".into(),
                    date: now - time::Duration::days(1),
                    letter_number: "800/1".into(),
                    conditions: String::new(),
                    expires_at: now + expires_in,
                }),
            }],
            aplikasi: vec![Aplikasi {
                id: "simpeg".into(),
                owner_opd: "dukcapil".into(),
                name: "SIMPEG".into(),
                kind: AppKind::Umum,
                credentials: Default::default(),
            }],
            grant: vec![Grant {
                id: "g".into(),
                application: "simpeg".into(),
                layanan: "nik".into(),
                tujuan: "uji".into(),
                cakupan: serde_json::json!([{"methods": ["GET"], "paths": ["/nik/*"]}]),
                valid_from: None,
                valid_until: Some(now + time::Duration::days(400)),
                limits: None,
                requested_by: "a".into(),
                consent: consent.then(|| Consent {
                    id: "ct-1".into(),
                    by: "o".into(),
                    at: now,
                }),
                revoked: false,
            }],
        }
    }

    const REQUIRED: Policy = Policy {
        consent_required: true,
        kelaikan_approver: registry::Role::PetugasKelaikan,
    };

    #[test]
    fn only_active_approved_services_with_consented_grants_authorise() {
        let day = time::Duration::days(1);
        let c =
            compile(&catalogue(LayananState::Aktif, true, day), 4, &REQUIRED).expect("compiles");
        assert_eq!(c.revision.as_deref(), Some("rev-4"));
        assert_eq!(c.service[0].approval_id.as_deref(), Some("kl-1"));
        assert_eq!(c.upstream[0].name, "nik");
        let g = &c.grant[0];
        assert_eq!(
            g.consent.as_ref().and_then(|c| c.id.as_deref()),
            Some("ct-1")
        );
        // The grant ends with the approval, not a year later.
        let approval_end = catalogue(LayananState::Aktif, true, day).layanan[0]
            .approval
            .as_ref()
            .map(|a| a.expires_at);
        assert_eq!(g.valid_until, approval_end);
        // Suspended: routed, no grant (403). Laik: not routed at all.
        let c = compile(
            &catalogue(LayananState::Ditangguhkan, true, day),
            1,
            &REQUIRED,
        )
        .expect("compiles");
        assert_eq!((c.service.len(), c.grant.len()), (1, 0));
        let c = compile(&catalogue(LayananState::Laik, true, day), 1, &REQUIRED).expect("compiles");
        assert_eq!((c.service.len(), c.grant.len()), (0, 0));
        // No consent: no grant, unless the setting says consent is not required.
        let c =
            compile(&catalogue(LayananState::Aktif, false, day), 1, &REQUIRED).expect("compiles");
        assert!(c.grant.is_empty());
        let relaxed = Policy {
            consent_required: false,
            ..REQUIRED
        };
        let c =
            compile(&catalogue(LayananState::Aktif, false, day), 1, &relaxed).expect("compiles");
        assert_eq!(c.grant.len(), 1);
        assert!(c.grant[0].consent.as_ref().is_some_and(|c| c.id.is_none()));
    }

    #[test]
    fn registry_owned_fields_and_bad_tables_are_refused_with_their_path() {
        let mut c = catalogue(LayananState::Aktif, true, time::Duration::days(1));
        c.layanan[0].spec = serde_json::json!({"hosts": ["*"], "approval_id": "forged"});
        let errors = compile(&c, 1, &REQUIRED).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|(p, _)| p == "layanan[0].spec.approval_id"),
            "{errors:?}"
        );
        c.layanan[0].spec = serde_json::json!({"hosts": ["*"], "rute": []});
        let errors = compile(&c, 1, &REQUIRED).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|(p, m)| p == "layanan[0].spec" && m.contains("rute")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_approver_setting_picks_the_role() {
        let mut admin = crate::config::file::AdminSettings::default();
        assert_eq!(
            Policy::of(&admin).kelaikan_approver,
            registry::Role::PetugasKelaikan
        );
        admin.kelaikan_approver = "admin_platform".into();
        assert_eq!(
            Policy::of(&admin).kelaikan_approver,
            registry::Role::AdminPlatform
        );
        admin.kelaikan_approver = "bupati".into();
        assert!(admin
            .issues()
            .iter()
            .any(|(p, _)| p == "admin.kelaikan_approver"));
    }
}
