//! RFC 3161 time-stamping against a real TSA: `openssl ts -reply` behind a tiny HTTP server,
//! with a TSA CA and certificate made by the openssl CLI in the test.
#![allow(clippy::unwrap_used)]

mod evidence_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use evidence_support::*;
use http_body_util::{BodyExt, Full};
use penghubung_evidence::signer::load_pem_certificates;
use penghubung_evidence::verify::{verify_dir, VerifyOptions};
use penghubung_evidence::{cli, EvidenceError, EvidenceLog, TsaPolicy, TsaSettings};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a TSA CA, a TSA certificate (critical EKU timeStamping) and an `openssl ts` config.
fn tsa_pki(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ca.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=Test TSA CA",
            "-days",
            "3650",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "tsa.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "tsa.key",
            "-subj",
            "/CN=Test TSA",
            "-out",
            "tsa.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "extendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-out",
            "tsa.pem",
        ],
    );
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    std::fs::write(
        dir.join("tsa.cnf"),
        format!(
            "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/serial\ncrypto_device = builtin\n\
             signer_cert = $dir/tsa.pem\nsigner_key = $dir/tsa.key\nsigner_digest = sha256\n\
             default_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\nordering = no\ntsa_name = no\n\
             ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
            dir.display()
        ),
    )
    .unwrap();
    dir.join("ca.pem")
}

struct Tsa {
    url: String,
    up: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

/// Serves `openssl ts -reply` over HTTP on 127.0.0.1:0; answers 503 while `up` is false.
async fn start_tsa(dir: PathBuf) -> Tsa {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/tsa", listener.local_addr().unwrap());
    let up = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let (up2, served2) = (up.clone(), served.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (dir, up, served) = (dir.clone(), up2.clone(), served2.clone());
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (dir, up, served) = (dir.clone(), up.clone(), served.clone());
                    async move {
                        let query = req.into_body().collect().await.unwrap().to_bytes();
                        if !up.load(Ordering::SeqCst) {
                            return Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(503)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            );
                        }
                        let n = served.fetch_add(1, Ordering::SeqCst);
                        let reply = tokio::task::spawn_blocking(move || {
                            let (q, r) =
                                (dir.join(format!("q{n}.tsq")), dir.join(format!("r{n}.tsr")));
                            std::fs::write(&q, &query).unwrap();
                            let cfg = dir.join("tsa.cnf");
                            let args = [
                                "ts",
                                "-reply",
                                "-config",
                                cfg.to_str().unwrap(),
                                "-queryfile",
                                q.to_str().unwrap(),
                                "-out",
                                r.to_str().unwrap(),
                            ];
                            openssl(&dir, &args);
                            std::fs::read(&r).unwrap()
                        })
                        .await
                        .unwrap();
                        Ok(hyper::Response::builder()
                            .header("content-type", "application/timestamp-reply")
                            .body(Full::new(Bytes::from(reply)))
                            .unwrap())
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Tsa { url, up, served }
}

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
    let mut m = String::new();
    log.write_metrics(&mut m);
    assert!(m.contains("penghubung_evidence_tsa_ok 0"), "{m}");
    log.shutdown().await;
}
