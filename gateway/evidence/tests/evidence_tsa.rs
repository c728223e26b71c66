//! RFC 3161 time-stamping against a real TSA: `openssl ts -reply` behind a tiny HTTP server,
//! with a TSA CA and certificate made by the openssl CLI in the test.
#![allow(clippy::unwrap_used)]

mod evidence_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use evidence_support::*;
use penghubung_evidence::signer::load_pem_certificates;
use penghubung_evidence::verify::{verify_dir, VerifyOptions};
use penghubung_evidence::{cli, EvidenceError, EvidenceLog, TsaPolicy, TsaSettings};
use penghubung_testkit::tsa::{openssl, reply, start_tsa, tsa_pki};

fn tsa_settings(url: &str, ca: &Path, policy: TsaPolicy) -> TsaSettings {
    TsaSettings {
        url: url.to_owned(),
        ca_certificate: ca.to_path_buf(),
        unreachable_window_secs: 0,
        policy,
        timeout_ms: 10_000,
        accepted_policies: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_carry_verified_time_stamps() {
    let tmp = TempDir::new("tsa");
    let pki = pki(tmp.path(), true);
    let tsa_ca = tsa_pki(&tmp.path().join("tsa"));
    let tsa = start_tsa(tmp.path().join("tsa")).await;
    let dir = tmp.path().join("log");
    let mut s = settings(&dir, Some(&pki));
    s.tsa = Some(tsa_settings(&tsa.url, &tsa_ca, TsaPolicy::FailClosed));
    let log = EvidenceLog::open(&s, "node-a").await.unwrap();
    for i in 0..5 {
        log.append(request(&format!("ex-{i}"))).await.unwrap();
    }
    assert_eq!(log.checkpoint_now().await.unwrap(), Some(6));
    assert!(log.health().tsa_ok);
    log.append(request("ex-after")).await.unwrap();
    log.shutdown().await; // final checkpoint, time-stamped too
    assert_eq!(tsa.served.load(Ordering::SeqCst), 2);
    let opts = VerifyOptions {
        trust_anchors: Some(load_pem_certificates(&pki.ca).unwrap()),
        tsa_anchors: Some(load_pem_certificates(&tsa_ca).unwrap()),
        ..VerifyOptions::default()
    };
    let report = verify_dir(&dir, &opts, &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert!(
        report.warnings.iter().all(|w| !w.contains("time-stamp")),
        "{:?}",
        report.warnings
    );
    assert_eq!(report.checkpoints, 2);
    assert!(cli::verify(&dir, Some(&pki.ca), None, Some(&tsa_ca)).unwrap());
    // Tokens from this TSA do not chain to another CA.
    let wrong = VerifyOptions {
        tsa_anchors: Some(load_pem_certificates(&pki.ca).unwrap()),
        ..opts.clone()
    };
    let p = verify_dir(&dir, &wrong, &mut |_| {})
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(
        p.class,
        penghubung_evidence::reason::Reason::CertificatePath,
        "{}",
        p.reason
    );
    // The bundle carries the token too.
    let out = tmp.path().join("bundle.json");
    cli::export(&dir, "ex-3", &out).unwrap();
    assert!(cli::check_bundle(&out, Some(&pki.ca), Some(&tsa_ca)).unwrap());
    assert!(!cli::check_bundle(&out, Some(&pki.ca), Some(&pki.ca)).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsa_down_fail_closed_refuses_appends_until_it_is_back() {
    let tmp = TempDir::new("tsa-closed");
    let pki = pki(tmp.path(), false);
    let tsa_ca = tsa_pki(&tmp.path().join("tsa"));
    let tsa = start_tsa(tmp.path().join("tsa")).await;
    let dir = tmp.path().join("log");
    let mut s = settings(&dir, Some(&pki));
    s.tsa = Some(tsa_settings(&tsa.url, &tsa_ca, TsaPolicy::FailClosed));
    let log = EvidenceLog::open(&s, "node-a").await.unwrap();
    log.append(request("ex-1")).await.unwrap();
    tsa.up.store(false, Ordering::SeqCst);
    log.checkpoint_now().await.unwrap();
    let h = log.health();
    assert!(!h.tsa_ok && h.tsa_blocking, "{h:?}");
    let err = log.append(request("ex-2")).await.unwrap_err();
    assert!(matches!(err, EvidenceError::TsaUnavailable));
    assert_eq!(err.http_status(), 503);
    tsa.up.store(true, Ordering::SeqCst);
    log.checkpoint_now().await.unwrap();
    assert!(log.health().tsa_ok);
    log.append(request("ex-3")).await.unwrap();
    log.shutdown().await;
    let opts = VerifyOptions {
        trust_anchors: Some(load_pem_certificates(&pki.ca).unwrap()),
        tsa_anchors: Some(load_pem_certificates(&tsa_ca).unwrap()),
        ..VerifyOptions::default()
    };
    let report = verify_dir(&dir, &opts, &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("no time-stamp")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsa_down_continue_keeps_serving_and_flags_it() {
    let tmp = TempDir::new("tsa-continue");
    let pki = pki(tmp.path(), true);
    let tsa_ca = tsa_pki(&tmp.path().join("tsa"));
    // Nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tmp.path().join("log");
    let mut s = settings(&dir, Some(&pki));
    s.tsa = Some(tsa_settings(
        &format!("http://127.0.0.1:{port}/"),
        &tsa_ca,
        TsaPolicy::Continue,
    ));
    let log = EvidenceLog::open(&s, "node-a").await.unwrap();
    log.append(request("ex-1")).await.unwrap();
    log.checkpoint_now().await.unwrap();
    let h = log.health();
    assert!(!h.tsa_ok && !h.tsa_blocking, "{h:?}");
    log.append(request("ex-2")).await.unwrap();
    assert!(!log.stats().health.tsa_ok);
    log.shutdown().await;
}

/// Runs `openssl ts -reply` on a query for `imprint` with the TSA config in `dir`; the token.
fn token_for(dir: &Path, imprint: &[u8; 32], nonce: &[u8]) -> Vec<u8> {
    let query = penghubung_evidence::tsa::request(imprint, nonce);
    penghubung_evidence::tsa::token_from_response(&reply(dir, &query, "direct")).unwrap()
}

/// Re-signs `token`'s signed attributes with `key_pem` after renaming its ESS
/// signingCertificateV2 attribute to an unrelated OID, keeping every length (retrying until
/// the new ECDSA signature has the old one's length).
fn strip_ess(token: &[u8], key_pem: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject as _;
    let ess_v2: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x2f,
    ];
    let at = token
        .windows(ess_v2.len())
        .position(|w| w == ess_v2)
        .expect("openssl wrote signingCertificateV2");
    let mut out = token.to_vec();
    out[at + ess_v2.len() - 1] = 0x30; // id-aa-48: not an ESS attribute
    let parsed = penghubung_evidence::tsa::parse_token(&out).unwrap();
    let attrs_at = parsed.signed_attrs.as_ptr() as usize - out.as_ptr() as usize;
    let attrs_len = parsed.signed_attrs.len();
    let sig_at = parsed.signature.as_ptr() as usize - out.as_ptr() as usize;
    let sig_len = parsed.signature.len();
    let mut signed = out[attrs_at..attrs_at + attrs_len].to_vec();
    signed[0] = 0x31;
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(key_pem).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        key.secret_pkcs8_der(),
        &rng,
    )
    .unwrap();
    loop {
        let sig = kp.sign(&rng, &signed).unwrap();
        if sig.as_ref().len() == sig_len {
            out[sig_at..sig_at + sig_len].copy_from_slice(sig.as_ref());
            return out;
        }
    }
}

#[test]
fn time_stamp_tokens_are_checked_completely() {
    use penghubung_evidence::pki::PathPolicy;
    use penghubung_evidence::reason::Reason;
    use penghubung_evidence::tsa::verify_token_with;
    let tmp = TempDir::new("tst-checks");
    let dir = tmp.path().join("tsa");
    let ca = tsa_pki(&dir);
    let anchors = load_pem_certificates(&ca).unwrap();
    let policy = PathPolicy::tsa(anchors.clone(), Vec::new());
    let imprint = [9u8; 32];
    let nonce = [0x11, 0x22, 0x33];
    let token = token_for(&dir, &imprint, &nonce);
    let oid = |s: &str| penghubung_evidence::pki::oid_der(s).unwrap();
    // Good: imprint, nonce, policy, ESS, chain.
    verify_token_with(&token, &imprint, &policy, &[oid("1.2.3.4.1")], Some(&nonce)).unwrap();
    let class = |r: Result<
        penghubung_evidence::tsa::TokenInfo,
        penghubung_evidence::reason::Failure,
    >| { r.unwrap_err().reason };
    assert_eq!(
        class(verify_token_with(&token, &[8; 32], &policy, &[], None)),
        Reason::Timestamp
    );
    assert_eq!(
        class(verify_token_with(
            &token,
            &imprint,
            &policy,
            &[],
            Some(&[1, 2])
        )),
        Reason::Timestamp
    );
    assert_eq!(
        class(verify_token_with(
            &token,
            &imprint,
            &policy,
            &[oid("1.2.3.4.2")],
            None
        )),
        Reason::Timestamp
    );
    // The same token with its ESS attribute renamed (and properly re-signed) is refused.
    let no_ess = strip_ess(&token, &dir.join("tsa.key"));
    assert_eq!(
        class(verify_token_with(&no_ess, &imprint, &policy, &[], None)),
        Reason::TimestampEss
    );
    // A CRL of the TSA CA listing the TSA certificate.
    std::fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ ca ]\ndefault_ca = c\n[ c ]\ndir = {}\ndatabase = $dir/index.txt\ncrlnumber = $dir/crlnumber\n\
             default_md = sha256\ndefault_crl_days = 30\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    let cnf = dir.join("ca.cnf");
    let cnf = cnf.to_str().unwrap();
    openssl(
        &dir,
        &[
            "ca", "-config", cnf, "-revoke", "tsa.pem", "-keyfile", "ca.key", "-cert", "ca.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "ca", "-config", cnf, "-gencrl", "-keyfile", "ca.key", "-cert", "ca.pem", "-out",
            "tsa.crl",
        ],
    );
    let crls = cli::load_crls(&[dir.join("tsa.crl")]).unwrap();
    assert_eq!(
        class(verify_token_with(
            &token,
            &imprint,
            &PathPolicy::tsa(anchors.clone(), crls),
            &[],
            None
        )),
        Reason::CertificateRevoked
    );

    // A TSA certificate issued by a non-CA certificate under the TSA CA.
    let bad = non_ca_tsa(tmp.path(), &dir);
    let forged = token_for(&bad, &imprint, &nonce);
    assert_eq!(
        class(verify_token_with(&forged, &imprint, &policy, &[], None)),
        Reason::CertificatePath
    );
}

#[test]
fn checkpoint_time_stamp_window_and_tsa_usage() {
    use penghubung_evidence::checkpoint::{digest_of, signed_bytes, tsa_imprint, FORMAT_CURRENT};
    use penghubung_evidence::reason::Reason;
    use penghubung_evidence::schema::Checkpoint;
    use penghubung_evidence::signer::LocalKey;
    use penghubung_evidence::verify::{check_checkpoint, CheckContext};
    let tmp = TempDir::new("tst-window");
    let pki = pki(tmp.path(), false);
    let dir = tmp.path().join("tsa");
    let tsa_ca = tsa_pki(&dir);
    let key = LocalKey::load(&pki.key, &pki.chain).unwrap();
    let ctx = CheckContext::new(&VerifyOptions {
        trust_anchors: Some(load_pem_certificates(&pki.ca).unwrap()),
        tsa_anchors: Some(load_pem_certificates(&tsa_ca).unwrap()),
        ..VerifyOptions::default()
    })
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let stamped = |signed_time: i64| {
        let mut cp = Checkpoint {
            tree_size: 0,
            root_hash: vec![0u8; 32].into(),
            previous_checkpoint_sha256: vec![0u8; 32].into(),
            previous_timestamp_sha256: vec![0u8; 32].into(),
            signed_time_unix_nanos: signed_time,
            format: FORMAT_CURRENT,
            ..Checkpoint::default()
        };
        let d = digest_of("node-t", &cp);
        let s = key.sign("checkpoint", &d).unwrap();
        assert_eq!(signed_bytes(&cp, &d)[..23], b"penghubung.signature.v1"[..]);
        cp.signature = s.signature.into();
        cp.signature_algorithm = s.algorithm;
        cp.signer_certificate_chain = s.chain.into_iter().map(Into::into).collect();
        cp.timestamp_token = token_for(&dir, &tsa_imprint(&d, &cp.signature), &[7]).into();
        cp.tsa_status = "granted".into();
        cp
    };
    check_checkpoint(&ctx, "node-t", &stamped(now)).unwrap();
    let two_hours = 2 * 3600 * 1_000_000_000i64;
    assert_eq!(
        check_checkpoint(&ctx, "node-t", &stamped(now - two_hours))
            .unwrap_err()
            .reason,
        Reason::TimestampWindow
    );
    // A swapped token (another checkpoint's) fails the imprint.
    let mut a = stamped(now);
    a.timestamp_token = stamped(now).timestamp_token;
    assert_eq!(
        check_checkpoint(&ctx, "node-t", &a).unwrap_err().reason,
        Reason::Timestamp
    );
    // A TSA certificate whose timeStamping EKU is not critical is refused by path validation.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut cap = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    cap.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    cap.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca = cap.self_signed(&ca_key).unwrap();
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::TimeStamping];
    let leaf = p.signed_by(&k, &ca, &ca_key).unwrap();
    let policy = penghubung_evidence::pki::PathPolicy::tsa(vec![ca.der().to_vec()], Vec::new());
    let err = penghubung_evidence::pki::validate(
        &[leaf.der().as_ref()],
        &policy,
        penghubung_evidence::pki::Role::Tsa,
        now / 1_000_000_000,
    )
    .unwrap_err();
    assert_eq!(err.reason, Reason::CertificateUsage, "{err}");
}

/// A TSA in `root/tsa-bad` whose certificate is issued by a CA:FALSE certificate under the TSA
/// CA of `good` (included in its tokens).
fn non_ca_tsa(root: &Path, dir: &Path) -> PathBuf {
    let bad = root.join("tsa-bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(dir.join(f), bad.join(f)).unwrap();
    }
    let ec = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
    ];
    openssl(&bad, &[&ec[..], &["mid.key"]].concat());
    openssl(
        &bad,
        &[
            "req",
            "-new",
            "-key",
            "mid.key",
            "-subj",
            "/CN=Not a CA",
            "-out",
            "mid.csr",
        ],
    );
    std::fs::write(
        bad.join("mid.cnf"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign\n",
    )
    .unwrap();
    openssl(
        &bad,
        &[
            "x509",
            "-req",
            "-in",
            "mid.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "mid.cnf",
            "-out",
            "mid.pem",
        ],
    );
    openssl(&bad, &[&ec[..], &["tsa.key"]].concat());
    openssl(
        &bad,
        &[
            "req",
            "-new",
            "-key",
            "tsa.key",
            "-subj",
            "/CN=Forged TSA",
            "-out",
            "tsa.csr",
        ],
    );
    std::fs::write(bad.join("ext.cnf"), "extendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n").unwrap();
    openssl(
        &bad,
        &[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "mid.pem",
            "-CAkey",
            "mid.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            "tsa.pem",
        ],
    );
    std::fs::write(bad.join("serial"), "01\n").unwrap();
    let cfg = std::fs::read_to_string(dir.join("tsa.cnf"))
        .unwrap()
        .replace(&dir.display().to_string(), &bad.display().to_string())
        + "certs = $dir/mid.pem\n";
    std::fs::write(bad.join("tsa.cnf"), cfg).unwrap();
    bad
}

/// Writes a two-record log (a request of `ex-1`, then a checkpoint over it) signed with `pki`,
/// whose checkpoint carries the token `stamp` makes for its imprint (or none).
fn stamped_log(
    dir: &Path,
    pki: &Pki,
    signed_time: i64,
    stamp: &dyn Fn(&[u8; 32]) -> Option<Vec<u8>>,
    status: &str,
) {
    use penghubung_evidence::checkpoint::{digest_of, tsa_imprint, FORMAT_CURRENT};
    use penghubung_evidence::merkle::{leaf_hash, root_of};
    use penghubung_evidence::schema::{record::Kind, Checkpoint, Record};
    use prost::Message as _;
    let key = penghubung_evidence::signer::LocalKey::load(&pki.key, &pki.chain).unwrap();
    let mut r1 = request("ex-1");
    r1.sequence = 1;
    r1.time_unix_nanos = signed_time - 1;
    r1.node_id = "node-t".into();
    let r1 = r1.encode_to_vec();
    let mut cp = Checkpoint {
        tree_size: 1,
        root_hash: root_of(&[leaf_hash(&r1)]).to_vec().into(),
        previous_checkpoint_sha256: vec![0u8; 32].into(),
        previous_timestamp_sha256: vec![0u8; 32].into(),
        signed_time_unix_nanos: signed_time,
        format: FORMAT_CURRENT,
        tsa_status: status.into(),
        ..Checkpoint::default()
    };
    let d = digest_of("node-t", &cp);
    let s = key.sign("checkpoint", &d).unwrap();
    cp.signature = s.signature.into();
    cp.signature_algorithm = s.algorithm;
    cp.signer_certificate_chain = s.chain.into_iter().map(Into::into).collect();
    if let Some(t) = stamp(&tsa_imprint(&d, &cp.signature)) {
        cp.timestamp_token = t.into();
    }
    let r2 = Record {
        sequence: 2,
        time_unix_nanos: signed_time,
        node_id: "node-t".into(),
        kind: Some(Kind::Checkpoint(cp)),
        ..Record::default()
    }
    .encode_to_vec();
    std::fs::create_dir_all(dir).unwrap();
    let mut out = Vec::new();
    let h = penghubung_evidence::segment::encode_frame(
        &mut out,
        &r1,
        &penghubung_evidence::segment::GENESIS,
    );
    penghubung_evidence::segment::encode_frame(&mut out, &r2, &h);
    std::fs::write(penghubung_evidence::segment::segment_path(dir, 1), out).unwrap();
}

/// Time-stamp conformance vectors: each log and its bundle get the same verdict from `verify`
/// and `check-bundle`; written to `PENGHUBUNG_EVIDENCE_VECTORS_DIR/tsa-*` when set.
#[test]
fn time_stamp_vectors_are_refused_by_verify_and_check_bundle() {
    use penghubung_evidence::reason::Reason;
    let tmp = TempDir::new("tsa-vectors");
    let pki = pki(tmp.path(), false);
    let dir = tmp.path().join("tsa");
    let tsa_ca = tsa_pki(&dir);
    let bad = non_ca_tsa(tmp.path(), &dir);
    let opts = VerifyOptions {
        trust_anchors: Some(load_pem_certificates(&pki.ca).unwrap()),
        tsa_anchors: Some(load_pem_certificates(&tsa_ca).unwrap()),
        ..VerifyOptions::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let good = |i: &[u8; 32]| Some(token_for(&dir, i, &[5]));
    let other_token = token_for(&dir, &[1; 32], &[5]);
    type Stamp<'a> = Box<dyn Fn(&[u8; 32]) -> Option<Vec<u8>> + 'a>;
    type Case<'a> = (&'a str, Option<Reason>, i64, Stamp<'a>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("tsa-good", None, now, Box::new(good), "granted"),
        (
            "tsa-non-ca-issuer",
            Some(Reason::CertificatePath),
            now,
            Box::new(|i: &[u8; 32]| Some(token_for(&bad, i, &[5]))),
            "granted",
        ),
        (
            "tsa-missing-ess",
            Some(Reason::TimestampEss),
            now,
            Box::new(|i: &[u8; 32]| {
                Some(strip_ess(&token_for(&dir, i, &[5]), &dir.join("tsa.key")))
            }),
            "granted",
        ),
        (
            "tsa-swapped-token",
            Some(Reason::Timestamp),
            now,
            Box::new(move |_: &[u8; 32]| Some(other_token.clone())),
            "granted",
        ),
        (
            "tsa-outside-window",
            Some(Reason::TimestampWindow),
            now - 2 * 3600 * 1_000_000_000,
            Box::new(good),
            "granted",
        ),
        (
            "tsa-granted-stripped",
            Some(Reason::TimestampStatus),
            now,
            Box::new(|_: &[u8; 32]| None),
            "granted",
        ),
        // The last checkpoint's token stripped and its status rewritten: indistinguishable from
        // an outage (proto/README.md §5.3), so it verifies with warnings.
        (
            "tsa-last-stripped-as-outage",
            None,
            now,
            Box::new(|_: &[u8; 32]| None),
            "unavailable: stripped",
        ),
    ];
    let out_dir = std::env::var_os("PENGHUBUNG_EVIDENCE_VECTORS_DIR").map(PathBuf::from);
    for (name, expect, at, stamp, status) in &cases {
        let log = tmp.path().join(name);
        stamped_log(&log, &pki, *at, stamp.as_ref(), status);
        let report = verify_dir(&log, &opts, &mut |_| {}).unwrap();
        assert_eq!(
            report.problem.as_ref().map(|p| p.class),
            *expect,
            "{name}: {report:?}"
        );
        if expect.is_none() && status.starts_with("unavailable") {
            assert!(
                report
                    .warnings
                    .iter()
                    .any(|w| w.contains("cannot be told from a TSA outage")),
                "{:?}",
                report.warnings
            );
        }
        let bundle = tmp.path().join(format!("{name}.json"));
        cli::export(&log, "ex-1", &bundle).unwrap();
        let verdict = cli::check_bundle_bytes(&std::fs::read(&bundle).unwrap(), &opts).unwrap();
        assert_eq!(
            verdict.result.as_ref().err().map(|f| f.reason),
            *expect,
            "{name} bundle"
        );
        if let Some(out) = &out_dir {
            let d = out.join(name);
            std::fs::create_dir_all(d.join("log")).unwrap();
            std::fs::copy(
                penghubung_evidence::segment::segment_path(&log, 1),
                penghubung_evidence::segment::segment_path(&d.join("log"), 1),
            )
            .unwrap();
            std::fs::copy(&bundle, d.join("bundle.json")).unwrap();
            std::fs::copy(&pki.ca, d.join("trust.pem")).unwrap();
            std::fs::copy(&tsa_ca, d.join("tsa-ca.pem")).unwrap();
            let expected = serde_json::json!({
                "name": name,
                "verdict": if expect.is_none() { "ok" } else { "fail" },
                "class": expect.map(|r| r.name()),
                "kind": "log+bundle",
            });
            std::fs::write(
                d.join("expected.json"),
                serde_json::to_vec_pretty(&expected).unwrap(),
            )
            .unwrap();
        }
    }
}
