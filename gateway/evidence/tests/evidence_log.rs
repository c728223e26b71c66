//! Evidence log end to end: writer, recovery, group commit, fail closed, signer socket,
//! verification against every tamper case, export bundles.
#![allow(clippy::unwrap_used)]

mod evidence_support;

use std::collections::BTreeSet;
use std::path::Path;

use evidence_support::*;
use penghubung_evidence::cli;
use penghubung_evidence::schema::{record::Kind, Record};
use penghubung_evidence::signer::load_pem_certificates;
use penghubung_evidence::verify::{scan, verify_dir, Anchor, Report, VerifyOptions};
use penghubung_evidence::{segment, EvidenceLog, OnFailure, SignerSettings};
use prost::Message;

fn trusted(pki: &Pki) -> VerifyOptions {
    VerifyOptions {
        trust_anchors: Some(load_pem_certificates(&pki.ca).unwrap()),
        ..VerifyOptions::default()
    }
}

fn verify(dir: &Path, opts: &VerifyOptions) -> Report {
    verify_dir(dir, opts, &mut |_| {}).unwrap()
}

fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    scan(dir, &mut |s| {
        out.push(s.record);
        true
    })
    .unwrap();
    out
}

/// 20 requests, checkpoint (#21), 20 requests, final checkpoint (#42) in one segment.
async fn build_log(dir: &Path, pki: &Pki) {
    let log = EvidenceLog::open(&settings(dir, Some(pki)), "node-a")
        .await
        .unwrap();
    for i in 1..=20 {
        assert_eq!(log.append(request(&format!("ex-{i}"))).await.unwrap(), i);
    }
    assert_eq!(log.checkpoint_now().await.unwrap(), Some(21));
    for i in 22..=41 {
        assert_eq!(log.append(request(&format!("ex-{i}"))).await.unwrap(), i);
    }
    log.shutdown().await;
}

#[tokio::test]
async fn writes_rotates_verifies_and_restart_continues_the_chain() {
    let tmp = TempDir::new("restart");
    let pki = pki(tmp.path(), true);
    let dir = tmp.path().join("log");
    let mut s = settings(&dir, Some(&pki));
    s.segment_size_bytes = 4096;
    let log = EvidenceLog::open(&s, "node-a").await.unwrap();
    for i in 1..=60 {
        assert_eq!(log.append(request("ex")).await.unwrap(), i);
    }
    log.shutdown().await; // final checkpoint: #61
    let log = EvidenceLog::open(&s, "node-a").await.unwrap();
    assert_eq!(log.health().records, 61);
    assert_eq!(log.append(request("ex2")).await.unwrap(), 62);
    assert_eq!(log.stats().health.records, 62);
    log.shutdown().await; // #63
    assert!(
        segment::list_segments(&dir).unwrap().len() > 1,
        "segments rotate"
    );
    let report = verify(&dir, &trusted(&pki));
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(
        (report.records, report.checkpoints, report.covered),
        (63, 2, 62)
    );
    assert!(cli::verify(&dir, Some(&pki.ca), None, None).unwrap());
    // Signed by a CA the auditor does not trust: rejected.
    let other = evidence_support::pki(&tmp.path().join("other").tap_mkdir(), false);
    let report = verify(&dir, &trusted(&other));
    assert!(report.problem.unwrap().reason.contains("trust anchor"));
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_gives_concurrent_appends_contiguous_sequences() {
    let tmp = TempDir::new("concurrent");
    let log = EvidenceLog::open(&settings(tmp.path(), None), "node-a")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(request(&format!("ex-{i}"))).await.unwrap() })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for t in tasks {
        assert!(seqs.insert(t.await.unwrap()), "duplicate sequence");
    }
    assert_eq!(seqs, (1..=1000).collect::<BTreeSet<u64>>());
    let commits = log.stats().group_commits;
    assert!(
        commits < 1000,
        "one fsync must serve many appends ({commits} commits)"
    );
    log.shutdown().await;
    let report = verify(tmp.path(), &VerifyOptions::default());
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.records, 1001);
}

#[tokio::test]
async fn torn_tail_is_cut_recorded_and_the_log_still_verifies() {
    let tmp = TempDir::new("torn");
    let pki = pki(tmp.path(), false);
    let dir = tmp.path().join("log");
    build_log(&dir, &pki).await;
    let seg = segment::list_segments(&dir).unwrap().pop().unwrap().1;
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let log = EvidenceLog::open(&settings(&dir, Some(&pki)), "node-a")
        .await
        .unwrap();
    // Record 42 (the final checkpoint) was torn; the truncation notice takes its place.
    assert_eq!(log.append(request("after")).await.unwrap(), 43);
    log.shutdown().await;
    let recs = records(&dir);
    let Some(Kind::Admin(admin)) = &recs[41].kind else {
        panic!("expected the truncation record, got {:?}", recs[41]);
    };
    assert_eq!(admin.action, "recovery.truncated");
    assert!(admin.detail.contains("bytes"), "{}", admin.detail);
    let report = verify(&dir, &trusted(&pki));
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.records, 44);
    assert!(std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".torn-")));

    // Damage in the middle is not a torn tail: the log refuses to open rather than cut evidence.
    let mut frames = frames(&dir);
    let n = frames[3].len();
    frames[3][n / 2] ^= 0xff;
    write_frames(&dir, &frames);
    assert!(EvidenceLog::open(&settings(&dir, Some(&pki)), "node-a")
        .await
        .is_err());
}

/// Applies `tamper` to a copy of a good log and returns the verifier's first problem.
fn tampered(
    good: &Path,
    opts: &VerifyOptions,
    tamper: impl FnOnce(&mut Vec<Vec<u8>>),
) -> (u64, String) {
    let copy = copy_dir(good, "tamper");
    let mut f = frames(copy.path());
    tamper(&mut f);
    write_frames(copy.path(), &f);
    let p = verify(copy.path(), opts)
        .problem
        .expect("tampering must be detected");
    (p.sequence, p.reason)
}

#[tokio::test]
async fn verifier_detects_every_tamper_case() {
    let tmp = TempDir::new("tamper");
    let pki = pki(tmp.path(), false);
    let good = tmp.path().join("log");
    build_log(&good, &pki).await;
    let opts = trusted(&pki);
    assert!(verify(&good, &opts).problem.is_none());
    assert_eq!(frames(&good).len(), 42);

    // One modified byte inside record 10.
    let (seq, why) = tampered(&good, &opts, |f| f[9][8] ^= 0x01);
    assert_eq!(seq, 10);
    assert!(why.contains("CRC"), "{why}");
    // Deleted record 10.
    let (seq, why) = tampered(&good, &opts, |f| {
        f.remove(9);
    });
    assert_eq!((seq, why.contains("chain")), (10, true), "{why}");
    // Swapped records 10 and 11.
    let (seq, why) = tampered(&good, &opts, |f| f.swap(9, 10));
    assert_eq!((seq, why.contains("chain")), (10, true), "{why}");
    // Duplicated record 10.
    let (seq, why) = tampered(&good, &opts, |f| {
        let d = f[9].clone();
        f.insert(10, d);
    });
    assert_eq!((seq, why.contains("chain")), (11, true), "{why}");
    // Replaced record 10 by a well-formed frame with its own CRC and chain link.
    let (seq, why) = tampered(&good, &opts, |f| {
        let mut r = Record::decode(record_bytes(&f[9]).as_slice()).unwrap();
        r.exchange_id = "forged".into();
        let prev = segment::parse_frame(&f[8]).unwrap().unwrap().chain;
        let mut frame = Vec::new();
        segment::encode_frame(&mut frame, &r.encode_to_vec(), &prev);
        f[9] = frame;
    });
    assert_eq!((seq, why.contains("chain")), (11, true), "{why}");
    // Rewritten and re-chained: the checkpoint root no longer matches.
    let forge = |f: &mut Vec<Vec<u8>>, fix_roots: bool| {
        let mut recs: Vec<Vec<u8>> = f.iter().map(|fr| record_bytes(fr)).collect();
        let mut r = Record::decode(recs[9].as_slice()).unwrap();
        r.exchange_id = "forged".into();
        recs[9] = r.encode_to_vec();
        if fix_roots {
            let leaves: Vec<_> = recs
                .iter()
                .map(|b| penghubung_evidence::merkle::leaf_hash(b))
                .collect();
            for b in recs.iter_mut() {
                let mut r = Record::decode(b.as_slice()).unwrap();
                if let Some(Kind::Checkpoint(cp)) = &mut r.kind {
                    let root =
                        penghubung_evidence::merkle::root_of(&leaves[..cp.tree_size as usize]);
                    cp.root_hash = root.to_vec().into();
                    *b = r.encode_to_vec();
                }
            }
        }
        *f = rechain(&recs);
    };
    let (seq, why) = tampered(&good, &opts, |f| forge(f, false));
    assert_eq!((seq, why.contains("Merkle root")), (21, true), "{why}");
    // ... and with recomputed roots: the signature no longer matches, even without a trust CA.
    let (seq, why) = tampered(&good, &opts, |f| forge(f, true));
    assert_eq!((seq, why.contains("signature")), (21, true), "{why}");
    let (_, why) = tampered(&good, &VerifyOptions::default(), |f| forge(f, true));
    assert!(why.contains("signature"), "{why}");

    // Truncation / rollback at a frame boundary is invisible to the chain alone, but not
    // against an anchor exported earlier.
    let anchor_file = tmp.path().join("anchor.json");
    cli::anchor(&good, &anchor_file).unwrap();
    let anchor: Anchor = serde_json::from_slice(&std::fs::read(&anchor_file).unwrap()).unwrap();
    let anchored = VerifyOptions {
        anchor: Some(anchor),
        ..trusted(&pki)
    };
    let cut = |f: &mut Vec<Vec<u8>>| f.truncate(30);
    let copy = copy_dir(&good, "cut");
    let mut f = frames(copy.path());
    cut(&mut f);
    write_frames(copy.path(), &f);
    assert!(verify(copy.path(), &trusted(&pki)).problem.is_none());
    let p = verify(copy.path(), &anchored)
        .problem
        .expect("rollback detected");
    assert!(
        p.reason.contains("truncated or rolled back"),
        "{}",
        p.reason
    );
    assert!(!cli::verify(copy.path(), Some(&pki.ca), Some(&anchor_file), None).unwrap());
    // A rewritten log with fixed roots is also caught by the anchor without any CA.
    let (_, why) = tampered(
        &good,
        &VerifyOptions {
            anchor: anchored.anchor.clone(),
            ..VerifyOptions::default()
        },
        |f| forge(f, true),
    );
    assert!(
        why.contains("signature") || why.contains("anchored"),
        "{why}"
    );
}

#[tokio::test]
async fn export_bundle_proves_one_exchange() {
    let tmp = TempDir::new("bundle");
    let pki = pki(tmp.path(), true);
    let dir = tmp.path().join("log");
    build_log(&dir, &pki).await;
    let out = tmp.path().join("bundle.json");
    cli::export(&dir, "ex-7", &out).unwrap();
    assert!(cli::check_bundle(&out, Some(&pki.ca), None).unwrap());
    let mut bundle: cli::Bundle = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    // Swap in another record of the same exchange name but different content.
    let mut r = request("ex-7");
    r.sequence = 7;
    r.trace_id = "forged".into();
    use base64::Engine as _;
    bundle.records[0].record = base64::engine::general_purpose::STANDARD.encode(r.encode_to_vec());
    std::fs::write(&out, serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert!(!cli::check_bundle(&out, Some(&pki.ca), None).unwrap());
}

#[tokio::test]
async fn signer_runs_apart_behind_a_unix_socket() {
    let tmp = TempDir::new("signer");
    let pki = pki(tmp.path(), false);
    let socket = tmp.path().join("signer.sock");
    let (key, chain, sock) = (pki.key.clone(), pki.chain.clone(), socket.clone());
    let signer =
        tokio::spawn(
            async move { penghubung_evidence::signer::run_signer(&key, &chain, &sock).await },
        );
    while !socket.exists() {
        tokio::task::yield_now().await;
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let dir = tmp.path().join("log");
    let mut s = settings(&dir, None);
    s.signer = Some(SignerSettings::Socket {
        path: socket.clone(),
    });
    let log = EvidenceLog::open(&s, "node-a").await.unwrap();
    log.append(request("ex-1")).await.unwrap();
    assert_eq!(log.checkpoint_now().await.unwrap(), Some(2));
    assert!(log.health().signer_ok);
    assert!(log.health().signer_cert_not_after.is_some());
    // Signer gone: the checkpoint fails and health says so.
    signer.abort();
    let _ = signer.await;
    std::fs::remove_file(&socket).unwrap();
    log.append(request("ex-2")).await.unwrap();
    assert!(log.checkpoint_now().await.is_err());
    assert!(!log.health().signer_ok);
    log.shutdown().await;
    let report = verify(&dir, &trusted(&pki));
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.checkpoints, 1);
}

#[tokio::test]
async fn disabled_log_records_nothing() {
    let log = EvidenceLog::disabled();
    assert!(!log.is_enabled());
    assert_eq!(log.append(request("x")).await.unwrap(), 0);
    assert!(!log.health().enabled);
    log.shutdown().await;
}

/// Needs root to mount a 256 KiB tmpfs; skipped (with a message) otherwise.
#[tokio::test]
async fn fail_closed_on_a_full_disk_then_recovers() {
    let tmp = TempDir::new("full");
    let mnt = tmp.path().join("mnt").tap_mkdir();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!(
            "SKIPPED fail_closed_on_a_full_disk_then_recovers: cannot mount tmpfs (needs root)"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    for (mode, name) in [
        (OnFailure::FailClosed, "closed"),
        (OnFailure::FailOpen, "open"),
    ] {
        let dir = mnt.join(name);
        let mut s = settings(&dir, None);
        s.on_failure = mode;
        let log = EvidenceLog::open(&s, "node-a").await.unwrap();
        let big = |ex: &str| {
            let mut r = request(ex);
            r.trace_id = "t".repeat(3000);
            r
        };
        assert_eq!(log.append(big("before")).await.unwrap(), 1);
        let filler = mnt.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write_all(&[0u8; 4096]).is_ok() {}
        }
        let mut failures = 0;
        for i in 0..20 {
            match (mode, log.append(big(&format!("full-{i}"))).await) {
                (OnFailure::FailClosed, Err(e)) => {
                    assert_eq!(e.http_status(), 503);
                    failures += 1;
                }
                (OnFailure::FailOpen, Ok(0)) => failures += 1,
                (_, Ok(_)) => {}
                (_, Err(e)) => panic!("fail_open must not fail: {e}"),
            }
        }
        assert!(failures > 0, "{name}: the full disk must be noticed");
        assert!(!log.health().writable);
        let stats = log.stats();
        assert!(
            !stats.health.writable && stats.write_errors > 0,
            "{stats:?}"
        );
        std::fs::remove_file(&filler).unwrap();
        let seq = log.append(big("after")).await.unwrap();
        assert!(seq > 1);
        assert!(log.health().writable);
        log.shutdown().await;
        let report = verify(&dir, &VerifyOptions::default());
        assert!(report.problem.is_none(), "{name}: {report:?}");
        let recs = records(&dir);
        assert!(recs.iter().any(
            |r| matches!(&r.kind, Some(Kind::Admin(a)) if a.action == "evidence.write_recovered")
        ));
        if mode == OnFailure::FailOpen {
            assert!(log.health().dropped_records > 0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Group commit under 64 concurrent writers and verification of a large log stay correct.
/// (Speed is measured by `cargo bench -p penghubung --bench evidence`, not here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_of_group_commit_and_verification() {
    let tmp = TempDir::new("throughput");
    let log = EvidenceLog::open(&settings(&tmp.path().join("w"), None), "node-a")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    log.append(request(&format!("ex-{t}-{i}"))).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    log.shutdown().await;

    let dir = tmp.path().join("v").tap_mkdir();
    let n = 50_000u64;
    let mut buf = Vec::new();
    let mut h = segment::GENESIS;
    for seq in 1..=n {
        let mut r = request(&format!("ex-{seq}"));
        r.sequence = seq;
        r.time_unix_nanos = seq as i64;
        r.node_id = "node-a".into();
        h = segment::encode_frame(&mut buf, &r.encode_to_vec(), &h);
    }
    std::fs::write(segment::segment_path(&dir, 1), buf).unwrap();
    let report = verify(&dir, &VerifyOptions::default());
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.records, n);
}

#[tokio::test]
async fn signer_refuses_a_certificate_that_would_not_validate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let tmp = TempDir::new("signer-refuses");
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    // No extended key usage: a verifier would refuse every checkpoint it signs.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "signer");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = p.signed_by(&key, &ca, &ca_key).unwrap();
    let key_path = tmp.path().join("k.pem");
    let chain_path = tmp.path().join("c.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::write(&chain_path, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    let err = penghubung_evidence::signer::LocalKey::load(&key_path, &chain_path).unwrap_err();
    assert!(err.to_string().contains("would not validate"), "{err}");
    let socket = tmp.path().join("s.sock");
    let err = penghubung_evidence::signer::run_signer(&key_path, &chain_path, &socket)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("would not validate"), "{err}");
    assert!(!socket.exists());
    // The leaf alone (no CA in the chain) is refused too.
    std::fs::write(&chain_path, leaf.pem()).unwrap();
    assert!(penghubung_evidence::signer::LocalKey::load(&key_path, &chain_path).is_err());
    // A proper certificate loads, and signs only known purposes.
    let pki = pki(tmp.path(), false);
    let k = penghubung_evidence::signer::LocalKey::load(&pki.key, &pki.chain).unwrap();
    assert!(k.sign("checkpoint", &[1; 32]).is_ok());
    assert!(k.sign("anything-else", &[1; 32]).is_err());
}

#[tokio::test]
async fn export_includes_records_written_after_an_earlier_checkpoint() {
    let tmp = TempDir::new("bundle-late-outcome");
    let pki = pki(tmp.path(), false);
    let dir = tmp.path().join("log");
    let log = EvidenceLog::open(&settings(&dir, Some(&pki)), "node-a")
        .await
        .unwrap();
    let req = log.append(request("ex-late")).await.unwrap();
    log.checkpoint_now().await.unwrap(); // covers the request only
    let outcome = Record {
        exchange_id: "ex-late".into(),
        kind: Some(Kind::Outcome(penghubung_evidence::schema::Outcome {
            request_sequence: req,
            status: 200,
            ..Default::default()
        })),
        ..Record::default()
    };
    log.append(outcome).await.unwrap();
    log.shutdown().await; // the final checkpoint covers the outcome
    let out = tmp.path().join("bundle.json");
    cli::export(&dir, "ex-late", &out).unwrap();
    let bundle: cli::Bundle = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        bundle
            .records
            .iter()
            .map(|r| r.sequence)
            .collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(cli::check_bundle(&out, Some(&pki.ca), None).unwrap());
}
