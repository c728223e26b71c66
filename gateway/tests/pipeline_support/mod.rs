//! Shared helpers of the `pipeline_*` end-to-end tests: a recording raw-TCP upstream, a raw
//! HTTP/1.1 client (so malformed requests and `Expect` can be sent byte for byte), the test
//! configuration, and evidence log readers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use penghubung_evidence::schema::{record::Kind, Record};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The API key of application `simpeg` (stored in the config only as its SHA-256).
pub const KEY: &str = "kunci-rahasia-simpeg";
/// The API key of application `lain`, which holds no grant.
pub const KEY_NO_GRANT: &str = "kunci-tanpa-grant";
/// OAuth2 client of `simpeg`.
pub const CLIENT_ID: &str = "simpeg-client";
/// Its secret (stored as an argon2 PHC hash).
pub const CLIENT_SECRET: &str = "rahasia-klien-simpeg";

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A raw-TCP HTTP/1.1 upstream that records every request and answers
/// `200` with body `echo:<path>:<request body length>` (or, for paths containing `/slow`, sends
/// half of a 64 KiB body, waits for [`Upstream::release`], then the rest).
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<tokio::sync::Semaphore>,
    /// Count of `/slow` responses whose first half has been written.
    pub slow_started: Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const SLOW_LEN: usize = 64 * 1024;

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let slow_started = Arc::new(tokio::sync::Semaphore::new(0));
        let (s, r, st) = (seen.clone(), release.clone(), slow_started.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, r, st) = (s.clone(), r.clone(), st.clone());
                tokio::spawn(async move {
                    let _ = serve_upstream(stream, s, r, st).await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            release,
            slow_started,
            task,
        }
    }

    /// Lets one held `/slow` response finish.
    pub fn release(&self) {
        self.release.add_permits(1);
    }

    pub fn count(&self) -> usize {
        self.seen.lock().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .last()
            .cloned()
            .expect("upstream saw a request")
    }
}

async fn serve_upstream(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<tokio::sync::Semaphore>,
    slow_started: Arc<tokio::sync::Semaphore>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((head, rest)) = read_head(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        buf = rest;
        let (line, headers) = parse_head(&head);
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let (body, rest) = read_body(&mut stream, &headers, buf).await?;
        buf = rest;
        let len = body.len();
        seen.lock().push(Seen {
            method,
            path: path.clone(),
            headers,
            body,
        });
        if path.contains("/slow") {
            let half = vec![b's'; SLOW_LEN / 2];
            stream
                .write_all(
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {SLOW_LEN}\r\ncontent-type: application/octet-stream\r\n\r\n")
                        .as_bytes(),
                )
                .await?;
            stream.write_all(&half).await?;
            stream.flush().await?;
            slow_started.add_permits(1);
            release.acquire().await.unwrap().forget();
            stream.write_all(&half).await?;
            stream.flush().await?;
            continue;
        }
        let body = format!("echo:{path}:{len}");
        stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await?;
    }
}

/// Reads up to the end of a head; `None` on a clean EOF before any byte.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok(Some((std::mem::take(buf), rest)));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    (first, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a content-length or chunked body; returns (body, leftover bytes).
async fn read_body(
    stream: &mut TcpStream,
    headers: &[(String, String)],
    mut buf: Vec<u8>,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let chunked = header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    if chunked {
        loop {
            if let Some((body, used, true)) = dechunk(&buf) {
                return Ok((body, buf.split_off(used)));
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let len: usize = header(headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let rest = buf.split_off(len);
    Ok((buf, rest))
}

/// Decodes a chunked body: (body so far, bytes consumed, complete).
fn dechunk(data: &[u8]) -> Option<(Vec<u8>, usize, bool)> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let Some(line_end) = find(&data[off..], b"\r\n") else {
            return Some((out, off, false));
        };
        let size_text = String::from_utf8_lossy(&data[off..off + line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        let start = off + line_end + 2;
        if size == 0 {
            // Trailers end with an empty line.
            let Some(end) = find(&data[start..], b"\r\n") else {
                return Some((out, off, false));
            };
            if end == 0 {
                return Some((out, start + 2, true));
            }
            let Some(t) = find(&data[start..], b"\r\n\r\n") else {
                return Some((out, off, false));
            };
            return Some((out, start + t + 4, true));
        }
        if data.len() < start + size + 2 {
            out.extend_from_slice(&data[start..data.len().min(start + size)]);
            return Some((out, off, false));
        }
        out.extend_from_slice(&data[start..start + size]);
        off = start + size + 2;
    }
}

/// A response read off a raw connection.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body arrived in full (content-length reached, or the last chunk seen).
    pub complete: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn exchange_id(&self) -> String {
        self.header("x-penghubung-exchange-id")
            .expect("x-penghubung-exchange-id")
            .to_owned()
    }
}

/// Sends `raw` on a new connection and reads one response until the connection closes.
pub async fn raw(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    read_response(&mut stream, Duration::from_secs(20)).await
}

/// Reads one response (skipping nothing: a `100 Continue` is returned as such) until the
/// connection closes or the body is complete.
pub async fn read_response(stream: &mut TcpStream, deadline: Duration) -> Resp {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16384];
        // (status, headers, offset of the body)
        type Head = (u16, Vec<(String, String)>, usize);
        let mut head: Option<Head> = None;
        loop {
            if head.is_none() {
                if let Some(i) = find(&buf, b"\r\n\r\n") {
                    let (line, headers) = parse_head(&buf[..i]);
                    let status = line.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
                    head = Some((status, headers, i + 4));
                }
            }
            if let Some((status, headers, start)) = &head {
                let body = &buf[*start..];
                if *status == 100 {
                    return (*status, headers.clone(), Vec::new(), true);
                }
                if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                    if let Some((b, _, true)) = dechunk(body) {
                        return (*status, headers.clone(), b, true);
                    }
                } else if let Some(len) =
                    header(headers, "content-length").and_then(|v| v.parse::<usize>().ok())
                {
                    if body.len() >= len {
                        return (*status, headers.clone(), body[..len].to_vec(), true);
                    }
                }
            }
            let n: usize = stream.read(&mut chunk).await.unwrap_or_default();
            if n == 0 {
                return match head {
                    Some((status, headers, start)) => {
                        let body = buf[start..].to_vec();
                        let chunked = header(&headers, "transfer-encoding")
                            .is_some_and(|v| v.contains("chunked"));
                        let has_len = header(&headers, "content-length").is_some();
                        let body = if chunked {
                            dechunk(&body).map(|d| d.0).unwrap_or_default()
                        } else {
                            body
                        };
                        // Without framing, EOF ends the body; with framing, EOF is truncation.
                        (status, headers, body, !chunked && !has_len)
                    }
                    None => (0, Vec::new(), Vec::new(), false),
                };
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (status, headers, body, complete) = tokio::time::timeout(deadline, read)
        .await
        .expect("response within the deadline");
    Resp {
        status,
        headers,
        body,
        complete,
    }
}

/// A request built from parts, `Connection: close`.
pub fn request_bytes(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    raw(addr, &request_bytes(method, host, path, headers, body)).await
}

pub async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(addr, "GET", host, path, headers, b"").await
}

/// `GET` on the admin listener.
pub async fn admin(addr: SocketAddr, path: &str) -> Resp {
    get(addr, "admin", path, &[]).await
}

/// A temporary directory removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "penghubung-pipe-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// An argon2 PHC hash of `secret`.
pub fn argon2_hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// Options of the test configuration.
#[derive(Default)]
pub struct Opts<'a> {
    /// Traffic listener address (`127.0.0.1:0` when empty).
    pub listen: String,
    /// Admin address (`127.0.0.1:0` when empty).
    pub admin: String,
    /// Evidence directory; `None` disables evidence.
    pub evidence: Option<&'a Path>,
    /// Extra `[evidence]` keys (e.g. a signer table must come after, see `tail`).
    pub evidence_extra: &'a str,
    /// `[redis]` table text.
    pub redis: &'a str,
    /// Text appended at the end.
    pub tail: &'a str,
}

/// The test configuration. Hosts (all served by `upstream`):
/// - `open.test`: anonymous; `/open/*` forwarded, `/open/admin/*` denied.
/// - `data.test`: credentials required, `assertion = true`; routes `/data/*` and `/extra/*`
///   (GET, POST, DELETE); simpeg's grant covers GET and POST on `/data/*` only.
/// - `wso2.test`: `fault_style = "wso2"`.
/// - `rahasia.test`: classification `rahasia` (mTLS only).
/// - `terbatas.test`: classification `terbatas`.
/// - `limited.test`: grant with `rate = "2/s"`.
/// - `expired.test`: grant expired in 2020.
pub fn config(upstream: SocketAddr, o: &Opts<'_>) -> String {
    let listen = if o.listen.is_empty() {
        "127.0.0.1:0"
    } else {
        &o.listen
    };
    let admin = if o.admin.is_empty() {
        "127.0.0.1:0"
    } else {
        &o.admin
    };
    let evidence = match o.evidence {
        Some(dir) => format!(
            "[evidence]\ndir = \"{}\"\ncheckpoint_interval_secs = 3600\n{}\n",
            dir.display(),
            o.evidence_extra
        ),
        None => "[evidence]\nenabled = false\n".to_owned(),
    };
    let key = sha256_hex(KEY.as_bytes());
    let key2 = sha256_hex(KEY_NO_GRANT.as_bytes());
    let secret = argon2_hash(CLIENT_SECRET);
    let consent = r#"consent = { by = "Kepala Dinas", at = "2026-01-05T09:00:00+07:00" }"#;
    let mut services = String::new();
    for (id, class, extra_auth) in [
        ("data", "terbuka", "assertion = true"),
        ("wso2", "terbuka", "fault_style = \"wso2\""),
        ("rahasia", "rahasia", ""),
        ("terbatas", "terbatas", ""),
        ("limited", "terbuka", ""),
        ("expired", "terbuka", ""),
    ] {
        services.push_str(&format!(
            r#"
[[service]]
id = "{id}"
owner_opd = "disdukcapil"
hosts = ["{id}.test"]
upstream = "up"
classification = "{class}"

[service.auth]
{extra_auth}

[[service.route]]
path = "/{id}/*"
methods = ["GET", "POST", "DELETE"]
"#
        ));
        if id == "data" {
            services.push_str(
                "\n[[service.route]]\npath = \"/extra/*\"\nmethods = [\"GET\", \"POST\"]\n",
            );
        }
    }
    let mut grants = String::new();
    for (id, extra) in [
        (
            "data",
            r#"cakupan = [{ methods = ["GET", "POST"], paths = ["/data/*"] }]"#,
        ),
        ("wso2", ""),
        ("rahasia", ""),
        ("terbatas", ""),
        ("limited", r#"limits = { rate = "2/s" }"#),
        ("expired", r#"valid_until = "2020-01-01T00:00:00Z""#),
    ] {
        // Every grant but `data`'s covers GET and POST on its whole service.
        let cakupan = if id == "data" {
            String::new()
        } else {
            format!(r#"cakupan = [{{ methods = ["GET", "POST"], paths = ["/{id}/*"] }}]"#)
        };
        grants.push_str(&format!(
            r#"
[[grant]]
id = "simpeg-{id}"
application = "simpeg"
service = "{id}"
tujuan = "Tujuan uji {id}"
{cakupan}
{extra}
{consent}
"#
        ));
    }
    format!(
        r#"
node_id = "pipeline-test"

[[listener]]
name = "main"
address = "{listen}"

[admin]
address = "{admin}"

{evidence}

[auth.token_endpoint]
enabled = true

{redis}

[[upstream]]
name = "up"
targets = ["{upstream}"]

[[service]]
id = "open"
owner_opd = "diskominfo"
hosts = ["open.test"]
upstream = "up"

[service.auth]
anonymous = true

[[service.route]]
path = "/open/admin/*"
action = "deny"

[[service.route]]
path = "/open/*"
methods = ["GET", "POST"]
{services}

[[opd]]
id = "diskominfo"
name = "Dinas Komunikasi dan Informatika"

[[opd]]
id = "disdukcapil"
name = "Dinas Kependudukan dan Pencatatan Sipil"

[[opd]]
id = "bkd"
name = "Badan Kepegawaian Daerah"

[[application]]
id = "simpeg"
opd = "bkd"
name = "SIMPEG BKD"

[application.credentials]
client_id = "{CLIENT_ID}"
client_secret_hash = "{secret}"
api_key_sha256 = ["{key}"]

[[application]]
id = "lain"
opd = "bkd"
name = "Aplikasi tanpa grant"

[application.credentials]
api_key_sha256 = ["{key2}"]
{grants}
{tail}
"#,
        redis = o.redis,
        tail = o.tail,
    )
}

/// Starts an in-process gateway on `text`.
pub async fn start(text: &str) -> penghubung::server::Running {
    let file = penghubung::config::parse(text, "pipeline test").expect("test config parses");
    penghubung::server::start(file, None)
        .await
        .expect("gateway starts")
}

/// Every readable record of the log in `dir`.
pub fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    penghubung_evidence::verify::scan(dir, &mut |s| {
        out.push(s.record);
        true
    })
    .unwrap();
    out
}

pub fn kind(r: &Record) -> &'static str {
    match &r.kind {
        Some(Kind::Request(_)) => "request",
        Some(Kind::Outcome(_)) => "outcome",
        Some(Kind::Refused(_)) => "refused",
        Some(Kind::Checkpoint(_)) => "checkpoint",
        Some(Kind::Admin(_)) => "admin",
        _ => "other",
    }
}

/// Polls `f` every 20 ms up to `tries` times until it returns `Some`.
pub async fn poll<T>(tries: usize, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..tries {
        if let Some(v) = f() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
