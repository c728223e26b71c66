//! `penghubung demo`: the embedded default. A built-in demo upstream and a config that routes to
//! it, so a new user can `curl` through the gateway at once without any external service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The embedded config; `@LISTEN@`, `@ADMIN@`, `@UPSTREAM@`, `@EVIDENCE@`,
/// `@SIGNER_SOCKET@` and `@PRIVACY_KEY@` are filled in.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

/// Renders the demo config for the given addresses and files.
pub fn config_text(listen: &str, admin: &str, upstream: SocketAddr, files: &DemoFiles) -> String {
    let toml_path = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    DEMO_CONFIG
        .replace("@LISTEN@", listen)
        .replace("@ADMIN@", admin)
        .replace("@REGISTRY@", &toml_path(&files.root.join("registry.db")))
        .replace("@UPSTREAM@", &upstream.to_string())
        .replace("@EVIDENCE@", &toml_path(&files.evidence))
        .replace("@SIGNER_SOCKET@", &toml_path(&files.signer_socket))
        .replace("@PRIVACY_KEY@", &toml_path(&files.privacy_key))
}

/// Makes one call through the demo gateway (`GET /demo/hello`) and returns its exchange id, so
/// the printed `export` line names an exchange that exists.
pub async fn first_exchange(listen: SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(listen)
        .await
        .map_err(|e| format!("demo: first call to {listen}: {e}"))?;
    stream
        .write_all(b"GET /demo/hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("demo: first call: {e}"))?;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .map_err(|_| "demo: first call timed out".to_owned())?
    .map_err(|e| format!("demo: first call: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-penghubung-exchange-id")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| "demo: the first call got no exchange id".to_owned())
}

/// Starts the demo upstream on a free loopback port: `/hello` greets, `/echo` returns what it
/// received (method, path, headers, body) as JSON, `/bytes/N` returns N bytes.
pub async fn start_upstream() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path();
    let reply = |status: StatusCode, content_type: &'static str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        r
    };
    let stripped = path
        .trim_start_matches("/demo")
        .trim_start_matches("/penduduk");
    let response = if stripped == "/hello" {
        reply(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"Halo dari layanan demo!\n"),
        )
    } else if let Some(n) = stripped.strip_prefix("/bytes/") {
        match n.parse::<usize>() {
            Ok(n) if n <= 10 * 1024 * 1024 => reply(
                StatusCode::OK,
                "application/octet-stream",
                Bytes::from(vec![b'x'; n]),
            ),
            _ => reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                Bytes::from_static(b"bad size\n"),
            ),
        }
    } else {
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    serde_json::Value::from(String::from_utf8_lossy(v.as_bytes()).to_string()),
                )
            })
            .collect();
        let echo = serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        reply(
            StatusCode::OK,
            "application/json",
            Bytes::from(echo.to_string()),
        )
    };
    Ok(response)
}

/// Where the demo keeps its files: evidence log, CA, signer key and socket.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    /// The demo's folder.
    pub root: PathBuf,
    /// The evidence log.
    pub evidence: PathBuf,
    /// The generated CA certificate (what `--trust` takes).
    pub ca: PathBuf,
    /// The signer's private key (mode 0600; only the signer process reads it).
    pub signer_key: PathBuf,
    /// The signer's certificate chain, leaf first.
    pub signer_chain: PathBuf,
    /// The signer's Unix socket.
    pub signer_socket: PathBuf,
    /// The personal-data key file (mode 0600).
    pub privacy_key: PathBuf,
}

impl DemoFiles {
    /// The layout under `root`.
    pub fn under(root: &Path) -> DemoFiles {
        DemoFiles {
            root: root.to_path_buf(),
            evidence: root.join("evidence"),
            ca: root.join("pki").join("ca.pem"),
            signer_key: root.join("signer").join("key.pem"),
            signer_chain: root.join("signer").join("chain.pem"),
            signer_socket: root.join("signer").join("signer.sock"),
            privacy_key: root.join("keys").join("personal.toml"),
        }
    }
}

/// Generates the demo PKI and the personal-data key file: a CA (basicConstraints CA:TRUE, keyUsage keyCertSign + cRLSign) and a
/// checkpoint signer certificate (keyUsage digitalSignature + contentCommitment, extended key
/// usage id-kp-documentSigning 1.3.6.1.5.5.7.3.36), ECDSA P-256, valid from yesterday for 90
/// days. The CA key is not kept; the signer key is written with mode 0600.
pub fn write_pki(files: &DemoFiles) -> Result<(), String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let now = time::OffsetDateTime::now_utc();
    let validity = |p: &mut CertificateParams| {
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(90);
    };
    fn e(what: &'static str) -> impl Fn(rcgen::Error) -> String {
        move |err| format!("demo PKI: {what}: {err}")
    }
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(e("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e("CA"))?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "Penghubung demo evidence CA (development only)",
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params);
    let ca = ca_params
        .self_signed(&ca_key)
        .map_err(e("CA certificate"))?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(e("signer key"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e("signer"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Penghubung demo checkpoint signer");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(vec![
        1, 3, 6, 1, 5, 5, 7, 3, 36,
    ])];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let leaf = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(e("signer certificate"))?;

    let io = |path: &Path| {
        let path = path.display().to_string();
        move |err: std::io::Error| format!("demo PKI: write {path}: {err}")
    };
    for dir in [files.ca.parent(), files.signer_key.parent()]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if let Some(dir) = files.signer_key.parent() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    std::fs::write(&files.ca, ca.pem()).map_err(io(&files.ca))?;
    std::fs::write(&files.signer_chain, format!("{}{}", leaf.pem(), ca.pem()))
        .map_err(io(&files.signer_chain))?;
    let mut key_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&files.signer_key)
        .map_err(io(&files.signer_key))?;
    std::io::Write::write_all(&mut key_file, key.serialize_pem().as_bytes())
        .map_err(io(&files.signer_key))?;
    if let Some(dir) = files.privacy_key.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    penghubung_evidence::personal::rotate_key_file(&files.privacy_key, "demo-1")
        .map_err(|e| format!("demo personal-data key: {e}"))?;
    Ok(())
}

/// The demo's signer process; killed when dropped.
#[derive(Debug)]
pub struct SignerProcess(std::process::Child);

impl Drop for SignerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `penghubung signer` (this very executable) as a child process in its own process
/// group (so the terminal's Ctrl-C reaches only the gateway, which still needs the signer for
/// its final checkpoint), and waits until its socket is there.
pub async fn spawn_signer(files: &DemoFiles) -> Result<SignerProcess, String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("demo signer: {e}"))?;
    let log_path = files.root.join("signer.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("demo signer: create {}: {e}", log_path.display()))?;
    let child = std::process::Command::new(exe)
        .arg("signer")
        .arg("--key")
        .arg(&files.signer_key)
        .arg("--chain")
        .arg(&files.signer_chain)
        .arg("--socket")
        .arg(&files.signer_socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("demo signer: start: {e}"))?;
    let mut child = SignerProcess(child);
    for _ in 0..500 {
        if files.signer_socket.exists() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!(
                "demo signer exited ({status}); see {}",
                log_path.display()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err(format!(
        "demo signer did not open {} within 5 s; see {}",
        files.signer_socket.display(),
        log_path.display()
    ))
}

/// How to run this executable from the current directory: `penghubung` when the `penghubung`
/// on `PATH` is this file (`cargo install --path gateway`), else its path relative to the
/// current directory (`target/debug/penghubung` in a clone), else its absolute path.
pub fn command_prefix() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "cargo run -p penghubung --".to_owned();
    };
    let exe = exe.canonicalize().unwrap_or(exe);
    if let Some(path) = std::env::var_os("PATH") {
        let on_path =
            std::env::split_paths(&path).find_map(|d| d.join("penghubung").canonicalize().ok());
        if on_path.as_ref() == Some(&exe) {
            return "penghubung".to_owned();
        }
    }
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.canonicalize().ok())
        .and_then(|cwd| exe.strip_prefix(&cwd).ok().map(Path::to_path_buf));
    match relative {
        Some(rel) => shell_word(&rel),
        None => shell_word(&exe),
    }
}

/// A path as one shell word (single-quoted when it holds anything but `[A-Za-z0-9/._+-]`).
pub fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The demo's first operator account (Admin Platform): its name.
pub const OPERATOR: &str = "admin";

/// The lines printed when the demo starts: curl lines to try, the operator account and the
/// admin API calls it can make, then the evidence commands that work as printed after Ctrl-C
/// (`exchange` is an exchange the demo made itself at start).
pub fn curl_lines(
    listen: &str,
    admin: &str,
    files: &DemoFiles,
    exchange: &str,
    password: &str,
) -> String {
    let cmd = command_prefix();
    let evidence = shell_word(&files.evidence);
    let ca = shell_word(&files.ca);
    let bundle = shell_word(&files.root.join("bundle.json"));
    format!(
        "Penghubung demo is running.\n\
         Evidence log: {evidence}\n\
         Checkpoints are signed by a development key that only a separate `penghubung signer`\n\
         process reads (socket {socket}), certified by a CA generated for this demo ({ca}).\n\
         \n\
         Try:\n  \
         curl -i http://{listen}/demo/hello\n  \
         curl -i -X POST -d '{{\"nik\":\"3201xxxxxxxxxxxx\"}}' http://{listen}/demo/echo\n  \
         curl -i http://{listen}/demo/admin/secret        # denied route: 403\n  \
         curl -i http://{listen}/demo/%2e%2e/admin        # ambiguous path: 400\n  \
         curl -i -H 'Host: unknown.example' http://{listen}/demo/hello   # unknown host: 421\n  \
         curl -i http://{listen}/penduduk/3201010101010001   # no credential: 401\n  \
         curl -i -H 'apikey: kunci-demo-opd-bkd' http://{listen}/penduduk/3201010101010001   # granted: 200\n  \
         curl -i -X POST -H 'apikey: kunci-demo-opd-bkd' http://{listen}/penduduk/x   # outside cakupan: 403\n  \
         curl -s http://{admin}/metrics | head\n\
         \n\
         Operator account (Admin Platform) in the registry {registry}:\n  \
         user {operator}, password {password}\n\
         Sign in, then use the admin API with the session token:\n  \
         TOKEN=$(curl -s -H 'content-type: application/json' -d '{{\"username\":\"{operator}\",\"password\":\"{password}\"}}' http://{admin}/api/v1/sessions | sed -E 's/.*\"token\":\"([^\"]+)\".*/\\1/')\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" http://{admin}/health\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" http://{admin}/api/v1/catalogue\n  \
         curl -s -i -X POST http://{admin}/reload        # no credential: 401\n\
         \n\
         After Ctrl-C (the gateway drains and writes a final signed checkpoint), from this directory:\n  \
         {cmd} evidence verify {evidence} --trust {ca}\n  \
         {cmd} evidence show {evidence}\n  \
         {cmd} evidence export {evidence} --exchange {exchange} -o {bundle}\n  \
         {cmd} evidence check-bundle {bundle} --trust {ca}\n\
         (exchange {exchange} is the demo's own first call; any x-penghubung-exchange-id works)\n",
        socket = shell_word(&files.signer_socket),
        registry = shell_word(&files.root.join("registry.db")),
        operator = OPERATOR,
    )
}
