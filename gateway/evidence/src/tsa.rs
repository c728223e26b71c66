//! RFC 3161 time-stamping of checkpoints: request over HTTP, token verification.
//!
//! The token is verified before it is stored: status granted, the message imprint and nonce
//! match, the CMS `messageDigest` attribute matches the TSTInfo, the signature verifies with a
//! certificate in the token that has the critical `timeStamping` extended key usage, and that
//! certificate chains (directly or through one intermediate in the token) to the configured CA.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use ring::signature;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::merkle::sha256;
use super::signer::{load_pem_certificates, verify_chain};
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
    anchors: Vec<Vec<u8>>,
    timeout: Duration,
}

impl TsaClient {
    pub(crate) fn new(settings: &TsaSettings) -> Result<Self, EvidenceError> {
        Ok(Self {
            url: settings.url.clone(),
            anchors: load_pem_certificates(&settings.ca_certificate)?,
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
        verify_token(&token, imprint, &self.anchors, Some(&nonce)).map_err(EvidenceError::Tsa)?;
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

/// Verifies a DER `TimeStampToken` over `imprint` against the TSA CA `anchors` (DER).
pub fn verify_token(
    token: &[u8],
    imprint: &[u8; 32],
    anchors: &[Vec<u8>],
    nonce: Option<&[u8]>,
) -> Result<TokenInfo, String> {
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
            certs.push(set.next()?.whole.to_vec());
        }
        next = sd.next()?;
    }
    if next.tag == 0xa1 {
        next = sd.next()?;
    }
    if next.tag != 0x31 {
        return Err("signerInfos missing".into());
    }
    let mut si = Der(Der(next.content).expect(0x30, "SignerInfo")?.content);
    si.expect(0x02, "SignerInfo version")?;
    si.next()?; // sid: the certificate is found by trying the signature below
    let digest_alg = Der(si.expect(0x30, "digestAlgorithm")?.content).expect(0x06, "digest OID")?;
    if digest_alg.content != OID_SHA256 {
        return Err("only SHA-256 signer digests are supported".into());
    }
    let attrs = si.expect(0xa0, "signedAttrs")?;
    let sig_alg =
        Der(si.expect(0x30, "signatureAlgorithm")?.content).expect(0x06, "signature OID")?;
    let sig = si.expect(0x04, "signature")?.content;

    let mut message_digest = None;
    let mut a = Der(attrs.content);
    while !a.0.is_empty() {
        let mut attr = Der(a.expect(0x30, "Attribute")?.content);
        if attr.expect(0x06, "attrType")?.content == OID_MESSAGE_DIGEST {
            message_digest = Some(
                Der(attr.expect(0x31, "attrValues")?.content)
                    .expect(0x04, "digest")?
                    .content,
            );
        }
    }
    if message_digest != Some(&sha256(tst_info)[..]) {
        return Err("messageDigest attribute does not match the TSTInfo".into());
    }
    // The signature covers the attributes re-tagged as a SET OF (RFC 5652 §5.4).
    let mut signed = attrs.whole.to_vec();
    signed[0] = 0x31;
    let tsa_cert = certs
        .iter()
        .find(|c| verify_with_cert(c, sig_alg.content, &signed, sig))
        .ok_or("TSA signature does not verify with any certificate in the token")?;
    let (_, cert) =
        X509Certificate::from_der(tsa_cert).map_err(|e| format!("TSA certificate: {e}"))?;
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.critical && eku.value.time_stamping => {}
        _ => return Err("TSA certificate lacks critical extendedKeyUsage timeStamping".into()),
    }

    let info = parse_tst_info(tst_info)?;
    if info.1 != imprint {
        return Err("messageImprint does not match".into());
    }
    if let Some(n) = nonce {
        if info.2 != Some(n) {
            return Err("nonce does not match".into());
        }
    }
    let token_info = TokenInfo {
        gen_time_unix: generalized_time_unix(&info.0)?,
        gen_time: info.0,
        serial: hex::encode(info.3),
    };
    let chained = verify_chain(&[tsa_cert], anchors, token_info.gen_time_unix).is_ok()
        || certs
            .iter()
            .filter(|c| *c != tsa_cert)
            .any(|i| verify_chain(&[tsa_cert, i], anchors, token_info.gen_time_unix).is_ok());
    if !chained {
        return Err("TSA certificate does not chain to the configured TSA CA".into());
    }
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

/// (genTime, hashedMessage, nonce, serial) of a TSTInfo.
type TstFields<'a> = (String, &'a [u8], Option<&'a [u8]>, &'a [u8]);

fn parse_tst_info(der: &[u8]) -> Result<TstFields<'_>, String> {
    let mut t = Der(Der(der).expect(0x30, "TSTInfo")?.content);
    t.expect(0x02, "TSTInfo version")?;
    t.expect(0x06, "policy")?;
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
    Ok((gen_time, hashed, nonce, serial))
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
