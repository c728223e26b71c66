//! A raw HTTP/1.1 client: bytes are sent exactly as written (malformed requests, smuggling
//! attempts, `Expect: 100-continue`), responses are parsed just enough to assert on.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::upstream::{find, header_in, parse_headers};
use crate::IO_TIMEOUT;

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
    /// Status code (0 when the connection closed before a head arrived).
    pub status: u16,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The decoded body (so far, when not `complete`).
    pub body: Vec<u8>,
    /// Whether the body arrived in full (its framing was satisfied, or it ended at close).
    pub complete: bool,
}

impl RawResponse {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        self.body_text()
    }
    /// The `x-penghubung-exchange-id` header; panics without one.
    pub fn exchange_id(&self) -> String {
        self.header("x-penghubung-exchange-id")
            .expect("x-penghubung-exchange-id")
            .to_owned()
    }
}

/// How reading one response ended.
enum Read {
    Response(RawResponse),
    /// Closed before a whole head arrived.
    Closed,
    TimedOut,
}

/// Reads more bytes into `buf`: `Some(true)` read, `Some(false)` closed, `None` timed out.
async fn more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Option<bool> {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
        Err(_) => None,
        Ok(Ok(0)) | Ok(Err(_)) => Some(false),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(true)
        }
    }
}

/// Reads one response (an interim 1xx counts as one) from `stream`, with `buf` holding bytes
/// already read; consumes the response's bytes from `buf`.
async fn read_one(stream: &mut TcpStream, buf: &mut Vec<u8>, limit: Duration) -> Read {
    let deadline = tokio::time::Instant::now() + limit;
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        match more(stream, buf, deadline).await {
            Some(true) => {}
            Some(false) => return Read::Closed,
            None => return Read::TimedOut,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let Some(status) = status_of(head.as_bytes()) else {
        return Read::Closed;
    };
    let headers = parse_headers(head.split("\r\n").skip(1));
    let get = |n: &str| header_in(&headers, n).map(str::to_owned);
    let mut pos = head_end + 4;
    let mut body = Vec::new();
    // A close mid-body ends the read with what arrived, marked incomplete.
    macro_rules! need_more {
        ($partial:expr) => {
            match more(stream, buf, deadline).await {
                Some(true) => {}
                Some(false) => {
                    let body = $partial;
                    buf.clear();
                    return Read::Response(RawResponse {
                        status,
                        headers,
                        body,
                        complete: false,
                    });
                }
                None => return Read::TimedOut,
            }
        };
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
    } else if get("transfer-encoding").is_some() {
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                need_more!(body);
            };
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
            let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                return Read::Closed;
            };
            pos = line_end + 2;
            while buf.len() < pos + size + 2 {
                need_more!(body);
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < pos + n {
            need_more!(buf[pos..].to_vec());
        }
        body.extend_from_slice(&buf[pos..pos + n]);
        pos += n;
    } else {
        while more(stream, buf, deadline).await == Some(true) {}
        body = buf[pos..].to_vec();
        pos = buf.len();
    }
    buf.drain(..pos);
    Read::Response(RawResponse {
        status,
        headers,
        body,
        complete: true,
    })
}

/// A raw client connection with a read buffer.
#[derive(Debug)]
pub struct RawConn {
    /// The connection.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects (bounded by [`IO_TIMEOUT`]).
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

    /// Reads one complete response (an interim 1xx counts as one). `None` on close or timeout
    /// first.
    pub async fn read_response(&mut self, limit: Duration) -> Option<RawResponse> {
        match read_one(&mut self.stream, &mut self.buf, limit).await {
            Read::Response(r) if r.complete => Some(r),
            _ => None,
        }
    }

    /// Whether the peer closes the connection within `limit` without sending anything more.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match more(&mut self.stream, &mut self.buf, deadline).await {
                Some(false) => return self.buf.is_empty(),
                Some(true) => continue,
                None => return false,
            }
        }
    }

    /// Reads until close or `limit`; returns everything unread.
    pub async fn read_to_end(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + limit;
        while more(&mut self.stream, &mut self.buf, deadline).await == Some(true) {}
        std::mem::take(&mut self.buf)
    }

    /// Reads for up to `limit`: everything unread, and whether the peer closed.
    pub async fn read_for(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let closed = loop {
            match more(&mut self.stream, &mut self.buf, deadline).await {
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

/// Reads one response off `stream` (a `100 Continue` is returned as such). A close before the
/// head gives status 0; a close mid-body gives the body so far with `complete` false. Panics
/// when `limit` passes first.
pub async fn read_response(stream: &mut TcpStream, limit: Duration) -> RawResponse {
    match read_one(stream, &mut Vec::new(), limit).await {
        Read::Response(r) => r,
        Read::Closed => RawResponse {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            complete: false,
        },
        Read::TimedOut => panic!("no response within {limit:?}"),
    }
}

/// Sends `bytes` on a new connection and reads one response (see [`read_response`]).
pub async fn request(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_response(&mut stream, Duration::from_secs(20)).await
}

/// A request built from parts, `Connection: close` (`Content-Length` for a body or a POST).
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

/// Sends a request built by [`request_bytes`] and reads its response.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    request(addr, &request_bytes(method, host, path, headers, body)).await
}

/// `GET` with the given host and headers.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    send(addr, "GET", host, path, headers, b"").await
}

/// `GET` on an admin listener.
pub async fn admin(addr: SocketAddr, path: &str) -> RawResponse {
    get(addr, "admin", path, &[]).await
}
