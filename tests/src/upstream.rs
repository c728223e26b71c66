//! Upstream doubles: a raw HTTP/1.1 upstream that records every byte and answers per a
//! [`Behaviour`], and an HTTP/2 upstream built on hyper.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use crate::IO_TIMEOUT;

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
    /// `200` with body `echo:<target>:<request body length>`; for a target containing `/slow`,
    /// a 64 KiB ([`SLOW_LEN`]) body whose second half waits for [`Upstream::release`].
    Echo,
}

/// Body length of a `/slow` answer under [`Behaviour::Echo`].
pub const SLOW_LEN: usize = 64 * 1024;

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
        header_in(&self.headers, name)
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

#[derive(Debug)]
struct UpstreamState {
    requests: Mutex<Vec<Received>>,
    conn_bytes: Mutex<Vec<Vec<u8>>>,
    connections: AtomicUsize,
    health_probes: AtomicUsize,
    notify: Notify,
    /// Permits to finish held `/slow` answers.
    release: Semaphore,
    /// One permit per `/slow` answer whose first half has been written.
    slow_started: Semaphore,
}

impl Default for UpstreamState {
    fn default() -> UpstreamState {
        UpstreamState {
            requests: Mutex::default(),
            conn_bytes: Mutex::default(),
            connections: AtomicUsize::default(),
            health_probes: AtomicUsize::default(),
            notify: Notify::default(),
            release: Semaphore::new(0),
            slow_started: Semaphore::new(0),
        }
    }
}

/// A raw HTTP/1.1 upstream that records what it receives and answers per a [`Behaviour`].
/// Requests for `/healthz` are answered from the `healthy` flag and not recorded.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name (the `x-upstream` header and body of `Ok` answers).
    pub name: String,
    behaviour: Arc<Mutex<Behaviour>>,
    healthy: Arc<AtomicBool>,
    state: Arc<UpstreamState>,
    task: Arc<tokio::task::JoinHandle<()>>,
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

    /// An upstream named `up` answering [`Behaviour::Echo`].
    pub async fn echo() -> Upstream {
        Upstream::start("up", Behaviour::Echo).await
    }

    /// Lets one held `/slow` answer finish.
    pub fn release(&self) {
        self.state.release.add_permits(1);
    }

    /// One permit per `/slow` answer whose first half has been written.
    pub fn slow_started(&self) -> &Semaphore {
        &self.state.slow_started
    }

    /// The last request received; panics when there is none.
    pub fn last(&self) -> Received {
        self.requests()
            .pop()
            .expect("the upstream received a request")
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

/// First value of header `name` (any case) in a parsed header list.
pub(crate) fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Header lines (after the start line) as (lower-cased name, trimmed value) pairs.
pub(crate) fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

/// Position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
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
        let headers = parse_headers(lines);
        let get = |n: &str| header_in(&headers, n).map(str::to_owned);
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
        let body_len = body.len();
        state.requests.lock().unwrap().push(Received {
            conn,
            head,
            method,
            target: target.clone(),
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
            Behaviour::Echo if target.contains("/slow") => {
                let half = vec![b's'; SLOW_LEN / 2];
                stream
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {SLOW_LEN}\r\ncontent-type: application/octet-stream\r\n\r\n")
                            .as_bytes(),
                    )
                    .await?;
                stream.write_all(&half).await?;
                stream.flush().await?;
                state.slow_started.add_permits(1);
                state.release.acquire().await.unwrap().forget();
                stream.write_all(&half).await?;
                stream.flush().await?;
            }
            Behaviour::Echo => {
                stream
                    .write_all(&ok(format!("echo:{target}:{body_len}").as_bytes()))
                    .await?
            }
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
    /// Request method.
    pub method: String,
    /// Request URI.
    pub uri: String,
    /// HTTP version.
    pub version: http::Version,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// An HTTP/2 (prior knowledge) upstream built on hyper that records requests and answers
/// `200 h2`.
#[derive(Debug, Clone)]
pub struct H2Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<H2Received>>>,
}

impl H2Upstream {
    /// Starts one on `127.0.0.1:0`.
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

    /// Requests received so far.
    pub fn requests(&self) -> Vec<H2Received> {
        self.requests.lock().unwrap().clone()
    }
}
