//! JWKS fetched over HTTPS from a server with a test CA made here (rcgen), verified against
//! `jwks_ca_file`; an untrusted server certificate makes the build fail.
#![allow(clippy::unwrap_used)]

mod auth_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use auth_common::*;
use penghubung::auth::{AuthBuildError, AuthRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    url: String,
    ca_pem: String,
    hits: Arc<AtomicUsize>,
}

async fn serve(body: String) -> Server {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA Pemda");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body, h) = (acceptor.clone(), body.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        url,
        ca_pem: ca.pem(),
        hits,
    }
}

fn settings(url: &str, ca: Option<&std::path::Path>) -> penghubung::auth::AuthSettings {
    let ca = ca
        .map(|p| format!("jwks_ca_file = \"{}\"\n", p.display()))
        .unwrap_or_default();
    toml::from_str(&format!(
        "[[issuers]]\nissuer = \"{ISS}\"\naudiences = [\"{AUD}\"]\njwks_url = \"{url}\"\n{ca}algorithms = [\"ES256\"]\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn auth_jwks_over_https_with_a_private_ca() {
    let ec = ec_key();
    let server = serve(serde_json::json!({ "keys": [ec_jwk(&ec, "ec-1")] }).to_string()).await;
    let dir = temp_dir("https");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let (o, a, g) = parties(&"ab".repeat(32), "");
    let rt = AuthRuntime::build(&settings(&server.url, Some(&ca)), &o, &a, &g, None, None)
        .await
        .unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    let t = sign_es256(&ec, r#"{"alg":"ES256","kid":"ec-1"}"#, &claims(&[]));
    let p = rt
        .authenticate(&bearer(&t), &uri(), None, &service())
        .await
        .unwrap();
    assert_eq!(p.application, "simpeg");

    // Without the private CA the server is not trusted and the config load fails.
    let err = AuthRuntime::build(&settings(&server.url, None), &o, &a, &g, None, None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, AuthBuildError::Jwks { .. }), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}
