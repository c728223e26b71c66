//! RFC 3161 time-stamping of checkpoints: request over HTTP, token verification.
//!
//! The token is verified before it is stored, and again by the verifier (`proto/README.md`
//! §5.3): status granted, the message imprint (and, when the request is known, the nonce)
//! match, the policy is accepted, the CMS `messageDigest` attribute matches the TSTInfo, an ESS
//! `signingCertificate` or `signingCertificateV2` attribute names the certificate whose key
//! verifies the signature, and that certificate (critical EKU exactly id-kp-timeStamping)
//! validates to the TSA CA at `genTime` (RFC 5280, [`crate::pki`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use ring::signature;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::merkle::sha256;
use super::pki::{self, PathPolicy, Role};
use super::reason::{Failure, Reason};
use super::signer::load_pem_certificates;
use super::{EvidenceError, TsaSettings};

const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// id-aa-signingCertificate (RFC 2634), 1.2.840.113549.1.9.16.2.12.
const OID_SIGNING_CERTIFICATE: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x0c,
];
/// id-aa-signingCertificateV2 (RFC 5035), 1.2.840.113549.1.9.16.2.47.
const OID_SIGNING_CERTIFICATE_V2: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x2f,
];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// `(host, port, path)` of an `http://` URL.
pub fn parse_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    (!host.is_empty()).then(|| (host.to_owned(), port, path.to_owned()))
}

/// A configured TSA.
pub(crate) struct TsaClient {
    url: String,
    policy: PathPolicy,
    accepted_policies: Vec<Vec<u8>>,
    timeout: Duration,
}

impl TsaClient {
    pub(crate) fn new(settings: &TsaSettings) -> Result<Self, EvidenceError> {
        let accepted_policies = settings
            .accepted_policies
            .iter()
            .map(|o| {
                pki::oid_der(o).ok_or_else(|| {
                    EvidenceError::Config(format!(
                        "evidence.tsa.accepted_policies: not an OID: {o:?}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            url: settings.url.clone(),
            policy: PathPolicy::tsa(load_pem_certificates(&settings.ca_certificate)?, Vec::new()),
            accepted_policies,
            timeout: Duration::from_millis(settings.timeout_ms),
        })
    }

    /// Obtains and verifies a token over `imprint` (a SHA-256 value).
    pub(crate) async fn timestamp(&self, imprint: &[u8; 32]) -> Result<Vec<u8>, EvidenceError> {
        let mut nonce: [u8; 8] = rand::random();
        // Positive and minimally encoded, so it compares byte for byte with the reply.
        nonce[0] = (nonce[0] & 0x7f) | 0x01;
        let query = request(imprint, &nonce);
        let reply = tokio::time::timeout(self.timeout, post(&self.url, query))
            .await
            .map_err(|_| EvidenceError::Tsa("timed out".into()))??;
        let token = token_from_response(&reply).map_err(EvidenceError::Tsa)?;
        verify_token_with(
            &token,
            imprint,
            &self.policy,
            &self.accepted_policies,
            Some(&nonce),
        )
        .map_err(|f| EvidenceError::Tsa(f.to_string()))?;
        Ok(token)
    }
}

async fn post(url: &str, query: Vec<u8>) -> Result<Vec<u8>, EvidenceError> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/timestamp-query")
        .header(http::header::ACCEPT, "application/timestamp-reply")
        .body(Full::new(Bytes::from(query)))
        .map_err(|e| EvidenceError::Tsa(format!("request: {e}")))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| EvidenceError::Tsa(format!("unreachable: {e}")))?;
    if !resp.status().is_success() {
        return Err(EvidenceError::Tsa(format!("HTTP status {}", resp.status())));
    }
    let body = Limited::new(resp.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| EvidenceError::Tsa(format!("reading reply: {e}")))?;
    Ok(body.to_bytes().to_vec())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// DER `TimeStampReq` (version 1, SHA-256 imprint, nonce, certReq true).
pub fn request(imprint: &[u8; 32], nonce: &[u8]) -> Vec<u8> {
    let alg = tlv(0x30, &[tlv(0x06, OID_SHA256), vec![0x05, 0x00]].concat());
    let mi = tlv(0x30, &[alg, tlv(0x04, imprint)].concat());
    tlv(
        0x30,
        &[
            vec![0x02, 0x01, 0x01],
            mi,
            tlv(0x02, nonce),
            vec![0x01, 0x01, 0xff],
        ]
        .concat(),
    )
}

/// A DER element: tag, content, whole encoding.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Iterates the DER elements of a buffer.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn next(&mut self) -> Result<Tlv<'a>, String> {
        let buf = self.0;
        let err = || "malformed DER".to_string();
        let tag = *buf.first().ok_or_else(err)?;
        let first = *buf.get(1).ok_or_else(err)?;
        let (len, hdr) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(err());
            }
            let bytes = buf.get(2..2 + n).ok_or_else(err)?;
            (
                bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize),
                2 + n,
            )
        };
        let whole = buf.get(..hdr + len).ok_or_else(err)?;
        self.0 = &buf[hdr + len..];
        Ok(Tlv {
            tag,
            content: &whole[hdr..],
            whole,
        })
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, String> {
        let t = self.next()?;
        if t.tag == tag {
            Ok(t)
        } else {
            Err(format!("{what}: unexpected tag 0x{:02x}", t.tag))
        }
    }
}

/// Extracts the `timeStampToken` of a DER `TimeStampResp`, checking the status is granted.
pub fn token_from_response(resp: &[u8]) -> Result<Vec<u8>, String> {
    let mut d = Der(Der(resp).expect(0x30, "TimeStampResp")?.content);
    let status_info = d.expect(0x30, "PKIStatusInfo")?;
    let status = Der(status_info.content).expect(0x02, "PKIStatus")?;
    if !(status.content == [0] || status.content == [1]) {
        return Err(format!("TSA refused, PKIStatus {:?}", status.content));
    }
    Ok(d.expect(0x30, "timeStampToken")?.whole.to_vec())
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// `genTime` as written by the TSA (GeneralizedTime).
    pub gen_time: String,
    /// `genTime` in Unix seconds.
    pub gen_time_unix: i64,
    /// Serial number, hex.
    pub serial: String,
}

/// Verifies a DER `TimeStampToken` over `imprint` against the TSA CA `anchors` (DER), any
/// policy, no CRL.
pub fn verify_token(
    token: &[u8],
    imprint: &[u8; 32],
    anchors: &[Vec<u8>],
    nonce: Option<&[u8]>,
) -> Result<TokenInfo, String> {
    verify_token_with(
        token,
        imprint,
        &PathPolicy::tsa(anchors.to_vec(), Vec::new()),
        &[],
        nonce,
    )
    .map_err(|f| f.detail)
}

fn malformed(e: String) -> Failure {
    Failure::new(Reason::Timestamp, format!("time-stamp token: {e}"))
}

/// The parts of a `TimeStampToken` the checks need.
#[derive(Debug)]
pub struct ParsedToken<'a> {
    /// DER of the TSTInfo (the eContent).
    pub tst_info: &'a [u8],
    /// Certificates in the SignedData.
    pub certs: Vec<&'a [u8]>,
    /// Signed attributes, whole DER (context tag 0xa0).
    pub signed_attrs: &'a [u8],
    /// `(attrType OID, attrValues content)` of each signed attribute.
    pub attrs: Vec<(&'a [u8], &'a [u8])>,
    /// Signature algorithm OID.
    pub sig_alg: &'a [u8],
    /// Signature.
    pub signature: &'a [u8],
}

/// Parses the structure of a DER `TimeStampToken` (CMS ContentInfo with SignedData holding a
/// TSTInfo and exactly one SignerInfo with SHA-256 digest and signed attributes).
pub fn parse_token(token: &[u8]) -> Result<ParsedToken<'_>, String> {
    let mut ci = Der(Der(token).expect(0x30, "ContentInfo")?.content);
    if ci.expect(0x06, "contentType")?.content != OID_SIGNED_DATA {
        return Err("token is not CMS SignedData".into());
    }
    let sd = Der(ci.expect(0xa0, "content")?.content).expect(0x30, "SignedData")?;
    let mut sd = Der(sd.content);
    sd.expect(0x02, "version")?;
    sd.expect(0x31, "digestAlgorithms")?;
    let mut encap = Der(sd.expect(0x30, "encapContentInfo")?.content);
    if encap.expect(0x06, "eContentType")?.content != OID_TST_INFO {
        return Err("token does not hold a TSTInfo".into());
    }
    let tst_info = Der(encap.expect(0xa0, "eContent")?.content)
        .expect(0x04, "eContent")?
        .content;
    let mut next = sd.next()?;
    let mut certs = Vec::new();
    if next.tag == 0xa0 {
        let mut set = Der(next.content);
        while !set.0.is_empty() {
            certs.push(set.next()?.whole);
        }
        next = sd.next()?;
    }
    if next.tag == 0xa1 {
        next = sd.next()?;
    }
    if next.tag != 0x31 {
        return Err("signerInfos missing".into());
    }
    let mut infos = Der(next.content);
    let mut si = Der(infos.expect(0x30, "SignerInfo")?.content);
    if !infos.0.is_empty() {
        return Err("more than one SignerInfo".into());
    }
    si.expect(0x02, "SignerInfo version")?;
    si.next()?; // sid: the certificate is found by the signature and bound by ESS below
    let digest_alg = Der(si.expect(0x30, "digestAlgorithm")?.content).expect(0x06, "digest OID")?;
    if digest_alg.content != OID_SHA256 {
        return Err("only SHA-256 signer digests are supported".into());
    }
    let signed_attrs = si.expect(0xa0, "signedAttrs")?;
    let sig_alg =
        Der(si.expect(0x30, "signatureAlgorithm")?.content).expect(0x06, "signature OID")?;
    let signature = si.expect(0x04, "signature")?.content;
    let mut attrs = Vec::new();
    let mut a = Der(signed_attrs.content);
    while !a.0.is_empty() {
        let mut attr = Der(a.expect(0x30, "Attribute")?.content);
        let oid = attr.expect(0x06, "attrType")?.content;
        let values = attr.expect(0x31, "attrValues")?.content;
        attrs.push((oid, values));
    }
    Ok(ParsedToken {
        tst_info,
        certs,
        signed_attrs: signed_attrs.whole,
        attrs,
        sig_alg: sig_alg.content,
        signature,
    })
}

/// Checks that an ESS signingCertificate(V2) attribute's first ESSCertID hashes `cert`.
fn ess_binds(attrs: &[(&[u8], &[u8])], cert: &[u8]) -> Result<(), Failure> {
    let ess = |d: &str| Failure::new(Reason::TimestampEss, d.to_owned());
    for (oid, values) in attrs {
        let v2 = *oid == OID_SIGNING_CERTIFICATE_V2;
        if !v2 && *oid != OID_SIGNING_CERTIFICATE {
            continue;
        }
        let parse = || -> Result<bool, String> {
            let sc = Der(values).expect(0x30, "SigningCertificate")?;
            let certs = Der(sc.content).expect(0x30, "certs")?;
            let mut id = Der(Der(certs.content).expect(0x30, "ESSCertID")?.content);
            let mut first = id.next()?;
            let alg: &ring::digest::Algorithm = if v2 {
                if first.tag == 0x30 {
                    let oid = Der(first.content).expect(0x06, "hashAlgorithm")?.content;
                    first = id.next()?;
                    match oid {
                        OID_SHA256 => &ring::digest::SHA256,
                        OID_SHA384 => &ring::digest::SHA384,
                        OID_SHA512 => &ring::digest::SHA512,
                        _ => return Err("unsupported ESSCertIDv2 hash".into()),
                    }
                } else {
                    &ring::digest::SHA256
                }
            } else {
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY
            };
            if first.tag != 0x04 {
                return Err("certHash missing".into());
            }
            Ok(ring::digest::digest(alg, cert).as_ref() == first.content)
        };
        return match parse() {
            Ok(true) => Ok(()),
            Ok(false) => Err(ess(
                "ESS signingCertificate does not name the certificate that signed the token",
            )),
            Err(e) => Err(ess(&format!("ESS signingCertificate: {e}"))),
        };
    }
    Err(ess(
        "token has no ESS signingCertificate or signingCertificateV2 attribute",
    ))
}

/// Verifies a DER `TimeStampToken` over `imprint` under `policy` (TSA CA, CRLs), with the
/// TSTInfo policy in `accepted_policies` (DER OID contents; empty accepts any) and, when
/// given, the request's nonce echoed.
pub fn verify_token_with(
    token: &[u8],
    imprint: &[u8; 32],
    policy: &PathPolicy,
    accepted_policies: &[Vec<u8>],
    nonce: Option<&[u8]>,
) -> Result<TokenInfo, Failure> {
    let t = parse_token(token).map_err(malformed)?;
    let bad = |d: &str| Failure::new(Reason::Timestamp, d.to_owned());
    let message_digest = t
        .attrs
        .iter()
        .find(|(oid, _)| *oid == OID_MESSAGE_DIGEST)
        .and_then(|(_, v)| Der(v).expect(0x04, "digest").ok())
        .map(|d| d.content);
    if message_digest != Some(&sha256(t.tst_info)[..]) {
        return Err(bad("messageDigest attribute does not match the TSTInfo"));
    }
    // The signature covers the attributes re-tagged as a SET OF (RFC 5652 §5.4).
    let mut signed = t.signed_attrs.to_vec();
    signed[0] = 0x31;
    let tsa_cert = *t
        .certs
        .iter()
        .find(|c| verify_with_cert(c, t.sig_alg, &signed, t.signature))
        .ok_or_else(|| bad("TSA signature does not verify with any certificate in the token (certReq requires the certificate)"))?;
    ess_binds(&t.attrs, tsa_cert)?;
    let info = parse_tst_info(t.tst_info).map_err(malformed)?;
    if info.1 != imprint {
        return Err(bad("messageImprint does not match"));
    }
    if let Some(n) = nonce {
        if info.2 != Some(n) {
            return Err(bad("nonce does not match"));
        }
    }
    if !accepted_policies.is_empty() && !accepted_policies.iter().any(|p| p.as_slice() == info.4) {
        return Err(bad("TSA policy is not in the accepted set"));
    }
    let token_info = TokenInfo {
        gen_time_unix: generalized_time_unix(&info.0).map_err(malformed)?,
        gen_time: info.0,
        serial: hex::encode(info.3),
    };
    let mut chain = vec![tsa_cert];
    chain.extend(t.certs.iter().copied().filter(|c| *c != tsa_cert));
    pki::validate(&chain, policy, Role::Tsa, token_info.gen_time_unix)?;
    Ok(token_info)
}

fn verify_with_cert(cert: &[u8], sig_alg: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok((_, c)) = X509Certificate::from_der(cert) else {
        return false;
    };
    let alg: &dyn signature::VerificationAlgorithm = match sig_alg {
        OID_ECDSA_SHA256 => &signature::ECDSA_P256_SHA256_ASN1,
        OID_RSA_SHA256 | OID_RSA => &signature::RSA_PKCS1_2048_8192_SHA256,
        OID_ED25519 => &signature::ED25519,
        _ => return false,
    };
    signature::UnparsedPublicKey::new(alg, c.public_key().subject_public_key.data.as_ref())
        .verify(msg, sig)
        .is_ok()
}

/// (genTime, hashedMessage, nonce, serial, policy) of a TSTInfo.
type TstFields<'a> = (String, &'a [u8], Option<&'a [u8]>, &'a [u8], &'a [u8]);

/// Parses a DER TSTInfo (RFC 3161 §2.4.2).
pub fn parse_tst_info(der: &[u8]) -> Result<TstFields<'_>, String> {
    let mut t = Der(Der(der).expect(0x30, "TSTInfo")?.content);
    if t.expect(0x02, "TSTInfo version")?.content != [1] {
        return Err("TSTInfo version is not 1".into());
    }
    let policy = t.expect(0x06, "policy")?.content;
    let mut mi = Der(t.expect(0x30, "messageImprint")?.content);
    let alg = Der(mi.expect(0x30, "hashAlgorithm")?.content).expect(0x06, "hash OID")?;
    if alg.content != OID_SHA256 {
        return Err("messageImprint is not SHA-256".into());
    }
    let hashed = mi.expect(0x04, "hashedMessage")?.content;
    let serial = t.expect(0x02, "serialNumber")?.content;
    let gen_time = String::from_utf8_lossy(t.expect(0x18, "genTime")?.content).into_owned();
    let mut nonce = None;
    while !t.0.is_empty() {
        let e = t.next()?;
        if e.tag == 0x02 {
            nonce = Some(e.content);
        }
    }
    Ok((gen_time, hashed, nonce, serial, policy))
}

fn generalized_time_unix(s: &str) -> Result<i64, String> {
    let err = || format!("bad genTime {s:?}");
    let digits =
        |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok()).ok_or_else(err);
    let (y, mo, d, h, mi, se) = (
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(8..10)?,
        digits(10..12)?,
        digits(12..14)?,
    );
    let month = time::Month::try_from(mo as u8).map_err(|_| err())?;
    let date = time::Date::from_calendar_date(y as i32, month, d as u8).map_err(|_| err())?;
    let dt = date
        .with_hms(h as u8, mi as u8, se as u8)
        .map_err(|_| err())?;
    Ok(dt.assume_utc().unix_timestamp())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_and_request_shape() {
        assert_eq!(
            parse_http_url("http://tsa:318/ts"),
            Some(("tsa".into(), 318, "/ts".into()))
        );
        assert_eq!(
            parse_http_url("http://tsa"),
            Some(("tsa".into(), 80, "/".into()))
        );
        assert_eq!(parse_http_url("https://tsa"), None);
        let req = request(&[7u8; 32], &[0x11, 2, 3]);
        assert_eq!(req[0], 0x30);
        assert_eq!(req.len(), 2 + req[1] as usize);
        assert_eq!(generalized_time_unix("19700101000010Z").unwrap(), 10);
        assert!(verify_token(&req, &[0; 32], &[], None).is_err());
    }
}
