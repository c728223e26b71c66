//! RFC 5280 certification path validation of checkpoint signers and TSAs, done by
//! `rustls-webpki` (path building, signatures, name chaining, basicConstraints cA and path
//! length, validity at a given time, extended key usage, CRLs) plus the key-usage rules webpki
//! leaves to its caller: keyCertSign on every issuer and the end-entity key usage.
//!
//! The rules are the ones of `proto/README.md` §6.

use std::cell::RefCell;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{
    EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::reason::{Failure, Reason};

/// id-kp-documentSigning (RFC 9336), 1.3.6.1.5.5.7.3.36.
pub const EKU_DOCUMENT_SIGNING: &str = "1.3.6.1.5.5.7.3.36";
/// The Penghubung checkpoint-signing key purpose, a UUID OID (X.667 arc `2.25`) that needs no
/// registration; accepted next to id-kp-documentSigning for private CAs.
pub const EKU_PENGHUBUNG_CHECKPOINT: &str = "2.25.67474654339864954124483032755424518973";
/// id-kp-timeStamping (RFC 3161), 1.3.6.1.5.5.7.3.8.
pub const EKU_TIME_STAMPING: &str = "1.3.6.1.5.5.7.3.8";

/// The extended key usages a checkpoint signer certificate is accepted with by default.
pub fn default_signer_ekus() -> Vec<String> {
    vec![
        EKU_DOCUMENT_SIGNING.to_owned(),
        EKU_PENGHUBUNG_CHECKPOINT.to_owned(),
    ]
}

/// The DER content octets of a dotted OID (`1.3.6…`), `None` if it is not one.
pub fn oid_der(dotted: &str) -> Option<Vec<u8>> {
    let arcs: Vec<u128> = dotted
        .split('.')
        .map(|a| a.parse::<u128>().ok())
        .collect::<Option<_>>()?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39) {
        return None;
    }
    let mut out = Vec::new();
    let mut push = |mut v: u128| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        out.extend(tmp.iter().rev());
    };
    push(arcs[0].checked_mul(40)?.checked_add(arcs[1])?);
    arcs[2..].iter().for_each(|a| push(*a));
    Some(out)
}

/// What a certificate is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A checkpoint signer.
    Signer,
    /// A time-stamping authority.
    Tsa,
}

/// Trust anchors, CRLs and accepted extended key usages for one role.
#[derive(Debug, Clone, Default)]
pub struct PathPolicy {
    /// Trust anchor certificates, DER.
    pub anchors: Vec<Vec<u8>>,
    /// Certificate revocation lists, DER; when any are given, every certificate of the path
    /// whose issuer published one of them is checked against it.
    pub crls: Vec<Vec<u8>>,
    /// Accepted extended key usages, DER OID contents; the end entity must carry at least one.
    pub ekus: Vec<Vec<u8>>,
}

impl PathPolicy {
    /// A signer policy with the given dotted EKU OIDs.
    pub fn signer(
        anchors: Vec<Vec<u8>>,
        crls: Vec<Vec<u8>>,
        ekus: &[String],
    ) -> Result<Self, String> {
        let ekus = ekus
            .iter()
            .map(|o| oid_der(o).ok_or_else(|| format!("not an OID: {o:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        if ekus.is_empty() {
            return Err("no accepted extended key usage".into());
        }
        Ok(Self {
            anchors,
            crls,
            ekus,
        })
    }

    /// A TSA policy: id-kp-timeStamping.
    pub fn tsa(anchors: Vec<Vec<u8>>, crls: Vec<Vec<u8>>) -> Self {
        Self {
            anchors,
            crls,
            ekus: vec![oid_der(EKU_TIME_STAMPING).unwrap_or_default()],
        }
    }
}

/// "If the certificate has an EKU extension, it lists one of these" (applied by webpki to every
/// certificate of the path); that the end entity has one at all is checked separately.
struct AcceptedEkus<'a>(&'a [Vec<u8>], std::cell::Cell<bool>);

impl ExtendedKeyUsageValidator for AcceptedEkus<'_> {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut empty = true;
        for id in iter {
            empty = false;
            let id = id?;
            if self
                .0
                .iter()
                .any(|o| webpki::KeyPurposeId::new(o.as_slice()) == id)
            {
                return Ok(());
            }
        }
        if empty {
            Ok(())
        } else {
            self.1.set(true);
            Err(webpki::Error::UnknownIssuer)
        }
    }
}

fn usage(detail: impl Into<String>) -> Failure {
    Failure::new(Reason::CertificateUsage, detail)
}

/// Validates `chain` (end entity first, then any intermediates in any order, possibly the
/// root) for `role` at `at_unix` under `policy`.
pub fn validate(
    chain: &[&[u8]],
    policy: &PathPolicy,
    role: Role,
    at_unix: i64,
) -> Result<(), Failure> {
    let path = |d: String| Failure::new(Reason::CertificatePath, d);
    let leaf_der = chain.first().ok_or_else(|| path("no certificate".into()))?;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| path(format!("end-entity certificate: {e}")))?;
    // The end entity's own key usage (webpki ignores keyUsage).
    let ku = leaf
        .key_usage()
        .map_err(|e| path(format!("keyUsage: {e}")))?;
    match ku {
        Some(k) if k.value.digital_signature() || k.value.non_repudiation() => {}
        Some(_) => {
            return Err(usage(
                "end-entity keyUsage has neither digitalSignature nor contentCommitment",
            ))
        }
        None => return Err(usage("end-entity certificate has no keyUsage extension")),
    }
    if leaf.is_ca() {
        return Err(usage("end-entity certificate is a CA certificate"));
    }
    match leaf.extended_key_usage() {
        Ok(Some(eku)) => {
            if role == Role::Tsa && !eku.critical {
                return Err(usage("TSA extendedKeyUsage is not critical"));
            }
        }
        Ok(None) => {
            return Err(usage(
                "end-entity certificate has no extendedKeyUsage extension",
            ))
        }
        Err(e) => return Err(path(format!("extendedKeyUsage: {e}"))),
    }
    if role == Role::Tsa {
        // RFC 3161 §2.3: the only key purpose of a TSA certificate is timeStamping.
        if let Ok(Some(eku)) = leaf.extended_key_usage() {
            let v = eku.value;
            if !v.time_stamping
                || v.any
                || v.server_auth
                || v.client_auth
                || v.code_signing
                || v.email_protection
                || v.ocsp_signing
                || !v.other.is_empty()
            {
                return Err(usage(
                    "TSA extendedKeyUsage must be exactly id-kp-timeStamping",
                ));
            }
        }
    }
    let secs = u64::try_from(at_unix).map_err(|_| path("time before 1970".into()))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));

    let anchor_ders: Vec<CertificateDer<'_>> = policy
        .anchors
        .iter()
        .map(|a| CertificateDer::from(a.as_slice()))
        .collect();
    let mut anchors = Vec::new();
    for a in &anchor_ders {
        let (_, c) =
            X509Certificate::from_der(a).map_err(|e| path(format!("trust anchor: {e}")))?;
        if let Ok(Some(k)) = c.key_usage() {
            if !k.value.key_cert_sign() {
                continue; // an anchor that may not sign certificates anchors nothing
            }
        }
        anchors.push(
            webpki::anchor_from_trusted_cert(a).map_err(|e| path(format!("trust anchor: {e}")))?,
        );
    }
    if anchors.is_empty() {
        return Err(path("no usable trust anchor".into()));
    }
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(*c))
        .collect();
    let crls = policy
        .crls
        .iter()
        .map(|c| {
            webpki::BorrowedCertRevocationList::from_der(c)
                .map(webpki::CertRevocationList::from)
                .map_err(|e| path(format!("CRL: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = match RevocationOptionsBuilder::new(&crl_refs) {
        Ok(b) => Some(
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                // Old evidence is checked with old CRLs: nextUpdate is not enforced.
                .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                .build(),
        ),
        Err(_) => None,
    };
    let leaf_cert = CertificateDer::from(*leaf_der);
    let ee = EndEntityCert::try_from(&leaf_cert)
        .map_err(|e| path(format!("end-entity certificate: {e}")))?;
    let issuer_problem: RefCell<Option<String>> = RefCell::new(None);
    let check_issuers = |p: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        for c in p.intermediate_certificates() {
            let der = c.der();
            let Ok((_, x)) = X509Certificate::from_der(der.as_ref()) else {
                return Err(webpki::Error::BadDer);
            };
            let ok = matches!(x.key_usage(), Ok(Some(k)) if k.value.key_cert_sign());
            if !ok {
                *issuer_problem.borrow_mut() =
                    Some(format!("issuer {} lacks keyUsage keyCertSign", x.subject()));
                return Err(webpki::Error::UnknownIssuer);
            }
        }
        Ok(())
    };
    let ekus = AcceptedEkus(&policy.ekus, std::cell::Cell::new(false));
    let result = ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        &ekus,
        revocation,
        Some(&check_issuers),
    );
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Some(p) = issuer_problem.borrow_mut().take() {
                return Err(usage(p));
            }
            if ekus.1.get() && matches!(e, webpki::Error::UnknownIssuer) {
                return Err(usage(format!(
                    "certificate of {} (or an issuer) lacks an accepted extended key usage",
                    leaf.subject()
                )));
            }
            use webpki::Error as E;
            Err(match e {
                E::CertExpired { .. } | E::CertNotValidYet { .. } => Failure::new(
                    Reason::CertificateExpired,
                    format!(
                        "certificate of {} not valid at {at_unix}: {e:?}",
                        leaf.subject()
                    ),
                ),
                E::CertRevoked => Failure::new(
                    Reason::CertificateRevoked,
                    format!(
                        "certificate of {} (or an issuer) is revoked",
                        leaf.subject()
                    ),
                ),
                E::RequiredEkuNotFoundContext(_) => usage(format!(
                    "certificate of {} lacks an accepted extended key usage",
                    leaf.subject()
                )),
                other => path(format!(
                    "certificate of {} does not validate to a trust anchor: {other:?}",
                    leaf.subject()
                )),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_as_der() {
        assert_eq!(
            oid_der(EKU_TIME_STAMPING).unwrap(),
            [0x2b, 6, 1, 5, 5, 7, 3, 8]
        );
        assert_eq!(
            oid_der(EKU_DOCUMENT_SIGNING).unwrap(),
            [0x2b, 6, 1, 5, 5, 7, 3, 36]
        );
        assert_eq!(
            oid_der(EKU_PENGHUBUNG_CHECKPOINT).unwrap(),
            [
                0x69, 0xe5, 0xc3, 0x92, 0xd3, 0xcd, 0xea, 0xea, 0xb3, 0x93, 0xad, 0xd8, 0xa5, 0xdd,
                0xa2, 0xb5, 0x93, 0xc6, 0x3d
            ]
        );
        assert_eq!(oid_der("1"), None);
        assert_eq!(oid_der("x.y"), None);
        assert_eq!(oid_der("1.40"), None);
    }
}
