//! A real RFC 3161 time-stamping authority: `openssl ts -reply` behind a tiny HTTP server, with
//! a TSA CA and certificate made by the `openssl` CLI at run time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Runs the `openssl` CLI in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
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

/// Makes a TSA CA, a TSA certificate (critical EKU timeStamping) and an `openssl ts` config in
/// `dir`; returns the CA certificate's path.
pub fn tsa_pki(dir: &Path) -> PathBuf {
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

/// Runs `openssl ts -reply` on the DER time-stamp `query` with the TSA config `tsa_pki` wrote in
/// `dir` (files `NAME.tsq` and `NAME.tsr`); returns the DER reply.
pub fn reply(dir: &Path, query: &[u8], name: &str) -> Vec<u8> {
    let (q, r) = (
        dir.join(format!("{name}.tsq")),
        dir.join(format!("{name}.tsr")),
    );
    std::fs::write(&q, query).unwrap();
    let cfg = dir.join("tsa.cnf");
    openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-config",
            cfg.to_str().unwrap(),
            "-queryfile",
            q.to_str().unwrap(),
            "-out",
            r.to_str().unwrap(),
        ],
    );
    std::fs::read(&r).unwrap()
}

/// A running TSA.
#[derive(Debug, Clone)]
pub struct Tsa {
    /// Where to POST time-stamp queries.
    pub url: String,
    /// While false, every query is answered 503 (the TSA is "down").
    pub up: Arc<AtomicBool>,
    /// Replies signed so far.
    pub served: Arc<AtomicUsize>,
}

/// Serves `openssl ts -reply` over HTTP on 127.0.0.1:0; answers 503 while `up` is false.
pub async fn start_tsa(dir: PathBuf) -> Tsa {
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
                            reply(&dir, &query, &format!("r{n}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// POSTs `query` to the TSA: the status and the reply body.
    async fn post(url: &str, query: &[u8]) -> (u16, Vec<u8>) {
        let addr = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /tsa HTTP/1.1\r\nhost: tsa\r\ncontent-type: application/timestamp-query\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            query.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(query).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(crate::IO_TIMEOUT, stream.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
        (status, raw[end + 4..].to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replies_verify_with_openssl_and_a_down_tsa_answers_503() {
        let dir = crate::dir::temp_dir("tsa");
        let d = dir.path();
        let ca = tsa_pki(d);
        let tsa = start_tsa(d.to_path_buf()).await;
        std::fs::write(d.join("data"), b"a checkpoint digest").unwrap();
        let query_args = ["ts", "-query", "-data", "data", "-sha256", "-cert"];
        openssl(d, &[&query_args[..], &["-out", "q.tsq"]].concat());
        let query = std::fs::read(d.join("q.tsq")).unwrap();

        let (status, reply) = post(&tsa.url, &query).await;
        assert_eq!(status, 200);
        assert_eq!(tsa.served.load(Ordering::SeqCst), 1);
        std::fs::write(d.join("r.tsr"), reply).unwrap();
        let ca = ca.to_str().unwrap();
        // openssl checks the signature, the certificate chain to the CA and the imprint.
        openssl(
            d,
            &[
                "ts", "-verify", "-data", "data", "-in", "r.tsr", "-CAfile", ca,
            ],
        );
        // The reply does not verify for other data.
        std::fs::write(d.join("other"), b"other data").unwrap();
        let other = Command::new("openssl")
            .args([
                "ts", "-verify", "-data", "other", "-in", "r.tsr", "-CAfile", ca,
            ])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(!other.status.success());

        tsa.up.store(false, Ordering::SeqCst);
        assert_eq!(post(&tsa.url, &query).await.0, 503);
        assert_eq!(tsa.served.load(Ordering::SeqCst), 1);
    }
}
