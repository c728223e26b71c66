//! Conformance vectors (`proto/README.md` §12): good and bad logs, bundles and anchors for every
//! tamper and forgery class, each with its expected verdict and reason class, checked with
//! `verify` and `check-bundle`. With `PENGHUBUNG_EVIDENCE_VECTORS_DIR` set, every vector is also
//! written there (one directory each, with `expected.json` and the trust anchors) so another
//! implementation can be run against the same files. Nothing generated is committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evidence_support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use evidence_support::*;
use penghubung_evidence::checkpoint::{
    digest, digest_v2, signing_message, timestamp_binding, FORMAT_CURRENT, PURPOSE_CHECKPOINT,
};
use penghubung_evidence::cli::{self, check_bundle_bytes, Bundle, TrustArgs};
use penghubung_evidence::merkle::{inclusion_proof, leaf_hash, root_of, Hash};
use penghubung_evidence::personal::{commitment, PersonalDisclosure, Place};
use penghubung_evidence::reason::Reason;
use penghubung_evidence::schema::{record::Kind, Checkpoint, Outcome, Record};
use penghubung_evidence::segment::{encode_frame, segment_path, GENESIS};
use penghubung_evidence::verify::{verify_dir, Anchor, VerifyOptions};
use prost::Message as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A signing identity: P-256 key and its chain (leaf first), DER.
struct Identity {
    key: Vec<u8>,
    chain: Vec<Vec<u8>>,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn leaf_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![document_signing()];
    p
}

fn identity(
    params: CertificateParams,
    issuer: &rcgen::Certificate,
    issuer_key: &KeyPair,
    tail: &[&[u8]],
) -> Identity {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
    let mut chain = vec![cert.der().to_vec()];
    chain.extend(tail.iter().map(|c| c.to_vec()));
    Identity {
        key: key.serialize_der(),
        chain,
    }
}

/// How checkpoints of a generated log are written.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Current,
    /// As the code before format 2 wrote them: legacy digest, bare signature, no binding.
    Legacy,
}

/// Writes `records` as a fresh single-segment log in `dir`, filling sequence numbers and
/// recomputing (and signing with `id`) every checkpoint, as a writer holding that key would.
/// `tweak` may change each checkpoint before it is signed.
fn write_log(
    dir: &Path,
    records: &[Record],
    id: &Identity,
    format: Format,
    tweak: &dyn Fn(usize, &mut Checkpoint),
) -> Vec<Vec<u8>> {
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &id.key, &rng).unwrap();
    let mut encoded: Vec<Vec<u8>> = Vec::new();
    let mut previous = [0u8; 32];
    let mut previous_binding = [0u8; 32];
    let mut n_cp = 0;
    for (i, r) in records.iter().enumerate() {
        let mut r = r.clone();
        r.sequence = i as u64 + 1;
        r.time_unix_nanos = 1_700_000_000_000_000_000 + i as i64;
        r.node_id = "node-v".into();
        if let Some(Kind::Checkpoint(_)) = &r.kind {
            let leaves: Vec<Hash> = encoded.iter().map(|b| leaf_hash(b)).collect();
            let mut cp = Checkpoint {
                tree_size: leaves.len() as u64,
                root_hash: root_of(&leaves).to_vec().into(),
                previous_checkpoint_sha256: previous.to_vec().into(),
                signed_time_unix_nanos: now_nanos(),
                tsa_status: "disabled".into(),
                signature_algorithm: "ecdsa-p256-sha256".into(),
                signer_certificate_chain: id.chain.iter().map(|c| c.clone().into()).collect(),
                ..Checkpoint::default()
            };
            if format == Format::Current {
                cp.format = FORMAT_CURRENT;
                cp.previous_timestamp_sha256 = previous_binding.to_vec().into();
            }
            tweak(n_cp, &mut cp);
            n_cp += 1;
            let d = if cp.format == FORMAT_CURRENT {
                digest_v2(
                    "node-v",
                    cp.tree_size,
                    &cp.root_hash,
                    &cp.previous_checkpoint_sha256,
                    cp.signed_time_unix_nanos,
                    &cp.previous_timestamp_sha256,
                )
            } else {
                digest(
                    "node-v",
                    cp.tree_size,
                    &cp.root_hash,
                    &cp.previous_checkpoint_sha256,
                    cp.signed_time_unix_nanos,
                )
            };
            let msg = if cp.format == FORMAT_CURRENT {
                signing_message(PURPOSE_CHECKPOINT, &d).unwrap()
            } else {
                d.to_vec()
            };
            cp.signature = key.sign(&rng, &msg).unwrap().as_ref().to_vec().into();
            previous = d;
            previous_binding = timestamp_binding(&cp.tsa_status, &cp.timestamp_token);
            r.kind = Some(Kind::Checkpoint(cp));
        }
        encoded.push(r.encode_to_vec());
    }
    write_raw(dir, &encoded);
    encoded
}

fn write_raw(dir: &Path, records: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut h = GENESIS;
    let mut out = Vec::new();
    for r in records {
        h = encode_frame(&mut out, r, &h);
    }
    std::fs::write(segment_path(dir, 1), out).unwrap();
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn outcome(ex: &str, request_sequence: u64) -> Record {
    Record {
        exchange_id: ex.into(),
        kind: Some(Kind::Outcome(Outcome {
            request_sequence,
            status: 200,
            outcome_class: "ok".into(),
            ..Outcome::default()
        })),
        ..Record::default()
    }
}

/// An exchange with a peer SPL (proto/README.md §14): the request names where it goes, the
/// outcome the peer's certificate, correlation id, fault code, path and credential header.
fn peer_exchange(ex: &str, request_sequence: u64) -> [Record; 2] {
    let mut req = request(ex);
    if let Some(Kind::Request(q)) = &mut req.kind {
        q.peer_direction = "outbound-to-pusat".into();
    }
    let out = Record {
        exchange_id: ex.into(),
        kind: Some(Kind::Outcome(Outcome {
            request_sequence,
            status: 200,
            outcome_class: "ok".into(),
            upstream_tls_sha256: vec![0x5a; 32].into(),
            peer_direction: "outbound-to-pusat".into(),
            peer_correlation_id: "4d1c9f2e-activity".into(),
            peer_fault_code: 0,
            peer_path: "/t/jatimprov.go.id/dukcapil/1.0/nik/1".into(),
            peer_credential: "authorization".into(),
            ..Outcome::default()
        })),
        ..Record::default()
    };
    [req, out]
}

/// A summary of refusals counted instead of recorded (proto/README.md §13); no exchange id.
fn refusals_suppressed() -> Record {
    use penghubung_evidence::schema::{RefusalsSuppressed, SuppressedReason};
    Record {
        kind: Some(Kind::RefusalsSuppressed(RefusalsSuppressed {
            source: "192.0.2.7".into(),
            window_secs: 10,
            recorded: 100,
            suppressed: 3,
            first_unix_nanos: 1,
            last_unix_nanos: 2,
            first_exchange_id: "ex-9".into(),
            last_exchange_id: "ex-11".into(),
            limit: 100,
            reasons: vec![SuppressedReason {
                stage: "authenticate".into(),
                reason_class: "credential_missing".into(),
                status: 401,
                count: 3,
            }],
        })),
        ..Record::default()
    }
}

/// A SOAP exchange (proto/README.md §15): its request with the operation fields (40–44), a
/// refusal of an operation outside the cakupan (30–31) and a mediated outcome with a fault
/// (25–26).
fn soap_records() -> Vec<Record> {
    use penghubung_evidence::schema::{Refused, Request};
    let mut request = request("ex-1");
    if let Some(Kind::Request(r)) = &mut request.kind {
        *r = Request {
            method: "POST".into(),
            canonical_path: "/rest/pegawai".into(),
            soap_operation: "GetPegawai".into(),
            soap_version: 11,
            soap_action: "urn:simpeg#GetPegawai".into(),
            soap_envelope_sha256: vec![7u8; 32].into(),
            soap_mode: "mediated".into(),
            ..r.clone()
        };
    }
    let mut outcome = outcome("ex-1", 1);
    if let Some(Kind::Outcome(o)) = &mut outcome.kind {
        o.status = 400;
        o.soap_fault_code = "soap:Client".into();
        o.soap_upstream_sha256 = vec![9u8; 32].into();
    }
    let refused = Record {
        exchange_id: "ex-3".into(),
        kind: Some(Kind::Refused(Refused {
            stage: "authorize".into(),
            reason_class: "grant_outside_cakupan".into(),
            status: 403,
            soap_operation: "HapusPegawai".into(),
            soap_version: 12,
            ..Refused::default()
        })),
        ..Record::default()
    };
    vec![request, outcome, refused]
}

/// The fixed personal-data key of the vectors (§16): id `k-2026-12`, secret 32 bytes 0x42.
fn personal_keys() -> penghubung_evidence::personal::Keys {
    penghubung_evidence::personal::Keys::derive("k-2026-12", &[0x42; 32])
}

const PERSONAL_NIK: &str = "3201012304850007";

fn place<'a>(direction: &'a str, location: &'a str, field: &'a str) -> Place<'a> {
    Place {
        direction,
        location,
        field,
        occurrence: 0,
    }
}

/// Request ex-p (#1, path and header NIK, JSON body), its outcome (#2, response JSON), the admin
/// record of a disclosure of the path NIK (#3), a checkpoint (#4).
fn personal_records() -> Vec<Record> {
    use penghubung_evidence::schema::{Admin, PersonalDisclosed, Request};
    let k = personal_keys();
    let path_value = k.commit_with_nonce(
        "ex-p",
        place("request", "path", "nik"),
        "nik",
        PERSONAL_NIK.as_bytes(),
        [1; 12],
    );
    let body = format!(r#"{{"nik":"{PERSONAL_NIK}"}}"#);
    let request = Request {
        method: "GET".into(),
        host: "dukcapil.pemda.go.id".into(),
        route_template: "/penduduk/{nik}".into(),
        personal_key_id: k.id().into(),
        path_hmac: k
            .digest("path", format!("/penduduk/{PERSONAL_NIK}").as_bytes())
            .to_vec()
            .into(),
        headers_hmac: k.digest("headers", b"").to_vec().into(),
        body_hmac: k.digest("body", body.as_bytes()).to_vec().into(),
        body_length: body.len() as u64,
        personal_values: vec![
            path_value.clone(),
            k.commit_with_nonce(
                "ex-p",
                place("request", "header", "x-nik"),
                "nik",
                PERSONAL_NIK.as_bytes(),
                [2; 12],
            ),
            k.commit_with_nonce(
                "ex-p",
                place("request", "json", "/nik"),
                "nik",
                format!("\"{PERSONAL_NIK}\"").as_bytes(),
                [3; 12],
            ),
        ],
        ..Request::default()
    };
    let mut outcome = outcome("ex-p", 1);
    if let Some(Kind::Outcome(o)) = &mut outcome.kind {
        o.personal_key_id = k.id().into();
        o.response_hmac = k
            .digest("response", br#"{"nama":"Siti Aminah"}"#)
            .to_vec()
            .into();
        o.personal_values = vec![k.commit_with_nonce(
            "ex-p",
            place("response", "json", "/nama"),
            "name",
            br#""Siti Aminah""#,
            [4; 12],
        )];
    }
    let admin = Admin {
        actor: "auditor-inspektorat".into(),
        action: "personal.disclose".into(),
        target: "ex-p".into(),
        reason: "PERKARA-2026-17".into(),
        disclosed: Some(PersonalDisclosed {
            exchange_id: "ex-p".into(),
            record_sequence: 1,
            location: "path".into(),
            field: "nik".into(),
            occurrence: 0,
            category: "nik".into(),
            commitment: path_value.commitment.clone(),
            personal_key_id: k.id().into(),
            case_reference: "PERKARA-2026-17".into(),
        }),
        ..Admin::default()
    };
    vec![
        Record {
            exchange_id: "ex-p".into(),
            kind: Some(Kind::Request(request)),
            ..Record::default()
        },
        outcome,
        Record {
            kind: Some(Kind::Admin(admin)),
            ..Record::default()
        },
        checkpoint(),
    ]
}

/// The disclosure of the path NIK of ex-p.
fn personal_disclosure() -> PersonalDisclosure {
    let k = personal_keys();
    let salt = k.salt("ex-p", place("request", "path", "nik"));
    PersonalDisclosure {
        format: penghubung_evidence::personal::DISCLOSURE_FORMAT.into(),
        exchange_id: "ex-p".into(),
        record_sequence: 1,
        direction: "request".into(),
        location: "path".into(),
        field: "nik".into(),
        occurrence: 0,
        category: "nik".into(),
        personal_key_id: k.id().into(),
        value: PERSONAL_NIK.into(),
        value_hex: String::new(),
        salt: hex::encode(salt),
        commitment: hex::encode(commitment(&salt, PERSONAL_NIK.as_bytes())),
        actor: "auditor-inspektorat".into(),
        case_reference: "PERKARA-2026-17".into(),
        disclosure_sequence: 3,
    }
}

/// The constructions of §16 on fixed inputs; the same values are printed in proto/README.md.
#[test]
fn personal_data_constructions() {
    let k = personal_keys();
    let salt = k.salt("ex-p", place("request", "path", "nik"));
    let c = commitment(&salt, PERSONAL_NIK.as_bytes());
    let sealed = k.seal([1; 12], "ex-p", &c, PERSONAL_NIK.as_bytes());
    let got = [
        ("salt", hex::encode(salt)),
        ("commitment", hex::encode(c)),
        ("sealed", hex::encode(&sealed)),
        (
            "path_hmac",
            hex::encode(k.digest("path", format!("/penduduk/{PERSONAL_NIK}").as_bytes())),
        ),
        (
            "body_hmac",
            hex::encode(k.digest("body", format!(r#"{{"nik":"{PERSONAL_NIK}"}}"#).as_bytes())),
        ),
        ("fingerprint", k.fingerprint("nik", PERSONAL_NIK.as_bytes())),
    ];
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/README.md"),
    )
    .unwrap();
    for (name, value) in &got {
        println!("{name} = {value}");
    }
    for (name, value) in &got {
        assert!(
            spec.contains(value.as_str()),
            "{name} {value} missing from proto/README.md §16"
        );
    }
    assert_eq!(
        k.unseal("ex-p", &c, &sealed).as_deref(),
        Some(PERSONAL_NIK.as_bytes())
    );
}

/// An `admin` record of a control-plane change with every field of proto/README.md §17.
fn control_change() -> Record {
    Record {
        kind: Some(Kind::Admin(penghubung_evidence::schema::Admin {
            actor: "sari".into(),
            role: "petugas_kelaikan".into(),
            actor_opd: String::new(),
            action: "layanan.approve".into(),
            target: "layanan/dukcapil.nik:laik".into(),
            before_sha256: vec![1u8; 32].into(),
            after_sha256: vec![2u8; 32].into(),
            reason: "uji keamanan selesai".into(),
            ticket: "TIKET-2026-17".into(),
            approval_id: "kl-0192".into(),
            approval_refs: vec!["kl-0191".into()],
            revision_id: "rev-7".into(),
            tenant: "dukcapil".into(),
            refused: false,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn checkpoint() -> Record {
    Record {
        kind: Some(Kind::Checkpoint(Checkpoint::default())),
        ..Record::default()
    }
}

/// Request ex-1 (#1), outcome ex-1 (#2), request ex-2 (#3), checkpoint (#4), outcome ex-2
/// (#5), checkpoint (#6).
fn base_records() -> Vec<Record> {
    vec![
        request("ex-1"),
        outcome("ex-1", 1),
        request("ex-2"),
        checkpoint(),
        outcome("ex-2", 3),
        checkpoint(),
    ]
}

fn bundle_of(records: &[Vec<u8>], exchange: &str) -> Bundle {
    let leaves: Vec<Hash> = records.iter().map(|b| leaf_hash(b)).collect();
    let decoded: Vec<Record> = records
        .iter()
        .map(|b| Record::decode(b.as_slice()).unwrap())
        .collect();
    let last = decoded
        .iter()
        .filter(|r| r.exchange_id == exchange)
        .map(|r| r.sequence)
        .max()
        .unwrap();
    let (cp_index, size) = decoded
        .iter()
        .enumerate()
        .find_map(|(i, r)| match &r.kind {
            Some(Kind::Checkpoint(cp)) if cp.tree_size >= last => Some((i, cp.tree_size)),
            _ => None,
        })
        .unwrap();
    Bundle {
        format: "penghubung-evidence-bundle-v1".into(),
        exchange_id: exchange.into(),
        records: decoded
            .iter()
            .filter(|r| r.exchange_id == exchange)
            .map(|r| cli::BundleRecord {
                sequence: r.sequence,
                record: B64.encode(&records[r.sequence as usize - 1]),
                inclusion_proof: inclusion_proof(&leaves[..size as usize], r.sequence as usize - 1)
                    .iter()
                    .map(hex::encode)
                    .collect(),
            })
            .collect(),
        checkpoint: B64.encode(&records[cp_index]),
    }
}

/// One vector: what it is and what a verifier must say.
struct Vector {
    name: String,
    /// `None`: must verify (warnings allowed); `Some(class)`: must fail with that class.
    expect: Option<Reason>,
    /// Warnings that must appear (substring).
    warn: Option<&'static str>,
    kind: VectorKind,
}

enum VectorKind {
    Log {
        dir: PathBuf,
        anchor: Option<Anchor>,
    },
    Bundle(Vec<u8>),
    /// A bundle and a personal-data disclosure checked against it (§16).
    Disclosure {
        bundle: Vec<u8>,
        disclosure: Vec<u8>,
    },
}

struct Suite {
    tmp: TempDir,
    vectors: Vec<Vector>,
    trust_pem: PathBuf,
    crl: Vec<u8>,
}

impl Suite {
    fn log(&mut self, name: &str, expect: Option<Reason>, records: &[Vec<u8>]) -> PathBuf {
        let dir = self.tmp.path().join(name);
        write_raw(&dir, records);
        self.vectors.push(Vector {
            name: name.into(),
            expect,
            warn: None,
            kind: VectorKind::Log {
                dir: dir.clone(),
                anchor: None,
            },
        });
        dir
    }

    fn bundle(&mut self, name: &str, expect: Option<Reason>, b: &Bundle) {
        self.vectors.push(Vector {
            name: name.into(),
            expect,
            warn: None,
            kind: VectorKind::Bundle(serde_json::to_vec_pretty(b).unwrap()),
        });
    }
}

fn options(s: &Suite, v: &Vector) -> VerifyOptions {
    let args = TrustArgs {
        trust_ca: Some(s.trust_pem.clone()),
        ..TrustArgs::default()
    };
    let mut o = args.options().unwrap();
    if v.name.contains("revoked") {
        o.signer_crls = vec![s.crl.clone()];
    }
    o
}

#[test]
fn conformance_vectors() {
    let tmp = TempDir::new("vectors");
    let root = ca("Evidence Root CA");
    let good_params = {
        let mut p = leaf_params("Penghubung checkpoint signer");
        p.serial_number = Some(rcgen::SerialNumber::from(1001u64));
        p
    };
    let good = identity(good_params, &root.cert, &root.key, &[root.cert.der()]);
    let trust_pem = tmp.path().join("trust.pem");
    std::fs::write(&trust_pem, root.cert.pem()).unwrap();

    // A certificate issued by the real signer's own (CA:FALSE) leaf.
    let signer_leaf_cert = {
        let key = KeyPair::from_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(good.key.clone()).into(),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
        .unwrap();
        let params = CertificateParams::from_ca_cert_der(&good.chain[0].clone().into()).unwrap();
        (params.self_signed(&key).unwrap(), key)
    };
    let leaf_issued = identity(
        leaf_params("Forged signer"),
        &signer_leaf_cert.0,
        &signer_leaf_cert.1,
        &[&good.chain[0], root.cert.der()],
    );
    let rogue = ca("Evidence Root CA");
    let rogue_signed = identity(
        leaf_params("Penghubung checkpoint signer"),
        &rogue.cert,
        &rogue.key,
        &[rogue.cert.der()],
    );
    let wrong_eku = {
        let mut p = leaf_params("Wrong EKU");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        identity(p, &root.cert, &root.key, &[root.cert.der()])
    };
    let no_ku = {
        let mut p = leaf_params("No key usage");
        p.key_usages = vec![KeyUsagePurpose::KeyAgreement];
        identity(p, &root.cert, &root.key, &[root.cert.der()])
    };
    let expired = {
        let mut p = leaf_params("Expired");
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        identity(p, &root.cert, &root.key, &[root.cert.der()])
    };
    let name_mismatch = {
        // Signed by the real CA key but naming another issuer.
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other
            .distinguished_name
            .push(DnType::CommonName, "Some Other CA");
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let fake_issuer = other.self_signed(&root.key).unwrap();
        identity(
            leaf_params("Mismatch"),
            &fake_issuer,
            &root.key,
            &[root.cert.der()],
        )
    };
    let revoked_params = {
        let mut p = leaf_params("Revoked");
        p.serial_number = Some(rcgen::SerialNumber::from(4242u64));
        p
    };
    let revoked = identity(revoked_params, &root.cert, &root.key, &[root.cert.der()]);
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2100, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(4242u64),
            revocation_time: rcgen::date_time_ymd(2021, 1, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&root.cert, &root.key)
    .unwrap()
    .der()
    .to_vec();

    let mut s = Suite {
        tmp,
        vectors: Vec::new(),
        trust_pem,
        crl,
    };
    let none = |_: usize, _: &mut Checkpoint| {};
    let base = base_records();
    let gen = |s: &Suite,
               name: &str,
               id: &Identity,
               f: Format,
               recs: &[Record],
               t: &dyn Fn(usize, &mut Checkpoint)| {
        write_log(&s.tmp.path().join(format!("src-{name}")), recs, id, f, t)
    };

    // Good log, good bundle, good anchor; the same log in the legacy format.
    let good_log = gen(&s, "good", &good, Format::Current, &base, &none);
    s.log("good-log", None, &good_log);
    // A refusal-storm summary is a leaf like any other: it verifies, and editing it breaks the
    // Merkle root its checkpoint signed (the chain is recomputed).
    let mut with_summary = base.clone();
    with_summary.insert(5, refusals_suppressed());
    let summary_log = gen(&s, "summary", &good, Format::Current, &with_summary, &none);
    s.log("good-log-with-refusals-suppressed", None, &summary_log);
    let mut edited_summary = summary_log.clone();
    edited_summary[5] = {
        let mut r = Record::decode(summary_log[5].as_slice()).unwrap();
        if let Some(Kind::RefusalsSuppressed(x)) = &mut r.kind {
            x.suppressed = 0;
        }
        r.encode_to_vec()
    };
    s.log(
        "refusals-suppressed-edited",
        Some(Reason::Merkle),
        &edited_summary,
    );
    // An exchange with a peer SPL verifies, and its bundle checks; editing the peer's
    // correlation id breaks the Merkle root (chain recomputed).
    let mut with_peer = base.clone();
    let [peer_request, peer_outcome] = peer_exchange("ex-peer", 5);
    with_peer.insert(4, peer_request);
    with_peer.insert(5, peer_outcome);
    let peer_log = gen(&s, "peer", &good, Format::Current, &with_peer, &none);
    s.log("good-log-with-peer-exchange", None, &peer_log);
    s.bundle(
        "good-bundle-peer-exchange",
        None,
        &bundle_of(&peer_log, "ex-peer"),
    );
    let mut edited_peer = peer_log.clone();
    edited_peer[5] = {
        let mut r = Record::decode(peer_log[5].as_slice()).unwrap();
        if let Some(Kind::Outcome(o)) = &mut r.kind {
            o.peer_correlation_id = "forged".into();
        }
        r.encode_to_vec()
    };
    s.log("peer-outcome-edited", Some(Reason::Merkle), &edited_peer);
    // SOAP fields are covered like any other: the log verifies, and editing the recorded
    // operation breaks the Merkle root.
    let mut with_soap = base.clone();
    with_soap.splice(0..2, soap_records());
    let soap_log = gen(&s, "soap", &good, Format::Current, &with_soap, &none);
    s.log("good-log-with-soap", None, &soap_log);
    let mut edited_soap = soap_log.clone();
    edited_soap[0] = {
        let mut r = Record::decode(soap_log[0].as_slice()).unwrap();
        if let Some(Kind::Request(x)) = &mut r.kind {
            x.soap_operation = "HapusPegawai".into();
        }
        r.encode_to_vec()
    };
    s.log("soap-operation-edited", Some(Reason::Merkle), &edited_soap);
    // Personal data (§16): a request and an outcome with commitments and keyed digests, and the
    // admin record of a disclosure; a disclosure file checked against the exchange's bundle.
    let personal = personal_records();
    let personal_log = gen(&s, "personal", &good, Format::Current, &personal, &none);
    s.log("good-log-with-personal-data", None, &personal_log);
    let personal_bundle = bundle_of(&personal_log, "ex-p");
    s.bundle("good-bundle-personal", None, &personal_bundle);
    let good_disclosure = personal_disclosure();
    for (name, expect, edit) in [
        ("disclosure-good", None, None),
        (
            "disclosure-wrong-value",
            Some(Reason::Disclosure),
            Some(("value", "3201012304850008")),
        ),
        (
            "disclosure-wrong-salt",
            Some(Reason::Disclosure),
            Some(("salt", "00")),
        ),
        (
            "disclosure-other-field",
            Some(Reason::Disclosure),
            Some(("field", "x-nik")),
        ),
        (
            "disclosure-other-record",
            Some(Reason::Disclosure),
            Some(("record_sequence", "2")),
        ),
    ] {
        let mut d = serde_json::to_value(&good_disclosure).unwrap();
        if let Some((field, value)) = edit {
            d[field] = match field {
                "record_sequence" => serde_json::Value::from(value.parse::<u64>().unwrap()),
                "salt" => serde_json::Value::from(value.repeat(32)),
                _ => serde_json::Value::from(value),
            };
        }
        s.vectors.push(Vector {
            name: name.into(),
            expect,
            warn: None,
            kind: VectorKind::Disclosure {
                bundle: serde_json::to_vec_pretty(&personal_bundle).unwrap(),
                disclosure: serde_json::to_vec_pretty(&d).unwrap(),
            },
        });
    }
    // A control-plane change record (proto/README.md §17) is a leaf like any other; editing
    // its resulting revision breaks the Merkle root its checkpoint signed.
    let mut with_change = base.clone();
    with_change.insert(5, control_change());
    let change_log = gen(&s, "change", &good, Format::Current, &with_change, &none);
    s.log("good-log-with-control-plane-change", None, &change_log);
    let mut edited_change = change_log.clone();
    edited_change[5] = {
        let mut r = Record::decode(change_log[5].as_slice()).unwrap();
        if let Some(Kind::Admin(a)) = &mut r.kind {
            a.revision_id = "rev-1".into();
        }
        r.encode_to_vec()
    };
    s.log(
        "control-plane-change-edited",
        Some(Reason::Merkle),
        &edited_change,
    );
    s.bundle("good-bundle", None, &bundle_of(&good_log, "ex-1"));
    s.bundle("good-bundle-ex-2", None, &bundle_of(&good_log, "ex-2"));
    let anchor = Anchor::from_record(&good_log[3]).unwrap();
    let dir = s.log("good-anchor", None, &good_log);
    if let Some(Vector {
        kind: VectorKind::Log { anchor: a, .. },
        ..
    }) = s.vectors.last_mut()
    {
        *a = Some(anchor.clone());
    }
    let _ = dir;
    let legacy = gen(&s, "legacy", &good, Format::Legacy, &base, &none);
    s.log("legacy-log", None, &legacy);
    s.vectors.last_mut().unwrap().warn = Some("legacy-timestamp-binding");
    s.bundle("legacy-bundle", None, &bundle_of(&legacy, "ex-1"));
    s.vectors.last_mut().unwrap().warn = Some("legacy-signature");

    // Classic tampering.
    let mut flipped = good_log.clone();
    let last = flipped[1].len() - 1;
    flipped[1][last] ^= 1;
    {
        let dir = s.tmp.path().join("flipped-byte");
        std::fs::create_dir_all(&dir).unwrap();
        let mut h = GENESIS;
        let mut out = Vec::new();
        for r in &good_log {
            h = encode_frame(&mut out, r, &h);
        }
        out[40] ^= 0x01;
        std::fs::write(segment_path(&dir, 1), out).unwrap();
        s.vectors.push(Vector {
            name: "flipped-byte".into(),
            expect: Some(Reason::Crc),
            warn: None,
            kind: VectorKind::Log { dir, anchor: None },
        });
    }
    // A byte changed and the frame's CRC recomputed: the chain breaks.
    {
        let mut h = GENESIS;
        let mut frames: Vec<Vec<u8>> = Vec::new();
        for r in &good_log {
            let mut out = Vec::new();
            h = encode_frame(&mut out, r, &h);
            frames.push(out);
        }
        let mut forged = Vec::new();
        encode_frame(&mut forged, &flipped[1], &{
            let mut f = Vec::new();
            encode_frame(&mut f, &good_log[0], &GENESIS)
        });
        let chain_of_original = &frames[1][frames[1].len() - 36..frames[1].len() - 4];
        let body_len = flipped[1].len();
        forged[4 + body_len..4 + body_len + 32].copy_from_slice(chain_of_original);
        let crc = crc32c_of(&forged[..forged.len() - 4]);
        let n = forged.len();
        forged[n - 4..].copy_from_slice(&crc.to_be_bytes());
        frames[1] = forged;
        let dir = s.tmp.path().join("flipped-byte-crc-recomputed");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(segment_path(&dir, 1), frames.concat()).unwrap();
        s.vectors.push(Vector {
            name: "flipped-byte-crc-recomputed".into(),
            expect: Some(Reason::Chain),
            warn: None,
            kind: VectorKind::Log { dir, anchor: None },
        });
    }
    let deleted: Vec<Vec<u8>> = good_log
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, r)| r.clone())
        .collect();
    // Re-framed with a fresh chain: only the sequence numbers and roots can tell.
    s.log("deleted-record", Some(Reason::Sequence), &deleted);
    let mut swapped = good_log.clone();
    swapped.swap(0, 1);
    s.log("swapped-records", Some(Reason::Sequence), &swapped);
    let mut duplicated = good_log.clone();
    duplicated.insert(1, good_log[0].clone());
    s.log("duplicated-record", Some(Reason::Sequence), &duplicated);
    // Record 2 edited, chain recomputed: the checkpoint root no longer matches.
    let mut rechained = good_log.clone();
    let mut r2 = Record::decode(rechained[1].as_slice()).unwrap();
    if let Some(Kind::Outcome(o)) = &mut r2.kind {
        o.status = 500;
    }
    rechained[1] = r2.encode_to_vec();
    s.log("rechained", Some(Reason::Merkle), &rechained);
    // Truncated below the anchored checkpoint.
    let dir = s.log("truncated", Some(Reason::Truncated), &good_log[..2]);
    let _ = dir;
    if let Some(Vector {
        kind: VectorKind::Log { anchor: a, .. },
        ..
    }) = s.vectors.last_mut()
    {
        *a = Some(anchor.clone());
    }
    // Anchor JSON disagreeing with its record.
    let mut lying = anchor.clone();
    lying.tree_size += 1;
    s.log("anchor-json-mismatch", Some(Reason::Anchor), &good_log);
    if let Some(Vector {
        kind: VectorKind::Log { anchor: a, .. },
        ..
    }) = s.vectors.last_mut()
    {
        *a = Some(lying);
    }
    // An anchor from another log of the same shape (the record is not in this log).
    let other = gen(&s, "other", &good, Format::Current, &base, &none);
    s.log("anchor-not-in-log", Some(Reason::Anchor), &good_log);
    if let Some(Vector {
        kind: VectorKind::Log { anchor: a, .. },
        ..
    }) = s.vectors.last_mut()
    {
        *a = Some(Anchor::from_record(&other[3]).unwrap());
    }

    // Forgeries: the whole log rewritten and re-signed.
    let forged = [
        (
            "resigned-by-rogue-ca",
            &rogue_signed,
            Reason::CertificatePath,
        ),
        (
            "leaf-issued-certificate",
            &leaf_issued,
            Reason::CertificatePath,
        ),
        ("wrong-eku", &wrong_eku, Reason::CertificateUsage),
        ("no-signing-key-usage", &no_ku, Reason::CertificateUsage),
        ("expired-at-signing", &expired, Reason::CertificateExpired),
        (
            "issuer-name-mismatch",
            &name_mismatch,
            Reason::CertificatePath,
        ),
        ("revoked-by-crl", &revoked, Reason::CertificateRevoked),
    ];
    for (name, id, reason) in forged {
        let log = gen(&s, name, id, Format::Current, &base, &none);
        s.log(&format!("{name}-log"), Some(reason), &log);
        s.bundle(
            &format!("{name}-bundle"),
            Some(reason),
            &bundle_of(&log, "ex-1"),
        );
    }
    // Status/token rules, re-signed by the real key (an insider or a buggy writer).
    let granted_empty = gen(
        &s,
        "granted-no-token",
        &good,
        Format::Current,
        &base,
        &|_, cp| {
            cp.tsa_status = "granted".into();
        },
    );
    s.log(
        "status-granted-without-token",
        Some(Reason::TimestampStatus),
        &granted_empty,
    );
    s.bundle(
        "status-granted-without-token-bundle",
        Some(Reason::TimestampStatus),
        &bundle_of(&granted_empty, "ex-1"),
    );
    let unknown_status = gen(
        &s,
        "unknown-status",
        &good,
        Format::Current,
        &base,
        &|_, cp| {
            cp.tsa_status = "maybe".into();
        },
    );
    s.log(
        "status-unknown",
        Some(Reason::TimestampStatus),
        &unknown_status,
    );
    let token_not_granted = gen(
        &s,
        "token-not-granted",
        &good,
        Format::Current,
        &base,
        &|_, cp| {
            cp.timestamp_token = vec![0x30, 0x00].into();
        },
    );
    s.log(
        "token-with-status-disabled",
        Some(Reason::TimestampStatus),
        &token_not_granted,
    );
    // The first checkpoint's token stripped and its status rewritten, everything else
    // recomputed: the second checkpoint's signed binding still covers the original
    // (status, token), so the link breaks.
    let stripped = gen(&s, "stripped", &good, Format::Current, &base, &|i, cp| {
        if i == 1 {
            cp.previous_timestamp_sha256 = timestamp_binding("granted", b"the original token")
                .to_vec()
                .into();
        }
    });
    s.log("stripped-token", Some(Reason::CheckpointLink), &stripped);
    // Domain separation: a genuine signature by the real key for another purpose ("report"),
    // or over the bare digest, replayed as a checkpoint signature.
    for (name, purpose) in [
        ("signature-of-another-purpose", Some("report")),
        // A catalogue revision's signature (proto/README.md §17) is never a checkpoint's.
        (
            "revision-signature-as-checkpoint",
            Some(penghubung_evidence::signer::PURPOSE_REVISION),
        ),
        ("bare-digest-signature", None),
    ] {
        let mut recs = gen(&s, name, &good, Format::Current, &base[..4], &none);
        let mut r = Record::decode(recs[3].as_slice()).unwrap();
        if let Some(Kind::Checkpoint(cp)) = &mut r.kind {
            let d = penghubung_evidence::checkpoint::digest_of("node-v", cp);
            let msg = match purpose {
                Some(p) => signing_message(p, &d).unwrap(),
                None => d.to_vec(),
            };
            let rng = ring::rand::SystemRandom::new();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &good.key, &rng).unwrap();
            cp.signature = key.sign(&rng, &msg).unwrap().as_ref().to_vec().into();
        }
        recs[3] = r.encode_to_vec();
        s.log(name, Some(Reason::Signature), &recs);
    }
    // Downgrade: a legacy checkpoint after a format-2 one.
    let downgrade = gen(&s, "downgrade", &good, Format::Current, &base, &|i, cp| {
        if i == 1 {
            cp.format = 0;
            cp.previous_timestamp_sha256 = Vec::new().into();
        }
    });
    s.log("downgrade-to-legacy", Some(Reason::Downgrade), &downgrade);
    let unknown_format = gen(
        &s,
        "unknown-format",
        &good,
        Format::Current,
        &base,
        &|_, cp| {
            cp.format = 7;
        },
    );
    s.log(
        "unknown-checkpoint-format",
        Some(Reason::Downgrade),
        &unknown_format,
    );
    // Strict decoding.
    let mut kindless = base.clone();
    kindless.insert(
        2,
        Record {
            exchange_id: "ex-1".into(),
            ..Record::default()
        },
    );
    let kl = gen(&s, "kindless", &good, Format::Current, &kindless, &none);
    s.log("kindless-record", Some(Reason::Kindless), &kl);
    let mut two = good_log.clone();
    two[0].extend_from_slice(&[0x6a, 0x00]); // an admin member as well as the request
    s.log("two-oneof-members", Some(Reason::DuplicateField), &two);
    let mut unknown_kind = good_log.clone();
    unknown_kind[0] = {
        let mut r = Record::decode(good_log[0].as_slice()).unwrap();
        r.kind = None;
        let mut b = r.encode_to_vec();
        b.extend_from_slice(&[0xfa, 0x02, 0x00]);
        b
    };
    s.log("unknown-kind", Some(Reason::UnknownKind), &unknown_kind);
    let mut unknown_field = base.clone();
    unknown_field.truncate(0);
    unknown_field.extend(base.iter().cloned());
    let uf = {
        let mut recs = gen(
            &s,
            "unknown-field-src",
            &good,
            Format::Current,
            &base[..3],
            &none,
        );
        recs[0].extend_from_slice(&[0xa0, 0x06, 0x01]); // field 100
        recs
    };
    s.log("unknown-field", None, &uf);
    s.vectors.last_mut().unwrap().warn = Some("unknown fields");
    // A torn final frame, time going backwards, an unsigned checkpoint, undecodable bytes.
    {
        let dir = s.tmp.path().join("torn-final-frame");
        write_raw(&dir, &good_log);
        let seg = segment_path(&dir, 1);
        let bytes = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &bytes[..bytes.len() - 10]).unwrap();
        s.vectors.push(Vector {
            name: "torn-final-frame".into(),
            expect: Some(Reason::Frame),
            warn: None,
            kind: VectorKind::Log { dir, anchor: None },
        });
    }
    let mut backwards = good_log.clone();
    let mut r1 = Record::decode(backwards[1].as_slice()).unwrap();
    r1.time_unix_nanos = 1;
    backwards[1] = r1.encode_to_vec();
    s.log("time-goes-backwards", Some(Reason::Time), &backwards);
    let mut unsigned = good_log[..4].to_vec();
    let mut c = Record::decode(unsigned[3].as_slice()).unwrap();
    if let Some(Kind::Checkpoint(cp)) = &mut c.kind {
        cp.signature = Vec::new().into();
        cp.signature_algorithm = String::new();
        cp.signer_certificate_chain.clear();
    }
    unsigned[3] = c.encode_to_vec();
    s.log("unsigned-checkpoint", Some(Reason::Unsigned), &unsigned);
    let mut undecodable = good_log.clone();
    undecodable[1] = vec![0x0b, 0x01];
    s.log("undecodable-record", Some(Reason::Decode), &undecodable);
    // Segment numbering.
    {
        let dir = s.tmp.path().join("segment-gap");
        write_raw(&dir, &good_log[..3]);
        let mut h = GENESIS;
        for r in &good_log[..3] {
            h = encode_frame(&mut Vec::new(), r, &h);
        }
        let mut out = Vec::new();
        for r in &good_log[3..] {
            h = encode_frame(&mut out, r, &h);
        }
        std::fs::write(segment_path(&dir, 3), out).unwrap();
        s.vectors.push(Vector {
            name: "segment-gap".into(),
            expect: Some(Reason::SegmentGap),
            warn: None,
            kind: VectorKind::Log { dir, anchor: None },
        });
        let dir2 = s.tmp.path().join("starts-at-segment-2");
        write_raw(&dir2, &good_log);
        std::fs::rename(segment_path(&dir2, 1), segment_path(&dir2, 2)).unwrap();
        s.vectors.push(Vector {
            name: "starts-at-segment-2".into(),
            expect: Some(Reason::SegmentGap),
            warn: None,
            kind: VectorKind::Log {
                dir: dir2,
                anchor: None,
            },
        });
    }

    // Bundles.
    let mut empty = bundle_of(&good_log, "ex-1");
    empty.records.clear();
    s.bundle("empty-bundle", Some(Reason::BundleEmpty), &empty);
    let mut foreign = bundle_of(&good_log, "ex-1");
    foreign.exchange_id = "ex-2".into();
    s.bundle(
        "bundle-of-another-exchange",
        Some(Reason::BundleForeign),
        &foreign,
    );
    let mut mixed = bundle_of(&good_log, "ex-1");
    mixed
        .records
        .push(bundle_of(&good_log, "ex-2").records[0].clone());
    s.bundle(
        "bundle-with-a-foreign-record",
        Some(Reason::BundleForeign),
        &mixed,
    );
    let mut no_request = bundle_of(&good_log, "ex-1");
    no_request.records.remove(0);
    s.bundle(
        "bundle-without-its-request",
        Some(Reason::BundleIncomplete),
        &no_request,
    );
    let mut dup = bundle_of(&good_log, "ex-1");
    dup.records.push(dup.records[1].clone());
    s.bundle(
        "bundle-duplicated-record",
        Some(Reason::BundleIncomplete),
        &dup,
    );
    let mut bad_proof = bundle_of(&good_log, "ex-1");
    bad_proof.records[1].inclusion_proof[0] = hex::encode([0u8; 32]);
    s.bundle("bundle-bad-proof", Some(Reason::BundleProof), &bad_proof);
    let mut invented = bundle_of(&leaf_issued_log(&s, &leaf_issued), "ex-1");
    invented.exchange_id = "ex-1".into();
    s.bundle(
        "bundle-invented-with-leaf-issued-certificate",
        Some(Reason::CertificatePath),
        &invented,
    );
    s.vectors.push(Vector {
        name: "bundle-not-json".into(),
        expect: Some(Reason::BundleMalformed),
        warn: None,
        kind: VectorKind::Bundle(b"{".to_vec()),
    });

    // Run them all; optionally write them out.
    let out_dir = std::env::var_os("PENGHUBUNG_EVIDENCE_VECTORS_DIR").map(PathBuf::from);
    let mut manifest = Vec::new();
    let mut failures = Vec::new();
    for v in &s.vectors {
        let opts = options(&s, v);
        let (got, warnings) = match &v.kind {
            VectorKind::Log { dir, anchor } => {
                let mut o = opts.clone();
                o.anchor = anchor.clone();
                let r = verify_dir(dir, &o, &mut |_| {}).unwrap();
                (r.problem.map(|p| p.class), r.warnings)
            }
            VectorKind::Bundle(bytes) => {
                let v = check_bundle_bytes(bytes, &opts).unwrap();
                (v.result.err().map(|f| f.reason), v.warnings)
            }
            VectorKind::Disclosure { bundle, disclosure } => {
                let v = check_bundle_bytes(bundle, &opts).unwrap();
                let parsed: Bundle = serde_json::from_slice(bundle).unwrap();
                let got = v.result.err().map(|f| f.reason).or_else(|| {
                    cli::check_disclosure(&parsed, disclosure)
                        .err()
                        .map(|f| f.reason)
                });
                (got, v.warnings)
            }
        };
        if got != v.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                v.name, v.expect, got
            ));
        }
        if let Some(w) = v.warn {
            if !warnings.iter().any(|x| x.contains(w)) {
                failures.push(format!(
                    "{}: warning {w:?} missing from {warnings:?}",
                    v.name
                ));
            }
        }
        manifest.push(serde_json::json!({
            "name": v.name,
            "verdict": if v.expect.is_none() { "ok" } else { "fail" },
            "class": v.expect.map(|r| r.name()),
            "kind": match v.kind { VectorKind::Log { .. } => "log", VectorKind::Bundle(_) => "bundle", VectorKind::Disclosure { .. } => "disclosure" },
        }));
        if let Some(out) = &out_dir {
            let d = out.join(&v.name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(&s.trust_pem, d.join("trust.pem")).unwrap();
            if v.name.contains("revoked") {
                std::fs::write(d.join("signer.crl"), &s.crl).unwrap();
            }
            match &v.kind {
                VectorKind::Log { dir, anchor } => {
                    let ld = d.join("log");
                    std::fs::create_dir_all(&ld).unwrap();
                    for e in std::fs::read_dir(dir).unwrap() {
                        let p = e.unwrap().path();
                        std::fs::copy(&p, ld.join(p.file_name().unwrap())).unwrap();
                    }
                    if let Some(a) = anchor {
                        std::fs::write(
                            d.join("anchor.json"),
                            serde_json::to_vec_pretty(a).unwrap(),
                        )
                        .unwrap();
                    }
                }
                VectorKind::Bundle(b) => std::fs::write(d.join("bundle.json"), b).unwrap(),
                VectorKind::Disclosure { bundle, disclosure } => {
                    std::fs::write(d.join("bundle.json"), bundle).unwrap();
                    std::fs::write(d.join("disclosure.json"), disclosure).unwrap();
                }
            }
            std::fs::write(
                d.join("expected.json"),
                serde_json::to_vec_pretty(manifest.last().unwrap()).unwrap(),
            )
            .unwrap();
        }
    }
    if let Some(out) = &out_dir {
        std::fs::write(
            out.join("manifest.json"),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The specification lists every vector and every reason class.
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/README.md"),
    )
    .unwrap();
    for v in &s.vectors {
        assert!(
            spec.contains(&format!("`{}`", v.name)),
            "vector {} missing from proto/README.md",
            v.name
        );
    }
    for r in Reason::ALL {
        assert!(
            spec.contains(&format!("`{}`", r.name())),
            "reason {r} missing from proto/README.md"
        );
    }
    // Every failure class a log or bundle can produce is exercised, except those that need a
    // TSA (covered by evidence_tsa.rs) and the framing classes of torn tails.
    let covered: std::collections::HashSet<Reason> =
        s.vectors.iter().filter_map(|v| v.expect).collect();
    for r in [
        Reason::Crc,
        Reason::Chain,
        Reason::Sequence,
        Reason::SegmentGap,
        Reason::Kindless,
        Reason::DuplicateField,
        Reason::UnknownKind,
        Reason::Merkle,
        Reason::Downgrade,
        Reason::CheckpointLink,
        Reason::Signature,
        Reason::CertificatePath,
        Reason::CertificateUsage,
        Reason::CertificateExpired,
        Reason::CertificateRevoked,
        Reason::TimestampStatus,
        Reason::Anchor,
        Reason::Truncated,
        Reason::BundleMalformed,
        Reason::BundleEmpty,
        Reason::BundleForeign,
        Reason::BundleIncomplete,
        Reason::BundleProof,
        Reason::Disclosure,
    ] {
        assert!(covered.contains(&r), "no vector for {r}");
    }
}

fn leaf_issued_log(s: &Suite, id: &Identity) -> Vec<Vec<u8>> {
    // An exchange that never happened, signed with a certificate issued by the signer's leaf.
    let recs = vec![request("ex-1"), outcome("ex-1", 1), checkpoint()];
    write_log(
        &s.tmp.path().join("src-invented"),
        &recs,
        id,
        Format::Current,
        &|_, _| {},
    )
}

fn crc32c_of(b: &[u8]) -> u32 {
    // CRC-32C (Castagnoli), bitwise; independent of the crate under test.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn legacy_log_resumed_by_the_current_writer_verifies() {
    use rustls_pki_types::pem::PemObject as _;
    let tmp = TempDir::new("legacy-resume");
    let pki = pki(tmp.path(), false);
    let id = Identity {
        key: rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(&pki.key)
            .unwrap()
            .secret_pkcs8_der()
            .to_vec(),
        chain: penghubung_evidence::signer::load_pem_certificates(&pki.chain).unwrap(),
    };
    let dir = tmp.path().join("log");
    // A log as the code before format 2 wrote it.
    let old = write_log(&dir, &base_records(), &id, Format::Legacy, &|_, _| {});
    let log = penghubung_evidence::EvidenceLog::open(&settings(&dir, Some(&pki)), "node-v")
        .await
        .unwrap();
    assert_eq!(log.append(request("ex-new")).await.unwrap(), 7);
    assert_eq!(log.checkpoint_now().await.unwrap(), Some(8));
    log.shutdown().await;
    let opts = VerifyOptions {
        trust_anchors: Some(penghubung_evidence::signer::load_pem_certificates(&pki.ca).unwrap()),
        ..VerifyOptions::default()
    };
    let report = verify_dir(&dir, &opts, &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.checkpoints, 3);
    for rule in ["legacy-signature: 2 ", "legacy-timestamp-binding: "] {
        assert_eq!(
            report
                .warnings
                .iter()
                .filter(|w| w.starts_with(rule))
                .count(),
            1,
            "{:?}",
            report.warnings
        );
    }
    // The new checkpoint is format 2 and binds the legacy one's status and token.
    let mut last = None;
    penghubung_evidence::verify::scan(&dir, &mut |s| {
        if let Some(Kind::Checkpoint(cp)) = s.record.kind {
            last = Some(cp);
        }
        true
    })
    .unwrap();
    let last = last.unwrap();
    assert_eq!(last.format, FORMAT_CURRENT);
    let old_cp = match Record::decode(old[5].as_slice()).unwrap().kind {
        Some(Kind::Checkpoint(cp)) => cp,
        _ => unreachable!(),
    };
    assert_eq!(
        last.previous_timestamp_sha256.as_ref(),
        timestamp_binding(&old_cp.tsa_status, &old_cp.timestamp_token).as_slice()
    );
}

#[test]
fn bundle_without_token_verifies_with_a_warning_when_a_tsa_ca_is_given() {
    let tmp = TempDir::new("bundle-no-token");
    let root = ca("Root");
    let id = identity(
        leaf_params("Signer"),
        &root.cert,
        &root.key,
        &[root.cert.der()],
    );
    let recs = write_log(
        &tmp.path().join("log"),
        &base_records(),
        &id,
        Format::Current,
        &|_, cp| {
            cp.tsa_status = "unavailable: TSA down".into();
        },
    );
    let bundle = serde_json::to_vec(&bundle_of(&recs, "ex-1")).unwrap();
    let tsa_ca = ca("TSA CA");
    let opts = VerifyOptions {
        trust_anchors: Some(vec![root.cert.der().to_vec()]),
        tsa_anchors: Some(vec![tsa_ca.cert.der().to_vec()]),
        ..VerifyOptions::default()
    };
    let v = check_bundle_bytes(&bundle, &opts).unwrap();
    assert!(v.result.is_ok(), "{:?}", v.result);
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("no time-stamp (unavailable: TSA down)")),
        "{:?}",
        v.warnings
    );
    // verify gives the same verdict on the same checkpoints.
    let r = verify_dir(&tmp.path().join("log"), &opts, &mut |_| {}).unwrap();
    assert!(r.problem.is_none(), "{r:?}");
    assert!(r.warnings.iter().any(|w| w.contains("no time-stamp")));
}
