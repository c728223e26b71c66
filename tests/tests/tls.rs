//! TLS listeners: ALPN h1/h2, protocol versions, client certificates.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use penghubung_e2e::pki::{self, ClientKind, Identity, Pki};
use penghubung_e2e::{h1_over, h2_over, Behaviour, Cfg, Gateway, RawConn, Upstream};

async fn setup(client_auth: &str) -> (Pki, Upstream, Gateway) {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    cfg.listener_tables = pki.listener_tls(dir.path(), client_auth);
    let gw = Gateway::start_in(dir, &cfg.render()).await;
    (pki, up, gw)
}

fn request(uri: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(uri)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One HTTP/1.1 request over TLS: the status, or why there was none.
async fn attempt(gw: &Gateway, config: Arc<rustls::ClientConfig>) -> Result<u16, String> {
    let tls = pki::connect(gw.addr, "localhost", config)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    h1_over(tls, request("/demo/x"))
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("request: {e}"))
}

#[tokio::test]
async fn h1_and_h2_over_tls_by_alpn() {
    let (pki, up, gw) = setup("none").await;
    let config = pki.client_config(None, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let tls = pki::connect(gw.addr, "localhost", config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = h1_over(tls, request("/demo/x")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_11);

    let config = pki.client_config(None, &[b"h2"], rustls::DEFAULT_VERSIONS);
    let tls = pki::connect(gw.addr, "localhost", config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let r = h2_over(
        tls,
        http::Request::get("https://localhost/demo/y")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    let got = up.wait_for(2).await;
    assert!(got
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
    assert_eq!(got[1].target, "/demo/y");
}

#[tokio::test]
async fn tls12_and_tls13_work() {
    let (pki, _up, gw) = setup("none").await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = pki.client_config(None, &[b"http/1.1"], &[version]);
        let tls = pki::connect(gw.addr, "localhost", config).await.unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        assert_eq!(
            h1_over(tls, request("/demo/x")).await.unwrap().status(),
            200
        );
    }
}

/// rustls cannot speak TLS 1.1, so the ClientHello is written by hand: legacy version 0x0302,
/// no `supported_versions`. The gateway must answer with an alert (or close), never a
/// ServerHello.
#[tokio::test]
async fn tls11_client_hello_is_refused() {
    let (_pki, _up, gw) = setup("none").await;
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0xc0, 0x13]); // AES128-SHA, ECDHE-RSA-AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut sni = b"localhost".to_vec();
    let mut ext = Vec::new();
    // server_name extension
    let list_len = sni.len() + 3;
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(list_len as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.append(&mut sni);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(&record).await;
    let (answer, closed) = conn.read_for(Duration::from_secs(3)).await;
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "expected an alert, got {:02x?}",
        &answer[..answer.len().min(16)]
    );
    assert!(closed || answer.first() == Some(&0x15));
}

#[tokio::test]
async fn required_client_certificates() {
    let (pki, up, gw) = setup("required").await;
    let good = pki.client(ClientKind::Good);
    let ok = attempt(
        &gw,
        pki.client_config(Some(&good), &[b"http/1.1"], rustls::DEFAULT_VERSIONS),
    )
    .await;
    assert_eq!(ok, Ok(200));
    let cases: Vec<(&str, Option<Identity>)> = vec![
        ("no certificate", None),
        ("expired", Some(pki.client(ClientKind::Expired))),
        ("not yet valid", Some(pki.client(ClientKind::NotYetValid))),
        (
            "serverAuth EKU only",
            Some(pki.client(ClientKind::ServerAuthOnly)),
        ),
        (
            "unknown CA, same name",
            Some(pki.client(ClientKind::UnknownCaSameName)),
        ),
        ("revoked", Some(pki.client(ClientKind::Revoked))),
        ("self-signed", Some(pki.client(ClientKind::SelfSigned))),
    ];
    for (name, identity) in &cases {
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let config = pki.client_config(identity.as_ref(), &[b"http/1.1"], &[version]);
            let result = attempt(&gw, config).await;
            assert!(
                result.is_err(),
                "{name} over {version:?} accepted: {result:?}"
            );
        }
    }
    assert_eq!(up.count(), 1, "only the good client reached the upstream");
}

#[tokio::test]
async fn optional_client_certificates() {
    let (pki, up, gw) = setup("optional").await;
    let none = attempt(
        &gw,
        pki.client_config(None, &[b"http/1.1"], rustls::DEFAULT_VERSIONS),
    )
    .await;
    assert_eq!(none, Ok(200));
    let good = pki.client(ClientKind::Good);
    let with = attempt(
        &gw,
        pki.client_config(Some(&good), &[b"http/1.1"], rustls::DEFAULT_VERSIONS),
    )
    .await;
    assert_eq!(with, Ok(200));
    // A certificate that is presented is still verified.
    for kind in [
        ClientKind::Expired,
        ClientKind::Revoked,
        ClientKind::UnknownCaSameName,
    ] {
        let bad = pki.client(kind);
        let result = attempt(
            &gw,
            pki.client_config(Some(&bad), &[b"http/1.1"], rustls::DEFAULT_VERSIONS),
        )
        .await;
        assert!(result.is_err(), "{kind:?} accepted in optional mode");
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn wrong_server_name_is_not_served_a_valid_certificate() {
    let (pki, _up, gw) = setup("none").await;
    let config = pki.client_config(None, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    // The certificate names localhost and other.example only.
    assert!(pki::connect(gw.addr, "evil.example", config).await.is_err());
}

/// Control for the revocation case: without the CRL the same certificate is accepted, so the
/// refusal above is the CRL's doing.
#[tokio::test]
async fn revoked_certificate_is_accepted_without_the_crl() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    cfg.listener_tables = pki.listener_tls_with(dir.path(), "required", false);
    let gw = Gateway::start_in(dir, &cfg.render()).await;
    let revoked = pki.client(ClientKind::Revoked);
    let result = attempt(
        &gw,
        pki.client_config(Some(&revoked), &[b"http/1.1"], rustls::DEFAULT_VERSIONS),
    )
    .await;
    assert_eq!(result, Ok(200));
}

#[tokio::test]
async fn h2_authority_different_from_sni_is_misdirected() {
    let (pki, up, gw) = setup("none").await;
    let config = pki.client_config(None, &[b"h2"], rustls::DEFAULT_VERSIONS);
    let tls = pki::connect(gw.addr, "localhost", config).await.unwrap();
    let r = h2_over(
        tls,
        http::Request::get("https://other.example/demo/x")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 421);
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Weak client certificates, made and presented with the `openssl` CLI
// ---------------------------------------------------------------------------------------------
//
// rcgen cannot make an RSA-1024 key or a SHA-1 signature, and rustls will not sign a handshake
// with RSA-1024, so `openssl` signs these with the test CA's key and `openssl s_client`, told to
// drop its own security level, presents them. The gateway's verifier (webpki with ring's
// algorithms) has no SHA-1 signature algorithm and no RSA verification under 2048 bits, so both
// end in a `decrypt_error` alert: the SHA-1 one on the chain, the RSA-1024 one on
// CertificateVerify. A control certificate made with the same commands, RSA-2048 and SHA-256,
// must get through, so the refusals are about the weakness and not the tooling.

const OPENSSL: &str = "/usr/bin/openssl";
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `openssl args…` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run /usr/bin/openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A clientAuth certificate from the test CA, made by openssl in the gateway's temp dir:
/// `genpkey_args` choose the key, `digest` (`sha256`, `sha1`) the CA's signature.
/// Returns the names of the certificate and key files, relative to that dir.
fn openssl_client(
    pki: &Pki,
    gw: &Gateway,
    name: &str,
    genpkey_args: &[&str],
    digest: &str,
    serial: u32,
) -> (String, String) {
    let dir = gw.dir.path();
    penghubung_e2e::write_file(dir, "ca-signing.pem", &pki.ca_pem);
    penghubung_e2e::write_file(dir, "ca-signing.key", &pki.ca_key_pem());
    penghubung_e2e::write_file(
        dir,
        "client-ext.cnf",
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = clientAuth\n\
         subjectAltName = DNS:dinas-test.pemda.example\n",
    );
    let (cert, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    let mut genpkey = vec!["genpkey", "-out", &key];
    genpkey.extend_from_slice(genpkey_args);
    openssl(dir, &genpkey);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=dinas-test",
            "-out",
            &csr,
        ],
    );
    let serial = serial.to_string();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca-signing.pem",
            "-CAkey",
            "ca-signing.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            &format!("-{digest}"),
            "-extfile",
            "client-ext.cnf",
            "-out",
            &cert,
        ],
    );
    (cert, key)
}

/// One `GET /demo/x` through `openssl s_client` presenting `cert`/`key`, over `version`
/// (`tls1_2`, `tls1_3`). Returns stdout and stderr together; bounded by [`OPENSSL_TIMEOUT`].
async fn openssl_get(gw: &Gateway, cert: &str, key: &str, version: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(OPENSSL)
        .current_dir(gw.dir.path())
        .args(["s_client", "-connect", &gw.addr.to_string()])
        .args(["-servername", "localhost", "-CAfile", "ca.pem"])
        .args(["-cert", cert, "-key", key, &format!("-{version}")])
        // Security level 0 for the certificate, the chain and the handshake signature, so that
        // openssl is willing to present a weak certificate at all ("ee key too small" otherwise).
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-auth_level", "0"])
        // Keep reading after stdin ends, until the gateway closes.
        .arg("-ign_eof")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    // The pipe may already be closed if openssl gave up; the output says why.
    let _ = stdin
        .write_all(b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    drop(stdin);
    let out = tokio::time::timeout(OPENSSL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("openssl s_client {cert} {version} still running after 10 s"))
        .unwrap();
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The control (RSA-2048, SHA-256) is served over TLS 1.2 and 1.3; the weak certificate is
/// refused over both with a `decrypt_error` alert and nothing reaches the upstream.
async fn weak_client_certificate_is_refused(genpkey_args: &[&str], digest: &str) {
    let (pki, up, gw) = setup("required").await;
    let rsa2048 = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
    let (control_cert, control_key) =
        openssl_client(&pki, &gw, "control", &rsa2048, "sha256", 4097);
    let (weak_cert, weak_key) = openssl_client(&pki, &gw, "weak", genpkey_args, digest, 4098);
    for version in ["tls1_3", "tls1_2"] {
        let out = openssl_get(&gw, &control_cert, &control_key, version).await;
        assert!(
            out.contains("HTTP/1.1 200"),
            "control certificate over {version} not served:\n{out}"
        );
    }
    assert_eq!(up.count(), 2, "both control requests forwarded");
    for version in ["tls1_3", "tls1_2"] {
        let out = openssl_get(&gw, &weak_cert, &weak_key, version).await;
        assert!(
            !out.contains("HTTP/1."),
            "weak certificate ({digest}, {genpkey_args:?}) over {version} got a response:\n{out}"
        );
        // The certificate was presented and refused for its signature, not left unsent
        // (that would be `certificate required` / `handshake failure`).
        assert!(
            out.contains("alert decrypt error"),
            "weak certificate over {version}: expected a decrypt_error alert:\n{out}"
        );
    }
    assert_eq!(up.count(), 2, "nothing forwarded for the weak certificate");
}

#[tokio::test]
async fn weak_client_certificate_rsa1024_is_refused() {
    let rsa1024 = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"];
    weak_client_certificate_is_refused(&rsa1024, "sha256").await;
}

#[tokio::test]
async fn weak_client_certificate_sha1_signed_is_refused() {
    let p256 = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    weak_client_certificate_is_refused(&p256, "sha1").await;
}

/// `X-JWT-Assertion` (WSO2's caller assertion) passes only from a client whose certificate was
/// verified; the other identity headers of other gateways never pass.
#[tokio::test]
async fn jwt_assertion_passes_only_from_a_verified_peer() {
    let (pki, up, gw) = setup("optional").await;
    let send = |identity: Option<Identity>| {
        let config = pki.client_config(identity.as_ref(), &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
        let addr = gw.addr;
        async move {
            let tls = pki::connect(addr, "localhost", config).await.unwrap();
            let response = h1_over(
                tls,
                http::Request::get("/demo/x")
                    .header("host", "localhost")
                    .header("x-jwt-assertion", "eyJ.asserted.")
                    .header("x-remote-user", "admin")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    send(None).await;
    send(Some(pki.client(ClientKind::Good))).await;
    let received = up.wait_for(2).await;
    assert!(
        received[0].header("x-jwt-assertion").is_none(),
        "{}",
        received[0].head
    );
    assert_eq!(received[1].header("x-jwt-assertion"), Some("eyJ.asserted."));
    assert!(received.iter().all(|r| r.header("x-remote-user").is_none()));
}

/// A CRL from the test CA (re-created from its PEM and key), with `next_update` relative to
/// now, revoking the `Revoked` client certificate when `revoke`.
fn crl_pem(pki: &Pki, next_update: time::Duration, revoke: bool) -> String {
    use rcgen::{
        CertificateParams, CertificateRevocationListParams, KeyIdMethod, KeyPair, RevocationReason,
        RevokedCertParams, SerialNumber,
    };
    let key = KeyPair::from_pem(&pki.ca_key_pem()).unwrap();
    let ca = CertificateParams::from_ca_cert_pem(&pki.ca_pem)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let revoked_certs = if revoke {
        vec![RevokedCertParams {
            serial_number: SerialNumber::from(vec![0x0d, 0xea, 0xd1]),
            revocation_time: now - time::Duration::hours(2),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }]
    } else {
        Vec::new()
    };
    CertificateRevocationListParams {
        this_update: now - time::Duration::days(30),
        next_update: now + next_update,
        crl_number: SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &key)
    .unwrap()
    .pem()
    .unwrap()
}

/// A `[listener.tls]` table requiring client certificates with `crl_file` as the CRL.
fn tls_with_crl(pki: &Pki, dir: &std::path::Path, crl: &str, extra: &str) -> String {
    let mut table = pki.listener_tls_with(dir, "required", false);
    let path = penghubung_e2e::write_file(dir, "current.crl.pem", crl);
    table.push_str(&format!(
        "crls = [{:?}]\n{extra}\n",
        path.display().to_string()
    ));
    table
}

async fn good_client_status(pki: &Pki, gw: &Gateway) -> Result<u16, String> {
    let good = pki.client(ClientKind::Good);
    attempt(
        gw,
        pki.client_config(Some(&good), &[b"http/1.1"], rustls::DEFAULT_VERSIONS),
    )
    .await
}

/// A CRL past its nextUpdate: by default client certificates of its CA are refused (their
/// revocation status is unknown); `crl_expired = "warn"` keeps serving them.
#[tokio::test]
async fn stale_crl_refuses_client_certificates_unless_set_to_warn() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();
    let stale = crl_pem(&pki, -time::Duration::days(1), false);
    for (extra, expect_ok) in [
        ("", false),
        ("crl_expired = \"refuse\"", false),
        ("crl_expired = \"warn\"", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Cfg::new(&[up.addr]);
        cfg.listener_tables = tls_with_crl(&pki, dir.path(), &stale, extra);
        let gw = Gateway::start_in(dir, &cfg.render()).await;
        let result = good_client_status(&pki, &gw).await;
        assert_eq!(result.is_ok(), expect_ok, "{extra:?}: {result:?}");
    }
    // Control: a current CRL serves the same client.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    cfg.listener_tables = tls_with_crl(
        &pki,
        dir.path(),
        &crl_pem(&pki, time::Duration::days(1), false),
        "",
    );
    let gw = Gateway::start_in(dir, &cfg.render()).await;
    assert_eq!(good_client_status(&pki, &gw).await, Ok(200));
}

/// A CRL file the verifier cannot use stops the start with the file's path and the reason.
#[tokio::test]
async fn unusable_crl_names_the_file_and_the_reason() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();
    for (name, text) in [
        (
            "garbage",
            "-----BEGIN X509 CRL-----\nAAECAwQ=\n-----END X509 CRL-----\n",
        ),
        ("empty", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Cfg::new(&[up.addr]);
        cfg.listener_tables = tls_with_crl(&pki, dir.path(), text, "");
        let error = Gateway::try_start_in(dir, &cfg.render())
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: started with an unusable CRL"))
            .to_string();
        assert!(error.contains("current.crl.pem"), "{name}: {error}");
        assert!(error.contains("CRL"), "{name}: {error}");
    }
}

/// CRL files are watched: replacing the file revokes without a config reload.
#[tokio::test]
async fn a_changed_crl_file_is_reloaded() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    cfg.listener_tables = tls_with_crl(
        &pki,
        dir.path(),
        &crl_pem(&pki, time::Duration::days(1), false),
        "",
    );
    let crl_path = dir.path().join("current.crl.pem");
    let gw = Gateway::start_in(dir, &cfg.render()).await;
    let revoked = pki.client(ClientKind::Revoked);
    let try_revoked = || {
        attempt(
            &gw,
            pki.client_config(Some(&revoked), &[b"http/1.1"], rustls::DEFAULT_VERSIONS),
        )
    };
    assert_eq!(try_revoked().await, Ok(200), "not revoked yet");
    std::fs::write(&crl_path, crl_pem(&pki, time::Duration::days(1), true)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if try_revoked().await.is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new CRL was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(good_client_status(&pki, &gw).await, Ok(200));
}

/// The server's cipher-suite order wins: a TLS 1.2 client that prefers ChaCha20 still gets
/// the server's first choice (AES-256-GCM), whatever order it offers.
#[tokio::test]
async fn server_cipher_preference_is_enforced() {
    use rustls::crypto::ring::cipher_suite as cs;
    let (pki, _up, gw) = setup("none").await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut negotiated = Vec::new();
    for order in [
        vec![
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ],
        vec![
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
    ] {
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: order,
            ..rustls::crypto::ring::default_provider()
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let tls = pki::connect(gw.addr, "localhost", Arc::new(config))
            .await
            .unwrap();
        negotiated.push(tls.get_ref().1.negotiated_cipher_suite().unwrap().suite());
    }
    assert_eq!(
        negotiated[0], negotiated[1],
        "the client's order decided: {negotiated:?}"
    );
    assert_eq!(
        negotiated[0],
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
}

/// A configured OCSP response is stapled to the handshake, byte for byte.
#[tokio::test]
async fn configured_ocsp_response_is_stapled() {
    #[derive(Debug)]
    struct Capture {
        inner: Arc<rustls::client::WebPkiServerVerifier>,
        stapled: std::sync::Mutex<Vec<u8>>,
    }
    impl rustls::client::danger::ServerCertVerifier for Capture {
        fn verify_server_cert(
            &self,
            end_entity: &rustls_pki_types::CertificateDer<'_>,
            intermediates: &[rustls_pki_types::CertificateDer<'_>],
            server_name: &rustls_pki_types::ServerName<'_>,
            ocsp_response: &[u8],
            now: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            *self.stapled.lock().unwrap() = ocsp_response.to_vec();
            // Verify the chain; the test OCSP response itself is not a signed one.
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, &[], now)
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    let up = Upstream::start("a", Behaviour::Ok).await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    // A DER OCSPResponse with responseStatus = tryLater (3): well-formed, and what is stapled
    // must reach the client unchanged.
    let ocsp = vec![0x30, 0x03, 0x0a, 0x01, 0x03];
    std::fs::write(dir.path().join("server.ocsp.der"), &ocsp).unwrap();
    let mut cfg = Cfg::new(&[up.addr]);
    cfg.listener_tables = format!(
        "{}ocsp_response = {:?}\n",
        pki.listener_tls(dir.path(), "none"),
        dir.path().join("server.ocsp.der").display().to_string()
    );
    let gw = Gateway::start_in(dir, &cfg.render()).await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let capture = Arc::new(Capture {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap(),
        stapled: std::sync::Mutex::new(Vec::new()),
    });
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(capture.clone())
            .with_no_client_auth();
        capture.stapled.lock().unwrap().clear();
        let tls = pki::connect(gw.addr, "localhost", Arc::new(config))
            .await
            .unwrap();
        let status = h1_over(tls, request("/demo/x")).await.unwrap().status();
        assert_eq!(status, 200);
        assert_eq!(*capture.stapled.lock().unwrap(), ocsp, "{version:?}");
    }
}

/// A TLS 1.2 client-initiated renegotiation is answered at once with a `no_renegotiation`
/// alert (rustls implements no renegotiation), not left hanging until a timeout.
#[tokio::test]
async fn tls12_renegotiation_is_answered_with_an_alert() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_pki, _up, gw) = setup("none").await;
    let mut child = tokio::process::Command::new(OPENSSL)
        .current_dir(gw.dir.path())
        .args(["s_client", "-connect", &gw.addr.to_string()])
        .args(["-servername", "localhost", "-CAfile", "ca.pem", "-tls1_2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    // Wait for the handshake.
    let connected = tokio::time::timeout(OPENSSL_TIMEOUT, async {
        loop {
            let n = stdout.read(&mut chunk).await.unwrap();
            assert!(n > 0, "s_client ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&seen).contains("---\n") && seen.ends_with(b"---\n") {
                break;
            }
        }
    })
    .await;
    assert!(connected.is_ok(), "{}", String::from_utf8_lossy(&seen));
    let started = std::time::Instant::now();
    stdin.write_all(b"R\n").await.unwrap();
    // The answer: the alert ends s_client's renegotiation (it reports and exits) quickly.
    let status = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
    let mut err = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(200), stderr.read_to_end(&mut err)).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(200), stdout.read_to_end(&mut rest)).await;
    let text = format!(
        "{}{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&seen),
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(&err)
    );
    assert!(
        status.is_ok(),
        "no answer to the renegotiation within 3 s:\n{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(text.contains("RENEGOTIATING"), "{text}");
    assert!(
        text.to_lowercase().contains("no renegotiation")
            || text.to_lowercase().contains("no_renegotiation"),
        "{text}"
    );
}
