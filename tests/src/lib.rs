//! Helpers shared by the end-to-end tests: a recording raw-TCP upstream, an in-process gateway
//! harness, raw-socket and hyper clients, raw HTTP/2 frames and an rcgen test PKI.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Default bound for any single network wait in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Recording upstream
// ---------------------------------------------------------------------------------------------

/// How the recording upstream answers a request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `200` with a body naming the upstream, `Content-Length` framed, keep-alive.
    Ok,
    /// Wait, then answer like `Ok`.
    Delay(Duration),
    /// Never answer (keeps the socket open).
    Hang,
    /// Close the socket with a TCP reset right after reading the request.
    Reset,
    /// Write these exact bytes, then close the connection when `close` (else keep reading).
    Raw { bytes: Vec<u8>, close: bool },
    /// A chunked `200` whose `chunks` one-byte chunks are sent `every` apart.
    SlowBody { chunks: usize, every: Duration },
    /// `200` with a body of `n` bytes.
    Large(usize),
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Connection number (0-based, in accept order).
    pub conn: usize,
    /// The head exactly as received (request line and headers, without the final CRLFCRLF).
    pub head: String,
    /// Method from the request line.
    pub method: String,
    /// Request target from the request line.
    pub target: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Decoded body.
    pub body: Vec<u8>,
    /// The exact bytes of this request (head and body as framed on the wire).
    pub raw: Vec<u8>,
}

impl Received {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// All values of a header.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Debug, Default)]
struct UpstreamState {
    requests: Mutex<Vec<Received>>,
    conn_bytes: Mutex<Vec<Vec<u8>>>,
    connections: AtomicUsize,
    health_probes: AtomicUsize,
    notify: Notify,
}

/// A raw HTTP/1.1 upstream that records what it receives and answers per a [`Behaviour`].
/// Requests for `/healthz` are answered from the `healthy` flag and not recorded.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    behaviour: Arc<Mutex<Behaviour>>,
    healthy: Arc<AtomicBool>,
    state: Arc<UpstreamState>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for UpstreamState {
    fn drop(&mut self) {}
}

impl Upstream {
    /// Starts an upstream on `127.0.0.1:0`.
    pub async fn start(name: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let healthy = Arc::new(AtomicBool::new(true));
        let state = Arc::new(UpstreamState::default());
        let task = {
            let (behaviour, healthy, state, name) = (
                behaviour.clone(),
                healthy.clone(),
                state.clone(),
                name.to_owned(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let conn = state.connections.fetch_add(1, Ordering::SeqCst);
                    state.conn_bytes.lock().unwrap().push(Vec::new());
                    let (behaviour, healthy, state, name) = (
                        behaviour.clone(),
                        healthy.clone(),
                        state.clone(),
                        name.clone(),
                    );
                    tokio::spawn(async move {
                        let _ =
                            serve_upstream(stream, conn, &behaviour, &healthy, &state, &name).await;
                    });
                }
            })
        };
        Upstream {
            addr,
            name: name.to_owned(),
            behaviour,
            healthy,
            state,
            task: Arc::new(task),
        }
    }

    /// Changes the behaviour for requests from now on.
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
    /// Sets the answer to `/healthz`.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
    /// Requests received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }
    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
    /// Health probes answered so far.
    pub fn health_probes(&self) -> usize {
        self.state.health_probes.load(Ordering::SeqCst)
    }
    /// Every byte received, per connection.
    pub fn bytes_per_connection(&self) -> Vec<Vec<u8>> {
        self.state.conn_bytes.lock().unwrap().clone()
    }
    /// Total bytes received on all connections.
    pub fn total_bytes(&self) -> usize {
        self.bytes_per_connection().iter().map(Vec::len).sum()
    }
    /// Waits until at least `n` requests were received (bounded).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let notified = self.state.notify.notified();
            if self.count() >= n {
                return self.requests();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "upstream {} got {} requests, wanted {n}",
                    self.name,
                    self.count()
                );
            }
        }
    }
    /// The single request received; panics unless there is exactly one.
    pub fn only(&self) -> Received {
        let r = self.requests();
        assert_eq!(r.len(), 1, "expected exactly one upstream request: {r:#?}");
        r.into_iter().next().unwrap()
    }
    /// Stops accepting (existing connections keep running until they end).
    pub fn stop(&self) {
        self.task.abort();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    record: &mut (dyn FnMut(&[u8]) + Send),
) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Ok(false);
    }
    record(&chunk[..n]);
    buf.extend_from_slice(&chunk[..n]);
    Ok(true)
}

async fn serve_upstream(
    mut stream: TcpStream,
    conn: usize,
    behaviour: &Mutex<Behaviour>,
    healthy: &AtomicBool,
    state: &UpstreamState,
    name: &str,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut record = |bytes: &[u8]| {
        if let Some(v) = state.conn_bytes.lock().unwrap().get_mut(conn) {
            v.extend_from_slice(bytes);
        }
    };
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if !fill(&mut stream, &mut buf, &mut record).await? {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("").to_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut pos = head_end + 4;
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&buf[pos..], b"\r\n") {
                        break pos + i;
                    }
                    if !fill(&mut stream, &mut buf, &mut record).await? {
                        return Ok(());
                    }
                };
                let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                pos = line_end + 2;
                if size == 0 {
                    // Trailers until an empty line.
                    loop {
                        if let Some(i) = find(&buf[pos..], b"\r\n") {
                            let empty = i == 0;
                            pos += i + 2;
                            if empty {
                                break;
                            }
                            continue;
                        }
                        if !fill(&mut stream, &mut buf, &mut record).await? {
                            return Ok(());
                        }
                    }
                    break;
                }
                while buf.len() < pos + size + 2 {
                    if !fill(&mut stream, &mut buf, &mut record).await? {
                        return Ok(());
                    }
                }
                body.extend_from_slice(&buf[pos..pos + size]);
                pos += size + 2;
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while buf.len() < pos + n {
                if !fill(&mut stream, &mut buf, &mut record).await? {
                    return Ok(());
                }
            }
            body.extend_from_slice(&buf[pos..pos + n]);
            pos += n;
        }
        let raw: Vec<u8> = buf.drain(..pos).collect();
        if target == "/healthz" {
            state.health_probes.fetch_add(1, Ordering::SeqCst);
            let status = if healthy.load(Ordering::SeqCst) {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            stream
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .await?;
            continue;
        }
        state.requests.lock().unwrap().push(Received {
            conn,
            head,
            method,
            target,
            headers,
            body,
            raw,
        });
        state.notify.notify_waiters();
        let behaviour = behaviour.lock().unwrap().clone();
        let ok = |body: &[u8]| {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-upstream: {name}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(body);
            out
        };
        match behaviour {
            Behaviour::Ok => stream.write_all(&ok(name.as_bytes())).await?,
            Behaviour::Delay(d) => {
                tokio::time::sleep(d).await;
                stream.write_all(&ok(name.as_bytes())).await?;
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Behaviour::Reset => {
                // Zero linger: the close is an immediate RST and never blocks.
                #[allow(deprecated)]
                stream.set_linger(Some(Duration::ZERO))?;
                return Ok(());
            }
            Behaviour::Raw { bytes, close } => {
                stream.write_all(&bytes).await?;
                if close {
                    stream.shutdown().await?;
                    return Ok(());
                }
            }
            Behaviour::SlowBody { chunks, every } => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await?;
                for _ in 0..chunks {
                    stream.write_all(b"1\r\nx\r\n").await?;
                    tokio::time::sleep(every).await;
                }
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Behaviour::Large(n) => stream.write_all(&ok(&vec![b'z'; n])).await?,
        }
    }
}

/// A head received by the HTTP/2 upstream.
#[derive(Debug, Clone)]
pub struct H2Received {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// An HTTP/2 (prior knowledge) upstream built on hyper that records requests and answers
/// `200 h2`.
#[derive(Debug, Clone)]
pub struct H2Upstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<H2Received>>>,
}

impl H2Upstream {
    pub async fn start() -> H2Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                log.lock().unwrap().push(H2Received {
                                    method: parts.method.to_string(),
                                    uri: parts.uri.to_string(),
                                    version: parts.version,
                                    headers: parts.headers,
                                    body,
                                });
                                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                    Bytes::from_static(b"h2"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        H2Upstream { addr, requests }
    }

    pub fn requests(&self) -> Vec<H2Received> {
        self.requests.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway harness
// ---------------------------------------------------------------------------------------------

/// Builds a gateway configuration: one cleartext listener, admin, one upstream group `app`,
/// service `demo` on hosts `localhost`, `127.0.0.1` and `other.example` with routes:
/// `/demo/admin/*` denied, `/demo/*` forwarded, `/stream/*` streamed, `/small/*` with a 1 KiB
/// body limit.
#[derive(Debug, Clone, Default)]
pub struct Cfg {
    pub targets: Vec<String>,
    pub limits: Vec<String>,
    pub upstream: Vec<String>,
    pub listener: Vec<String>,
    /// Raw TOML appended to the `[[listener]]` table (e.g. a `[listener.tls]` table).
    pub listener_tables: String,
    /// Raw TOML appended at the end (more routes of `demo`).
    pub tail: String,
}

impl Cfg {
    pub fn new(targets: &[SocketAddr]) -> Cfg {
        Cfg {
            targets: targets.iter().map(ToString::to_string).collect(),
            ..Cfg::default()
        }
    }
    pub fn limit(mut self, line: &str) -> Cfg {
        self.limits.push(line.to_owned());
        self
    }
    pub fn upstream(mut self, line: &str) -> Cfg {
        self.upstream.push(line.to_owned());
        self
    }
    pub fn listener(mut self, line: &str) -> Cfg {
        self.listener.push(line.to_owned());
        self
    }
    pub fn tail(mut self, text: &str) -> Cfg {
        self.tail.push_str(text);
        self
    }
    pub fn render(&self) -> String {
        let targets = self
            .targets
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let has =
            |lines: &[String], key: &str| lines.iter().any(|l| l.trim_start().starts_with(key));
        let mut limits = self.limits.clone();
        if !has(&limits, "drain_timeout_secs") {
            limits.push("drain_timeout_secs = 1".into());
        }
        let mut upstream = self.upstream.clone();
        for (k, v) in [
            ("connect_timeout_ms", "1000"),
            ("response_head_timeout_ms", "3000"),
            ("response_timeout_ms", "10000"),
        ] {
            if !has(&upstream, k) {
                upstream.push(format!("{k} = {v}"));
            }
        }
        format!(
            r#"node_id = "e2e"

# Every exchange is recorded, as in production (in the test's own temp dir).
[evidence]
dir = "@EVIDENCE_DIR@"

[[listener]]
name = "main"
address = "127.0.0.1:0"
{listener}
{listener_tables}

[admin]
address = "127.0.0.1:0"

[limits]
{limits}

[[upstream]]
name = "app"
targets = [{targets}]
{upstream}

[[service]]
id = "demo"
hosts = ["localhost", "127.0.0.1", "other.example"]
upstream = "app"

# These suites test the data plane; auth has its own suites (gateway/tests/auth_*, pipeline_*).
[service.auth]
anonymous = true

[[service.route]]
path = "/demo/admin/*"
action = "deny"

[[service.route]]
path = "/demo/*"

[[service.route]]
path = "/stream/*"
stream_body = true

[[service.route]]
path = "/small/*"
body_bytes = 1024
{tail}
"#,
            listener = self.listener.join("\n"),
            listener_tables = self.listener_tables,
            limits = limits.join("\n"),
            upstream = upstream.join("\n"),
            tail = self.tail,
        )
    }
}

/// Points the config's evidence log into the test's temp dir.
fn with_evidence_dir(dir: &std::path::Path, text: &str) -> String {
    text.replace(
        "@EVIDENCE_DIR@",
        &dir.join("evidence").display().to_string(),
    )
}

/// A gateway running in this process. Dropping it begins a shutdown.
#[derive(Debug)]
pub struct Gateway {
    running: Option<penghubung::server::Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts from a config text in a fresh temp dir.
    pub async fn start(text: &str) -> Gateway {
        Gateway::start_in(tempfile::tempdir().unwrap(), text).await
    }

    /// Starts in `dir` (which may hold certificates the config names).
    pub async fn start_in(dir: tempfile::TempDir, text: &str) -> Gateway {
        Gateway::try_start_in(dir, text)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n{text}"))
    }

    pub async fn try_start_in(
        dir: tempfile::TempDir,
        text: &str,
    ) -> Result<Gateway, penghubung::config::ConfigError> {
        let config_path = dir.path().join("penghubung.toml");
        std::fs::write(&config_path, with_evidence_dir(dir.path(), text)).unwrap();
        let config = penghubung::config::load(&config_path)?;
        let running = penghubung::server::start(config, Some(config_path.clone())).await?;
        Ok(Gateway {
            addr: running.listeners[0],
            admin: running.admin.unwrap(),
            running: Some(running),
            config_path,
            dir,
        })
    }

    /// The process-wide state (metrics, runtime).
    pub fn state(&self) -> &Arc<penghubung::server::Gateway> {
        &self.running.as_ref().unwrap().gateway
    }

    /// All bound listener addresses.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.running.as_ref().unwrap().listeners.clone()
    }

    /// Rewrites the config file (for reloads).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, with_evidence_dir(self.dir.path(), text)).unwrap();
    }

    /// `POST /reload` on the admin listener: status and body.
    pub async fn reload(&self) -> (u16, String) {
        let response = h1(
            self.admin,
            http::Request::post("/reload")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
        (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body()).into_owned(),
        )
    }

    /// `GET` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let response = h1(
            self.admin,
            http::Request::get(path)
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
        (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body()).into_owned(),
        )
    }

    /// Graceful shutdown, bounded.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), running.shutdown()).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.gateway.begin_shutdown();
        }
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// Raw socket client
// ---------------------------------------------------------------------------------------------

/// Sends `bytes` on a fresh connection and reads until the peer closes or `IO_TIMEOUT`.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    send_raw_for(addr, bytes, IO_TIMEOUT).await
}

/// Like [`send_raw`] with an explicit bound.
pub async fn send_raw_for(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let mut conn = RawConn::connect(addr).await;
    conn.send(bytes).await;
    conn.read_to_end(limit).await
}

/// The status of the first response in `raw`.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(raw.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection with a read buffer.
#[derive(Debug)]
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes bytes; a write error (peer closed) is ignored: the read side tells the story.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Like `send`, but reports whether the write succeeded.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    async fn more(&mut self, deadline: tokio::time::Instant) -> Option<bool> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => None,
            Ok(Ok(0)) | Ok(Err(_)) => Some(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(true)
            }
        }
    }

    /// Reads one response (an interim 1xx counts as one). `None` on close or timeout first.
    pub async fn read_response(&mut self, limit: Duration) -> Option<RawResponse> {
        let deadline = tokio::time::Instant::now() + limit;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.more(deadline).await != Some(true) {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status = status_of(head.as_bytes())?;
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut pos = head_end + 4;
        let mut body = Vec::new();
        if (100..200).contains(&status) || status == 204 || status == 304 {
        } else if get("transfer-encoding").is_some() {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf[pos..], b"\r\n") {
                        break pos + i;
                    }
                    if self.more(deadline).await != Some(true) {
                        return None;
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buf[pos..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.trim(), 16).ok()?;
                pos = line_end + 2;
                while self.buf.len() < pos + size + 2 {
                    if self.more(deadline).await != Some(true) {
                        return None;
                    }
                }
                body.extend_from_slice(&self.buf[pos..pos + size]);
                pos += size + 2;
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < pos + n {
                if self.more(deadline).await != Some(true) {
                    return None;
                }
            }
            body.extend_from_slice(&self.buf[pos..pos + n]);
            pos += n;
        } else {
            while self.more(deadline).await == Some(true) {}
            body = self.buf[pos..].to_vec();
            pos = self.buf.len();
        }
        self.buf.drain(..pos);
        Some(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// Whether the peer closes the connection within `limit` without sending anything more.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.more(deadline).await {
                Some(false) => return self.buf.is_empty(),
                Some(true) => continue,
                None => return false,
            }
        }
    }

    /// Reads until close or `limit`; returns everything unread.
    pub async fn read_to_end(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.more(deadline).await == Some(true) {}
        std::mem::take(&mut self.buf)
    }

    /// Reads for up to `limit`: everything unread, and whether the peer closed.
    pub async fn read_for(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let closed = loop {
            match self.more(deadline).await {
                Some(true) => continue,
                Some(false) => break true,
                None => break false,
            }
        };
        (std::mem::take(&mut self.buf), closed)
    }

    /// Bytes read but not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// Sends one request on a fresh connection and reads one response.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut conn = RawConn::connect(addr).await;
    conn.send(bytes).await;
    conn.read_response(IO_TIMEOUT).await
}

// ---------------------------------------------------------------------------------------------
// hyper clients
// ---------------------------------------------------------------------------------------------

/// A buffered response.
pub type Buffered = http::Response<Bytes>;

async fn collect(response: http::Response<hyper::body::Incoming>) -> anyhow::Result<Buffered> {
    let (parts, body) = response.into_parts();
    let bytes = tokio::time::timeout(IO_TIMEOUT, body.collect())
        .await??
        .to_bytes();
    Ok(http::Response::from_parts(parts, bytes))
}

/// Sends one HTTP/1.1 request on a fresh connection over any transport.
pub async fn h1_over<T>(io: T, request: http::Request<Full<Bytes>>) -> anyhow::Result<Buffered>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(IO_TIMEOUT, sender.send_request(request)).await??;
    collect(response).await
}

/// Sends one HTTP/2 request on a fresh connection over any transport.
pub async fn h2_over<T>(io: T, request: http::Request<Full<Bytes>>) -> anyhow::Result<Buffered>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(IO_TIMEOUT, sender.send_request(request)).await??;
    collect(response).await
}

/// HTTP/1.1 on a fresh TCP connection.
pub async fn h1(addr: SocketAddr, request: http::Request<Full<Bytes>>) -> anyhow::Result<Buffered> {
    h1_over(TcpStream::connect(addr).await?, request).await
}

/// HTTP/2 prior knowledge (h2c) on a fresh TCP connection. Use an absolute URI.
pub async fn h2c(
    addr: SocketAddr,
    request: http::Request<Full<Bytes>>,
) -> anyhow::Result<Buffered> {
    h2_over(TcpStream::connect(addr).await?, request).await
}

/// `GET path` with `Host: localhost` over HTTP/1.1: status and body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = h1(
        addr,
        http::Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    (
        response.status().as_u16(),
        String::from_utf8_lossy(response.body()).into_owned(),
    )
}

/// An empty request body.
pub fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/2 frames
// ---------------------------------------------------------------------------------------------

pub mod h2raw {
    //! Hand-written HTTP/2 frames for floods and malformed input.

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;

    /// One frame.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// HPACK integer with an `n`-bit prefix and the given first-byte flags.
    pub fn hpack_int(value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
        let max = (1usize << prefix_bits) - 1;
        if value < max {
            out.push(flags | value as u8);
            return;
        }
        out.push(flags | max as u8);
        let mut rest = value - max;
        while rest >= 128 {
            out.push((rest % 128 + 128) as u8);
            rest /= 128;
        }
        out.push(rest as u8);
    }

    /// HPACK literal header field without indexing, new name.
    pub fn literal(name: &str, value: &str, out: &mut Vec<u8>) {
        out.push(0x00);
        hpack_int(name.len(), 7, 0, out);
        out.extend_from_slice(name.as_bytes());
        hpack_int(value.len(), 7, 0, out);
        out.extend_from_slice(value.as_bytes());
    }

    /// A header block for a simple request.
    pub fn request_block(
        method: &str,
        path: &str,
        authority: &str,
        extra: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        literal(":method", method, &mut out);
        literal(":scheme", "http", &mut out);
        literal(":authority", authority, &mut out);
        literal(":path", path, &mut out);
        for (n, v) in extra {
            literal(n, v, &mut out);
        }
        out
    }

    /// Parses frames from a buffer: (type, flags, stream, payload).
    pub fn parse(mut buf: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            out.push((buf[3], buf[4], stream, buf[9..9 + len].to_vec()));
            buf = &buf[9 + len..];
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

pub mod pki {
    //! A test PKI made with rcgen at run time.

    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
        RevokedCertParams, SerialNumber,
    };
    use time::OffsetDateTime;

    /// A certificate and its key, PEM.
    #[derive(Debug, Clone)]
    pub struct Identity {
        pub cert_pem: String,
        pub key_pem: String,
    }

    /// Kinds of client certificates.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ClientKind {
        Good,
        Expired,
        NotYetValid,
        ServerAuthOnly,
        UnknownCaSameName,
        Revoked,
        SelfSigned,
    }

    const CA_NAME: &str = "Penghubung Test CA";
    const REVOKED_SERIAL: [u8; 3] = [0x0d, 0xea, 0xd1];

    /// The test PKI: one CA, a `localhost` server certificate, client certificates, a CRL.
    pub struct Pki {
        ca_cert: rcgen::Certificate,
        ca_key: KeyPair,
        pub ca_pem: String,
        pub server: Identity,
    }

    impl std::fmt::Debug for Pki {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Pki")
        }
    }

    fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    }

    fn leaf(cn: &str, sans: Vec<String>, eku: Vec<ExtendedKeyUsagePurpose>) -> CertificateParams {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = eku;
        params.is_ca = IsCa::ExplicitNoCa;
        params
    }

    impl Pki {
        pub fn new() -> Pki {
            let (ca_cert, ca_key) = ca(CA_NAME);
            let key = KeyPair::generate().unwrap();
            let server = leaf(
                "localhost",
                vec!["localhost".into(), "other.example".into()],
                vec![ExtendedKeyUsagePurpose::ServerAuth],
            )
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
            Pki {
                ca_pem: ca_cert.pem(),
                server: Identity {
                    cert_pem: server.pem(),
                    key_pem: key.serialize_pem(),
                },
                ca_cert,
                ca_key,
            }
        }

        /// A client certificate of the given kind.
        ///
        /// Not made here: RSA-1024 (rcgen with ring cannot generate RSA keys, and ring refuses to
        /// sign with RSA keys under 2048 bits) and SHA-1 signatures (rcgen has no SHA-1
        /// algorithm). Those are made with the `openssl` CLI from [`Pki::ca_key_pem`] and
        /// presented by `openssl s_client`; see `weak_client_certificate_*` in `tests/tls.rs`.
        pub fn client(&self, kind: ClientKind) -> Identity {
            let key = KeyPair::generate().unwrap();
            let now = OffsetDateTime::now_utc();
            let day = time::Duration::days(1);
            let mut params = leaf(
                "dinas-test",
                vec!["dinas-test.pemda.example".into()],
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            );
            params.not_before = now - day;
            params.not_after = now + day * 30;
            let cert = match kind {
                ClientKind::Good => params.signed_by(&key, &self.ca_cert, &self.ca_key),
                ClientKind::Expired => {
                    params.not_before = now - day * 30;
                    params.not_after = now - day;
                    params.signed_by(&key, &self.ca_cert, &self.ca_key)
                }
                ClientKind::NotYetValid => {
                    params.not_before = now + day;
                    params.not_after = now + day * 30;
                    params.signed_by(&key, &self.ca_cert, &self.ca_key)
                }
                ClientKind::ServerAuthOnly => {
                    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                    params.signed_by(&key, &self.ca_cert, &self.ca_key)
                }
                ClientKind::UnknownCaSameName => {
                    let (other, other_key) = ca(CA_NAME);
                    params.signed_by(&key, &other, &other_key)
                }
                ClientKind::Revoked => {
                    params.serial_number = Some(SerialNumber::from(REVOKED_SERIAL.to_vec()));
                    params.signed_by(&key, &self.ca_cert, &self.ca_key)
                }
                ClientKind::SelfSigned => params.self_signed(&key),
            }
            .unwrap();
            Identity {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        }

        /// The CA's private key, PEM (PKCS#8, ECDSA P-256), for signing certificates with tools
        /// other than rcgen (the `openssl` CLI). Write it only into a temp dir.
        pub fn ca_key_pem(&self) -> String {
            self.ca_key.serialize_pem()
        }

        /// A CRL from the CA revoking the `Revoked` client certificate.
        pub fn crl_pem(&self) -> String {
            let now = OffsetDateTime::now_utc();
            CertificateRevocationListParams {
                this_update: now - time::Duration::hours(1),
                next_update: now + time::Duration::days(7),
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: vec![RevokedCertParams {
                    serial_number: SerialNumber::from(REVOKED_SERIAL.to_vec()),
                    revocation_time: now - time::Duration::hours(2),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }],
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&self.ca_cert, &self.ca_key)
            .unwrap()
            .pem()
            .unwrap()
        }

        /// Writes server cert, key, CA and CRL into `dir`; returns the `[listener.tls]` table
        /// for `client_auth` (`none`, `optional`, `required`).
        pub fn listener_tls(&self, dir: &Path, client_auth: &str) -> String {
            self.listener_tls_with(dir, client_auth, true)
        }

        /// Like [`Pki::listener_tls`], optionally without the CRL.
        pub fn listener_tls_with(&self, dir: &Path, client_auth: &str, with_crl: bool) -> String {
            let cert = write_file(dir, "server.pem", &self.server.cert_pem);
            let key = write_file(dir, "server.key", &self.server.key_pem);
            let ca = write_file(dir, "ca.pem", &self.ca_pem);
            let crl = write_file(dir, "ca.crl.pem", &self.crl_pem());
            let mut table = format!(
                "[listener.tls]\ncertificate = {:?}\nkey = {:?}\nclient_auth = {client_auth:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            );
            if client_auth != "none" {
                table.push_str(&format!("client_ca = {:?}\n", ca.display().to_string()));
                if with_crl {
                    table.push_str(&format!("crls = [{:?}]\n", crl.display().to_string()));
                }
            }
            table
        }

        /// A rustls client config trusting this CA, offering `alpn`, with an optional identity.
        pub fn client_config(
            &self,
            identity: Option<&Identity>,
            alpn: &[&[u8]],
            versions: &[&'static rustls::SupportedProtocolVersion],
        ) -> Arc<rustls::ClientConfig> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
            let mut config = match identity {
                Some(id) => {
                    use rustls_pki_types::pem::PemObject;
                    let certs =
                        rustls_pki_types::CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                            .collect::<Result<Vec<_>, _>>()
                            .unwrap();
                    let key =
                        rustls_pki_types::PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                            .unwrap();
                    builder.with_client_auth_cert(certs, key).unwrap()
                }
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        }
    }

    impl Default for Pki {
        fn default() -> Pki {
            Pki::new()
        }
    }

    /// Connects with TLS to `addr` using `sni`.
    pub async fn connect(
        addr: SocketAddr,
        sni: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from(sni.to_owned())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        tokio::time::timeout(
            IO_TIMEOUT,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| std::io::Error::other("tls handshake timed out"))?
    }
}
